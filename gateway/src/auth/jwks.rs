//! Keys of the configured identity providers: OpenID discovery, the JWKS
//! fetched from it, kept in memory and fetched again when a token names an
//! unknown `kid` (at most once per `min_refresh`, so junk tokens cannot make
//! the gateway hammer a provider). A provider that is down never blocks the
//! keys already known.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use tokio::sync::Mutex;

use crate::config::model::Provider;

/// How the gateway names itself to the servers it calls.
const USER_AGENT: &str = concat!("Omnigate/", env!("CARGO_PKG_VERSION"));

type Https = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// A POST of a JSON body that asks for JSON back, with extra headers.
fn json_post(
    url: &str,
    body: &str,
    headers: &[(&str, String)],
) -> Result<http::Request<Full<Bytes>>, String> {
    let mut req = http::Request::builder()
        .method("POST")
        .uri(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json");
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    req.body(Full::new(Bytes::from(body.to_string())))
        .map_err(|_| format!("bad URL {url}"))
}

/// A shared HTTP(S) client for talking to identity providers.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<Https, Full<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    pub fn new(timeout: Duration) -> Result<HttpClient, String> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(Arc::new(rustls::crypto::ring::default_provider()))
            .map_err(|e| format!("TLS roots: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(HttpClient {
            inner: Client::builder(TokioExecutor::new()).build(https),
            timeout,
        })
    }

    /// GETs a JSON document (≤ 1 MiB).
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        self.send_json("GET", url, None, None).await
    }

    /// POSTs a form (with this `Authorization`, if any); JSON answer.
    pub async fn post_form<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        authorization: Option<String>,
        form: &[(&str, &str)],
    ) -> Result<T, FetchError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter())
            .finish();
        self.fetch_json("POST", url, authorization, Some(body))
            .await
    }

    /// GETs JSON with `Authorization: Bearer`, telling down from refused.
    pub async fn fetch_json_bearer<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        token: &str,
    ) -> Result<T, FetchError> {
        self.fetch_json("GET", url, Some(format!("Bearer {token}")), None)
            .await
    }

    /// GETs JSON with `Authorization: Bearer`.
    pub async fn get_json_bearer<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        token: &str,
    ) -> Result<T, String> {
        self.send_json("GET", url, Some(format!("Bearer {token}")), None)
            .await
    }

    /// POSTs a JSON body with extra headers; any 2xx is success.
    pub async fn post_json(
        &self,
        url: &str,
        body: &str,
        headers: &[(&str, String)],
    ) -> Result<(), String> {
        let mut req = http::Request::builder()
            .method("POST")
            .uri(url)
            .header(http::header::CONTENT_TYPE, "application/json");
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|_| format!("bad URL {url}"))?;
        let (status, _) = self.exchange(req, 64 * 1024).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("POST {url}: HTTP {status}"))
        }
    }

    /// POSTs a JSON body with extra headers; the status and up to `limit`
    /// bytes of the answer, whatever the status.
    pub async fn post_for_answer(
        &self,
        url: &str,
        body: &str,
        headers: &[(&str, String)],
        limit: usize,
    ) -> Result<(u16, Bytes), String> {
        let req = json_post(url, body, headers)?;
        let (status, body) = self.exchange(req, limit).await?;
        Ok((status.as_u16(), body))
    }

    /// POSTs a JSON body and returns the response as it arrives, for a body
    /// too large to hold (the caller bounds the time and the size).
    pub async fn post_streaming(
        &self,
        url: &str,
        body: &str,
        headers: &[(&str, String)],
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        let req = json_post(url, body, headers)?;
        self.inner
            .request(req)
            .await
            .map_err(|e| format!("POST {url}: {e}"))
    }

    /// GETs a text document (≤ 1 MiB); any 2xx is success.
    pub async fn get_text(&self, url: &str) -> Result<String, String> {
        let req = http::Request::builder()
            .method("GET")
            .uri(url)
            .header(http::header::ACCEPT, "text/plain")
            .body(Full::new(Bytes::new()))
            .map_err(|_| format!("bad URL {url}"))?;
        let (status, body) = self.exchange(req, 1 << 20).await?;
        if !status.is_success() {
            return Err(format!("GET {url}: HTTP {status}"));
        }
        String::from_utf8(body.to_vec()).map_err(|_| format!("GET {url}: not UTF-8 text"))
    }

    /// Sends `req` and reads the answer (at most `limit` bytes) within the timeout.
    async fn exchange(
        &self,
        req: http::Request<Full<Bytes>>,
        limit: usize,
    ) -> Result<(http::StatusCode, Bytes), String> {
        let what = format!("{} {}", req.method(), req.uri());
        let mut req = req;
        // Some APIs (GitHub's) refuse requests that do not say who sends them.
        req.headers_mut()
            .entry(http::header::USER_AGENT)
            .or_insert(http::HeaderValue::from_static(USER_AGENT));
        let fut = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| format!("{what}: {e}"))?;
            let status = resp.status();
            let body = http_body_util::Limited::new(resp.into_body(), limit)
                .collect()
                .await
                .map_err(|e| format!("{what}: {e}"))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| format!("{what}: no answer within {:?}", self.timeout))?
    }

    async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        url: &str,
        authorization: Option<String>,
        form: Option<String>,
    ) -> Result<T, String> {
        self.fetch_json(method, url, authorization, form)
            .await
            .map_err(|e| e.to_string())
    }

    /// Like `send_json`, telling an unreachable server from one that said no.
    async fn fetch_json<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        url: &str,
        authorization: Option<String>,
        form: Option<String>,
    ) -> Result<T, FetchError> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(url)
            .header(http::header::ACCEPT, "application/json");
        if let Some(a) = authorization {
            req = req.header(http::header::AUTHORIZATION, a);
        }
        if form.is_some() {
            req = req.header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        }
        let req = req
            .body(Full::new(Bytes::from(form.unwrap_or_default())))
            .map_err(|_| FetchError::Unreachable(format!("bad URL {url}")))?;
        let (status, body) = self
            .exchange(req, 1 << 20)
            .await
            .map_err(FetchError::Unreachable)?;
        if status.is_server_error() {
            return Err(FetchError::Unreachable(format!(
                "{method} {url}: HTTP {status}"
            )));
        }
        if !status.is_success() {
            return Err(FetchError::Refused(format!(
                "{method} {url}: HTTP {status}"
            )));
        }
        serde_json::from_slice(&body)
            .map_err(|e| FetchError::Refused(format!("{method} {url}: not the expected JSON: {e}")))
    }
}

/// Why a call to another server failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No answer in time, no connection, or a 5xx: the server is down.
    #[error("{0}")]
    Unreachable(String),
    /// It answered, and said no (4xx) or something unusable.
    #[error("{0}")]
    Refused(String),
}

/// The parts of a provider's discovery document the gateway uses.
#[derive(Debug, serde::Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    /// RFC 8414: absent means `client_secret_basic` only.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// The live keys of one provider.
pub struct ProviderKeys {
    pub config: Provider,
    client: HttpClient,
    keys: ArcSwapOption<JwkSet>,
    jwks_uri: ArcSwapOption<String>,
    discovery: ArcSwapOption<Discovery>,
    last_fetch: Mutex<Option<Instant>>,
    min_refresh: Duration,
    metrics: Arc<crate::metrics::Metrics>,
    /// A client secret the gateway made (Sign in with Apple) and its expiry.
    pub(crate) made_secret: std::sync::Mutex<Option<(String, u64)>>,
}

impl ProviderKeys {
    pub fn new(
        config: Provider,
        client: HttpClient,
        min_refresh: Duration,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> ProviderKeys {
        ProviderKeys {
            metrics,
            jwks_uri: ArcSwapOption::from(config.jwks_uri.clone().map(Arc::new)),
            config,
            client,
            keys: ArcSwapOption::empty(),
            discovery: ArcSwapOption::empty(),
            last_fetch: Mutex::new(None),
            min_refresh,
            made_secret: std::sync::Mutex::new(None),
        }
    }

    /// The keys known now (None before the first successful fetch).
    pub fn current(&self) -> Option<Arc<JwkSet>> {
        self.keys.load_full()
    }

    /// The keys to verify a token signed with `kid`: the cached set when it
    /// has that key (a hit), else the set after a rate-limited refresh (a
    /// miss: the provider may have rotated its keys).
    pub async fn keys_for(&self, kid: Option<&str>) -> Result<Arc<JwkSet>, String> {
        let cached = self.current();
        let hit = cached
            .as_ref()
            .is_some_and(|k| kid.is_none_or(|id| k.find(id).is_some()));
        self.metrics
            .jwks_cache
            .with_label_values(&[self.config.name.as_str(), if hit { "hit" } else { "miss" }])
            .inc();
        match cached {
            Some(k) if hit => Ok(k),
            _ => self.refresh().await,
        }
    }

    /// Fetches discovery (once) and the JWKS, unless fetched within
    /// `min_refresh`. Returns the keys known afterwards.
    pub async fn refresh(&self) -> Result<Arc<JwkSet>, String> {
        let mut last = self.last_fetch.lock().await;
        if let (Some(at), Some(keys)) = (*last, self.current()) {
            if at.elapsed() < self.min_refresh {
                return Ok(keys);
            }
        }
        *last = Some(Instant::now());
        let result = self.fetch().await;
        let label = if result.is_ok() { "success" } else { "failure" };
        self.metrics
            .jwks_fetches
            .with_label_values(&[self.config.name.as_str(), label])
            .inc();
        match result {
            Ok(set) => {
                let set = Arc::new(set);
                self.keys.store(Some(set.clone()));
                Ok(set)
            }
            Err(e) => {
                tracing::warn!(provider = %self.config.name, error = %e, "cannot fetch provider keys; keeping the ones known");
                self.current().ok_or(e)
            }
        }
    }

    /// The provider's discovery document (fetched once, then kept).
    pub async fn discovery(&self) -> Result<Arc<Discovery>, String> {
        if let Some(d) = self.discovery.load_full() {
            return Ok(d);
        }
        let url =
            self.config.discovery_url.clone().unwrap_or_else(|| {
                format!("{}/.well-known/openid-configuration", self.config.issuer)
            });
        let d: Discovery = self.client.get_json(&url).await?;
        if d.issuer.trim_end_matches('/') != self.config.issuer {
            return Err(format!(
                "discovery says issuer `{}`, configured `{}`",
                d.issuer, self.config.issuer
            ));
        }
        let d = Arc::new(d);
        self.discovery.store(Some(d.clone()));
        Ok(d)
    }

    pub fn http(&self) -> &HttpClient {
        &self.client
    }

    async fn fetch(&self) -> Result<JwkSet, String> {
        let uri = match self.jwks_uri.load_full() {
            Some(u) => u,
            None => {
                let u = Arc::new(self.discovery().await?.jwks_uri.clone());
                self.jwks_uri.store(Some(u.clone()));
                u
            }
        };
        self.client.get_json(&uri).await
    }
}
