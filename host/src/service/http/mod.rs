//! The HTTP rules service: `regua serve`. Built on the same core as the CLI: plugins come from
//! the [`Registry`], records are parsed by [`crate::pipeline::record`], and every evaluation runs through
//! [`crate::Worker::evaluate`] (batches through [`batch::process`]) on the evaluation [`Pool`].

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

mod campaigns;

use crate::pipeline::batch::{self, Chunk};
use crate::pipeline::output::Format;
use crate::pipeline::pool::Pool;
use crate::pipeline::record::EncodedBatch;
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
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            admin_token: None,
            default_tz: "America/Sao_Paulo".into(),
            max_body: 16 << 20,
            chunk_lines: 256,
        }
    }
}

struct Inner {
    registry: Arc<Registry>,
    campaigns: Arc<crate::service::campaigns::CampaignStore>,
    pool: Pool,
    metrics: Arc<Metrics>,
    config: ServiceConfig,
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
        pool: Pool,
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
            pool,
            metrics,
            config,
        }))
    }

    /// The registry.
    /// This state, serving the campaigns of `store` (before the service starts).
    pub fn with_campaigns(mut self, store: Arc<crate::service::campaigns::CampaignStore>) -> Self {
        Arc::get_mut(&mut self.0)
            .expect("campaigns are set before the state is shared")
            .campaigns = store;
        self
    }

    /// The campaigns served.
    pub fn campaigns(&self) -> &Arc<crate::service::campaigns::CampaignStore> {
        &self.0.campaigns
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.0.registry
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.0.metrics
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
    /// `unauthorized`, `forbidden`, `internal`.
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
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<crate::pipeline::pool::Panicked> for ApiError {
    fn from(e: crate::pipeline::pool::Panicked) -> Self {
        ApiError::internal(e)
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Refused { .. } => ApiError::bad(e.to_string()),
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

async fn read_body(state: &AppState, body: Body) -> Result<Bytes, ApiError> {
    let limit = state.0.config.max_body;
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    })
}

fn parse_now(now: Option<&str>) -> Result<Timestamp, ApiError> {
    match now {
        Some(text) => {
            Timestamp::parse(text).map_err(|e| ApiError::bad(format!("field `now`: {e}")))
        }
        None => Ok(Timestamp::from_millis(
            jiff::Timestamp::now().as_millisecond(),
        )),
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

/// A plugin as `GET /v1/plugins` lists it.
#[derive(Serialize, ToSchema)]
pub struct PluginInfo {
    /// The plugin's name.
    name: String,
    /// `segment`, `journey` or `rest`.
    kind: String,
    /// Content hash of the `.wasm` serving now.
    version: String,
    /// The author's version.
    crate_version: String,
    /// The ABI version.
    abi: u32,
    /// What business question it answers.
    description: String,
    /// Parameter defaults.
    #[schema(value_type = Object)]
    params: serde_json::Value,
    /// The parts of the record the plugin reads (`transactions`, `transactions.amount`, …); a
    /// batch reads only what its plugins read.
    #[schema(value_type = Vec<String>)]
    reads: Vec<regua_sdk::Field>,
    /// When this version was loaded.
    loaded_at: String,
    /// The file it was loaded from.
    source: Option<String>,
    /// Why the newest file could not be loaded, if it could not (the version above keeps serving).
    last_error: Option<FailureInfo>,
}

/// A load or build failure.
#[derive(Serialize, ToSchema)]
pub struct FailureInfo {
    /// The file or crate.
    source: String,
    /// What went wrong.
    error: String,
    /// When.
    at: String,
}

impl From<&LoadFailure> for FailureInfo {
    fn from(f: &LoadFailure) -> Self {
        FailureInfo {
            source: f.source.clone(),
            error: f.error.clone(),
            at: f.at.to_string(),
        }
    }
}

fn info(slot: &Slot) -> PluginInfo {
    let p = &slot.plugin;
    PluginInfo {
        name: p.name().to_owned(),
        kind: p.kind().to_string(),
        version: p.version.clone(),
        crate_version: p.meta.version.clone(),
        abi: p.meta.abi,
        description: p.meta.description.clone(),
        params: p.meta.params.clone(),
        reads: p.meta.reads.clone(),
        loaded_at: slot.loaded_at.to_string(),
        source: p.source.as_ref().map(|s| s.display().to_string()),
        last_error: slot.last_error.as_ref().map(FailureInfo::from),
    }
}

/// `GET /v1/plugins`.
#[derive(Serialize, ToSchema)]
pub struct PluginList {
    /// The plugins serving.
    plugins: Vec<PluginInfo>,
    /// Files (or crates) that failed and hold no serving plugin.
    failures: Vec<FailureInfo>,
}

#[derive(Serialize, ToSchema)]
struct Health {
    status: String,
    plugins: usize,
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
async fn healthz(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        plugins: state.registry().slots().len(),
    })
}

#[utoipa::path(get, path = "/v1/plugins", responses((status = 200, body = PluginList)))]
async fn list_plugins(State(state): State<AppState>) -> Json<PluginList> {
    let registry = state.registry();
    Json(PluginList {
        plugins: registry.slots().iter().map(|(_, s)| info(s)).collect(),
        failures: registry
            .orphan_errors()
            .iter()
            .map(FailureInfo::from)
            .collect(),
    })
}

#[utoipa::path(get, path = "/v1/plugins/{name}", params(("name" = String, Path, description = "the plugin's name")),
    responses((status = 200, body = PluginInfo), (status = 404, body = ErrorBody)))]
async fn get_plugin(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PluginInfo>, ApiError> {
    valid_name(&name)?;
    let slots = state.registry().slots();
    let slot = slots
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| ApiError::not_found(&name))?;
    Ok(Json(info(&slot.1)))
}

/// `POST /v1/plugins/{name}/evaluate`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    /// The customer record.
    #[schema(value_type = Object)]
    customer: Box<RawValue>,
    /// The instant to evaluate at (RFC 3339); default: the service's clock.
    now: Option<String>,
    /// The plugin's parameters over its defaults.
    #[schema(value_type = Object)]
    params: Option<Box<RawValue>>,
    /// The proposed message (rest policies only).
    #[schema(value_type = Object)]
    message: Option<Box<RawValue>>,
    /// The triggering event (journey rules only).
    #[schema(value_type = Object)]
    event: Option<Box<RawValue>>,
}

fn parse_customer_field(raw: &RawValue) -> Result<regua_sdk::Customer, ApiError> {
    regua_sdk::record::parse_customer_at(raw.get(), Some("customer")).map_err(ApiError::bad)
}

struct Extras {
    message: Option<Message>,
    event: Option<Event>,
}

fn extras(message: Option<&RawValue>, event: Option<&RawValue>) -> Result<Extras, ApiError> {
    Ok(Extras {
        message: message.map(|m| parse_field(m, "message")).transpose()?,
        event: event.map(|e| parse_field(e, "event")).transpose()?,
    })
}

fn inputs_for(
    state: &AppState,
    plugin: &Plugin,
    now: Timestamp,
    params: String,
    x: &Extras,
) -> Inputs {
    Inputs {
        now,
        default_tz: state.0.config.default_tz.clone(),
        params,
        message: (plugin.kind() == Kind::Rest)
            .then(|| x.message.clone())
            .flatten(),
        event: (plugin.kind() == Kind::Journey)
            .then(|| x.event.clone())
            .flatten(),
    }
}

fn check_kind(plugin: &Plugin, x: &Extras) -> Result<(), ApiError> {
    let wrong = |field: &str, expected: Kind| {
        ApiError::new(
            StatusCode::CONFLICT,
            "wrong_kind",
            format!(
                "plugin `{}` is a {} plugin; `{field}` is for {} plugins",
                plugin.name(),
                plugin.kind(),
                expected
            ),
        )
    };
    if x.message.is_some() && plugin.kind() != Kind::Rest {
        return Err(wrong("message", Kind::Rest));
    }
    if x.event.is_some() && plugin.kind() != Kind::Journey {
        return Err(wrong("event", Kind::Journey));
    }
    if plugin.kind() == Kind::Rest && x.message.is_none() {
        return Err(ApiError::bad(format!(
            "field `message` is missing: plugin `{}` is a rest policy and judges a proposed message",
            plugin.name()
        )));
    }
    Ok(())
}

async fn evaluate_one(
    state: &AppState,
    eval: Evaluation,
    batch: EncodedBatch,
) -> Result<RecordResult, ApiError> {
    let results = state
        .0
        .pool
        .run(move |w| w.evaluate(&eval, &batch))
        .await??;
    Ok(results
        .into_iter()
        .next()
        .expect("one customer, one answer"))
}

#[utoipa::path(post, path = "/v1/plugins/{name}/evaluate", params(("name" = String, Path, description = "the plugin's name")), request_body = EvaluateRequest,
    responses((status = 200, description = "the kind's result, with `plugin`, `version` and reasons", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn evaluate(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&state, body).await?;
    let plugin = plugin(&state, &name)?;
    let req: EvaluateRequest = parse_body(&bytes)?;
    let x = extras(req.message.as_deref(), req.event.as_deref())?;
    check_kind(&plugin, &x)?;
    let now = parse_now(req.now.as_deref())?;
    let customer = parse_customer_field(&req.customer)?;
    let batch = EncodedBatch::of_one(&customer, &plugin);
    let params = req
        .params
        .map_or_else(|| "{}".to_owned(), |p| p.get().to_owned());
    let eval = Evaluation::new(
        plugin.clone(),
        &inputs_for(&state, &plugin, now, params, &x),
    )?;
    let result = evaluate_one(&state, eval, batch).await?;
    state.metrics().evaluated_one(plugin.name(), &result);
    match &result {
        Ok(_) => Ok(Json(crate::pipeline::output::result_value(&plugin, &result)).into_response()),
        Err(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "plugin_failed",
            e.clone(),
        )),
    }
}

/// `POST /v1/evaluate`: several plugins over one customer, parsed once.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MultiRequest {
    /// The customer record.
    #[schema(value_type = Object)]
    customer: Box<RawValue>,
    /// The plugins, by name.
    plugins: Vec<String>,
    /// The instant (RFC 3339); default: the service's clock.
    now: Option<String>,
    /// Parameters by plugin name.
    #[serde(default)]
    #[schema(value_type = Object)]
    params: BTreeMap<String, Box<RawValue>>,
    /// The proposed message, for the rest policies among the plugins.
    #[schema(value_type = Object)]
    message: Option<Box<RawValue>>,
    /// The triggering event, for the journey rules among the plugins.
    #[schema(value_type = Object)]
    event: Option<Box<RawValue>>,
}

#[utoipa::path(post, path = "/v1/evaluate", request_body = MultiRequest,
    responses((status = 200, description = "`{\"id\":…,\"results\":{\"<plugin>\":{…}}}`; a plugin that failed on the customer has `error` in its entry", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn evaluate_many(State(state): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(&state, body).await?;
    let req: MultiRequest = parse_body(&bytes)?;
    if req.plugins.is_empty() {
        return Err(ApiError::bad(
            "field `plugins` is empty: name at least one plugin",
        ));
    }
    let x = extras(req.message.as_deref(), req.event.as_deref())?;
    let now = parse_now(req.now.as_deref())?;
    let mut evals = Vec::new();
    for name in &req.plugins {
        let p = plugin(&state, name)?;
        if p.kind() == Kind::Rest && x.message.is_none() {
            return Err(ApiError::bad(format!(
                "field `message` is missing: plugin `{name}` is a rest policy"
            )));
        }
        let params = req
            .params
            .get(name)
            .map_or_else(|| "{}".to_owned(), |p| p.get().to_owned());
        evals.push(Evaluation::new(
            p.clone(),
            &inputs_for(&state, &p, now, params, &x),
        )?);
    }
    if let Some(unknown) = req.params.keys().find(|k| !req.plugins.contains(k)) {
        return Err(ApiError::bad(format!(
            "field `params.{unknown}`: `{unknown}` is not among `plugins`"
        )));
    }
    let customer = parse_customer_field(&req.customer)?;
    let id = customer.id.clone();
    let results = state
        .0
        .pool
        .run(move |w| {
            // A plugin that refuses the call fails alone: its entry carries the error.
            evals
                .iter()
                .map(|e| {
                    let batch = EncodedBatch::of_one(&customer, &e.plugin);
                    let result = w
                        .evaluate(e, &batch)
                        .map_or_else(|err| Err(err.to_string()), |mut r| r.remove(0));
                    (e.plugin.clone(), result)
                })
                .collect::<Vec<_>>()
        })
        .await?;
    let mut map = serde_json::Map::new();
    for (p, r) in &results {
        state.metrics().evaluated_one(p.name(), r);
        map.insert(
            p.name().to_owned(),
            crate::pipeline::output::result_value(p, r),
        );
    }
    Ok(Json(serde_json::json!({"id": id, "results": map})).into_response())
}

/// Query parameters of the batch endpoints.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BatchQuery {
    /// Comma-separated plugin names (`/v1/batch` only).
    plugins: Option<String>,
    /// The instant (RFC 3339); default: the service's clock.
    now: Option<String>,
    /// Parameters: the plugin's (`/v1/plugins/{name}/batch`), or an object by plugin name.
    params: Option<String>,
    /// The proposed message, for rest policies (JSON).
    message: Option<String>,
    /// The triggering event, for journey rules (JSON).
    event: Option<String>,
    /// `true` to evaluate every line even when its customer id was on an earlier line (by
    /// default a repeat gets an error line).
    allow_repeated_ids: Option<bool>,
    /// `ndjson` (default) or `csv`: a header, then `line,id`, one column per plugin with its
    /// short answer, and `error`.
    #[param(value_type = Option<String>)]
    format: Option<Format>,
}

#[utoipa::path(post, path = "/v1/batch", params(BatchQuery),
    request_body(content = String, content_type = "application/x-ndjson", description = "one customer record per line"),
    responses((status = 200, content_type = "application/x-ndjson",
        description = "one line per input line, in order: `{\"id\":…,\"results\":{…}}` or `{\"line\":N,\"id\":…,\"error\":\"…\"}`; with `format=csv`, text/csv: a header, then a row per input line", body = String),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn batch_many(
    State(state): State<AppState>,
    Query(q): Query<BatchQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let prepared = async {
        let names: Vec<String> = q
            .plugins
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if names.is_empty() {
            return Err(ApiError::bad(
                "query parameter `plugins` is missing: name the plugins, e.g. ?plugins=rfm,lapsed",
            ));
        }
        let params: BTreeMap<String, Box<RawValue>> = match &q.params {
            Some(p) => serde_json::from_str(p).map_err(|e| {
                ApiError::bad(format!(
                    "query parameter `params`: {e} (an object by plugin name)"
                ))
            })?,
            None => BTreeMap::new(),
        };
        let plugins = names
            .iter()
            .map(|n| plugin(&state, n))
            .collect::<Result<Vec<_>, _>>()?;
        let params_of = |name: &str| params.get(name).map(|p| p.get().to_owned());
        prepare_batch(&state, plugins, params_of, &q, false).await
    }
    .await;
    respond_batch(state, prepared, body, &q).await
}

#[utoipa::path(post, path = "/v1/plugins/{name}/batch", params(("name" = String, Path, description = "the plugin's name"), BatchQuery),
    request_body(content = String, content_type = "application/x-ndjson", description = "one customer record per line"),
    responses((status = 200, content_type = "application/x-ndjson", description = "one line per input line, in order (text/csv with `format=csv`)", body = String),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn batch_one(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<BatchQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let prepared = async {
        if q.plugins.is_some() {
            return Err(ApiError::bad(
                "query parameter `plugins` belongs to /v1/batch",
            ));
        }
        let p = plugin(&state, &name)?;
        let params = q.params.clone();
        prepare_batch(&state, vec![p], |_| params.clone(), &q, true).await
    }
    .await;
    respond_batch(state, prepared, body, &q).await
}

/// Streams the answers, or, when the request was refused before any line was read, reads what
/// the client is sending (within the size limit) so it receives the error rather than a reset.
async fn respond_batch(
    state: AppState,
    prepared: Result<Arc<Vec<Evaluation>>, ApiError>,
    body: Body,
    q: &BatchQuery,
) -> Result<Response, ApiError> {
    let (repeats, format) = (
        q.allow_repeated_ids.unwrap_or(false),
        q.format.unwrap_or_default(),
    );
    match prepared {
        Ok(evals) => Ok(stream_batch(state, evals, body, repeats, format)),
        Err(e) => {
            let _ = axum::body::to_bytes(body, state.0.config.max_body).await;
            Err(e)
        }
    }
}

async fn prepare_batch(
    state: &AppState,
    plugins: Vec<Arc<Plugin>>,
    params_of: impl Fn(&str) -> Option<String>,
    q: &BatchQuery,
    strict_kind: bool,
) -> Result<Arc<Vec<Evaluation>>, ApiError> {
    let query_json = |value: Option<&str>, name: &str| {
        value
            .map(|m| {
                serde_json::from_str::<Box<RawValue>>(m)
                    .map_err(|e| ApiError::bad(format!("query parameter `{name}`: {e}")))
            })
            .transpose()
    };
    let message = query_json(q.message.as_deref(), "message")?;
    let event = query_json(q.event.as_deref(), "event")?;
    let x = extras(message.as_deref(), event.as_deref())?;
    let now = parse_now(q.now.as_deref())?;
    let mut evals = Vec::new();
    for p in &plugins {
        if strict_kind {
            check_kind(p, &x)?;
        } else if p.kind() == Kind::Rest && x.message.is_none() {
            return Err(ApiError::bad(format!(
                "query parameter `message` is missing: plugin `{}` is a rest policy",
                p.name()
            )));
        }
        let params = params_of(p.name()).unwrap_or_else(|| "{}".into());
        evals.push(Evaluation::new(
            p.clone(),
            &inputs_for(state, p, now, params, &x),
        )?);
    }
    // A plugin that fails its check (bad parameters, a trap) answers its error on every line
    // while the others answer; when every plugin fails, the request is refused before any line
    // is read.
    let evals = state
        .0
        .pool
        .run(move |w| w.check_all(&mut evals).map(|()| evals))
        .await??;
    Ok(Arc::new(evals))
}

/// Streams a batch of plugins: see [`stream_chunks`].
fn stream_batch(
    state: AppState,
    evals: Arc<Vec<Evaluation>>,
    body: Body,
    allow_repeated_ids: bool,
    format: Format,
) -> Response {
    let mut collator = batch::Collator::new(&evals, allow_repeated_ids, format);
    let header = collator.header(&evals);
    let metrics = state.metrics().clone();
    let process_evals = evals.clone();
    let process = Arc::new(move |w: &mut crate::Worker, chunk: Chunk| {
        batch::process(w, &process_evals, chunk, format)
    });
    let take = move |done: batch::Done| {
        let (out, tallies) = collator.take(done);
        for (e, t) in evals.iter().zip(&tallies) {
            metrics.evaluated_tally(e.plugin.name(), t);
        }
        out
    };
    stream_chunks(state, body, header, format.content_type(), process, take)
}

/// Streams NDJSON through a plan: lines are cut into chunks as they arrive, each chunk is
/// answered on the pool with `process`, and `take` gets the answers in input order, with a
/// bounded number of chunks in flight, so neither the request nor the response is ever held
/// whole. The service's side of [`batch::run_chunks`].
fn stream_chunks<D: Send + 'static>(
    state: AppState,
    body: Body,
    header: Vec<u8>,
    content_type: &'static str,
    process: Arc<batch::ProcessChunk<D>>,
    mut take: impl FnMut(D) -> Vec<u8> + Send + 'static,
) -> Response {
    const IN_FLIGHT: usize = 4;
    let (pending_tx, mut pending_rx) =
        tokio::sync::mpsc::channel::<tokio::sync::oneshot::Receiver<D>>(IN_FLIGHT);
    let (out_tx, out_rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(IN_FLIGHT);
    let chunk_lines = state.0.config.chunk_lines.max(1);
    let max_line = state.0.config.max_body;

    let reader_state = state.clone();
    tokio::spawn(async move {
        let submit = |chunk: Chunk| {
            let process = process.clone();
            reader_state.0.pool.submit(move |w| process(w, chunk))
        };
        let mut stream = body.into_data_stream();
        let mut chunk = Chunk {
            first_line: 1,
            ..Chunk::default()
        };
        let mut line_start = 0usize;
        let mut skipping = false;
        while let Some(piece) = stream.next().await {
            let Ok(piece) = piece else {
                return; // the client went away
            };
            let mut rest = &piece[..];
            while !rest.is_empty() {
                let newline = rest.iter().position(|b| *b == b'\n');
                let take = newline.map_or(rest.len(), |i| i + 1);
                if !skipping {
                    chunk.data.extend_from_slice(&rest[..take]);
                }
                rest = &rest[take..];
                if !skipping && chunk.data.len() - line_start > max_line {
                    // Too long to hold: drop it and answer with an error line.
                    chunk.data.truncate(line_start);
                    skipping = true;
                }
                if newline.is_some() {
                    if skipping {
                        chunk.oversized.push(chunk.ends.len());
                        skipping = false;
                    }
                    chunk.ends.push(chunk.data.len());
                    line_start = chunk.data.len();
                    if chunk.ends.len() == chunk_lines {
                        let next = Chunk {
                            seq: chunk.seq + 1,
                            first_line: chunk.first_line + chunk.ends.len() as u64,
                            ..Chunk::default()
                        };
                        let full = std::mem::replace(&mut chunk, next);
                        line_start = 0;
                        if pending_tx.send(submit(full)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
        if skipping {
            chunk.oversized.push(chunk.ends.len());
        }
        if chunk.data.len() > line_start || skipping {
            chunk.ends.push(chunk.data.len());
        }
        if !chunk.ends.is_empty() {
            let _ = pending_tx.send(submit(chunk)).await;
        }
    });

    tokio::spawn(async move {
        if !header.is_empty() && out_tx.send(Ok(Bytes::from(header))).await.is_err() {
            return;
        }
        while let Some(rx) = pending_rx.recv().await {
            let Ok(done) = rx.await else {
                let _ = out_tx
                    .send(Err(std::io::Error::other("an evaluation thread failed")))
                    .await;
                return;
            };
            if out_tx.send(Ok(Bytes::from(take(done)))).await.is_err() {
                return;
            }
        }
    });

    let stream = futures_util::stream::unfold(out_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = state.0.config.admin_token.as_deref() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "admin endpoints are disabled: start the service with --admin-token or REGUA_ADMIN_TOKEN",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Compare in constant time, so the token cannot be guessed byte by byte from timings.
    let same = given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong admin token (Authorization: Bearer <token>)",
        ))
    }
}

#[utoipa::path(put, path = "/v1/plugins/{name}", params(("name" = String, Path, description = "the plugin's name")),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "the plugin's .wasm"),
    responses((status = 200, body = PluginInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("admin_token" = [])))]
async fn put_plugin(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<PluginInfo>, ApiError> {
    // The body is read (within the size limit) before the token is checked: answering while the
    // client is still sending would reset the connection instead of delivering the 401 or 403.
    let bytes = read_body(&state, body).await?;
    authorize(&state, &headers)?;
    valid_name(&name)?;
    let registry = state.registry().clone();
    let engine = registry.engine().clone();
    let checked = {
        let bytes = bytes.clone();
        tokio::task::spawn_blocking(move || Plugin::from_bytes(&engine, "uploaded plugin", &bytes))
            .await
            .map_err(ApiError::internal)?
    };
    let plugin = checked.map_err(|e| ApiError::bad(e.to_string()))?;
    if plugin.name() != name {
        return Err(ApiError::bad(format!(
            "the uploaded plugin is named `{}`, not `{name}`",
            plugin.name()
        )));
    }
    let dir = registry.dir().to_owned();
    let path = dir.join(format!("{name}.wasm"));
    let tmp = dir.join(format!(".{name}.wasm.upload"));
    let write = {
        let (path, tmp, bytes) = (path.clone(), tmp.clone(), bytes.clone());
        tokio::task::spawn_blocking(move || {
            std::fs::write(&tmp, &bytes).and_then(|_| std::fs::rename(&tmp, &path))
        })
    };
    write
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let change = tokio::task::spawn_blocking(move || registry.install(&path, &bytes))
        .await
        .map_err(ApiError::internal)?;
    if let crate::service::registry::Change::Failed(e) = change {
        return Err(ApiError::bad(e));
    }
    state.metrics().reload("loaded");
    let slots = state.registry().slots();
    let slot = slots
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| ApiError::internal("uploaded plugin vanished"))?;
    Ok(Json(info(&slot.1)))
}

#[utoipa::path(delete, path = "/v1/plugins/{name}", params(("name" = String, Path, description = "the plugin's name")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
async fn delete_plugin(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    authorize(&state, &headers)?;
    valid_name(&name)?;
    let registry = state.registry().clone();
    let n = name.clone();
    let deleted = tokio::task::spawn_blocking(move || registry.delete(&n))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    if deleted {
        state.metrics().reload("removed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(&name))
    }
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> Response {
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
    paths(healthz, list_plugins, get_plugin, evaluate, evaluate_many, batch_many, batch_one, put_plugin, delete_plugin, metrics,
        campaigns::list_campaigns, campaigns::get_campaign, campaigns::decide_all, campaigns::decide_one, campaigns::run_campaigns),
    components(schemas(ErrorBody, ErrorDetail, PluginInfo, PluginList, FailureInfo, EvaluateRequest, MultiRequest, Health,
        campaigns::CampaignList, campaigns::CampaignInfo, campaigns::DecideRequest)),
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

/// The service's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .route("/v1/plugins", get(list_plugins))
        .route(
            "/v1/plugins/{name}",
            get(get_plugin).put(put_plugin).delete(delete_plugin),
        )
        .route("/v1/plugins/{name}/evaluate", post(evaluate))
        .route("/v1/plugins/{name}/batch", post(batch_one))
        .route("/v1/evaluate", post(evaluate_many))
        .route("/v1/batch", post(batch_many))
        .route("/v1/campaigns", get(campaigns::list_campaigns))
        .route("/v1/campaigns/run", post(campaigns::run_campaigns))
        .route("/v1/campaigns/{code}", get(campaigns::get_campaign))
        .route("/v1/campaigns/{code}/decide", post(campaigns::decide_one))
        .route("/v1/decide", post(campaigns::decide_all))
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
