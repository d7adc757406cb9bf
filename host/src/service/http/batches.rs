//! The batch endpoints: NDJSON streamed both ways through the evaluation pool, and the chunk
//! loop that campaign runs share.

use super::plugins::{check_kind, extras, inputs_for};
use super::*;

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
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
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

pub(super) async fn prepare_batch(
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
pub(super) fn stream_batch(
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
pub(super) fn stream_chunks<D: Send + 'static>(
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
