//! Every response the gateway writes itself on an error maps here, in one
//! place, to an HTML page (web routes, browsers) or an RFC 9457 problem JSON
//! document (api routes). Pure; never includes internal error text, addresses
//! or anything the client did not send.

use bytes::Bytes;

use crate::config::model::RouteKind;

/// A problem the gateway answers for itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    BadRequest(&'static str),
    /// The path is refused by the canonical-path rules.
    BadPath(crate::edge::path::PathRefusal),
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge {
        limit: u64,
    },
    BadGateway,
    NoHealthyUpstream,
    GatewayTimeout,
    Internal,
    /// No credential where one is needed, or one that failed verification.
    Unauthenticated(Option<String>),
    /// Authenticated, but these scopes are missing.
    InsufficientScope(Vec<String>),
    /// The route needs a confirmed email address.
    EmailUnverified,
    /// The route needs these purposes (titles) granted.
    ConsentRequired(Vec<String>),
    /// Provider keys or the customer directory could not be reached.
    IdentityUnavailable,
    /// The gateway's own pages on a host the configuration does not name.
    UnknownHost,
    /// A state-changing request to the gateway's pages sent by another site.
    CrossSiteForm,
    /// A forward-auth call from an address outside `trusted_proxies`.
    UntrustedCaller,
    /// The upstream has no slot for this request now (`crate::admission`):
    /// `503`, or `429` for a crawler.
    Overloaded {
        status: u16,
    },
}

impl Problem {
    pub fn status(&self) -> u16 {
        match self {
            Problem::BadRequest(_) | Problem::BadPath(_) => 400,
            Problem::NotFound => 404,
            Problem::MethodNotAllowed => 405,
            Problem::PayloadTooLarge { .. } => 413,
            Problem::BadGateway => 502,
            Problem::NoHealthyUpstream => 503,
            Problem::GatewayTimeout => 504,
            Problem::Internal => 500,
            Problem::Unauthenticated(_) => 401,
            Problem::InsufficientScope(_)
            | Problem::EmailUnverified
            | Problem::ConsentRequired(_) => 403,
            Problem::IdentityUnavailable => 503,
            Problem::UnknownHost => 421,
            Problem::CrossSiteForm => 403,
            Problem::UntrustedCaller => 403,
            Problem::Overloaded { status } => *status,
        }
    }

    /// A stable machine-readable slug (also the tail of the problem `type`).
    pub fn code(&self) -> &'static str {
        match self {
            Problem::BadRequest(_) => "bad-request",
            Problem::BadPath(_) => "bad-request",
            Problem::NotFound => "no-route",
            Problem::MethodNotAllowed => "method-not-allowed",
            Problem::PayloadTooLarge { .. } => "body-too-large",
            Problem::BadGateway => "upstream-unavailable",
            Problem::NoHealthyUpstream => "no-healthy-upstream",
            Problem::Overloaded { .. } => "over-capacity",
            Problem::GatewayTimeout => "upstream-timeout",
            Problem::Internal => "internal-error",
            Problem::Unauthenticated(None) => "unauthenticated",
            Problem::Unauthenticated(Some(_)) => "invalid-token",
            Problem::InsufficientScope(_) => "insufficient-scope",
            Problem::EmailUnverified => "email-unverified",
            Problem::ConsentRequired(_) => "consent-required",
            Problem::IdentityUnavailable => "identity-unavailable",
            Problem::UnknownHost => "unknown-host",
            Problem::CrossSiteForm => "cross-site-request",
            Problem::UntrustedCaller => "untrusted-caller",
        }
    }

    /// What a customer can do about it on a page: a link and its text.
    pub fn action(&self) -> Option<(&'static str, &'static str)> {
        match self {
            Problem::ConsentRequired(_) => Some(("/_account/consent", "Review your consents")),
            Problem::EmailUnverified => Some(("/_account", "Confirm your email address")),
            _ => None,
        }
    }

    /// Whether trying the same request again later may work (a page offers it).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Problem::BadGateway
                | Problem::NoHealthyUpstream
                | Problem::GatewayTimeout
                | Problem::IdentityUnavailable
                | Problem::Overloaded { .. }
        )
    }

    /// The values the page texts of this problem fill in (`problem.<code>.detail`).
    pub fn text_args(&self) -> Vec<(&'static str, String)> {
        match self {
            Problem::BadRequest(why) => vec![("reason", why.to_string())],
            Problem::BadPath(why) => vec![("reason", why.to_string())],
            Problem::Unauthenticated(Some(why)) => vec![("reason", why.clone())],
            Problem::PayloadTooLarge { limit } => vec![("limit", limit.to_string())],
            Problem::InsufficientScope(list) | Problem::ConsentRequired(list) => {
                vec![("list", list.join(", "))]
            }
            _ => Vec::new(),
        }
    }

    pub fn title(&self) -> &'static str {
        match self {
            Problem::BadRequest(_) | Problem::BadPath(_) => "Bad request",
            Problem::NotFound => "Page not found",
            Problem::MethodNotAllowed => "Method not allowed",
            Problem::PayloadTooLarge { .. } => "Request too large",
            Problem::BadGateway => "Service unavailable",
            Problem::NoHealthyUpstream => "Service temporarily unavailable",
            Problem::GatewayTimeout => "Service did not answer in time",
            Problem::Internal => "Something went wrong",
            Problem::Unauthenticated(_) => "Sign-in required",
            Problem::InsufficientScope(_) => "Not allowed",
            Problem::EmailUnverified => "Please confirm your email address",
            Problem::ConsentRequired(_) => "Consent needed",
            Problem::IdentityUnavailable => "Sign-in temporarily unavailable",
            Problem::UnknownHost => "Unknown address",
            Problem::CrossSiteForm => "Form from another site",
            Problem::UntrustedCaller => "Not a trusted proxy",
            Problem::Overloaded { .. } => "Very busy right now",
        }
    }

    pub fn detail(&self) -> String {
        match self {
            Problem::BadRequest(why) => format!("The request could not be understood: {why}."),
            Problem::BadPath(why) => format!("The request could not be understood: {why}."),
            Problem::NotFound => "No service is configured for this address.".into(),
            Problem::MethodNotAllowed => "This address does not accept that method.".into(),
            Problem::PayloadTooLarge { limit } => {
                format!("The request body is larger than the {limit} bytes this address accepts.")
            }
            Problem::BadGateway => "The service behind this address could not be reached. Please try again shortly.".into(),
            Problem::NoHealthyUpstream => {
                "Every server of the service behind this address is failing its health checks. Please try again shortly.".into()
            }
            Problem::GatewayTimeout => "The service behind this address took too long to answer. Please try again shortly.".into(),
            Problem::Internal => "The gateway could not complete the request.".into(),
            Problem::Unauthenticated(None) => "This address needs you to be signed in.".into(),
            Problem::Unauthenticated(Some(why)) => format!("The credentials sent were not accepted: {why}."),
            Problem::InsufficientScope(missing) => {
                format!("Your credentials do not grant what this address needs: {}.", missing.join(", "))
            }
            Problem::ConsentRequired(purposes) => format!(
                "This page needs your consent to: {}. You can give it on your consent page (/_account/consent).",
                purposes.join(", ")
            ),
            Problem::EmailUnverified => "This page needs a confirmed email address. Follow the link in the mail we sent you, or ask for a new one on your account page (/_account).".into(),
            Problem::IdentityUnavailable => {
                "Sign-in could not be checked right now. Please try again shortly.".into()
            }
            Problem::UnknownHost => "Sign-in is not offered at this address. Please use the address of the site you came from.".into(),
            Problem::CrossSiteForm => "This form was not sent from this site, so nothing was changed. Please use the form on this site.".into(),
            Problem::UntrustedCaller => "Forward-auth is answered only to the proxies listed in trusted_proxies.".into(),
            Problem::Overloaded { .. } => "So many people are visiting right now that this request could not be taken. Please try again in a few seconds.".into(),
        }
    }
}

/// A rendered error response body.
#[derive(Debug)]
pub struct Rendered {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
}

/// Renders `problem` for a route of `kind`; `request_id` lets support find the logs.
pub fn render(problem: &Problem, kind: RouteKind, request_id: &str) -> Rendered {
    let status = problem.status();
    match kind {
        RouteKind::Api => {
            let doc = serde_json::json!({
                "type": format!("urn:omnigate:problem:{}", problem.code()),
                "title": problem.title(),
                "status": status,
                "detail": problem.detail(),
                "request_id": request_id,
            });
            Rendered {
                status,
                content_type: "application/problem+json",
                body: Bytes::from(doc.to_string()),
            }
        }
        RouteKind::Web => Rendered {
            status,
            content_type: "text/html; charset=utf-8",
            body: Bytes::from(html_page(
                status,
                problem.title(),
                &problem.detail(),
                request_id,
            )),
        },
    }
}

/// Picks the error format when no route decided it: JSON unless the client
/// prefers HTML (a browser navigation).
pub fn kind_from_accept(accept: Option<&str>) -> RouteKind {
    match accept {
        Some(a) if a.contains("text/html") => RouteKind::Web,
        _ => RouteKind::Api,
    }
}

fn html_page(status: u16, title: &str, detail: &str, request_id: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{status} · {title}</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7f9;color:#1d2330}}
main{{max-width:34rem;margin:12vh auto;padding:2rem;background:#fff;border-radius:12px;box-shadow:0 1px 4px rgba(0,0,0,.08)}}
h1{{font-size:1.4rem;margin:0 0 .75rem}}
p{{line-height:1.5}}
.code{{color:#4a5468;font-size:.9rem}}
</style>
</head>
<body>
<main role="main">
<h1>{title}</h1>
<p>{detail}</p>
<p class="code">Error {status} · reference <code>{rid}</code></p>
</main>
</body>
</html>
"#,
        status = status,
        title = escape(title),
        detail = escape(detail),
        rid = escape(request_id),
    )
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_are_problem_json() {
        let r = render(&Problem::GatewayTimeout, RouteKind::Api, "rid-1");
        assert_eq!(r.status, 504);
        assert_eq!(r.content_type, "application/problem+json");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["status"], 504);
        assert_eq!(v["type"], "urn:omnigate:problem:upstream-timeout");
        assert_eq!(v["request_id"], "rid-1");
    }

    #[test]
    fn web_errors_are_escaped_pages() {
        let r = render(&Problem::BadGateway, RouteKind::Web, "<script>");
        let body = std::str::from_utf8(&r.body).unwrap();
        assert!(body.contains("<h1>Service unavailable</h1>"));
        assert!(body.contains("&lt;script&gt;"));
        assert!(!body.contains("<script>"));
    }

    #[test]
    fn accept_header_picks_format() {
        assert_eq!(
            kind_from_accept(Some("text/html,application/xhtml+xml")),
            RouteKind::Web
        );
        assert_eq!(kind_from_accept(Some("application/json")), RouteKind::Api);
        assert_eq!(kind_from_accept(None), RouteKind::Api);
    }
}
