//! The demo mail outbox: the gateway POSTs its mails here (the webhook mail
//! channel of the default config) and `GET /_demo/mail` shows the last ones,
//! text and HTML, fitting a phone.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::httpd::{respond, Resp};
use crate::problem::escape;

/// The mails kept, newest first.
pub(super) type Outbox = Mutex<VecDeque<serde_json::Value>>;

/// How many mails are kept.
const KEPT: usize = 20;

/// Keeps one mail (the webhook channel's JSON).
pub(super) fn keep(outbox: &Outbox, body: &[u8]) -> Resp {
    let Ok(m) = serde_json::from_slice::<serde_json::Value>(body) else {
        return respond(400, "text/plain", "not JSON");
    };
    let Ok(mut kept) = outbox.lock() else {
        return respond(500, "text/plain", "outbox unavailable");
    };
    kept.push_front(m);
    kept.truncate(KEPT);
    respond(202, "text/plain", "kept")
}

/// The outbox page.
pub(super) fn page(outbox: &Outbox) -> Resp {
    let kept: Vec<serde_json::Value> = outbox
        .lock()
        .map(|k| k.iter().cloned().collect())
        .unwrap_or_default();
    let items: String = kept.iter().map(article).collect();
    let items = if items.is_empty() {
        "<p>No mail yet. Create an account in the store, and its confirmation mail appears here.</p>".to_string()
    } else {
        items
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Demo mail outbox</title>\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{STYLE}</style></head>\
<body><main><p><a href=\"/\">← Demo Store</a></p><h1>Demo mail outbox</h1><p>Mails the gateway sent through its \
webhook mail channel (newest first). A demo only: a real deployment sends mail by SMTP or its own sender.</p>\
{items}</main></body></html>"
    );
    respond(200, "text/html; charset=utf-8", body)
}

const STYLE: &str = "*{box-sizing:border-box}body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}\
main{max-width:48rem;margin:1rem auto;padding:0 1rem}article{background:#fff;border-radius:10px;padding:.8rem 1rem;margin:1rem 0}\
article h2{font-size:1.1rem;margin:.2rem 0}pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.9rem}\
a{color:#1d4ed8;overflow-wrap:anywhere}.meta{color:#4b5563;font-size:.9rem}\
iframe{width:100%;height:30rem;border:1px solid #d1d5db;border-radius:8px;background:#fff}";

/// One mail: subject, recipient, the link to follow, the text, the HTML.
fn article(m: &serde_json::Value) -> String {
    let field = |k: &str| escape(m[k].as_str().unwrap_or(""));
    let link = m["link"]
        .as_str()
        .map(|l| format!("<p><a href=\"{0}\">{0}</a></p>", escape(l)))
        .unwrap_or_default();
    let html = m["html"]
        .as_str()
        .filter(|h| !h.is_empty())
        .map(|h| {
            format!(
                "<details><summary>As the customer's mail program shows it</summary>\
<iframe sandbox title=\"{}\" srcdoc=\"{}\"></iframe></details>",
                field("subject"),
                escape(h)
            )
        })
        .unwrap_or_default();
    format!(
        "<article><h2>{}</h2><p class=\"meta\">To: {} · {}</p>{link}<pre>{}</pre>{html}</article>\n",
        field("subject"),
        field("to"),
        field("kind"),
        field("text")
    )
}
