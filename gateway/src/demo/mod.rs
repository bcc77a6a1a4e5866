//! Built-in demo upstreams (`demo.enabled: true`): a web store, a CRM and a
//! JSON API, each showing the request headers it received, so a newcomer sees
//! what the gateway forwards and injects. Not for production traffic.
//!
//! The store also plays the operator's mail sender for the default config:
//! the gateway POSTs verification and reset mails to `/_demo/mail` (the
//! webhook mail channel), and `GET /_demo/mail` lists the last ones, links
//! included, so registration works on a machine without SMTP. Each demo
//! upstream answers the gateway's privacy requests on `/_demo/privacy/*`.

mod outbox;
mod store;
mod view;

use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Request;

use crate::config::model::Demo;
use crate::httpd::{respond, serve, Resp};

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

/// What the demo keeps between requests: the store's carts and orders,
/// and the mail outbox.
#[derive(Default)]
struct Demos {
    shop: Mutex<store::Shop>,
    outbox: outbox::Outbox,
}

/// Where the store keeps mails.
const MAIL_PATH: &str = "/_demo/mail";
/// Where the demo upstreams take the gateway's privacy requests.
const PRIVACY_PATH: &str = "/_demo/privacy/";

/// The largest request body a demo reads (a mail, a form).
const BODY_LIMIT: usize = 64 * 1024;

/// Starts the three demo servers on the current runtime.
pub async fn start(demo: &Demo) -> std::io::Result<()> {
    let state = Arc::new(Demos::default());
    for (app, addr) in [
        (App::Store, demo.store),
        (App::Crm, demo.crm),
        (App::Api, demo.api),
    ] {
        let state = state.clone();
        serve(addr, move |req, _peer| {
            let state = state.clone();
            async move { handle(app, &state, req).await }
        })
        .await?;
        tracing::info!(service = app.title(), address = %addr, "demo upstream listening");
    }
    Ok(())
}

/// A request as the demo pages use it: sorted headers, the body read.
pub(super) struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The signed-in customer's name, else email, else id.
    pub fn customer(&self) -> Option<&str> {
        self.header("x-customer-id")?;
        ["x-customer-name", "x-customer-email", "x-customer-id"]
            .iter()
            .find_map(|h| self.header(h).filter(|v| !v.is_empty()))
    }

    /// Whose cart this is: the customer, else the guest.
    pub fn visitor(&self) -> Option<&str> {
        self.header("x-customer-id")
            .or_else(|| self.header("x-guest-id"))
    }

    pub fn form(&self, name: &str) -> Option<String> {
        pair(&self.body, name)
    }

    pub fn query_value(&self, name: &str) -> Option<String> {
        pair(&self.query, name)
    }
}

fn pair(encoded: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(encoded.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub(super) fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn handle(app: App, state: &Demos, req: Request<Incoming>) -> Resp {
    if req.uri().path() == "/healthz" {
        return respond(200, "text/plain", "ok");
    }
    let Some(seen) = read(req).await else {
        return respond(413, "text/plain", "body too large");
    };
    match app {
        App::Store if seen.path == MAIL_PATH && seen.method == "POST" => {
            outbox::keep(&state.outbox, seen.body.as_bytes())
        }
        App::Store if seen.path == MAIL_PATH => outbox::page(&state.outbox),
        App::Store if seen.path.starts_with(PRIVACY_PATH) && seen.method == "POST" => {
            store::privacy(&state.shop, &seen)
        }
        // The demo CRM and API keep nothing between requests.
        App::Crm | App::Api if seen.path.starts_with(PRIVACY_PATH) && seen.method == "POST" => {
            respond(200, "application/json", r#"{"status":"not_found"}"#)
        }
        App::Store => store::handle(&state.shop, &seen),
        App::Crm => crm(&seen),
        App::Api => api(&seen),
    }
}

/// The request with its body (at most `BODY_LIMIT`).
async fn read(req: Request<Incoming>) -> Option<Seen> {
    let (head, body) = req.into_parts();
    let body = http_body_util::Limited::new(body, BODY_LIMIT)
        .collect()
        .await
        .ok()?
        .to_bytes();
    let mut headers: Vec<(String, String)> = head
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    headers.sort();
    Some(Seen {
        method: head.method.as_str().to_string(),
        path: head.uri.path().to_string(),
        query: head.uri.query().unwrap_or("").to_string(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The CRM: who the customer is, as the CRM would see them.
fn crm(seen: &Seen) -> Resp {
    let who = match seen.customer() {
        Some(c) => format!(
            "<p>The CRM sees <strong>{}</strong> without a login of its own.</p>",
            crate::problem::escape(c)
        ),
        None => "<p>Nobody is signed in: the CRM sees an anonymous visitor.</p>".to_string(),
    };
    let body = view::page("Demo CRM", seen, None, &format!("<h1>Demo CRM</h1>{who}"));
    respond(200, "text/html; charset=utf-8", body)
}

/// The API: the request as JSON.
fn api(seen: &Seen) -> Resp {
    let map: serde_json::Map<String, serde_json::Value> = seen
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let body = serde_json::json!({
        "service": "demo-api",
        "method": seen.method,
        "path": seen.path,
        "headers": map,
    });
    respond(200, "application/json", body.to_string())
}
