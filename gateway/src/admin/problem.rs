//! The admin API's one error type: an RFC 9457 problem document, with the
//! headers some answers need (`Allow`, `Retry-After`, `WWW-Authenticate`).

use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:omnigate:problem:<code>`.
    #[serde(rename = "type")]
    #[schema(example = "urn:omnigate:problem:not-found")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Every reason a configuration was refused (reload only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<String>>,
}

/// A problem answer with its status and extra headers.
#[derive(Debug)]
pub struct ApiError {
    pub problem: Box<Problem>,
    pub headers: Vec<(http::HeaderName, String)>,
}

impl ApiError {
    pub fn new(status: u16, code: &str, title: &str, detail: impl Into<String>) -> ApiError {
        ApiError {
            problem: Box::new(Problem {
                kind: format!("urn:omnigate:problem:{code}"),
                title: title.to_string(),
                status,
                detail: detail.into(),
                errors: None,
            }),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: http::HeaderName, value: impl Into<String>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(400, "bad-request", "Bad request", detail)
    }

    pub fn not_found(detail: &str) -> ApiError {
        ApiError::new(404, "not-found", "Not found", detail)
    }

    pub fn no_customer() -> ApiError {
        ApiError::not_found("No customer with this id.")
    }

    /// A store that cannot answer: logged, and a 503 naming which.
    pub fn unavailable(what: &str, e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "admin API: {what} unavailable");
        ApiError::new(
            503,
            "unavailable",
            "Service unavailable",
            format!("The {what} cannot be reached just now; try again."),
        )
        .with_header(http::header::RETRY_AFTER, "5")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = http::StatusCode::from_u16(self.problem.status)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_string(&*self.problem).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/problem+json"),
        );
        h.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        for (name, value) in self.headers {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
        resp
    }
}

/// Any path the admin API does not serve.
pub async fn not_found() -> ApiError {
    ApiError::not_found("No admin endpoint at this path.")
}

/// A served path with a method it does not take (axum adds `Allow`).
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        405,
        "method-not-allowed",
        "Method not allowed",
        "See the Allow header.",
    )
}

/// `axum::extract::Query` answering a query that does not parse with a problem.
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S>
    for ApiQuery<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut http::request::Parts, _: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::bad_request(format!("The query string does not parse: {e}.")))
    }
}

/// `axum::extract::Path` answering a path that does not parse with a problem.
pub struct ApiPath<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> axum::extract::FromRequestParts<S>
    for ApiPath<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|_| ApiError::not_found("No admin endpoint at this path."))
    }
}

/// A JSON body of at most 16 KiB as `T`: 413 when longer, 400 saying what
/// does not fit.
pub async fn json_body<T: serde::de::DeserializeOwned>(
    body: axum::body::Body,
) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, 16 * 1024).await.map_err(|_| {
        ApiError::new(
            413,
            "too-large",
            "Request too large",
            "The body must be at most 16 KiB of JSON.",
        )
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("The body is not the expected JSON: {e}.")))
}
