//! Startup, shared state, middleware and the router.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use axum::Router;
use axum::body::HttpBody;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use parking_lot::Mutex;
use tessera_engine::Engine;
use tessera_engine::compute::{self, Selection};
use tessera_storage::ContentStore;
use tower_http::cors::{Any, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tracing::Instrument;

use crate::auth::{Access, Auth, Target};
use crate::config::Config;
use crate::error::{ApiError, ErrorMessage};
use crate::{metrics, routes};

pub struct ServeArgs {
    pub config: Option<PathBuf>,
    pub addr: Option<String>,
    pub data: PathBuf,
    pub compute: Option<String>,
    /// Serve as a read replica of the writer whose stores the configuration names: every
    /// write refused, the writer's changes followed every `follow` (docs/storage.md).
    pub read_only: bool,
    pub follow: std::time::Duration,
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

impl Stats {
    fn record_latency(&self, user: &str, ms: u64) {
        let mut users = self.users.lock();
        let e = users
            .entry(user.to_string())
            .or_insert_with(|| UserLatency {
                user: user.to_string(),
                min_latency: u64::MAX,
                ..Default::default()
            });
        e.last_ping = chrono::Utc::now().to_rfc3339();
        e.last_latency = ms;
        e.min_latency = e.min_latency.min(ms);
        e.max_latency = e.max_latency.max(ms);
    }
}

pub struct AppState {
    pub engine: Arc<Engine>,
    pub config: Config,
    pub config_text: String,
    pub auth: Auth,
    /// What each route template asks of a caller (from `routes::table`).
    pub access: HashMap<&'static str, Access>,
    /// Every datatype's keywords: the only ones named in metric labels, so a client sending
    /// random keywords cannot grow the label set without bound.
    pub keywords: HashSet<&'static str>,
    pub metrics: PrometheusHandle,
    pub started: Instant,
    pub stats: Stats,
    /// The stores keeping blocks as objects, by alias (`POST /api/server/gc`).
    pub content_stores: BTreeMap<String, Arc<ContentStore>>,
}

pub type Shared = Arc<AppState>;

impl AppState {
    pub fn new(
        engine: Arc<Engine>,
        config: Config,
        config_text: String,
        content_stores: BTreeMap<String, Arc<ContentStore>>,
    ) -> anyhow::Result<Self> {
        let auth = Auth::from_config(&config.auth)?;
        let access = routes::table()
            .into_iter()
            .map(|(path, _, access)| (path, access))
            .collect();
        let keywords = engine
            .datatypes()
            .flat_map(|d| d.keywords().iter().copied())
            .collect();
        Ok(AppState {
            engine,
            config,
            config_text,
            auth,
            access,
            keywords,
            metrics: metrics::handle(),
            started: Instant::now(),
            stats: Stats::default(),
            content_stores,
        })
    }
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (mut config, config_text) = match &args.config {
        Some(p) => Config::load(p)?,
        None => (Config::default(), String::new()),
    };
    if args.read_only {
        config.server.rwmode = "replica".into();
    }
    let addr = config.addr(args.addr.as_deref())?;
    let selection: Selection = args
        .compute
        .clone()
        .or_else(|| config.compute.backend.clone())
        .unwrap_or_else(|| "auto".into())
        .parse()?;
    let compute = compute::select(selection)?;
    let stores = config.open_stores(&args.data, args.read_only)?;
    let opts = config.engine_options(&stores, compute, args.read_only)?;
    let engine = Engine::open(opts).map_err(|e| anyhow::anyhow!("opening the engine: {e}"))?;
    if args.read_only {
        follow_writer(engine.clone(), args.follow);
    } else if let Some(nats) = config.nats.clone() {
        crate::stream::NatsStream::start(&engine, nats)?;
    }
    let compute = engine.compute();
    tracing::info!(stores = %engine.store_engine_names(), compute = compute.backend().name(), adapter = %compute.adapter(), "engine open");
    let state = Arc::new(AppState::new(
        engine.clone(),
        config,
        config_text,
        stores.content,
    )?);
    if state.auth.enforced() {
        tracing::info!("access control on: requests need tokens ([auth] enforce = \"token\")");
    }
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

/// A read replica's loop: brings the writer's changes in every `every`, for the life of the
/// process. A failed step is logged and retried at the next tick.
fn follow_writer(engine: Arc<Engine>, every: std::time::Duration) {
    tracing::info!(
        every_ms = every.as_millis() as u64,
        "read replica: following the writer's stores"
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let e = engine.clone();
            match tokio::task::spawn_blocking(move || e.follow()).await {
                Ok(Ok(true)) => tracing::debug!("read replica: caught up with new writes"),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::warn!("read replica: following the writer: {e}"),
                Err(e) => tracing::warn!("read replica: follow task: {e}"),
            }
        }
    });
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
        .layer(middleware::from_fn_with_state(state.clone(), gate))
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

/// The query parameters the gate reads, percent-decoded.
fn query_params(req: &Request) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                percent_encoding::percent_decode_str(&v.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned(),
            )
        })
        .collect()
}

/// `Authorization: Bearer <token>`, or neuclease's `admintoken=` (it sends
/// `DVID_ADMIN_TOKEN` that way on every request).
fn bearer(req: &Request, params: &HashMap<String, String>) -> Option<String> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string())
        .or_else(|| params.get("admintoken").cloned())
}

/// A client's `X-Request-Id` when it is short and plain, else a new one.
fn request_id(req: &Request) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

/// Every request passes here: its id, who is asking (`auth`), whether they may (the route's
/// declared `Access`), read-only mode, then counters, metrics and the request log.
async fn gate(State(state): State<Shared>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = request_id(&req);
    let method = req.method().clone();
    let uri = req.uri().clone();
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let params = query_params(&req);
    let token = bearer(&req, &params);
    let refused = |e: tessera_engine::Error, who: &str| {
        let resp = ApiError(e).into_response();
        finish(&id, &method, &uri, template.as_deref(), who, start, resp)
    };
    let who = match state.auth.identify(token.as_deref()) {
        Ok(who) => who,
        Err(denied) => return refused(denied.into(), ""),
    };
    let mut caller = state
        .auth
        .caller(&who, params.get("u").cloned(), params.get("app").cloned());
    // DVID's "fullwrite" mode gives everyone admin privilege: no locked-node guards.
    caller.admin |= state.config.server.rwmode == "fullwrite";
    let user = caller.user.clone().unwrap_or_default();
    // Routes without a template are the not-found fallback: nothing to guard.
    let access = template
        .as_deref()
        .and_then(|t| state.access.get(t).copied())
        .unwrap_or(Access::Public);
    let segments = routes::decoded_segments(uri.path().trim_start_matches('/'));
    // OPTIONS (CORS preflight) carries no data; any other method no route serves is checked
    // as a write.
    if method != Method::OPTIONS {
        let target = Target {
            method: routes::data_method(&method).unwrap_or(tessera_engine::datatype::Method::Post),
            segments: &segments,
        };
        if let Err(denied) = state.auth.check(&state.engine, &who, access, &target) {
            return refused(denied.into(), &user);
        }
    }
    let writes = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS)
        && access != Access::RepoRead;
    if state.config.server.rwmode == "replica" && writes {
        return refused(
            tessera_engine::Error::bad(
                "this server is a read replica (tessera serve --read-only): send writes to the writer",
            ),
            &user,
        );
    }
    if state.config.server.rwmode == "readonly" && writes && !caller.admin {
        return refused(
            tessera_engine::Error::bad("server is in read-only mode"),
            &user,
        );
    }
    let counter = if writes {
        &state.stats.put_requests
    } else {
        &state.stats.get_requests
    };
    counter.fetch_add(1, Ordering::Relaxed);
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        state.stats.bytes_in.fetch_add(len, Ordering::Relaxed);
    }
    req.extensions_mut().insert(caller);
    req.extensions_mut().insert(Arc::new(who));
    state.stats.active.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("request", id = %id);
    let resp = next.run(req).instrument(span).await;
    state.stats.active.fetch_sub(1, Ordering::Relaxed);
    if !user.is_empty() {
        state
            .stats
            .record_latency(&user, start.elapsed().as_millis() as u64);
    }
    // Segment the data routes by keyword (known keywords only) so merges and raw reads are
    // told apart.
    let route = template.as_deref().map(|t| match segments.get(4) {
        Some(k) if t.contains("{keyword}") && state.keywords.contains(k.as_str()) => {
            t.replacen("{keyword}", k, 1)
        }
        _ => t.to_string(),
    });
    finish(&id, &method, &uri, route.as_deref(), &user, start, resp)
}

/// The URI as logged: `admintoken=` values (neuclease sends tokens there) never reach a log.
fn loggable(uri: &axum::http::Uri) -> String {
    match uri.query() {
        Some(q) if q.contains("admintoken=") => {
            let q: Vec<&str> = q
                .split('&')
                .map(|kv| {
                    if kv.starts_with("admintoken=") {
                        "admintoken=REDACTED"
                    } else {
                        kv
                    }
                })
                .collect();
            format!("{}?{}", uri.path(), q.join("&"))
        }
        _ => uri.to_string(),
    }
}

/// The request log line (target `tessera::access`, on at info) and the request metrics, and
/// the request id on the response.
fn finish(
    id: &str,
    method: &Method,
    uri: &axum::http::Uri,
    route: Option<&str>,
    user: &str,
    start: Instant,
    mut resp: Response,
) -> Response {
    let elapsed = start.elapsed();
    let status = resp.status().as_u16();
    let bytes = resp.body().size_hint().exact();
    let uri = loggable(uri);
    tracing::info!(target: "tessera::access", id, %method, %uri, status,
        bytes, ms = elapsed.as_secs_f64() * 1e3, user, "request");
    metrics::request(
        method.as_str(),
        route.unwrap_or("unmatched"),
        status,
        elapsed,
        bytes,
    );
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}
