//! The frame of the demo pages: a navigation bar that knows who is signed
//! in (from the identity headers the gateway injected), and the table of
//! the request headers this upstream received, the gateway's highlighted.

use base64::Engine;

use super::Seen;
use crate::problem::escape;

/// Headers the gateway sets or controls (client-sent ones never pass).
pub(super) fn gateway_header(name: &str) -> bool {
    name.starts_with("x-forwarded-")
        || name.starts_with("x-customer-")
        || name.starts_with("x-omnigate-")
        || [
            "x-request-id",
            "x-real-ip",
            "x-auth-method",
            "x-guest-id",
            "x-previous-guest-id",
            "forwarded",
        ]
        .contains(&name)
}

/// A complete demo page: `title`, the navigation, `content`, the headers.
pub(super) fn page(app_title: &str, seen: &Seen, cart: Option<usize>, content: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{STYLE}</style>
</head>
<body>
{nav}
<main>
{content}
{headers}
</main>
</body>
</html>
"#,
        title = escape(app_title),
        nav = nav(app_title, seen, cart),
        headers = headers_table(seen),
    )
}

const STYLE: &str = "
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330;line-height:1.45}
nav{background:#1d2330;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.4rem 1rem;align-items:center}
nav a{color:#fff}
nav .brand{font-weight:700;margin-right:auto;text-decoration:none}
nav .who{color:#d1d5db}
main{max-width:56rem;margin:1.2rem auto;padding:1.2rem;background:#fff;border-radius:12px}
@media (max-width:40rem){main{margin:.4rem;padding:.8rem}}
.products{display:grid;grid-template-columns:repeat(auto-fill,minmax(14rem,1fr));gap:1rem;padding:0;list-style:none}
.products li{border:1px solid #d1d5db;border-radius:10px;padding:.8rem}
button,.button{display:inline-block;padding:.55rem .9rem;font-size:1rem;border-radius:8px;border:2px solid #1d4ed8;background:#1d4ed8;color:#fff;text-decoration:none;cursor:pointer}
.notice{border-left:5px solid #1d4ed8;background:#eef2ff;padding:.6rem 1rem}
table{border-collapse:collapse;width:100%;font-size:.9rem;table-layout:fixed}
col.name{width:14rem}
col.from{width:6.5rem}
th,td{text-align:left;vertical-align:top;padding:.35rem .5rem;border-bottom:1px solid #e3e6ea}
td{overflow-wrap:anywhere}
th code{overflow-wrap:anywhere}
tr.gw{background:#eef6ff}
tr.gw td.from{font-weight:700;color:#1d4ed8}
details pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f3f4f6;padding:.5rem;border-radius:6px}
@media (max-width:40rem){
  table,thead,tbody,tr,th,td{display:block;width:100%}
  thead{position:absolute;left:-9999px}
  tr{border-bottom:1px solid #d1d5db;padding:.3rem 0}
  th,td{border:0;padding:.1rem .4rem}
  td.from{font-size:.8rem}
}
";

/// The navigation: the shop's places, and who is signed in (or how to).
fn nav(app_title: &str, seen: &Seen, cart: Option<usize>) -> String {
    let back = super::enc(&seen.path);
    let who = match seen.customer() {
        Some(name) => format!(
            "<span class=\"who\">Signed in as <strong>{}</strong></span>\
<a href=\"/_account\">Account</a><a href=\"/_auth/logout?return_to=%2F\">Sign out</a>",
            escape(name)
        ),
        None => format!(
            "<a href=\"/_auth/login?return_to={back}\">Sign in</a>\
<a href=\"/_auth/register?return_to={back}\">Create an account</a>"
        ),
    };
    let cart = cart.map_or_else(|| "Cart".to_string(), |n| format!("Cart ({n})"));
    format!(
        "<nav aria-label=\"Shop\"><a class=\"brand\" href=\"/\">{}</a>\
<a href=\"/cart\">{cart}</a><a href=\"/checkout\">Checkout</a><a href=\"/account/orders\">Orders</a>\
<a href=\"/crm\">CRM</a><a href=\"/_demo/mail\">Mail outbox</a>{who}</nav>",
        escape(app_title)
    )
}

/// The request headers this upstream received, the gateway's highlighted;
/// the signed assertion folded, with its claims decoded.
pub(super) fn headers_table(seen: &Seen) -> String {
    // Omnigate's first: what a backend developer looks for.
    let (ours, theirs): (Vec<_>, Vec<_>) =
        seen.headers.iter().partition(|(k, _)| gateway_header(k));
    let rows: String = ours
        .into_iter()
        .chain(theirs)
        .map(|(k, v)| {
            let ours = gateway_header(k);
            format!(
                "<tr{class}><th scope=\"row\"><code>{name}</code></th><td>{value}</td><td class=\"from\">{from}</td></tr>\n",
                class = if ours { " class=\"gw\"" } else { "" },
                name = escape(k),
                value = value_cell(k, v),
                from = if ours { "Omnigate" } else { "browser" },
            )
        })
        .collect();
    format!(
        "<h2 id=\"headers\">What this upstream received</h2>\
<p>Highlighted rows are headers Omnigate set (the backend can trust them: \
a browser's own copies never pass); the rest came from your browser.</p>\
<table aria-labelledby=\"headers\"><colgroup><col class=\"name\"><col><col class=\"from\"></colgroup>\
<thead><tr><th scope=\"col\">Header</th><th scope=\"col\">Value</th><th scope=\"col\">Set by</th></tr></thead>\
<tbody>\n{rows}</tbody></table>"
    )
}

/// A header value; the assertion (a JWT) folded with its claims shown.
fn value_cell(name: &str, value: &str) -> String {
    let claims = (name == "x-omnigate-assertion")
        .then(|| jwt_claims(value))
        .flatten();
    match claims {
        Some(claims) => format!(
            "<details><summary>signed assertion ({} characters): show its claims</summary>\
<pre>{}</pre><pre>{}</pre></details>",
            value.len(),
            escape(&claims),
            escape(value)
        ),
        None => format!("<code>{}</code>", escape(value)),
    }
}

/// The claims of a compact JWT, pretty-printed (not verified: a display).
fn jwt_claims(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    serde_json::to_string_pretty(&json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assertion_is_folded_with_its_claims_and_values_are_escaped() {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"cus_1"}"#);
        let cell = value_cell("x-omnigate-assertion", &format!("h.{claims}.s"));
        assert!(
            cell.contains("<details>") && cell.contains("&quot;sub&quot;: &quot;cus_1&quot;"),
            "{cell}"
        );
        assert_eq!(value_cell("x-other", "<b>"), "<code>&lt;b&gt;</code>");
        assert!(value_cell("x-omnigate-assertion", "not a jwt").starts_with("<code>"));
        assert!(gateway_header("x-customer-email") && gateway_header("x-guest-id"));
        assert!(!gateway_header("user-agent"));
    }
}
