//! Built-in demo upstreams (`demo.enabled: true`): a web store, a CRM and a
//! JSON API, each showing the request headers it received, so a newcomer sees
//! what the gateway forwards and injects. Not for production traffic.
//!
//! The store also plays the operator's mail sender for the default config:
//! the gateway POSTs verification and reset mails to `/_demo/mail` (the
//! webhook mail channel), and `GET /_demo/mail` lists the last ones, links
//! included, so registration works on a machine without SMTP.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;

use hyper::body::Incoming;
use hyper::Request;

use crate::config::model::Demo;
use crate::httpd::{respond, serve, Resp};
use crate::problem::escape;

#[derive(Clone, Copy)]
enum App {
    Store,
    Crm,
    Api,
}

impl App {
    fn title(self) -> &'static str {
        match self {
            App::Store => "Demo Store",
            App::Crm => "Demo CRM",
            App::Api => "Demo API",
        }
    }
}

/// The demo mail outbox: the last mails, newest first.
type Outbox = Arc<Mutex<VecDeque<serde_json::Value>>>;

/// Where the store keeps mails.
const MAIL_PATH: &str = "/_demo/mail";

/// Starts the three demo servers on the current runtime.
pub async fn start(demo: &Demo) -> std::io::Result<()> {
    let outbox: Outbox = Arc::default();
    for (app, addr) in [
        (App::Store, demo.store),
        (App::Crm, demo.crm),
        (App::Api, demo.api),
    ] {
        let outbox = outbox.clone();
        serve(addr, move |req, _peer| {
            let outbox = outbox.clone();
            async move {
                match app {
                    App::Store if req.uri().path() == MAIL_PATH => mail(req, &outbox).await,
                    _ => handle(app, &req),
                }
            }
        })
        .await?;
        tracing::info!(service = app.title(), address = %addr, "demo upstream listening");
    }
    Ok(())
}

/// `POST /_demo/mail` keeps a mail (JSON from the webhook channel);
/// `GET` lists them.
async fn mail(req: Request<Incoming>, outbox: &Outbox) -> Resp {
    if req.method() == hyper::Method::POST {
        let body = match http_body_util::Limited::new(req.into_body(), 64 * 1024)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => return respond(413, "text/plain", "mail too large"),
        };
        let Ok(m) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return respond(400, "text/plain", "not JSON");
        };
        let Ok(mut kept) = outbox.lock() else {
            return respond(500, "text/plain", "outbox unavailable");
        };
        kept.push_front(m);
        kept.truncate(20);
        return respond(202, "text/plain", "kept");
    }
    let kept: Vec<serde_json::Value> = outbox
        .lock()
        .map(|k| k.iter().cloned().collect())
        .unwrap_or_default();
    let items: String = kept
        .iter()
        .map(|m| {
            let field = |k: &str| escape(m[k].as_str().unwrap_or(""));
            let link = m["link"]
                .as_str()
                .map(|l| format!("<p><a href=\"{0}\">{0}</a></p>", escape(l)))
                .unwrap_or_default();
            format!(
                "<article><h2>{}</h2><p>To: {}</p><pre>{}</pre>{link}</article>\n",
                field("subject"),
                field("to"),
                field("text")
            )
        })
        .collect();
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Demo mail outbox</title>\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head>\
<body style=\"font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem\">\
<h1>Demo mail outbox</h1><p>Mails the gateway sent through its webhook mail channel \
(newest first). A demo only: a real deployment sends mail by SMTP or its own sender.</p>\
{}</body></html>",
        if items.is_empty() { "<p>No mail yet.</p>".to_string() } else { items }
    );
    respond(200, "text/html; charset=utf-8", body)
}

/// Headers the gateway sets or controls, highlighted on the demo pages.
fn gateway_header(name: &str) -> bool {
    name.starts_with("x-forwarded-")
        || name == "x-request-id"
        || name.starts_with("x-customer-")
        || name.starts_with("x-omnigate-")
}

fn handle(app: App, req: &Request<Incoming>) -> Resp {
    if req.uri().path() == "/healthz" {
        return respond(200, "text/plain", "ok");
    }
    let mut headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    headers.sort();
    match app {
        App::Api => {
            let map: serde_json::Map<String, serde_json::Value> = headers
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            let body = serde_json::json!({
                "service": "demo-api",
                "method": req.method().as_str(),
                "path": req.uri().path(),
                "headers": map,
            });
            respond(200, "application/json", body.to_string())
        }
        App::Store | App::Crm => {
            let rows: String = headers
                .iter()
                .map(|(k, v)| {
                    let class = if gateway_header(k) {
                        " class=\"gw\""
                    } else {
                        ""
                    };
                    format!(
                        "<tr{class}><th scope=\"row\">{}</th><td>{}</td></tr>\n",
                        escape(k),
                        escape(v)
                    )
                })
                .collect();
            let body = format!(
                r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}}
main{{max-width:52rem;margin:2rem auto;padding:1.5rem;background:#fff;border-radius:12px}}
table{{border-collapse:collapse;width:100%;font-size:.9rem}}
th,td{{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e3e6ea;word-break:break-all}}
tr.gw{{background:#eef6ff}}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
<p>This page is served by a demo upstream behind Omnigate. <strong>{method} {path}</strong></p>
<p>Highlighted rows are headers the gateway sets; everything else came from your browser.</p>
<table>
<caption>Request headers received by this upstream</caption>
{rows}</table>
</main>
</body>
</html>
"#,
                title = app.title(),
                method = escape(req.method().as_str()),
                path = escape(req.uri().path()),
            );
            respond(200, "text/html; charset=utf-8", body)
        }
    }
}
