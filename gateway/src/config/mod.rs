//! Configuration: `config.yaml` plus the policy files it includes. Loading is
//! one pass: read each file, substitute `${ENV}` in string values, deserialize
//! into the raw format, then validate into [`model::Config`]. Every problem is a
//! [`Diagnostic`] naming file, line, column, field and a fix; loading never
//! panics and never returns a half-valid config.

mod admission;
pub mod model;
mod privacy;
mod providers;
pub mod raw;
pub mod source;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

pub use model::Config;
use source::{Pos, SourceFile};

/// One configuration problem, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = if self.field.is_empty() {
            "(document)"
        } else {
            &self.field
        };
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            field,
            self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// All problems found in one load; never empty.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics against the files of one load.
pub(crate) struct Report<'a> {
    files: &'a [SourceFile],
    pub(crate) diags: Vec<Diagnostic>,
}

impl<'a> Report<'a> {
    fn new(files: &'a [SourceFile]) -> Self {
        Report {
            files,
            diags: Vec::new(),
        }
    }

    /// Records a problem at `field` of file number `file`.
    pub(crate) fn error(
        &mut self,
        file: usize,
        field: &str,
        message: String,
        hint: Option<String>,
    ) {
        let (path, pos) = match self.files.get(file) {
            Some(f) => (f.path.clone(), f.locate(field)),
            None => (PathBuf::from("?"), Pos { line: 1, column: 1 }),
        };
        self.push_at(path, pos, field, message, hint);
    }

    fn push_at(
        &mut self,
        file: PathBuf,
        pos: Pos,
        field: &str,
        message: String,
        hint: Option<String>,
    ) {
        self.diags.push(Diagnostic {
            file,
            line: pos.line,
            column: pos.column,
            field: field.to_string(),
            message,
            hint,
        });
    }
}

/// Loads and validates `path` and every file it includes.
/// What a valid configuration may still get wrong when several nodes run
/// it (each a sentence with the field and a fix). Pure.
pub fn warnings(c: &Config) -> Vec<String> {
    use model::{CustomerStore, SessionStoreKind};
    let mut out = Vec::new();
    let several = matches!(c.sessions.store, SessionStoreKind::Redis { .. });
    if several && matches!(c.customers, CustomerStore::Embedded { .. }) {
        out.push("customers.store: sessions are shared on Redis (several nodes), but each node keeps its own customer directory, and with it its own signing keys and guest-id key: a backend fetching the JWKS from one node rejects another's assertions (use `customers: { store: postgres, ... }`)".into());
    }
    if several && c.identity.signing_key.is_some() {
        out.push("identity.signing_key: every node must read the same key file, or backends reject some nodes' assertions (leave it out to keep rotating keys in the customer directory)".into());
    }
    out
}

pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let mut files = Vec::new();
    let mut diags = Vec::new();
    let main: Option<raw::RawConfig> = match read_file(path, &mut files) {
        Ok(c) => Some(c.unwrap_or_default()),
        Err(d) => {
            diags.extend(d);
            None
        }
    };
    // The included files are read even when the main one has errors, so one
    // run reports every file's.
    let include = match &main {
        Some(m) => m.include.clone(),
        None => files
            .first()
            .map(|f| includes_in(&f.text))
            .unwrap_or_default(),
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut policies = Vec::new();
    for (i, inc) in include.iter().enumerate() {
        let inc_path = base.join(inc);
        let field = source::index("include", i);
        if !inc_path.is_file() {
            let mut r = Report::new(&files);
            r.error(
                0,
                &field,
                format!("included file {} does not exist", inc_path.display()),
                Some("paths are relative to the directory of the main config file".into()),
            );
            diags.extend(r.diags);
            continue;
        }
        match read_file::<raw::RawPolicyFile>(&inc_path, &mut files) {
            Ok(Some(p)) => policies.push((files.len() - 1, p)),
            Ok(None) => {}
            Err(d) => diags.extend(d),
        }
    }
    match main {
        Some(main) if diags.is_empty() => validate::validate(main, policies, &files, base),
        _ => Err(ConfigErrors(diags)),
    }
}

/// The `include:` list of a main file whose other fields did not parse.
fn includes_in(text: &str) -> Vec<String> {
    let Ok(v) = serde_yaml_ng::from_str::<Value>(text) else {
        return Vec::new();
    };
    v.get("include")
        .and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads one file into `T`, indexing it into `files`. `Ok(None)` for an empty file.
fn read_file<T: DeserializeOwned>(
    path: &Path,
    files: &mut Vec<SourceFile>,
) -> Result<Option<T>, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            field: String::new(),
            message: format!("cannot read file: {e}"),
            hint: None,
        }]
    })?;
    files.push(SourceFile::new(path, text));
    let file_idx = files.len() - 1;
    let file = &files[file_idx];
    let mut value: Value = match serde_yaml_ng::from_str(&file.text) {
        Ok(v) => v,
        Err(e) => {
            let pos = e
                .location()
                .map(|l| Pos {
                    line: l.line(),
                    column: l.column(),
                })
                .unwrap_or(Pos { line: 1, column: 1 });
            let hint = yaml_hint(&file.text, pos.line);
            let mut r = Report::new(files);
            r.push_at(
                path.to_path_buf(),
                pos,
                "",
                format!("not valid YAML: {}", strip_location(&e.to_string())),
                Some(hint),
            );
            return Err(r.diags);
        }
    };
    if value.is_null() {
        return Ok(None);
    }
    let mut r = Report::new(files);
    substitute_env(&mut value, "", file_idx, &mut r);
    if !r.diags.is_empty() {
        return Err(r.diags);
    }
    let (typed, errors) = deserialize_all::<T>(&value);
    for (field, message, hint) in errors {
        r.error(file_idx, &field, message, hint);
    }
    match typed {
        Some(v) if r.diags.is_empty() => Ok(Some(v)),
        _ => Err(r.diags),
    }
}

/// One field error of a file: field, message, hint.
type FieldError = (String, String, Option<String>);

/// Deserializes `value` into `T`, reporting every field error rather than
/// the first: after each, the offending field is taken out and the rest is
/// tried again (at most 50 times). An error that taking a field out cannot
/// fix (a missing field, a wrong list item) ends the search; a missing
/// field that only the search took out is not reported.
fn deserialize_all<T: DeserializeOwned>(value: &Value) -> (Option<T>, Vec<FieldError>) {
    let mut value = value.clone();
    let mut errors = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..50 {
        let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(v) => return ((errors.is_empty()).then_some(v), errors),
            Err(e) => e,
        };
        let segments: Vec<String> = e.path().iter().filter_map(segment_key).collect();
        let (field, message, hint, unknown) = describe(&e);
        if let Some(missing) = message.strip_prefix("missing field `") {
            let name = missing.split('`').next().unwrap_or_default();
            if !removed.contains(&source::join(&path_string(e.path()), name)) {
                errors.push((field, message, hint));
            }
            break;
        }
        errors.push((field.clone(), message, hint));
        let mut at = segments;
        if let Some(u) = unknown {
            at.push(u);
        }
        if !remove(&mut value, &at) {
            break;
        }
        removed.push(field);
    }
    (None, errors)
}

/// A path segment as a mapping key (list items cannot be taken out
/// without renumbering the rest: `None` stops the search there).
fn segment_key(seg: &serde_path_to_error::Segment) -> Option<String> {
    match seg {
        serde_path_to_error::Segment::Map { key } => Some(key.clone()),
        serde_path_to_error::Segment::Seq { index } => Some(format!("[{index}]")),
        _ => None,
    }
}

/// Takes the node at `path` out of `value`; false if it is not a mapping
/// entry (or not there).
fn remove(value: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = value;
    for key in parents {
        let next = match key.strip_prefix('[').and_then(|k| k.strip_suffix(']')) {
            Some(i) => i.parse::<usize>().ok().and_then(|i| node.get_mut(i)),
            None => node.get_mut(key.as_str()),
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    if last.starts_with('[') {
        return false;
    }
    node.as_mapping_mut()
        .and_then(|m| m.remove(last.as_str()))
        .is_some()
}

/// The field, message and hint of one deserialization error, and the
/// unknown field's name when that is the error.
fn describe(
    e: &serde_path_to_error::Error<serde_yaml_ng::Error>,
) -> (String, String, Option<String>, Option<String>) {
    let mut field = path_string(e.path());
    let inner = e.inner().to_string();
    let mut inner = strip_location(&inner);
    if let Some((unknown, expected)) = parse_unknown_field(&inner) {
        inner = format!("unknown field `{unknown}`");
        if !field.ends_with(unknown.as_str()) {
            field = source::join(&field, &unknown);
        }
        let hint = closest(&unknown, &expected)
            .map(|c| format!("did you mean `{c}`?"))
            .or_else(|| Some(format!("allowed fields: {}", expected.join(", "))));
        return (field, inner, hint, Some(unknown));
    }
    let hint = if inner.starts_with("missing field") {
        Some("add the field; see README.md for the reference".into())
    } else {
        number_hint(&field, &inner)
    };
    (field, inner, hint, None)
}

/// What to look for around a YAML syntax error on `line`: a tab there (YAML
/// indents with spaces only), else indentation and quoting.
fn yaml_hint(text: &str, line: usize) -> String {
    let around = text.lines().skip(line.saturating_sub(2)).take(2);
    if around.clone().any(|l| l.contains('\t')) {
        let at = text
            .lines()
            .position(|l| l.contains('\t'))
            .map_or(line, |i| i + 1);
        return format!("line {at} holds a tab character: YAML indents with spaces only");
    }
    "check indentation and quoting around this line".into()
}

/// A number where text is expected: for a duration, the unit it lacks.
fn number_hint(field: &str, message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("invalid type: integer `")
        .or_else(|| message.strip_prefix("invalid type: floating point `"))?;
    let number = rest.split('`').next()?;
    if !message.ends_with("expected a string") {
        return None;
    }
    let last = field.rsplit('.').next().unwrap_or(field);
    const DURATIONS: [&str; 15] = [
        "timeout", "ttl", "interval", "deadline", "grace", "rotation", "flush", "window",
        "backoff", "tick", "lease", "retry", "age", "duration", "refresh",
    ];
    Some(if DURATIONS.iter().any(|d| last.contains(d)) {
        format!("a duration needs a unit: write `{number}s` (or `{number}ms`, `{number}m`)")
    } else {
        format!("write it as text, quoted: `\"{number}\"`")
    })
}

fn path_string(path: &serde_path_to_error::Path) -> String {
    let mut s = String::new();
    for seg in path.iter() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => s = source::index(&s, *index),
            serde_path_to_error::Segment::Map { key } => s = source::join(&s, key),
            serde_path_to_error::Segment::Enum { variant } => s = source::join(&s, variant),
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    s
}

/// serde_yaml appends " at line N column M"; we print positions ourselves.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Splits serde's "unknown field `x`, expected one of `a`, `b`" message.
fn parse_unknown_field(msg: &str) -> Option<(String, Vec<String>)> {
    let rest = msg.strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    let unknown = rest[..end].to_string();
    let expected = rest[end..]
        .split('`')
        .skip(2)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((unknown, expected))
}

/// The candidate closest to `word`, if it is plausibly a typo of it.
pub(crate) fn closest<'c>(word: &str, candidates: &'c [String]) -> Option<&'c str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.as_str())
}

/// Replaces `${NAME}` in every string value with the environment variable.
fn substitute_env(value: &mut Value, path: &str, file: usize, r: &mut Report<'_>) {
    match value {
        Value::String(s) if s.contains("${") => match expand(s) {
            Ok(v) => *s = v,
            Err(name) => r.error(
                file,
                path,
                format!("environment variable `{name}` is not set"),
                Some(format!(
                    "export {name}=… before starting, or write the value here"
                )),
            ),
        },
        Value::Sequence(seq) => {
            for (i, v) in seq.iter_mut().enumerate() {
                substitute_env(v, &source::index(path, i), file, r);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = k.as_str().unwrap_or("?").to_string();
                substitute_env(v, &source::join(path, &key), file, r);
            }
        }
        _ => {}
    }
}

/// Expands `${NAME}` and `${NAME:-default}`; `$${` is a literal `${`.
/// Err(name) if a variable without default is unset.
fn expand(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if rest[..i].ends_with('$') {
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            return Ok(out);
        };
        let (name, default) = match after[..end].split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (&after[..end], None),
        };
        match (std::env::var(name), default) {
            (Ok(v), _) if !v.is_empty() || default.is_none() => out.push_str(&v),
            (_, Some(d)) => out.push_str(d),
            (_, None) => return Err(name.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests;
