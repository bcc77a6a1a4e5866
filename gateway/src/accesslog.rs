//! The access log: one JSON line per request, formatted here and handed to
//! the process's log writer as one piece. Formatting the same line through
//! tracing's JSON layer (field visitors into a serde map) cost about 7% of a
//! proxied request's CPU (perf, README Performance); the line and its fields
//! are unchanged, and the usual filter still applies (`log.level` or
//! `RUST_LOG` must let `omnigate::access` at INFO through).

use std::io::Write;
use std::sync::OnceLock;
use std::time::SystemTime;

use tracing_appender::non_blocking::NonBlocking;

static WRITER: OnceLock<(NonBlocking, bool)> = OnceLock::new();

/// Sends access lines to the same writer as every other log line, so lines
/// never interleave; `text`: readable lines instead of JSON (a terminal).
/// Called once at start.
pub fn install(writer: NonBlocking, text: bool) {
    let _ = WRITER.set((writer, text));
}

/// What one access line says about a request.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub request_id: &'a str,
    pub listener: &'a str,
    pub client: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    /// Without the query string: it can carry tokens.
    pub path: &'a str,
    pub route: &'a str,
    pub upstream: &'a str,
    pub address: &'a str,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: usize,
    pub duration_ms: f64,
    pub attempts: usize,
    pub problem: &'a str,
    pub error: &'a str,
}

impl Entry<'_> {
    /// A readable line for a terminal: time, method, host and path, status,
    /// route and upstream, duration, and the problem if any. Pure.
    pub fn text_line(&self, now: SystemTime) -> Vec<u8> {
        let mut b = Vec::with_capacity(160);
        let at = humantime::format_rfc3339_millis(now).to_string();
        let clock = at.get(11..23).unwrap_or(&at);
        let _ = write!(
            b,
            "{clock} {} {}{} → {} {} via {}/{} {:.1} ms",
            self.method,
            self.host,
            self.path.escape_debug(),
            self.status,
            self.route,
            self.upstream,
            self.address,
            self.duration_ms
        );
        if self.problem != "-" {
            let _ = write!(b, " ({})", self.problem);
        }
        b.push(b'\n');
        b
    }

    /// The JSON line (with its newline) as of `now`. Pure.
    pub fn line(&self, now: SystemTime) -> Vec<u8> {
        let mut b = Vec::with_capacity(512);
        b.extend_from_slice(b"{\"timestamp\":\"");
        let _ = write!(b, "{}", humantime::format_rfc3339_micros(now));
        b.extend_from_slice(b"\",\"level\":\"INFO\"");
        for (name, value) in [
            ("request_id", self.request_id),
            ("listener", self.listener),
            ("client", self.client),
            ("method", self.method),
            ("host", self.host),
            ("path", self.path),
            ("route", self.route),
            ("upstream", self.upstream),
            ("address", self.address),
        ] {
            field(&mut b, name, value);
        }
        let _ = write!(
            b,
            ",\"status\":{},\"bytes_in\":{},\"bytes_out\":{},\"duration_ms\":{:.3},\"attempts\":{}",
            self.status, self.bytes_in, self.bytes_out, self.duration_ms, self.attempts
        );
        field(&mut b, "problem", self.problem);
        field(&mut b, "error", self.error);
        b.extend_from_slice(b",\"target\":\"omnigate::access\"}\n");
        b
    }
}

fn field(b: &mut Vec<u8>, name: &str, value: &str) {
    b.extend_from_slice(b",\"");
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(b"\":");
    // Escapes quotes, backslashes and control characters; cannot fail on a Vec.
    let _ = serde_json::to_writer(&mut *b, value);
}

/// Writes the line for `entry` if the log filter lets access lines through.
pub fn write(entry: &Entry<'_>) {
    if !tracing::enabled!(target: "omnigate::access", tracing::Level::INFO) {
        return;
    }
    let _ = match WRITER.get() {
        Some((w, true)) => w.clone().write_all(&entry.text_line(SystemTime::now())),
        Some((w, false)) => w.clone().write_all(&entry.line(SystemTime::now())),
        None => std::io::stdout()
            .lock()
            .write_all(&entry.line(SystemTime::now())),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_line_is_short_and_one_line() {
        let e = Entry {
            request_id: "r-1",
            listener: "http",
            client: "127.0.0.1",
            method: "GET",
            host: "shop.localhost:8080",
            path: "/cart\n",
            route: "cart",
            upstream: "store",
            address: "127.0.0.1:9101",
            status: 200,
            bytes_in: 0,
            bytes_out: 10,
            duration_ms: 0.44,
            attempts: 1,
            problem: "-",
            error: "",
        };
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_796_000_000_123_456);
        let line = String::from_utf8(e.text_line(at)).unwrap();
        assert_eq!(
            line,
            "00:53:20.123 GET shop.localhost:8080/cart\\n → 200 cart via store/127.0.0.1:9101 0.4 ms\n"
        );
    }

    #[test]
    fn line_is_one_json_object_with_every_field() {
        let e = Entry {
            request_id: "r-1",
            listener: "https",
            client: "192.0.2.7",
            method: "GET",
            host: "shop.example",
            path: "/odd \"path\"\\\n\u{7}",
            route: "store",
            upstream: "store",
            address: "10.0.0.5:8080",
            status: 502,
            bytes_in: 12,
            bytes_out: 345,
            duration_ms: 1.23456,
            attempts: 2,
            problem: "upstream-unreachable",
            error: "ConnectRefused",
        };
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_796_000_000_123_456);
        let line = e.line(at);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|c| **c == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&line).expect("valid JSON");
        assert_eq!(v["timestamp"], "2026-11-30T00:53:20.123456Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "omnigate::access");
        assert_eq!(v["path"], "/odd \"path\"\\\n\u{7}");
        assert_eq!(v["status"], 502);
        assert_eq!(v["bytes_in"], 12);
        assert_eq!(v["bytes_out"], 345);
        assert_eq!(v["duration_ms"], 1.235);
        assert_eq!(v["attempts"], 2);
        for (k, want) in [
            ("request_id", "r-1"),
            ("listener", "https"),
            ("client", "192.0.2.7"),
            ("method", "GET"),
            ("host", "shop.example"),
            ("route", "store"),
            ("upstream", "store"),
            ("address", "10.0.0.5:8080"),
            ("problem", "upstream-unreachable"),
            ("error", "ConnectRefused"),
        ] {
            assert_eq!(v[k], want, "{k}");
        }
    }
}
