//! The batch endpoints: NDJSON streamed both ways through the evaluator, with the adapter that
//! campaign runs share.

use super::plugins::{check_kind, extras, inputs_for};
use super::*;
use crate::pipeline::evaluator::ProcessChunk;

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
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 403, description = "from a web page of another origin", body = ErrorBody), (status = 415, body = ErrorBody)))]
pub(super) async fn batch_many(
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
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 403, description = "from a web page of another origin", body = ErrorBody), (status = 415, body = ErrorBody)))]
pub(super) async fn batch_one(
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
pub(super) async fn respond_batch(
    state: AppState,
    prepared: Result<Arc<Plugins>, ApiError>,
    body: Body,
    q: &BatchQuery,
) -> Result<Response, ApiError> {
    let (repeats, format) = (
        q.allow_repeated_ids.unwrap_or(false),
        q.format.unwrap_or_default(),
    );
    match prepared {
        Ok(plugins) => Ok(stream_batch(state, plugins, body, repeats, format)),
        Err(e) => {
            let _ = axum::body::to_bytes(body, state.0.config.max_body).await;
            Err(e)
        }
    }
}

pub(super) async fn prepare_batch(
    state: &AppState,
    plugins: Vec<Arc<Plugin>>,
    params_of: impl Fn(&str) -> Option<String>,
    q: &BatchQuery,
    strict_kind: bool,
) -> Result<Arc<Plugins>, ApiError> {
    state.log_gate()?;
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
        }
        let params = params_of(p.name()).unwrap_or_else(|| "{}".into());
        let eval = Evaluation::new(p.clone(), &inputs_for(state, p, now, params, &x))?;
        // CSV shows no reasons, and without a decision log nothing else keeps them.
        evals.push(match q.format.unwrap_or_default() {
            Format::Csv if state.recorder().is_none() => eval.without_reasons(),
            _ => eval,
        });
    }
    // A plugin that fails its check (bad parameters, a trap) answers its error on every line
    // while the others answer; when every plugin fails, the request is refused before any line
    // is read.
    let plugins = Plugins::new(evals).logging(state.recorder(), now);
    let plugins = state.evaluator().run(move |w| plugins.check(w)).await??;
    Ok(Arc::new(plugins))
}

/// Streams a batch of plugins: see [`stream_lines`].
pub(super) fn stream_batch(
    state: AppState,
    plugins: Arc<Plugins>,
    body: Body,
    allow_repeated_ids: bool,
    format: Format,
) -> Response {
    let mut collator = batch::Collator::new(&plugins, allow_repeated_ids, format);
    let header = collator.header(&plugins);
    let metrics = state.metrics().clone();
    let process_plugins = plugins.clone();
    let process = Arc::new(move |w: &mut crate::Worker, chunk| {
        batch::process(w, &process_plugins, chunk, format)
    });
    let take = move |done: batch::Done| {
        let (out, tallies) = collator.take(done);
        for (e, t) in plugins.evals().iter().zip(&tallies) {
            metrics.evaluated_tally(e.plugin.name(), t);
        }
        out
    };
    stream_lines(state, body, header, format.content_type(), process, take)
}

/// The service's side of the [`Evaluator`]: the request body is fed to it as it arrives, and
/// the response streams `header`, then `take` of each chunk's answer in input order, so neither
/// the request nor the response is ever held whole.
pub(super) fn stream_lines<D: Send + 'static>(
    state: AppState,
    body: Body,
    header: Vec<u8>,
    content_type: &'static str,
    process: Arc<ProcessChunk<D>>,
    take: impl FnMut(D) -> Vec<u8> + Send + 'static,
) -> Response {
    let (mut feed, answers) = state.evaluator().stream(state.chunking(), process);
    tokio::spawn(async move {
        let mut pieces = body.into_data_stream();
        while let Some(piece) = pieces.next().await {
            let Ok(piece) = piece else {
                return; // the client went away
            };
            if feed.push(&piece).await.is_err() {
                return;
            }
        }
        let _ = feed.finish().await;
    });
    let head = futures_util::stream::iter(
        (!header.is_empty()).then(|| Ok::<_, std::io::Error>(Bytes::from(header))),
    );
    let answers = futures_util::stream::unfold(Some((answers, take)), |state| async move {
        let (mut answers, mut take) = state?;
        match answers.next().await? {
            Ok(done) => Some((Ok(Bytes::from(take(done))), Some((answers, take)))),
            // The stream ends with an error, so the client sees it did not get every line.
            Err(e) => Some((Err(std::io::Error::other(e)), None)),
        }
    });
    let mut response = Response::new(Body::from_stream(head.chain(answers)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
