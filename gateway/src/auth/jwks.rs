//! Keys of the configured identity providers: OpenID discovery, the JWKS
//! fetched from it, kept in memory and fetched again when a token names an
//! unknown `kid` (at most once per `min_refresh`, so junk tokens cannot make
//! the gateway hammer a provider). A provider that is down never blocks the
//! keys already known.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use tokio::sync::Mutex;

use crate::config::model::Provider;

type Https = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// A shared HTTP(S) client for talking to identity providers.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<Https, Empty<Bytes>>,
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
        let uri: http::Uri = url.parse().map_err(|_| format!("bad URL {url}"))?;
        let fut = async {
            let resp = self
                .inner
                .get(uri)
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("GET {url}: HTTP {}", resp.status()));
            }
            let body = http_body_util::Limited::new(resp.into_body(), 1 << 20)
                .collect()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?
                .to_bytes();
            serde_json::from_slice(&body)
                .map_err(|e| format!("GET {url}: not the expected JSON: {e}"))
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| format!("GET {url}: no answer within {:?}", self.timeout))?
    }
}

#[derive(serde::Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// The live keys of one provider.
pub struct ProviderKeys {
    pub config: Provider,
    client: HttpClient,
    keys: ArcSwapOption<JwkSet>,
    jwks_uri: ArcSwapOption<String>,
    last_fetch: Mutex<Option<Instant>>,
    min_refresh: Duration,
    metrics: Arc<crate::metrics::Metrics>,
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
            last_fetch: Mutex::new(None),
            min_refresh,
        }
    }

    /// The keys known now (None before the first successful fetch).
    pub fn current(&self) -> Option<Arc<JwkSet>> {
        self.keys.load_full()
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

    async fn fetch(&self) -> Result<JwkSet, String> {
        let uri = match self.jwks_uri.load_full() {
            Some(u) => u,
            None => {
                let url = format!("{}/.well-known/openid-configuration", self.config.issuer);
                let d: Discovery = self.client.get_json(&url).await?;
                if d.issuer.trim_end_matches('/') != self.config.issuer {
                    return Err(format!(
                        "discovery says issuer `{}`, configured `{}`",
                        d.issuer, self.config.issuer
                    ));
                }
                let u = Arc::new(d.jwks_uri);
                self.jwks_uri.store(Some(u.clone()));
                u
            }
        };
        self.client.get_json(&uri).await
    }
}
