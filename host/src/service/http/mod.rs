//! The HTTP rules service: `regua serve`. Built on the same core as the CLI: plugins come from
//! the [`Registry`], and every evaluation, of one record or of a stream, runs on the
//! [`Evaluator`]: single records as batches of one, streams through its async side. This file holds the state, the errors, the router and the OpenAPI document; the
//! endpoints are in one file per concern: `plugins` (list, read, evaluate), `batches` (streamed
//! NDJSON), `campaigns` (campaigns, decide, run) and `admin` (upload, delete).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use regua_sdk::{Event, Kind, Message, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{OpenApi, ToSchema};

mod admin;
mod automation;
mod batches;
mod campaigns;
mod console;
mod decisions;
mod plugins;

use crate::decisions::DecisionLog;
use crate::pipeline::batch::{self, Plugins};
use crate::pipeline::evaluator::{Chunking, Evaluator};
use crate::pipeline::output::Format;
use crate::runtime::error::CallError;
use crate::runtime::plugin::Plugin;
use crate::runtime::worker::{Evaluation, Inputs, RecordResult};
use crate::service::metrics::Metrics;
use crate::service::registry::{LoadFailure, Registry, Slot};

/// How the service runs.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Token required by `PUT`/`DELETE /v1/plugins/{name}`; none disables them.
    pub admin_token: Option<String>,
    /// The company's default zone, for customers without one.
    pub default_tz: String,
    /// Largest JSON request body (and largest NDJSON line), in bytes.
    pub max_body: usize,
    /// Lines per chunk of a streamed batch.
    pub chunk_lines: usize,
    /// Bytes of request bodies held at once, across every connection: a body that does not fit
    /// waits (up to `budget_wait`) or is answered 503.
    pub body_budget: usize,
    /// How long a request waits for room in the body budget before it is answered 503.
    pub budget_wait: std::time::Duration,
    /// How long a client may take to send a request's headers, and how long a kept-alive
    /// connection may wait idle for its next request.
    pub header_timeout: std::time::Duration,
    /// How long a whole JSON body may take to arrive, and how long a streamed (NDJSON) body may
    /// pause between two pieces.
    pub body_timeout: std::time::Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            admin_token: None,
            default_tz: "America/Sao_Paulo".into(),
            max_body: 16 << 20,
            chunk_lines: 256,
            body_budget: 256 << 20,
            budget_wait: std::time::Duration::from_secs(5),
            header_timeout: std::time::Duration::from_secs(30),
            body_timeout: std::time::Duration::from_secs(60),
        }
    }
}

struct Inner {
    registry: Arc<Registry>,
    campaigns: Arc<crate::service::campaigns::CampaignStore>,
    evaluator: Evaluator,
    metrics: Arc<Metrics>,
    config: ServiceConfig,
    decisions: Option<Arc<DecisionLog>>,
    on_log_failure: OnLogFailure,
    /// The latest campaign run's funnel, for the console.
    latest_run: std::sync::Mutex<Option<campaigns::LatestRun>>,
    /// The body budget: one permit a byte.
    bodies: Arc<tokio::sync::Semaphore>,
    /// The journey runtime, with `--state`.
    automation: Option<Arc<crate::service::automation::Automation>>,
}

/// What the service does while its decision log cannot be written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OnLogFailure {
    /// Keep answering; the decisions are kept in memory (up to a bound) and written when the
    /// folder can be written again.
    #[default]
    Answer,
    /// Refuse decision requests with 503 `decision_log_failing` until the log writes again, so
    /// that no decision goes unrecorded.
    Refuse,
}

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.0.config)
            .finish()
    }
}

impl AppState {
    /// The state of a service over `registry`.
    pub fn new(
        registry: Arc<Registry>,
        evaluator: Evaluator,
        metrics: Arc<Metrics>,
        config: ServiceConfig,
    ) -> Self {
        let campaigns = crate::service::campaigns::CampaignStore::new(
            None,
            registry.clone(),
            &config.default_tz,
        );
        AppState(Arc::new(Inner {
            campaigns,
            registry,
            evaluator,
            metrics,
            decisions: None,
            on_log_failure: OnLogFailure::Answer,
            latest_run: std::sync::Mutex::new(None),
            automation: None,
            bodies: Arc::new(tokio::sync::Semaphore::new(
                config
                    .body_budget
                    .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
            )),
            config,
        }))
    }

    /// This state, logging every decision to `log` (before the service starts).
    pub fn with_decision_log(mut self, log: Arc<DecisionLog>, on_failure: OnLogFailure) -> Self {
        let inner = Arc::get_mut(&mut self.0).expect("the log is set before the state is shared");
        inner.decisions = Some(log);
        inner.on_log_failure = on_failure;
        self
    }

    /// The decision log, if decisions are logged.
    pub fn decision_log(&self) -> Option<&Arc<DecisionLog>> {
        self.0.decisions.as_ref()
    }

    /// The decision log as the pipeline records into it, if the service keeps one.
    pub fn recorder(&self) -> Option<Arc<dyn crate::pipeline::recorder::Recorder>> {
        self.0.decisions.clone().map(|l| l as _)
    }

    /// Refuses a decision request while the log fails, when the service is set to.
    fn log_gate(&self) -> Result<(), ApiError> {
        let Some(log) = &self.0.decisions else {
            return Ok(());
        };
        if self.0.on_log_failure == OnLogFailure::Refuse
            && let Some(error) = log.sink.status().error
        {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "decision_log_failing",
                format!(
                    "the decision log `{}` cannot be written ({error}), and this service refuses decisions it cannot record; see GET /healthz",
                    log.sink.dir().display()
                ),
            ));
        }
        Ok(())
    }

    /// This state, serving the campaigns of `store` (before the service starts).
    pub fn with_campaigns(mut self, store: Arc<crate::service::campaigns::CampaignStore>) -> Self {
        Arc::get_mut(&mut self.0)
            .expect("campaigns are set before the state is shared")
            .campaigns = store;
        self
    }

    /// This state, running réguas with `automation` (before the service starts).
    pub fn with_automation(
        mut self,
        automation: Arc<crate::service::automation::Automation>,
    ) -> Self {
        Arc::get_mut(&mut self.0)
            .expect("the runtime is set before the state is shared")
            .automation = Some(automation);
        self
    }

    /// The journey runtime, if the service runs one.
    pub fn automation(&self) -> Option<&Arc<crate::service::automation::Automation>> {
        self.0.automation.as_ref()
    }

    /// The campaigns served.
    pub fn campaigns(&self) -> &Arc<crate::service::campaigns::CampaignStore> {
        &self.0.campaigns
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.0.registry
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.0.metrics
    }

    /// The evaluator every request runs on.
    pub fn evaluator(&self) -> &Evaluator {
        &self.0.evaluator
    }

    /// How a streamed request is cut: the configured chunk size, and no line longer than the
    /// largest request body.
    fn chunking(&self) -> Chunking {
        Chunking {
            lines: self.0.config.chunk_lines,
            max_line: self.0.config.max_body,
        }
    }
}

/// The one error shape: `{"error":{"code":"…","message":"…"}}`. 5xx answers carry a generic
/// message; the detail goes to the log.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

#[derive(Serialize, ToSchema)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
struct ErrorDetail {
    /// A stable code: `bad_request`, `not_found`, `wrong_kind`, `too_large`, `plugin_failed`,
    /// `unauthorized`, `forbidden`, `decision_log_failing`, `internal`.
    code: String,
    /// What is wrong, naming the field.
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    fn bad(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    fn not_found(name: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no plugin named `{name}`"),
        )
    }
    fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {detail}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error (see the service log)",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The reason, in the service's log too (inside the request's span), not only the status.
        if self.status.is_client_error() || self.status == StatusCode::SERVICE_UNAVAILABLE {
            let mut said = crate::runtime::instance::escape_controls(&self.message);
            if said.len() > 1000 {
                let cut = (0..=1000)
                    .rev()
                    .find(|&i| said.is_char_boundary(i))
                    .unwrap_or(0);
                said.truncate(cut);
                said.push('…');
            }
            tracing::info!(
                status = self.status.as_u16(),
                code = self.code,
                "refused: {said}"
            );
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was never read, so this connection cannot carry another
            // request; saying so keeps a pooling client from sending its next request into a
            // connection the server is about to close.
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

impl From<crate::pipeline::evaluator::Panicked> for ApiError {
    fn from(e: crate::pipeline::evaluator::Panicked) -> Self {
        ApiError::internal(e)
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Refused { .. } | CallError::NoMessage { .. } => ApiError::bad(e.to_string()),
            CallError::WrongKind { .. } => {
                ApiError::new(StatusCode::CONFLICT, "wrong_kind", e.to_string())
            }
            CallError::Failed { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "plugin_failed",
                e.to_string(),
            ),
            CallError::Host { .. } => ApiError::internal(e),
        }
    }
}

fn parse_field<T: serde::de::DeserializeOwned>(raw: &RawValue, field: &str) -> Result<T, ApiError> {
    regua_sdk::json::from_str(raw.get(), Some(field)).map_err(ApiError::bad)
}

fn parse_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad(
            "the request body is empty: expected a JSON object",
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ApiError::bad(format!(
            "the request body is not UTF-8 (byte {})",
            e.valid_up_to()
        ))
    })?;
    regua_sdk::json::from_str(text, None)
        .map_err(|e| ApiError::bad(format!("invalid request: {e}")))
}

/// A request body received whole, with its share of the body budget, held until the handler
/// is done with it.
pub(super) struct Received {
    bytes: Bytes,
    _budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl std::ops::Deref for Received {
    type Target = Bytes;
    fn deref(&self) -> &Bytes {
        &self.bytes
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the request body is larger than {limit} bytes"),
    )
}

fn budget_full(state: &AppState) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        format!(
            "the service holds as much of other requests' bodies as it takes at once ({} MiB): \
             try again shortly",
            state.0.config.body_budget >> 20
        ),
    )
}

/// `n` more bytes of the body budget, added to `held`; waits up to `wait` for them.
async fn take_budget(
    state: &AppState,
    held: &mut Option<tokio::sync::OwnedSemaphorePermit>,
    n: usize,
    wait: std::time::Duration,
) -> Result<(), ApiError> {
    if n == 0 {
        return Ok(());
    }
    let n = u32::try_from(n).map_err(|_| too_large(state.0.config.max_body))?;
    let bodies = state.0.bodies.clone();
    let permit = tokio::time::timeout(wait, bodies.acquire_many_owned(n))
        .await
        .map_err(|_| budget_full(state))?
        .map_err(ApiError::internal)?;
    match held {
        Some(h) => h.merge(permit),
        None => *held = Some(permit),
    }
    Ok(())
}

/// Reads a whole request body: at most `max_body` bytes, within `body_timeout`, inside the
/// body budget shared by every connection (an announced length is taken from it before the
/// first byte is read, so a crowd of unfinished uploads cannot hold more than the budget).
async fn read_body(state: &AppState, body: Body) -> Result<Received, ApiError> {
    use axum::body::HttpBody as _;
    let config = &state.0.config;
    let limit = config.max_body;
    let mut held = None;
    let announced = body.size_hint().exact().unwrap_or(0) as usize;
    if announced > limit {
        return Err(too_large(limit));
    }
    take_budget(state, &mut held, announced, config.budget_wait).await?;
    let deadline = tokio::time::Instant::now() + config.body_timeout;
    let mut stream = body.into_data_stream();
    let mut data = Vec::with_capacity(announced);
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!(
                        "the request body did not arrive within {} s",
                        config.body_timeout.as_secs()
                    ),
                )
            })?;
        let chunk = match next {
            None => break,
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!("the request body stopped arriving: {e}"),
                ));
            }
        };
        if data.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        // Beyond what was announced (a chunked body): taken as it comes, without waiting.
        let beyond = (data.len() + chunk.len()).saturating_sub(announced.max(data.len()));
        take_budget(state, &mut held, beyond, std::time::Duration::ZERO).await?;
        data.extend_from_slice(&chunk);
    }
    Ok(Received {
        bytes: Bytes::from(data),
        _budget: held,
    })
}

fn parse_now(now: Option<&str>) -> Result<Timestamp, ApiError> {
    match now {
        Some(text) => {
            Timestamp::parse(text).map_err(|e| ApiError::bad(format!("field `now`: {e}")))
        }
        None => Ok(crate::wall_clock()),
    }
}

/// A plugin name from a URL or a request, checked before it is used for anything.
fn valid_name(name: &str) -> Result<(), ApiError> {
    crate::runtime::plugin::check_name(name)
        .map_err(|detail| ApiError::bad(format!("the plugin name {detail}")))
}

fn plugin(state: &AppState, name: &str) -> Result<Arc<Plugin>, ApiError> {
    valid_name(name)?;
    state
        .registry()
        .get(name)
        .ok_or_else(|| ApiError::not_found(name))
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics().plugin_time(&state.registry().slots());
    if let Some(log) = state.decision_log() {
        state.metrics().decision_log(&log.sink.status());
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Régua rules service", description = "Evaluate segments, journey rules and channel-rest policies, sandboxed in WebAssembly."),
    paths(plugins::healthz, plugins::list_plugins, plugins::get_plugin, plugins::evaluate, plugins::evaluate_many, batches::batch_many, batches::batch_one, admin::put_plugin, admin::delete_plugin, metrics,
        campaigns::list_campaigns, campaigns::get_campaign, campaigns::decide_all, campaigns::decide_one, campaigns::run_campaigns, campaigns::latest_run, decisions::latest_decisions, decisions::get_decision, decisions::run_backtest,
        automation::post_events, automation::post_customers, automation::get_customer, automation::get_outbox, automation::post_ack, automation::post_clock),
    components(schemas(ErrorBody, ErrorDetail, plugins::PluginInfo, plugins::PluginList, plugins::FailureInfo, plugins::EvaluateRequest, plugins::MultiRequest, plugins::Health, plugins::LogHealth, decisions::Explained,
        campaigns::CampaignList, campaigns::CampaignInfo, campaigns::DecideRequest, campaigns::LatestRun, crate::pipeline::campaign::Report, crate::pipeline::campaign::Funnel, decisions::Latest, crate::automation::store::Ack, automation::ClockRequest)),
    modifiers(&AdminToken)
)]
struct ApiDoc;

struct AdminToken;

impl utoipa::Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document, generated from the handlers' annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

async fn fallback() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint (see /openapi.json)",
    )
}

/// One span and one metrics observation per request.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let span = tracing::info_span!("request", %method, route = %route);
    let started = Instant::now();
    let response = {
        let _enter = span.enter();
        tracing::debug!("started");
        drop(_enter);
        tracing::Instrument::instrument(next.run(request), span.clone()).await
    };
    let status = response.status().as_u16();
    state
        .metrics()
        .request(&route, status, started.elapsed().as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "answered"
        )
    });
    response
}

/// Refuses what a web page of another site could send: a cross-site request needs no consent
/// from the service when it is "simple" (a form's content types, no custom header), and would
/// otherwise be evaluated and written to the decision log. Every request that changes or records
/// anything (any method but GET, HEAD and OPTIONS) must come from no page at all (no `Origin`,
/// as curl and programs send) or from the service's own origin (the console). What it may say it
/// sends is each route's: [`json_body`] or [`not_a_form`].
async fn same_site_only(request: Request, next: Next) -> Response {
    if is_safe(&request) {
        return next.run(request).await;
    }
    let headers = request.headers();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("(not text)");
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if authority.is_none() || authority != host {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                format!(
                    "requests from another origin (`{origin}`) are refused: call the service from \
                     a program, or from its own console"
                ),
            )
            .into_response();
        }
    }
    next.run(request).await
}

fn is_safe(request: &Request) -> bool {
    use axum::http::Method;
    matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    )
}

/// For the endpoints whose body is one JSON document: `application/json` (or `+json`), or no
/// content type at all (a program's: a page's request carries an `Origin`, refused before).
async fn json_body(request: Request, next: Next) -> Response {
    content_policy(request, next, true).await
}

/// For the other endpoints (NDJSON, a plugin, a send list): anything but the three content
/// types a form can send without asking.
async fn not_a_form(request: Request, next: Next) -> Response {
    content_policy(request, next, false).await
}

async fn content_policy(request: Request, next: Next, json_only: bool) -> Response {
    if is_safe(&request) {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    let refused = if json_only {
        let json = given
            .as_deref()
            .is_some_and(|t| t == "application/json" || t.ends_with("+json"));
        (given.is_some() && !json).then_some("`application/json`")
    } else {
        matches!(
            given.as_deref(),
            Some("text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data")
        )
        .then_some("NDJSON (`application/x-ndjson`), or what the endpoint documents")
    };
    if let Some(wanted) = refused {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "`{} {}` takes {wanted}; the request says `content-type: {}`",
                request.method(),
                request.uri().path(),
                given.as_deref().unwrap_or("(none)")
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// The service's routes.
pub fn router(state: AppState) -> Router {
    // The endpoints whose body is one JSON document, and what they may say they send.
    let json = Router::new()
        .route("/v1/plugins/{name}/evaluate", post(plugins::evaluate))
        .route("/v1/evaluate", post(plugins::evaluate_many))
        .route("/v1/campaigns/{code}/decide", post(campaigns::decide_one))
        .route("/v1/decide", post(campaigns::decide_all))
        .route("/v1/outbox/ack", post(automation::post_ack))
        .route("/v1/clock", post(automation::post_clock))
        .route_layer(middleware::from_fn(json_body));
    Router::new()
        .route("/", get(console::index))
        .route("/console/console.js", get(console::script))
        .route("/console/console.css", get(console::style))
        .route("/console/example-customer.json", get(console::example))
        .route("/healthz", get(plugins::healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .route("/v1/plugins", get(plugins::list_plugins))
        .route(
            "/v1/plugins/{name}",
            get(plugins::get_plugin)
                .put(admin::put_plugin)
                .delete(admin::delete_plugin),
        )
        .route("/v1/plugins/{name}/batch", post(batches::batch_one))
        .route("/v1/batch", post(batches::batch_many))
        .route("/v1/campaigns", get(campaigns::list_campaigns))
        .route("/v1/campaigns/run", post(campaigns::run_campaigns))
        .route("/v1/campaigns/{code}", get(campaigns::get_campaign))
        .route("/v1/events", post(automation::post_events))
        .route("/v1/customers", post(automation::post_customers))
        .route("/v1/customers/{id}", get(automation::get_customer))
        .route("/v1/outbox", get(automation::get_outbox))
        .route("/v1/runs/latest", get(campaigns::latest_run))
        .route("/v1/decisions", get(decisions::latest_decisions))
        .route("/v1/decisions/{id}", get(decisions::get_decision))
        .route("/v1/backtest", post(decisions::run_backtest))
        .route_layer(middleware::from_fn(not_a_form))
        .merge(json)
        .fallback(fallback)
        .layer(middleware::from_fn(same_site_only))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` completes, then finishes the requests in flight.
/// Each connection is bounded in time: its request headers must arrive within `header_timeout`
/// (also the longest a kept-alive connection waits idle for its next request), and a request
/// body may pause at most `body_timeout` between two pieces.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let config = state.0.config.clone();
    let app = tower::ServiceBuilder::new()
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            config.body_timeout,
        ))
        .service(router(state));
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
    Ok(())
}
