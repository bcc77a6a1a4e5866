//! The one way from the proxy to the portal: the Pingora session becomes an
//! `http::Request` (body read, at most `portal::FORM_LIMIT`), the connection
//! facts a page needs travel as a `portal::Conn` with the request's
//! snapshot, the router answers, and its response is written back with the
//! request id and HSTS every gateway response carries.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use tower::ServiceExt;

use super::{Ctx, Gateway};
use crate::portal::{Conn, FORM_LIMIT};
use crate::problem::Problem;

/// The largest page response the bridge relays (pages are a few KiB).
const RESPONSE_LIMIT: usize = 4 * 1024 * 1024;

impl Gateway {
    /// Answers a portal path. Always writes a response.
    pub(super) async fn portal(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        host: &str,
    ) -> Result<()> {
        let Some(body) = read_body(session).await? else {
            let limit = FORM_LIMIT as u64;
            return self
                .respond(session, ctx, Problem::PayloadTooLarge { limit }, &[])
                .await;
        };
        let snap = ctx.snapshot.clone().unwrap_or_else(|| self.app.snapshot());
        let conn = Conn {
            peer: super::client_ip(session),
            client: self.client(session, &snap),
            tls: self.browser_tls(session, ctx.trusted_client),
            request_id: ctx.request_id.clone(),
            host: host.to_string(),
            here: ctx.here.clone(),
        };
        let request = to_request(session, body, conn, snap)?;
        let Ok(response) = self.portal.clone().oneshot(request).await;
        let (parts, body) = response.into_parts();
        if axum::body::HttpBody::size_hint(&body).exact().is_none() {
            // A stream (an export): relayed as it comes, never held whole.
            return self.stream_back(session, ctx, parts, body).await;
        }
        let body = match http_body_util::Limited::new(body, RESPONSE_LIMIT)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                tracing::error!(error = %e, "a page response could not be read");
                return self.respond(session, ctx, Problem::Internal, &[]).await;
            }
        };
        self.write_back(session, ctx, parts, body).await
    }

    async fn write_back(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        parts: http::response::Parts,
        body: Bytes,
    ) -> Result<()> {
        let status = parts.status.as_u16();
        ctx.local_status = Some(status);
        if let Some(crate::portal::Answer(problem)) = parts.extensions.get() {
            ctx.problem = Some(problem.code());
        }
        let head = session.req_header().method == http::Method::HEAD;
        let mut resp = ResponseHeader::build(status, Some(parts.headers.len() + 3))?;
        for (name, value) in &parts.headers {
            resp.append_header(name.clone(), value.clone())?;
        }
        // A HEAD answer has no body but says how long the GET's would be
        // (the router keeps that length when it drops the body).
        if !(head && parts.headers.contains_key(http::header::CONTENT_LENGTH)) {
            resp.insert_header("content-length", body.len().to_string())?;
        }
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        let head_only = body.is_empty() || head;
        self.finish(session, ctx, resp, body, head_only).await
    }
}

impl Gateway {
    async fn stream_back(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        parts: http::response::Parts,
        mut body: axum::body::Body,
    ) -> Result<()> {
        let status = parts.status.as_u16();
        ctx.local_status = Some(status);
        let mut resp = ResponseHeader::build(status, Some(parts.headers.len() + 3))?;
        for (name, value) in &parts.headers {
            resp.append_header(name.clone(), value.clone())?;
        }
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        self.add_hsts(&mut resp, ctx)?;
        let head = session.req_header().method == http::Method::HEAD;
        session.write_response_header(Box::new(resp), head).await?;
        if head {
            return Ok(());
        }
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| Error::because(ErrorType::InternalError, "page stream", e))?;
            if let Ok(data) = frame.into_data() {
                session.write_response_body(Some(data), false).await?;
            }
        }
        session.write_response_body(None, true).await?;
        Ok(())
    }
}

/// The request body, or None when it is over `FORM_LIMIT`.
async fn read_body(session: &mut Session) -> Result<Option<Bytes>> {
    let mut body = Vec::new();
    while let Some(chunk) = session.read_request_body().await? {
        body.extend_from_slice(&chunk);
        if body.len() > FORM_LIMIT {
            return Ok(None);
        }
    }
    Ok(Some(Bytes::from(body)))
}

/// The request as the portal's router takes it.
fn to_request(
    session: &Session,
    body: Bytes,
    conn: Conn,
    snap: Arc<crate::state::Snapshot>,
) -> Result<http::Request<axum::body::Body>> {
    let req = session.req_header();
    let mut request = http::Request::builder()
        .method(req.method.clone())
        .uri(req.uri.clone())
        .body(axum::body::Body::from(body))
        .map_err(|e| Error::because(ErrorType::InternalError, "page request", e))?;
    *request.headers_mut() = req.headers.clone();
    request.extensions_mut().insert(conn);
    request.extensions_mut().insert(snap);
    Ok(request)
}
