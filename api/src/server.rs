//! Startup, shared state, middleware and the router.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use tessera_engine::Engine;
use tessera_engine::compute::{self, Selection};
use tessera_engine::engine::Caller;
use tower_http::cors::{Any, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::Config;
use crate::error::{ApiError, ErrorMessage};
use crate::routes;

pub struct ServeArgs {
    pub config: Option<PathBuf>,
    pub addr: Option<String>,
    pub data: PathBuf,
    pub compute: Option<String>,
    /// Called with the bound address once the server accepts connections (`tessera demo`
    /// fills its store through the API from there).
    pub on_ready: Option<Box<dyn FnOnce(std::net::SocketAddr) + Send>>,
}

/// Per-user request latencies (`GET /api/user-latencies`).
#[derive(Default, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserLatency {
    pub user: String,
    pub last_ping: String,
    pub last_latency: u64,
    pub min_latency: u64,
    pub max_latency: u64,
}

#[derive(Default)]
pub struct Stats {
    pub get_requests: AtomicU64,
    pub put_requests: AtomicU64,
    pub active: AtomicU64,
    pub bytes_in: AtomicU64,
    pub users: Mutex<HashMap<String, UserLatency>>,
}

pub struct AppState {
    pub engine: Arc<Engine>,
    pub config: Config,
    pub config_text: String,
    pub admin_token: Option<String>,
    pub started: Instant,
    pub stats: Stats,
}

pub type Shared = Arc<AppState>;

impl AppState {
    /// Who is asking: `u=`, `app=`, and admin privilege from `admintoken=` or `rwmode=fullwrite`.
    pub fn caller(&self, query: &HashMap<String, String>) -> Caller {
        let token_ok = match (&self.admin_token, query.get("admintoken")) {
            (Some(t), Some(given)) => !t.is_empty() && t == given,
            _ => false,
        };
        Caller {
            user: query.get("u").cloned(),
            app: query.get("app").cloned(),
            admin: token_ok || self.config.server.rwmode == "fullwrite",
        }
    }

    /// `POST /api/repos` is open when no admin token is configured (issue decision; current
    /// DVID makes it admin-only, older DVIDs open).
    pub fn may_create_repo(&self, caller: &Caller) -> bool {
        self.admin_token.is_none() || caller.admin
    }
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (config, config_text) = match &args.config {
        Some(p) => Config::load(p)?,
        None => (Config::default(), String::new()),
    };
    let addr = config.addr(args.addr.as_deref())?;
    let selection: Selection = args
        .compute
        .clone()
        .or_else(|| config.compute.backend.clone())
        .unwrap_or_else(|| "auto".into())
        .parse()?;
    let compute = compute::select(selection)?;
    let admin_token = config
        .auth
        .admin_token
        .clone()
        .or_else(|| std::env::var("TESSERA_ADMIN_TOKEN").ok())
        .filter(|t| !t.is_empty());
    let opts = config.engine_options(&args.data, compute)?;
    let engine = Engine::open(opts).map_err(|e| anyhow::anyhow!("opening the engine: {e}"))?;
    let compute = engine.compute();
    tracing::info!(stores = %engine.store_engine_names(), compute = compute.backend().name(), adapter = %compute.adapter(), "engine open");
    let state = Arc::new(AppState {
        engine: engine.clone(),
        config,
        config_text,
        admin_token,
        started: Instant::now(),
        stats: Stats::default(),
    });
    let app = router(state);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let bound = listener.local_addr()?;
    // Streamed responses go out as several writes; with Nagle's algorithm the last one waits
    // for the client's delayed ACK (tens of ms per request). Small-block readers such as
    // neuroglancer's subvolblocks fetches would be latency-bound on that.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
    });
    tracing::info!(%bound, "serving");
    // Tests and scripts wait for this line on stdout.
    println!("tessera listening on http://{bound}");
    let serving = axum::serve(listener, app).with_graceful_shutdown(shutdown_signal());
    if let Some(ready) = args.on_ready {
        ready(bound);
    }
    serving.await?;
    tracing::info!("shutting down: flushing stores");
    engine
        .flush()
        .map_err(|e| anyhow::anyhow!("flushing stores: {e}"))?;
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

pub fn router(state: Shared) -> Router {
    let limit = state.config.max_body_bytes();
    routes::routes()
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard_and_count,
        ))
        .layer(middleware::from_fn(error_body))
        .layer(DefaultBodyLimit::max(limit))
        .layer(SetResponseHeaderLayer::overriding(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        ))
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::DELETE,
                    Method::HEAD,
                ])
                .allow_headers(Any),
        )
        .with_state(state)
}

/// Completes error bodies into DVID's `"<message> (<path>)."` and answers oversized bodies
/// with a message naming the limit.
async fn error_body(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let msg = match resp.extensions().get::<ErrorMessage>() {
        Some(m) => m.0.clone(),
        None if resp.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            "request body exceeds the server's limit ([server] max_body_mb)".to_string()
        }
        None => return resp,
    };
    let (mut parts, _) = resp.into_parts();
    if parts.status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        // The unread body is left behind: tell keep-alive clients this connection is done.
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(format!("{msg} ({path}).")))
}

fn is_admin(state: &AppState, req: &Request) -> bool {
    let query = req.uri().query().unwrap_or_default();
    let params: HashMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned(),
            )
        })
        .collect();
    state.caller(&params).admin
}

/// Read-only mode (admins excepted), request counters and per-user latencies.
async fn guard_and_count(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let readonly = state.config.server.rwmode == "readonly";
    if readonly
        && !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS)
        && !is_admin(&state, &req)
    {
        return ApiError::bad("server is in read-only mode").into_response();
    }
    let user = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("u=")))
        .map(|u| {
            percent_encoding::percent_decode_str(u)
                .decode_utf8_lossy()
                .into_owned()
        });
    let counter = if method == Method::GET || method == Method::HEAD {
        &state.stats.get_requests
    } else {
        &state.stats.put_requests
    };
    counter.fetch_add(1, Ordering::Relaxed);
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        state.stats.bytes_in.fetch_add(len, Ordering::Relaxed);
    }
    state.stats.active.fetch_add(1, Ordering::Relaxed);
    // The access log: one line per request with `RUST_LOG=tessera::access=debug`.
    let access = tracing::enabled!(target: "tessera::access", tracing::Level::DEBUG)
        .then(|| req.uri().to_string());
    let start = Instant::now();
    let resp = next.run(req).await;
    state.stats.active.fetch_sub(1, Ordering::Relaxed);
    if let Some(uri) = access {
        tracing::debug!(target: "tessera::access", %method, %uri, status = resp.status().as_u16(),
            ms = start.elapsed().as_millis() as u64, "request");
    }
    if let Some(user) = user {
        let ms = start.elapsed().as_millis() as u64;
        let mut users = state.stats.users.lock();
        let e = users.entry(user.clone()).or_insert_with(|| UserLatency {
            user,
            min_latency: u64::MAX,
            ..Default::default()
        });
        e.last_ping = chrono::Utc::now().to_rfc3339();
        e.last_latency = ms;
        e.min_latency = e.min_latency.min(ms);
        e.max_latency = e.max_latency.max(ms);
    }
    resp
}
