//! The protocol between the gateway and a system, pure: the signed request
//! body, the one vocabulary of answers (at once or through the callback),
//! the callback's signature check, retry timing and when a job is done.

use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::store::{Kind, Subject, Task};

/// A system's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Erased everything it held of the customer.
    Erased,
    /// Held nothing of the customer.
    NotFound,
    /// Accepted; the outcome comes later through the callback.
    Accepted,
    /// Keeps these categories until then, under this legal basis.
    Retained {
        legal_basis: String,
        categories: Vec<String>,
        until: i64,
    },
    /// The export document follows (export requests).
    Exported,
    /// Could not do it now; retried.
    Error(String),
}

impl Answer {
    /// The task state it leaves.
    pub fn state(&self) -> &'static str {
        match self {
            Answer::Erased => "erased",
            Answer::NotFound => "not_found",
            Answer::Accepted => "waiting",
            Answer::Retained { .. } => "retained",
            Answer::Exported => "exported",
            Answer::Error(_) => "failing",
        }
    }
}

#[derive(Deserialize)]
struct Wire {
    status: String,
    legal_basis: Option<String>,
    #[serde(default)]
    categories: Vec<String>,
    until: Option<serde_json::Value>,
    reason: Option<String>,
}

/// Reads an answer: HTTP status and JSON body `{"status": …}`. A 202 with
/// no body is `accepted`; anything not in the vocabulary is an error, said
/// precisely, so the operator sees why a system failed. Pure.
pub fn parse(status: u16, body: &[u8], now: i64) -> Answer {
    if !(200..300).contains(&status) {
        return Answer::Error(format!("HTTP {status}{}", snippet(body)));
    }
    if status == 202 && body.iter().all(u8::is_ascii_whitespace) {
        return Answer::Accepted;
    }
    let wire: Wire = match serde_json::from_slice(body) {
        Ok(w) => w,
        Err(e) => return Answer::Error(format!("HTTP {status}: not an answer ({e})")),
    };
    match wire.status.as_str() {
        "erased" => Answer::Erased,
        "not_found" => Answer::NotFound,
        "accepted" => Answer::Accepted,
        "exported" => Answer::Exported,
        "error" => Answer::Error(
            wire.reason
                .unwrap_or_else(|| "the system said error".into()),
        ),
        "retained" => retained(wire, now),
        other => Answer::Error(format!(
            "unknown status `{other}` (expected erased, not_found, accepted, retained or error)"
        )),
    }
}

fn retained(w: Wire, now: i64) -> Answer {
    let basis = w.legal_basis.unwrap_or_default();
    if basis.trim().is_empty() {
        return Answer::Error("`retained` without a `legal_basis`".into());
    }
    if w.categories.is_empty() || w.categories.iter().any(|c| c.trim().is_empty()) {
        return Answer::Error("`retained` without the data `categories` kept".into());
    }
    let Some(until) = w.until.as_ref().and_then(when) else {
        return Answer::Error(
            "`retained` without a valid `until` (RFC 3339 date or time, or unix seconds)".into(),
        );
    };
    if until <= now {
        return Answer::Error("`retained` until a time already past".into());
    }
    Answer::Retained {
        legal_basis: basis.trim().to_string(),
        categories: w.categories,
        until,
    }
}

/// Unix seconds of `2031-12-31`, `2031-12-31T00:00:00Z` or `1956441600`. Pure.
pub fn when(v: &serde_json::Value) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return (n > 0).then_some(n);
    }
    let s = v.as_str()?.trim();
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    let t = humantime::parse_rfc3339_weak(&full)
        .ok()
        .or_else(|| humantime::parse_rfc3339(&full).ok())?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs() as i64)
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// What a system is sent.
pub struct Request<'a> {
    pub kind: Kind,
    pub job_id: &'a str,
    pub customer_id: &'a str,
    pub subject: &'a Subject,
    pub system: &'a str,
    pub deadline_at: i64,
    pub callback_url: &'a str,
    /// A re-sent erasure after a hold: only these categories.
    pub categories: Option<&'a [String]>,
    pub attempt: i64,
}

/// The JSON body of a request. Pure.
pub fn body(r: &Request<'_>) -> String {
    serde_json::json!({
        "type": format!("privacy.{}", r.kind.as_str()),
        "job_id": r.job_id,
        "system": r.system,
        "customer_id": r.customer_id,
        "identities": r.subject.identities,
        "email": r.subject.email,
        "name": r.subject.name,
        "deadline": r.deadline_at,
        "callback_url": r.callback_url,
        "categories": r.categories,
        "attempt": r.attempt,
    })
    .to_string()
}

/// The callback URL of one task.
pub fn callback_url(base: &str, job_id: &str, system: &str) -> String {
    format!("{base}/.well-known/omnigate/privacy/callback/{job_id}/{system}")
}

/// Why a callback's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadSignature {
    #[error("no or a malformed Omnigate-Signature header")]
    Malformed,
    #[error("the signature's time is more than five minutes off")]
    Stale,
    #[error("the signature does not match")]
    Mismatch,
}

/// Checks `Omnigate-Signature: t=…,v1=…` over `body` with `secret`,
/// within five minutes of `now`, in constant time. Pure.
pub fn verify(secret: &str, header: &str, body: &str, now: i64) -> Result<(), BadSignature> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = Some(v),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return Err(BadSignature::Malformed);
    };
    if (now - t).abs() > 300 {
        return Err(BadSignature::Stale);
    }
    let expected = crate::webhook::signature(secret, t, body);
    let expected = expected.rsplit("v1=").next().unwrap_or("");
    if bool::from(expected.as_bytes().ct_eq(v1.as_bytes())) {
        Ok(())
    } else {
        Err(BadSignature::Mismatch)
    }
}

/// Seconds before attempt `attempts + 1`: `first` doubling, capped at
/// `max`, plus up to 20 % jitter. Pure.
pub fn retry_in(attempts: i64, first: u64, max: u64, jitter: f64) -> i64 {
    let base = first.max(1).saturating_mul(1u64 << attempts.clamp(0, 30));
    let capped = base.min(max.max(1));
    (capped as f64 * (1.0 + 0.2 * jitter.clamp(0.0, 1.0))) as i64
}

/// Whether a task no longer waits for the system: answered for good, or
/// answered with a hold (erasure goes on; the hold is re-sent later).
pub fn settled(t: &Task) -> bool {
    matches!(
        t.state.as_str(),
        "erased" | "not_found" | "exported" | "retained"
    )
}

/// Whether every task is settled (the job can finish). Pure.
pub fn all_settled(tasks: &[Task]) -> bool {
    tasks.iter().all(settled)
}

/// Whether a hold is still pending on any task. Pure.
pub fn holds_pending(tasks: &[Task]) -> bool {
    tasks.iter().any(|t| t.state == "retained")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn the_vocabulary() {
        assert_eq!(parse(200, br#"{"status":"erased"}"#, NOW), Answer::Erased);
        assert_eq!(
            parse(200, br#"{"status":"not_found"}"#, NOW),
            Answer::NotFound
        );
        assert_eq!(parse(202, b"", NOW), Answer::Accepted);
        assert_eq!(
            parse(202, br#"{"status":"accepted"}"#, NOW),
            Answer::Accepted
        );
        assert_eq!(
            parse(
                200,
                br#"{"status":"retained","legal_basis":"HGB 257","categories":["invoices"],"until":"2031-12-31"}"#,
                NOW
            ),
            Answer::Retained {
                legal_basis: "HGB 257".into(),
                categories: vec!["invoices".into()],
                until: 1956441600
            }
        );
        assert_eq!(
            parse(200, br#"{"status":"error","reason":"locked"}"#, NOW),
            Answer::Error("locked".into())
        );
    }

    #[test]
    fn anything_else_is_an_error_that_says_why() {
        let err = |a: Answer| match a {
            Answer::Error(e) => e,
            other => panic!("not an error: {other:?}"),
        };
        assert!(err(parse(503, b"down", NOW)).contains("HTTP 503: down"));
        assert!(err(parse(200, b"ok", NOW)).contains("not an answer"));
        assert!(err(parse(200, br#"{"status":"done"}"#, NOW)).contains("unknown status `done`"));
        let no_basis = br#"{"status":"retained","categories":["x"],"until":"2031-01-01"}"#;
        assert!(err(parse(200, no_basis, NOW)).contains("legal_basis"));
        let no_cats = br#"{"status":"retained","legal_basis":"x","until":"2031-01-01"}"#;
        assert!(err(parse(200, no_cats, NOW)).contains("categories"));
        let past = br#"{"status":"retained","legal_basis":"x","categories":["x"],"until":1000}"#;
        assert!(err(parse(200, past, NOW)).contains("already past"));
        let bad = br#"{"status":"retained","legal_basis":"x","categories":["x"],"until":"soon"}"#;
        assert!(err(parse(200, bad, NOW)).contains("until"));
    }

    #[test]
    fn dates_times_and_seconds() {
        assert_eq!(when(&"2031-12-31".into()), Some(1956441600));
        assert_eq!(when(&"2031-12-31T00:00:10Z".into()), Some(1956441610));
        assert_eq!(when(&serde_json::json!(1956441600)), Some(1956441600));
        assert_eq!(when(&serde_json::json!(-1)), None);
        assert_eq!(when(&"31.12.2031".into()), None);
    }

    #[test]
    fn callbacks_are_signed_fresh_and_exact() {
        let body = r#"{"status":"erased"}"#;
        let header = crate::webhook::signature("s3cret-s3cret-s3cret", NOW, body);
        assert_eq!(
            verify("s3cret-s3cret-s3cret", &header, body, NOW + 10),
            Ok(())
        );
        assert_eq!(
            verify(
                "s3cret-s3cret-s3cret",
                &header,
                r#"{"status":"erased" }"#,
                NOW
            ),
            Err(BadSignature::Mismatch)
        );
        assert_eq!(
            verify("another-secret-entirely", &header, body, NOW),
            Err(BadSignature::Mismatch)
        );
        assert_eq!(
            verify("s3cret-s3cret-s3cret", &header, body, NOW + 301),
            Err(BadSignature::Stale)
        );
        assert_eq!(
            verify("s3cret-s3cret-s3cret", "v1=abc", body, NOW),
            Err(BadSignature::Malformed)
        );
    }

    proptest! {
        #[test]
        fn retries_grow_and_stay_bounded(a in 0i64..100, first in 1u64..120, max in 1u64..7200, j in 0.0f64..1.0) {
            let wait = retry_in(a, first, max, j);
            prop_assert!(wait >= 1);
            prop_assert!(wait as f64 <= max.max(1) as f64 * 1.2 + 1.0);
            prop_assert!(retry_in(a + 1, first, max, 0.0) >= retry_in(a, first, max, 0.0));
        }

        #[test]
        fn no_body_panics_the_parser(status in 100u16..600, body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(status, &body, NOW);
        }
    }
}
