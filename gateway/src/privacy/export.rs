//! Data export (GDPR Art. 15/20): each system's answer is streamed to a
//! scratch file, checked to be the JSON it must be without building it in
//! memory, and kept in chunks; the download is one JSON document written
//! as a stream — what the gateway holds, then each system's answer chunk by
//! chunk — never held whole.

use std::io::Read;
use std::path::PathBuf;

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use http_body_util::BodyExt;
use serde::Deserialize;

use super::answer::{self, Answer};
use super::store::{Job, Task};
use crate::state::App;

/// The most one system may export.
pub const MAX_PART: u64 = 64 << 20;
/// Chunks of a system's answer as kept.
const CHUNK: usize = 256 << 10;

/// The frame every export answer has: the data itself is checked, not kept.
#[derive(Deserialize)]
struct Frame {
    status: String,
    #[serde(default)]
    #[allow(dead_code)]
    data: serde::de::IgnoredAny,
}

/// Receives a system's answer to an export request: a 200 with
/// `{"status": "exported", "data": …}` is kept; anything else is read as
/// an answer of the vocabulary.
pub async fn receive(
    app: &App,
    job: &Job,
    task: &Task,
    resp: http::Response<hyper::body::Incoming>,
) -> Answer {
    let status = resp.status().as_u16();
    let scratch = scratch_path(app, &job.id, &task.system);
    let result = spool(resp.into_body(), &scratch).await;
    let answer = match result {
        Ok(len) => judge(app, job, task, status, &scratch, len).await,
        Err(e) => Answer::Error(e),
    };
    let _ = tokio::fs::remove_file(&scratch).await;
    answer
}

fn scratch_path(app: &App, job_id: &str, system: &str) -> PathBuf {
    app.startup
        .server
        .state_dir
        .join("exports")
        .join(format!("{job_id}-{system}.part"))
}

/// Writes the body to `path` as it arrives; its length.
async fn spool(mut body: hyper::body::Incoming, path: &PathBuf) -> Result<u64, String> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| format!("export scratch folder: {e}"))?;
    }
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("export scratch file: {e}"))?;
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("the answer broke off: {e}"))?;
        if let Ok(data) = frame.into_data() {
            len += data.len() as u64;
            if len > MAX_PART {
                return Err(format!("the export is larger than {} MiB", MAX_PART >> 20));
            }
            tokio::io::AsyncWriteExt::write_all(&mut file, &data)
                .await
                .map_err(|e| format!("export scratch file: {e}"))?;
        }
    }
    tokio::io::AsyncWriteExt::flush(&mut file)
        .await
        .map_err(|e| format!("export scratch file: {e}"))?;
    Ok(len)
}

/// What the spooled answer is; an export is checked and stored.
async fn judge(app: &App, job: &Job, task: &Task, status: u16, path: &PathBuf, len: u64) -> Answer {
    if status != 200 || len < 4096 {
        let small = std::fs::read(path).unwrap_or_default();
        let a = answer::parse(status, &small, crate::session::unix_now());
        if a != Answer::Exported {
            return a;
        }
    }
    let p = path.clone();
    let checked = tokio::task::spawn_blocking(move || -> Result<String, String> {
        let file = std::fs::File::open(&p).map_err(|e| e.to_string())?;
        let frame: Frame = serde_json::from_reader(std::io::BufReader::new(file))
            .map_err(|e| format!("not a JSON export ({e})"))?;
        Ok(frame.status)
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    match checked {
        Ok(s) if s == "exported" => match store(app, &job.id, &task.system, path).await {
            Ok(()) => Answer::Exported,
            Err(e) => Answer::Error(e),
        },
        Ok(s) => Answer::Error(format!("an export answer with status `{s}`")),
        Err(e) => Answer::Error(e),
    }
}

/// Copies the checked file into the store, a chunk at a time.
async fn store(app: &App, job_id: &str, system: &str, path: &PathBuf) -> Result<(), String> {
    app.privacy
        .drop_parts(job_id, Some(system))
        .await
        .map_err(|e| e.to_string())?;
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; CHUNK];
    let mut carry: Vec<u8> = Vec::new();
    let mut seq = 0;
    loop {
        let n = file.read(&mut buf).map_err(|e| e.to_string())?;
        carry.extend_from_slice(&buf[..n]);
        // Cut on a character boundary: every chunk is text.
        let cut = if n == 0 {
            carry.len()
        } else {
            utf8_cut(&carry)
        };
        if cut > 0 {
            let text = String::from_utf8(carry[..cut].to_vec()).map_err(|e| e.to_string())?;
            app.privacy
                .put_part(job_id, system, seq, &text)
                .await
                .map_err(|e| e.to_string())?;
            seq += 1;
            carry.drain(..cut);
        }
        if n == 0 {
            return Ok(());
        }
    }
}

/// The longest prefix of `b` that ends on a UTF-8 character boundary. Pure.
fn utf8_cut(b: &[u8]) -> usize {
    let mut i = b.len();
    // At most three continuation bytes end a partial character.
    for _ in 0..4 {
        if i == 0 || std::str::from_utf8(&b[..i]).is_ok() {
            return i;
        }
        i -= 1;
    }
    i
}

/// Keeps a small export that came by callback.
pub async fn keep_callback(
    app: &App,
    job_id: &str,
    system: &str,
    body: &str,
) -> Result<(), String> {
    app.privacy
        .drop_parts(job_id, Some(system))
        .await
        .map_err(|e| e.to_string())?;
    app.privacy
        .put_part(job_id, system, 0, body)
        .await
        .map_err(|e| e.to_string())
}

/// What the gateway itself holds of the customer, as JSON.
pub async fn gateway_part(app: &App, job: &Job) -> Result<serde_json::Value, String> {
    let e = |e: crate::customers::DirectoryError| e.to_string();
    let dir = app.auth.directory();
    let id = &job.customer_id;
    let customer = dir.customer(id).await.map_err(e)?;
    let identities = dir.identities(id).await.map_err(e)?;
    let consents = dir.consent_records(id).await.map_err(e)?;
    let now = crate::session::unix_now();
    let sessions = app
        .sessions
        .list(id, now)
        .await
        .map_err(|e| e.to_string())?;
    let map = app.privacy.customer_map(id).await.map_err(e)?;
    let requests = app.privacy.jobs_of(id).await.map_err(e)?;
    Ok(serde_json::json!({
        "profile": customer.map(|c| serde_json::json!({
            "id": c.id, "email": c.email, "email_verified": c.email_verified,
            "name": c.name, "status": c.status,
        })),
        "identities": identities.iter().map(|i| serde_json::json!({
            "issuer": i.issuer, "subject": i.subject,
        })).collect::<Vec<_>>(),
        "sessions": sessions.iter().map(|s| serde_json::json!({
            "signed_in_at": s.created_at, "last_seen": s.last_seen, "expires_at": s.expires_at,
            "provider": s.provider, "device": s.device,
        })).collect::<Vec<_>>(),
        "consent_records": consents,
        "data_map": map.iter().map(|m| serde_json::json!({
            "system": m.system, "first_seen": m.first_seen, "last_seen": m.last_seen,
            "fields": super::datamap::field_names(m.fields), "purposes": m.purposes,
        })).collect::<Vec<_>>(),
        "privacy_requests": requests.iter().map(|r| serde_json::json!({
            "id": r.id, "kind": r.kind.as_str(), "state": r.state,
            "requested_at": r.created_at, "completed_at": r.completed_at,
        })).collect::<Vec<_>>(),
    }))
}

/// One piece of the download as it is produced.
enum Piece {
    Text(String),
    Part { system: String, seq: i64 },
}

/// The export document as a stream: the gateway's part, then each
/// exported system's answer as kept, chunk by chunk.
pub async fn document(
    app: std::sync::Arc<App>,
    job: Job,
    tasks: Vec<Task>,
) -> Result<impl Stream<Item = Result<Bytes, std::io::Error>> + Send, String> {
    let gateway = gateway_part(&app, &job).await?;
    let head = serde_json::json!({
        "format": "omnigate-export/1",
        "request": job.id,
        "customer_id": job.customer_id,
        "generated_at": crate::session::unix_now(),
        "gateway": gateway,
        "systems_without_export": tasks.iter().filter(|t| t.state != "exported")
            .map(|t| serde_json::json!({"system": t.system, "state": t.state}))
            .collect::<Vec<_>>(),
    })
    .to_string();
    // The head without its closing brace; the systems follow.
    let mut pieces = vec![Piece::Text(format!(
        "{},\"systems\":{{",
        head.trim_end_matches('}')
    ))];
    let exported: Vec<&Task> = tasks.iter().filter(|t| t.state == "exported").collect();
    for (i, t) in exported.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        pieces.push(Piece::Text(format!(
            "{sep}{}:",
            serde_json::json!(t.system)
        )));
        pieces.push(Piece::Part {
            system: t.system.clone(),
            seq: 0,
        });
    }
    pieces.push(Piece::Text("}}".into()));
    pieces.reverse();
    let job_id = job.id.clone();
    Ok(stream::unfold(
        (app, job_id, pieces),
        |(app, job_id, mut pieces)| async move {
            let piece = pieces.pop()?;
            let out = match piece {
                Piece::Text(t) => Ok(Bytes::from(t)),
                Piece::Part { system, seq } => {
                    match app.privacy.part(&job_id, &system, seq).await {
                        Ok(Some(chunk)) => {
                            pieces.push(Piece::Part {
                                system,
                                seq: seq + 1,
                            });
                            Ok(Bytes::from(chunk))
                        }
                        Ok(None) => Ok(Bytes::new()),
                        Err(e) => Err(std::io::Error::other(e.to_string())),
                    }
                }
            };
            Some((out, (app, job_id, pieces)))
        },
    )
    .boxed())
}

/// A system's export as parsed JSON, when it is small enough to show on a
/// page (else None: it is in the download).
pub async fn small_part(app: &App, job_id: &str, system: &str) -> Option<serde_json::Value> {
    let first = app.privacy.part(job_id, system, 0).await.ok()??;
    if app.privacy.part(job_id, system, 1).await.ok()?.is_some() {
        return None;
    }
    serde_json::from_str::<serde_json::Value>(&first)
        .ok()
        .map(|v| v["data"].clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn chunks_end_on_character_boundaries() {
        let s = "aé€𝄞".as_bytes();
        for n in 0..=s.len() {
            let cut = utf8_cut(&s[..n]);
            assert!(std::str::from_utf8(&s[..cut]).is_ok(), "{n}");
            assert!(n - cut < 4, "{n}");
        }
        let mut out = Vec::new();
        out.write_all(s).unwrap();
        assert_eq!(utf8_cut(&out), s.len());
    }
}
