//! Where each value of a YAML file stands: a map from a field path
//! (`routes[2].upstream`) to its line and column, so that every configuration
//! error can name the exact place to fix. Owns no semantics of the config.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A line and column, both 1-based, as editors show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// One configuration file: its path, its text and where every field stands.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    positions: HashMap<String, Pos>,
}

impl SourceFile {
    /// Indexes `text`; a file that is not valid YAML gets an empty index
    /// (serde reports the syntax error with its own position).
    pub fn new(path: &Path, text: String) -> Self {
        let mut rec = Recorder::default();
        let mut parser = Parser::new_from_str(&text);
        let _ = parser.load(&mut rec, false);
        SourceFile {
            path: path.to_path_buf(),
            text,
            positions: rec.positions,
        }
    }

    /// The position of `path`, or of its nearest ancestor that has one.
    pub fn locate(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = self.positions.get(p) {
                return *pos;
            }
            match parent(p) {
                Some(up) => p = up,
                None => return Pos { line: 1, column: 1 },
            }
        }
    }
}

/// `a.b[3].c` → `a.b[3]` → `a.b` → `a` → `` → None.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

/// Joins a field path: `join("routes[1]", "upstream")` = `routes[1].upstream`.
pub fn join(base: &str, field: &str) -> String {
    if base.is_empty() {
        field.to_string()
    } else {
        format!("{base}.{field}")
    }
}

/// Indexes a sequence element: `index("routes", 2)` = `routes[2]`.
pub fn index(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

enum Frame {
    Map {
        path: String,
        key: Option<String>,
        keys_seen: usize,
    },
    Seq {
        path: String,
        next: usize,
    },
}

#[derive(Default)]
struct Recorder {
    stack: Vec<Frame>,
    positions: HashMap<String, Pos>,
}

impl Recorder {
    /// The path of the node that starts now, advancing the parent's cursor.
    /// Returns `None` for a mapping key (which names, not starts, a node).
    fn next_node_path(&mut self, scalar: Option<&str>, mark: Marker) -> Option<String> {
        let pos = Pos {
            line: mark.line(),
            column: mark.col() + 1,
        };
        match self.stack.last_mut() {
            None => {
                self.positions.entry(String::new()).or_insert(pos);
                Some(String::new())
            }
            Some(Frame::Seq { path, next }) => {
                let p = index(path, *next);
                *next += 1;
                self.positions.insert(p.clone(), pos);
                Some(p)
            }
            Some(Frame::Map {
                path,
                key,
                keys_seen,
            }) => match key.take() {
                Some(k) => Some(join(path, &k)),
                None => {
                    // This node is a key: remember it and point its path at the key.
                    let k = scalar.unwrap_or("?").to_string();
                    self.positions.insert(join(path, &k), pos);
                    if *keys_seen == 0 {
                        // A mapping is best shown by its first key.
                        self.positions.insert(path.clone(), pos);
                    }
                    *keys_seen += 1;
                    *key = Some(k);
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => {
                self.next_node_path(Some(&value), mark);
            }
            Event::Alias(_) => {
                self.next_node_path(None, mark);
            }
            Event::MappingStart(..) => {
                let path = self.next_node_path(None, mark).unwrap_or_default();
                self.stack.push(Frame::Map {
                    path,
                    key: None,
                    keys_seen: 0,
                });
            }
            Event::SequenceStart(..) => {
                let path = self.next_node_path(None, mark).unwrap_or_default();
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_keys_and_sequence_items() {
        let text = "a: 1\nroutes:\n  - name: x\n    upstream: y\n  - name: z\n    hosts: [p, q]\n";
        let f = SourceFile::new(Path::new("c.yaml"), text.into());
        assert_eq!(f.locate("a"), Pos { line: 1, column: 1 });
        assert_eq!(f.locate("routes[0].upstream"), Pos { line: 4, column: 5 });
        assert_eq!(f.locate("routes[1].name"), Pos { line: 5, column: 5 });
        assert_eq!(
            f.locate("routes[1].hosts[1]"),
            Pos {
                line: 6,
                column: 16
            }
        );
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(f.locate("routes[1].nothing"), Pos { line: 5, column: 5 });
    }
}
