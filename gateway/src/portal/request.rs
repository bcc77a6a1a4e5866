//! What a page handler reads of its request: the head, the bounded body,
//! the connection facts the proxy established ([`Conn`]) and the request's
//! configuration snapshot. Extracted once per request.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use http::request::Parts;
use url::Url;

use super::Failure;
use crate::state::Snapshot;

/// The largest form body a page accepts.
pub const FORM_LIMIT: usize = 16 * 1024;

/// What the proxy knows of the connection, handed over in the request's
/// extensions: the page never sees the proxy itself.
#[derive(Debug, Clone)]
pub struct Conn {
    /// The TCP peer.
    pub peer: Option<IpAddr>,
    /// The client: the peer, or behind trusted proxies the address they name.
    pub client: Option<IpAddr>,
    /// Whether the listener terminates TLS.
    pub tls: bool,
    pub request_id: String,
    /// The host, lower-case, without port.
    pub host: String,
    /// The URL the browser is on.
    pub here: Option<Url>,
}

/// A page request, body read (at most [`FORM_LIMIT`]).
pub struct Req {
    pub head: Parts,
    pub body: Bytes,
    pub conn: Conn,
    pub snap: Arc<Snapshot>,
}

impl<S: Send + Sync> FromRequest<S> for Req {
    type Rejection = Failure;

    async fn from_request(req: Request, _: &S) -> Result<Self, Failure> {
        let (mut head, body) = req.into_parts();
        let conn = head
            .extensions
            .remove::<Conn>()
            .ok_or(Failure::Internal("a page request without its connection"))?;
        let snap = head
            .extensions
            .remove::<Arc<Snapshot>>()
            .ok_or(Failure::Internal("a page request without its snapshot"))?;
        let body = axum::body::to_bytes(body, FORM_LIMIT)
            .await
            .map_err(|_| Failure::TooLarge)?;
        Ok(Req {
            head,
            body,
            conn,
            snap,
        })
    }
}

impl Req {
    pub fn head(&self) -> &Parts {
        &self.head
    }

    pub fn is_get(&self) -> bool {
        self.head.method == http::Method::GET || self.head.method == http::Method::HEAD
    }

    /// The first value of `key` in the query string.
    pub fn query(&self, key: &str) -> Option<String> {
        query(self.head.uri.query(), key)
    }

    /// Every `Cookie` header joined (HTTP/2 may split them).
    pub fn cookies(&self) -> Option<Cow<'_, str>> {
        crate::session::cookie_header(&self.head.headers)
    }

    /// The value of the cookie `name`, if sent and not empty.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let header = self.cookies()?;
        cookie::Cookie::split_parse(header.as_ref())
            .filter_map(|c| c.ok())
            .find(|c| c.name() == name && !c.value().is_empty())
            .map(|c| c.value().to_string())
    }

    /// The `Host` (or `:authority`) as sent, lower-case, with its port.
    pub fn raw_host(&self) -> String {
        self.head
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                self.head
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .unwrap_or(&self.conn.host)
            .to_ascii_lowercase()
    }

    pub fn scheme(&self) -> &'static str {
        if self.conn.tls {
            "https"
        } else {
            "http"
        }
    }

    /// The body as an `application/x-www-form-urlencoded` form.
    pub fn form(&self) -> Form {
        Form(
            url::form_urlencoded::parse(&self.body)
                .into_owned()
                .collect(),
        )
    }

    /// The form body as `T`: each field a string (absent: its default); a
    /// field declared a list (`#[serde(default, deserialize_with =
    /// "request::many")]`) takes every value sent. A form that does not fit
    /// `T` (a single field sent twice, say) is a 400.
    pub fn form_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, Failure> {
        parse_form(&self.body)
    }

    pub fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.head.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A form body as `T` (see [`Req::form_as`]). Pure.
pub fn parse_form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    {
        let mut fields = serde_json::Map::new();
        for (k, v) in url::form_urlencoded::parse(body).into_owned() {
            match fields.get_mut(&k) {
                Some(serde_json::Value::Array(all)) => all.push(v.into()),
                Some(one) => *one = serde_json::Value::Array(vec![one.take(), v.into()]),
                None => {
                    fields.insert(k, v.into());
                }
            }
        }
        serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(|_| Failure::BadRequest("the form does not have the fields this page sends"))
    }
}

impl Req {
    /// The device name of this request's browser.
    pub fn device(&self) -> Option<String> {
        self.header(http::header::USER_AGENT)
            .map(crate::session::device)
    }
}

/// `?token=…` of a mailed link.
#[derive(Debug, Default, serde::Deserialize)]
pub struct TokenQuery {
    pub token: Option<String>,
}

/// The query of a page that only carries where to go afterwards.
#[derive(serde::Deserialize)]
pub struct ReturnQuery {
    pub return_to: Option<String>,
}

/// A typed query string; one that does not parse is a 400.
pub struct Query<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S>
    for Query<T>
{
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Failure> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Query(q.0))
            .map_err(|_| Failure::BadRequest("the query string does not parse"))
    }
}

/// The first value of `key` in a query string.
pub fn query(q: Option<&str>, key: &str) -> Option<String> {
    url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// A submitted form: every field in order (a field may repeat).
pub struct Form(pub Vec<(String, String)>);

/// Every value of a form field declared as a list (one value or several).
pub fn many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match serde::Deserialize::deserialize(d)? {
        OneOrMany::One(v) => vec![v],
        OneOrMany::Many(v) => v,
    })
}

impl Form {
    /// Every value of `key`, in order.
    pub fn get_all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of `key`, or "".
    pub fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, Default)]
    #[serde(default)]
    struct Sample {
        email: String,
        name: Option<String>,
        #[serde(deserialize_with = "many")]
        grant: Vec<String>,
    }

    #[test]
    fn forms_parse_into_types_lists_take_every_value_and_doubles_are_refused() {
        let s: Sample = parse_form(b"email=a%40b.test&grant=terms%3A1&grant=news%3A2").unwrap();
        assert_eq!(s.email, "a@b.test");
        assert_eq!(s.name, None);
        assert_eq!(s.grant, vec!["terms:1", "news:2"]);
        let one: Sample = parse_form(b"grant=terms%3A1&unknown=x").unwrap();
        assert_eq!(one.grant, vec!["terms:1"]);
        assert_eq!(one.email, "");
        assert!(parse_form::<Sample>(b"email=a&email=b").is_err());
    }
}
