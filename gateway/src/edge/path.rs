//! The one canonical form of a request path: the path routes are matched on
//! is the path the upstream receives. Pure.
//!
//! Backends read a path in many ways: they percent-decode it once, merge
//! `//`, drop `;params` (Tomcat, Jetty, Spring), resolve `..`, treat `\` as
//! `/` (IIS), or ignore case. A path that one of them reads as a different
//! route than the gateway matched could pass a public route to a protected
//! backend. So the canonical form decodes what is safe to decode, merges
//! slashes, and refuses what would be read two ways. Never returns a path
//! that holds a dot segment, an encoded separator or NUL unless the operator
//! relaxed that rule.

use std::borrow::Cow;

/// How strict the canonical form is (`requests.paths` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRules {
    /// `%2F` and `%5C` forwarded as they are instead of refused. Risk: a
    /// backend that decodes before routing reads another path.
    pub keep_encoded_slashes: bool,
    /// `;` (also `%3B`) forwarded instead of refused. Risk: Java servlet
    /// containers drop `;params`, so `/pub/..;/acct` reaches `/acct`.
    pub keep_semicolons: bool,
    /// `//` merged into `/` (else refused: a backend merging them would
    /// read a path the routes never saw).
    pub merge_slashes: bool,
}

impl Default for PathRules {
    fn default() -> Self {
        PathRules {
            keep_encoded_slashes: false,
            keep_semicolons: false,
            merge_slashes: true,
        }
    }
}

/// Why a path was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathRefusal {
    #[error("the path does not start with `/`")]
    NotAbsolute,
    #[error("the path holds a malformed percent-encoding")]
    BadEncoding,
    #[error("the path holds percent-encoded bytes that are not UTF-8")]
    NotUtf8,
    #[error("the path holds an encoded `/` or `\\`")]
    EncodedSlash,
    #[error("the path holds a backslash")]
    Backslash,
    #[error("the path holds a NUL or control character")]
    Control,
    #[error("the path holds dot segments")]
    DotSegment,
    #[error("the path holds `;` parameters")]
    Semicolon,
    #[error("the path holds empty segments")]
    EmptySegment,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Bytes a browser percent-encodes in a path (WHATWG's path percent-encode
/// set, less the controls refused anyway) and raw non-ASCII: written
/// encoded, so the canonical form reads one way everywhere.
fn encode_raw(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'"' | b'#' | b'<' | b'>' | b'?' | b'`' | b'{' | b'}'
    ) || b >= 0x80
}

fn push_encoded(out: &mut String, v: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[(v >> 4) as usize] as char);
    out.push(HEX[(v & 15) as usize] as char);
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether `raw` is already canonical under `rules` (the common case: no
/// allocation). A `false` says only "look closer".
fn plain(raw: &str, rules: &PathRules) -> bool {
    let b = raw.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    let mut prev = 0u8;
    for &c in b {
        let bad = match c {
            b'%' | b'\\' => true,
            b';' => !rules.keep_semicolons,
            b'/' => prev == b'/',
            // A segment that starts with a dot may be `.` or `..`.
            b'.' => prev == b'/',
            c => c < 0x20 || c == 0x7f || encode_raw(c),
        };
        if bad {
            return false;
        }
        prev = c;
    }
    true
}

/// The canonical form of `raw` (the path of the request target, without
/// the query), or why it is refused.
pub fn canonical<'a>(raw: &'a str, rules: &PathRules) -> Result<Cow<'a, str>, PathRefusal> {
    if plain(raw, rules) {
        return Ok(Cow::Borrowed(raw));
    }
    let b = raw.as_bytes();
    if b.first() != Some(&b'/') {
        return Err(PathRefusal::NotAbsolute);
    }
    // `out` keeps reserved and non-ASCII bytes encoded (upper-case hex);
    // `decoded` is every byte decoded, to check the text is UTF-8.
    let mut out = String::with_capacity(raw.len());
    let mut decoded: Vec<u8> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathRefusal::BadEncoding);
            };
            let v = h * 16 + l;
            i += 3;
            decoded.push(v);
            match v {
                v if unreserved(v) => out.push(v as char),
                0..=0x1f | 0x7f => return Err(PathRefusal::Control),
                b'/' | b'\\' if !rules.keep_encoded_slashes => {
                    return Err(PathRefusal::EncodedSlash)
                }
                b';' if !rules.keep_semicolons => return Err(PathRefusal::Semicolon),
                v => push_encoded(&mut out, v),
            }
            continue;
        }
        match c {
            b'\\' => return Err(PathRefusal::Backslash),
            b';' if !rules.keep_semicolons => return Err(PathRefusal::Semicolon),
            c if c < 0x20 || c == 0x7f => return Err(PathRefusal::Control),
            _ => {}
        }
        decoded.push(c);
        if encode_raw(c) {
            push_encoded(&mut out, c);
        } else {
            out.push(c as char);
        }
        i += 1;
    }
    if std::str::from_utf8(&decoded).is_err() {
        return Err(PathRefusal::NotUtf8);
    }
    segments(&out, rules)
}

/// Checks the segments of a decoded path: no dot segments; empty ones
/// merged or refused. The trailing `/` of a directory is kept.
fn segments<'a>(path: &str, rules: &PathRules) -> Result<Cow<'a, str>, PathRefusal> {
    let mut out = String::with_capacity(path.len());
    let parts: Vec<&str> = path[1..].split('/').collect();
    let last = parts.len() - 1;
    for (n, seg) in parts.iter().enumerate() {
        // `;` may be kept: a segment like `..;x` is still a dot segment to
        // a servlet container.
        let name = seg.split(';').next().unwrap_or("");
        if name == "." || name == ".." {
            return Err(PathRefusal::DotSegment);
        }
        if seg.is_empty() && n != last {
            if rules.merge_slashes {
                continue;
            }
            return Err(PathRefusal::EmptySegment);
        }
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// `uri` with its path replaced by `path` (scheme, authority and query kept).
pub fn with_path(uri: &http::Uri, path: &str) -> Result<http::Uri, http::Error> {
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut b = http::Uri::builder();
    if let Some(s) = uri.scheme() {
        b = b.scheme(s.clone());
    }
    if let Some(a) = uri.authority() {
        b = b.authority(a.clone());
    }
    b.path_and_query(pq).build()
}

#[cfg(test)]
mod tests;
