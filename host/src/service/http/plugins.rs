//! The plugin endpoints: list and read the plugins served, evaluate one or several for one customer.

use super::*;

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
    /// The compiled code serving: `baseline` (a new build's quick compile, answering at once) or
    /// `optimised` (what it moves to within about a second). The answers are the same.
    code: &'static str,
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

pub(super) fn info(slot: &Slot) -> PluginInfo {
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
        code: if p.is_optimised() {
            "optimised"
        } else {
            "baseline"
        },
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

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
pub(super) struct Health {
    /// `ok`, or `degraded` while the decision log cannot be written.
    status: String,
    /// Plugins serving.
    plugins: usize,
    /// The decision log, when the service keeps one.
    #[serde(skip_serializing_if = "Option::is_none")]
    decision_log: Option<LogHealth>,
}

/// How the decision log stands.
#[derive(Serialize, ToSchema)]
pub(super) struct LogHealth {
    /// Its folder.
    dir: String,
    /// Whether the last write succeeded.
    ok: bool,
    /// Why the folder cannot be written, while it cannot.
    error: Option<String>,
    /// Decisions written.
    written: u64,
    /// Decisions waiting to be written (kept in memory while the folder fails).
    pending: u64,
    /// Decisions dropped: more than the memory bound while the folder failed.
    lost: u64,
    /// Writes that failed.
    failures: u64,
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
pub(super) async fn healthz(State(state): State<AppState>) -> Json<Health> {
    let decision_log = state.decision_log().map(|log| {
        let s = log.sink.status();
        LogHealth {
            dir: log.sink.dir().display().to_string(),
            ok: s.error.is_none(),
            error: s.error,
            written: s.written,
            pending: s.pending,
            lost: s.lost,
            failures: s.failures,
        }
    });
    let degraded = decision_log.as_ref().is_some_and(|l| !l.ok || l.lost > 0);
    Json(Health {
        status: if degraded { "degraded" } else { "ok" }.into(),
        plugins: state.registry().slots().len(),
        decision_log,
    })
}

/// Logs one customer's plugin answers, when the service keeps a decision log, and returns each
/// answer as JSON with its decision id.
fn logged_values(
    state: &AppState,
    now: Timestamp,
    customer: &str,
    input: Option<&crate::decisions::InputOf>,
    results: &[(Arc<Plugin>, RecordResult)],
) -> Vec<serde_json::Value> {
    let mut values: Vec<serde_json::Value> = results
        .iter()
        .map(|(p, r)| crate::pipeline::output::result_value(p, r))
        .collect();
    if let (Some(log), Some(input)) = (state.decision_log(), input) {
        let ids = log.plugin_calls(now, customer, input, results.iter().map(|(p, r)| (&**p, r)));
        for (v, id) in values.iter_mut().zip(ids) {
            // Its own key: a rest policy's answer already says `decision` (its verdict).
            v["decision_id"] = id.into();
        }
    }
    values
}

#[utoipa::path(get, path = "/v1/plugins", responses((status = 200, body = PluginList)))]
pub(super) async fn list_plugins(State(state): State<AppState>) -> Json<PluginList> {
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
pub(super) async fn get_plugin(
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
    #[schema(value_type = Option<Object>)]
    params: Option<Box<RawValue>>,
    /// The proposed message (rest policies only).
    #[schema(value_type = Option<Object>)]
    message: Option<Box<RawValue>>,
    /// The triggering event (journey rules only).
    #[schema(value_type = Option<Object>)]
    event: Option<Box<RawValue>>,
}

/// What the plugins read, and the fields the decision log keeps when the service keeps one.
pub(super) fn logged_reads(state: &AppState, reads: regua_sdk::Fields) -> regua_sdk::Fields {
    match state.decision_log() {
        Some(log) => reads.union(log.reads()),
        None => reads,
    }
}

/// What the decision log keeps of `customer`, when the service keeps one; a kept field longer
/// than the log keeps is refused, named.
pub(super) fn logged_input(
    state: &AppState,
    customer: &regua_sdk::Record,
) -> Result<Option<crate::decisions::InputOf>, ApiError> {
    let Some(log) = state.decision_log() else {
        return Ok(None);
    };
    log.check(customer)
        .map_err(|e| ApiError::bad(format!("field `customer`: {e}")))?;
    Ok(Some(log.input_of(customer)))
}

/// The request's `customer`, read for what its plugins read, as a batch reads a line.
pub(super) fn parse_customer_field(
    raw: &RawValue,
    reads: regua_sdk::Fields,
) -> Result<regua_sdk::Record, ApiError> {
    regua_sdk::record::parse_customer_reading_at(raw.get(), Some("customer"), reads)
        .map_err(ApiError::bad)
}

pub(super) struct Extras {
    pub(super) message: Option<Message>,
    pub(super) event: Option<Event>,
}

pub(super) fn extras(
    message: Option<&RawValue>,
    event: Option<&RawValue>,
) -> Result<Extras, ApiError> {
    Ok(Extras {
        message: message.map(|m| parse_field(m, "message")).transpose()?,
        event: event.map(|e| parse_field(e, "event")).transpose()?,
    })
}

pub(super) fn inputs_for(
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

pub(super) fn check_kind(plugin: &Plugin, x: &Extras) -> Result<(), ApiError> {
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
    Ok(())
}

/// One customer through `plugins`, as a batch of one: per plugin, its answer or why it refused
/// the call.
async fn evaluate_one(
    state: &AppState,
    plugins: Plugins,
    customer: regua_sdk::Record,
) -> Result<Vec<(Arc<Plugin>, Result<RecordResult, CallError>)>, ApiError> {
    let answers = state
        .evaluator()
        .run(move |w| plugins.evaluate_one(w, customer))
        .await?;
    Ok(answers)
}

#[utoipa::path(post, path = "/v1/plugins/{name}/evaluate", params(("name" = String, Path, description = "the plugin's name")), request_body = EvaluateRequest,
    responses((status = 200, description = "the kind's result, with `plugin`, `version` and reasons", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 403, description = "from a web page of another origin", body = ErrorBody), (status = 415, body = ErrorBody), (status = 408, description = "the body did not arrive in time", body = ErrorBody), (status = 503, description = "no room in the body budget: retry", body = ErrorBody)))]
pub(super) async fn evaluate(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&state, body).await?;
    state.log_gate()?;
    let plugin = plugin(&state, &name)?;
    let req: EvaluateRequest = parse_body(&bytes)?;
    let x = extras(req.message.as_deref(), req.event.as_deref())?;
    check_kind(&plugin, &x)?;
    let now = parse_now(req.now.as_deref())?;
    let params = req
        .params
        .map_or_else(|| "{}".to_owned(), |p| p.get().to_owned());
    let eval = Evaluation::new(
        plugin.clone(),
        &inputs_for(&state, &plugin, now, params, &x),
    )?;
    let plugins = Plugins::new(vec![eval]);
    let customer = parse_customer_field(&req.customer, logged_reads(&state, plugins.reads()))?;
    let input = logged_input(&state, &customer)?;
    let id = customer.id.clone();
    let (_, result) = evaluate_one(&state, plugins, customer).await?.remove(0);
    let result = result?;
    state.metrics().evaluated_one(plugin.name(), &result);
    let results = [(plugin, result)];
    let value = logged_values(&state, now, &id, input.as_ref(), &results)
        .pop()
        .expect("one answer");
    match &results[0].1 {
        Ok(_) => Ok(Json(value).into_response()),
        Err(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "plugin_failed",
            match value.get("decision_id").and_then(|d| d.as_str()) {
                Some(d) => format!("{e} (decision {d})"),
                None => e.clone(),
            },
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
    #[schema(value_type = Option<Object>)]
    params: BTreeMap<String, Box<RawValue>>,
    /// The proposed message, for the rest policies among the plugins.
    #[schema(value_type = Option<Object>)]
    message: Option<Box<RawValue>>,
    /// The triggering event, for the journey rules among the plugins.
    #[schema(value_type = Option<Object>)]
    event: Option<Box<RawValue>>,
}

#[utoipa::path(post, path = "/v1/evaluate", request_body = MultiRequest,
    responses((status = 200, description = "`{\"id\":…,\"results\":{\"<plugin>\":{…}}}`; a plugin that failed on the customer has `error` in its entry", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 403, description = "from a web page of another origin", body = ErrorBody), (status = 415, body = ErrorBody), (status = 408, description = "the body did not arrive in time", body = ErrorBody), (status = 503, description = "no room in the body budget: retry", body = ErrorBody)))]
pub(super) async fn evaluate_many(
    State(state): State<AppState>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&state, body).await?;
    state.log_gate()?;
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
    let plugins = Plugins::new(evals);
    let customer = parse_customer_field(&req.customer, logged_reads(&state, plugins.reads()))?;
    let input = logged_input(&state, &customer)?;
    let id = customer.id.clone();
    // A plugin that refuses the call fails alone: its entry carries the error.
    let results: Vec<_> = evaluate_one(&state, plugins, customer)
        .await?
        .into_iter()
        .map(|(p, r)| (p, r.unwrap_or_else(|e| Err(e.to_string()))))
        .collect();
    let mut map = serde_json::Map::new();
    let values = logged_values(&state, now, &id, input.as_ref(), &results);
    for ((p, r), v) in results.iter().zip(values) {
        state.metrics().evaluated_one(p.name(), r);
        map.insert(p.name().to_owned(), v);
    }
    Ok(Json(serde_json::json!({"id": id, "results": map})).into_response())
}
