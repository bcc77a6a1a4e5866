//! The admin listener, separate from customer traffic: liveness, readiness,
//! Prometheus metrics, the published keys, the authenticated reload and the
//! customer API, as one axum `Router`. Its OpenAPI 3.1 document is generated
//! from the handlers (utoipa) and served at `/admin/openapi.json`; the copy
//! in `gateway/openapi/admin.json` is that document (`omnigate openapi`).
//! Never answers on a customer listener, never accepts a write without the
//! admin token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::response::Response;
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

mod auth;
mod console;
mod customers;
mod ops;
mod privacy;
mod problem;

pub use problem::{ApiError, Problem};

use crate::state::App;

/// The state every admin handler reads.
pub type Shared = Arc<App>;

/// Starts the admin listener on the current runtime.
pub async fn start(app: Arc<App>, addr: SocketAddr) -> std::io::Result<()> {
    let router = router(app);
    crate::httpd::serve(addr, move |req, peer| {
        let router = router.clone();
        async move {
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let Ok(resp) = router.oneshot(req).await;
            to_resp(resp).await
        }
    })
    .await
}

/// The admin API's OpenAPI document, generated from the handlers.
pub fn openapi() -> OpenApi {
    let (_, api) = OpenApiRouter::with_openapi(document())
        .merge(ops::open())
        .merge(customers::routes())
        .merge(privacy::routes())
        .merge(ops::protected())
        .split_for_parts();
    with_common_responses(api)
}

/// The document as served and as kept in the repository (pretty JSON).
pub fn openapi_json() -> String {
    let mut out = openapi().to_pretty_json().unwrap_or_default();
    out.push('\n');
    out
}

/// The admin API: open probes, the token-protected rest, the document.
pub fn router(app: Arc<App>) -> Router {
    let protected = OpenApiRouter::new()
        .merge(customers::routes())
        .merge(privacy::routes())
        .merge(console::routes())
        .merge(ops::protected())
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::require_token,
        ));
    let (router, _) = OpenApiRouter::new()
        .merge(ops::open())
        .merge(protected)
        .split_for_parts();
    router
        .method_not_allowed_fallback(problem::method_not_allowed)
        .fallback(problem::not_found)
        .with_state(app)
}

/// The parts of the document no handler states: title, servers, security.
fn document() -> OpenApi {
    let mut api = utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("Omnigate admin API")
                .description(Some(
                    "Health, readiness, metrics, published keys, configuration reload and \
                     customer administration. Served on the admin listener only. Write and \
                     customer endpoints need `Authorization: Bearer <admin.token>`; every \
                     error is an RFC 9457 problem document.",
                ))
                .version(env!("CARGO_PKG_VERSION"))
                .build(),
        )
        .build();
    let scheme = SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("The configured `admin.token`."))
            .build(),
    );
    api.components
        .get_or_insert_with(Default::default)
        .add_security_scheme("adminToken", scheme);
    api
}

/// Answers every operation can give besides its own: a token refused (on
/// operations that need one) and a store that cannot answer.
fn with_common_responses(mut api: OpenApi) -> OpenApi {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let problem = |what: &str| {
        ResponseBuilder::new()
            .description(what)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build()
    };
    for item in api.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.post,
            &mut item.delete,
            &mut item.put,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            if op.security.is_some() {
                let r = &mut op.responses.responses;
                r.entry("401".into())
                    .or_insert_with(|| problem("No or a wrong admin token").into());
                r.entry("403".into())
                    .or_insert_with(|| problem("No admin token is configured").into());
                r.entry("429".into())
                    .or_insert_with(|| problem("Too many failed attempts; see Retry-After").into());
                r.entry("503".into())
                    .or_insert_with(|| problem("A store cannot answer; see Retry-After").into());
            }
        }
    }
    api
}

/// The axum response as the shared hyper server writes it: streamed, so a
/// large export never sits whole in memory.
async fn to_resp(resp: Response) -> crate::httpd::Resp {
    resp.map(|body| body.map_err(std::io::Error::other).boxed_unsync())
}
