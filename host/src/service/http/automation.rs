//! The journey runtime's endpoints (`regua serve --state`): inputs in, customers, the outbox and
//! its delivery reports, and the clock (docs/RUNTIME.md).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, AppState, read_body};
use crate::automation::replay::{Answer, read_input};
use crate::automation::store::Ack;
use crate::automation::{Entries, Input};
use crate::service::automation::{Automation, MAX_AHEAD};

fn runtime(state: &AppState) -> Result<Arc<Automation>, ApiError> {
    state.automation().cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "the journey runtime is off: start the service with --state DIR (and --campaigns)",
        )
    })
}

fn internal(e: anyhow::Error) -> ApiError {
    ApiError::internal(format!("the runtime's store: {e:#}"))
}

/// Runs `f` on the runtime's store off the async threads (it may wait for a batch).
async fn on_store<R: Send + 'static>(
    auto: &Arc<Automation>,
    f: impl FnOnce(&mut dyn crate::automation::Store) -> anyhow::Result<R> + Send + 'static,
) -> Result<R, ApiError> {
    let me = auto.clone();
    tokio::task::spawn_blocking(move || me.with_store(f))
        .await
        .map_err(ApiError::internal)?
        .map_err(internal)
}

/// A body's lines, numbered from 1, and whether it was a single object.
type Lines<'a> = (Vec<(u64, &'a str)>, bool);

/// Splits a body into its non-empty lines, numbered from 1, and says whether it was one JSON
/// object (answered with one object rather than NDJSON).
fn lines(bytes: &[u8]) -> Result<Lines<'_>, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ApiError::bad(format!("the body is not UTF-8 (byte {})", e.valid_up_to())))?;
    let lines: Vec<(u64, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i as u64 + 1, l))
        .collect();
    if lines.is_empty() {
        return Err(ApiError::bad(
            "the body is empty: send one input (a JSON object) or NDJSON, one a line",
        ));
    }
    let single = lines.len() == 1;
    // A pretty-printed single object spans lines: read the whole body as that object.
    if !single && serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v.is_object()) {
        return Ok((vec![(1, text)], true));
    }
    Ok((lines, single))
}

/// One answer per line: a JSON object for a body of one object, NDJSON otherwise.
fn answer_lines<T: serde::Serialize>(answers: Vec<T>, single: bool) -> Response {
    if single {
        let a = answers.into_iter().next().expect("one answer");
        return axum::Json(serde_json::to_value(a).expect("an answer is JSON")).into_response();
    }
    let mut out = Vec::new();
    for a in answers {
        serde_json::to_writer(&mut out, &a).expect("writing to a Vec");
        out.push(b'\n');
    }
    ([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response()
}

#[utoipa::path(post, path = "/v1/events",
    request_body(content = String, content_type = "application/x-ndjson", description = "one input (a JSON object), or NDJSON: `{\"id\",\"customer\",\"at\",\"name\",\"props\"}` for an event; `transaction`, `inbound`, `consent` or `profile` instead of `name` for the others (docs/RUNTIME.md)"),
    responses((status = 200, description = "per input, in order: `applied` (with the outbox keys it planned), `duplicate`, or `refused` with the error naming the field; every applied input is committed before this answer", body = String),
        (status = 400, body = super::ErrorBody), (status = 404, description = "the runtime is off", body = super::ErrorBody)))]
pub(super) async fn post_events(
    State(state): State<AppState>,
    body: Body,
) -> Result<Response, ApiError> {
    let auto = runtime(&state)?;
    let bytes = read_body(&state, body).await?;
    let (lines, single) = lines(&bytes)?;
    let now = auto.clock.now();
    let ahead = regua_sdk::Duration::millis(MAX_AHEAD.as_millis() as i64);
    let mut answers: Vec<Answer> = Vec::with_capacity(lines.len());
    // The inputs to apply, with the place of their answer.
    let mut inputs: Vec<(usize, Input)> = Vec::new();
    for (line, text) in lines {
        let status = match read_input(text) {
            Err((id, error)) => {
                answers.push(Answer::refused(line, id, error));
                continue;
            }
            // An input without `at` is stamped when it is applied (its customer claimed), so
            // concurrent requests never make one another late.
            Ok(input) => match input.at {
                Some(at) if at > now + ahead => Answer::refused(
                    line,
                    Some(input.id),
                    format!(
                        "field `at`: {at} is ahead of the service's clock ({now}) by more than \
                         {} s",
                        MAX_AHEAD.as_secs()
                    ),
                ),
                _ => {
                    inputs.push((answers.len(), input));
                    // Replaced by what applying it answers.
                    Answer::refused(line, None, String::new())
                }
            },
        };
        answers.push(status);
    }
    let me = auto.clone();
    let (slots, inputs): (Vec<usize>, Vec<Input>) = inputs.into_iter().unzip();
    let ids: Vec<String> = inputs.iter().map(|i| i.id.clone()).collect();
    // Applied with the other requests waiting at the time, if any.
    let (ticket, statuses) = auto.submit(inputs);
    let evaluator = state.evaluator();
    let threads = evaluator.threads();
    evaluator
        .run(move |w| me.apply_waiting(w, ticket, threads))
        .await?;
    let statuses = statuses
        .await
        .map_err(|_| ApiError::internal("the inputs were dropped: a worker panicked"))?
        .map_err(|e| internal(anyhow::anyhow!(e)))?;
    state.metrics().inputs("http", &statuses);
    for ((slot, id), status) in slots.into_iter().zip(ids).zip(statuses) {
        answers[slot].id = Some(id);
        answers[slot].status = status;
    }
    Ok(answer_lines(answers, single))
}

#[utoipa::path(post, path = "/v1/customers",
    request_body(content = String, content_type = "application/x-ndjson", description = "customer records, one a line (or one JSON object)"),
    responses((status = 200, description = "per line: `imported`, or `refused` with the error; a known customer is merged (docs/RUNTIME.md)", body = String),
        (status = 400, body = super::ErrorBody), (status = 404, description = "the runtime is off", body = super::ErrorBody)))]
pub(super) async fn post_customers(
    State(state): State<AppState>,
    body: Body,
) -> Result<Response, ApiError> {
    let auto = runtime(&state)?;
    let bytes = read_body(&state, body).await?;
    let (lines, single) = lines(&bytes)?;
    let mut answers = Vec::with_capacity(lines.len());
    let mut records = Vec::new();
    for (line, text) in lines {
        match regua_sdk::record::parse_customer(text) {
            Ok(r) => {
                answers.push(serde_json::json!({"line": line, "id": r.id, "status": "imported"}));
                records.push(r);
            }
            Err(e) => {
                let id = crate::pipeline::record::salvage_id(text.as_bytes());
                answers.push(
                    serde_json::json!({"line": line, "id": id, "status": "refused", "error": e}),
                );
            }
        }
    }
    tokio::task::spawn_blocking(move || auto.import(&records))
        .await
        .map_err(ApiError::internal)?
        .map_err(internal)?;
    Ok(answer_lines(answers, single))
}

#[utoipa::path(get, path = "/v1/customers/{id}",
    params(("id" = String, Path, description = "the customer's id")),
    responses((status = 200, description = "the record, its journey instances, next timers, outbox entries and latest decisions", body = Object),
        (status = 404, body = super::ErrorBody)))]
pub(super) async fn get_customer(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let auto = runtime(&state)?;
    let view = on_store(&auto, move |s| {
        let Some(stored) = s.customer(&id)? else {
            return Ok(None);
        };
        Ok(Some(serde_json::json!({
            "id": id,
            "clock": stored.clock,
            "journeys": stored.record.journeys,
            "timers": s.timers_of(&id)?,
            "outbox": s.outbox(Entries::Of(&id), 0, 200)?,
            "decisions": s.decisions_of(&id, 50)?,
            "record": stored.record,
        })))
    })
    .await?;
    match view {
        Some(v) => Ok(axum::Json(v).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no customer with this id in the runtime's store",
        )),
    }
}

/// Query parameters of `GET /v1/outbox`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OutboxQuery {
    /// Entries after this `seq` (a cursor for paging); default 0.
    after: Option<i64>,
    /// At most this many (1–10000); default 1000.
    limit: Option<usize>,
    /// `due` (default): pending entries whose `send_at` has come, to deliver; `all`: every
    /// entry, delivered, failed and not yet due included.
    state: Option<String>,
}

#[utoipa::path(get, path = "/v1/outbox", params(OutboxQuery),
    responses((status = 200, description = "`{\"entries\":[…],\"next\":SEQ}`: pass `next` as `after` for the next page; an entry stays due until it is acknowledged", body = Object),
        (status = 400, body = super::ErrorBody), (status = 404, description = "the runtime is off", body = super::ErrorBody)))]
pub(super) async fn get_outbox(
    State(state): State<AppState>,
    Query(q): Query<OutboxQuery>,
) -> Result<Response, ApiError> {
    let auto = runtime(&state)?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad(format!(
            "`limit`: {limit} is not from 1 to 10000"
        )));
    }
    let which = match q.state.as_deref() {
        None | Some("due") => Entries::Due(auto.clock.now()),
        Some("all") => Entries::All,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "`state`: `{other}` is neither `due` nor `all`"
            )));
        }
    };
    let after = q.after.unwrap_or(0);
    let entries = on_store(&auto, move |s| s.outbox(which, after, limit)).await?;
    let next = entries.last().map_or(after, |e| e.seq);
    Ok(axum::Json(serde_json::json!({"entries": entries, "next": next})).into_response())
}

#[utoipa::path(post, path = "/v1/outbox/ack",
    request_body(content = Vec<Ack>, description = "delivery reports: `[{\"key\",\"state\":\"delivered\"|\"failed\",\"detail\"}]`, or one report"),
    responses((status = 200, description = "per report, in order: `{\"key\",\"found\"}`", body = Object),
        (status = 400, body = super::ErrorBody), (status = 404, description = "the runtime is off", body = super::ErrorBody)))]
pub(super) async fn post_ack(
    State(state): State<AppState>,
    body: Body,
) -> Result<Response, ApiError> {
    let auto = runtime(&state)?;
    let bytes = read_body(&state, body).await?;
    let acks: Vec<Ack> = if bytes.trim_ascii_start().starts_with(b"[") {
        super::parse_body(&bytes)?
    } else {
        vec![super::parse_body(&bytes)?]
    };
    let now = auto.clock.now();
    let keys: Vec<String> = acks.iter().map(|a| a.key.clone()).collect();
    let found = on_store(&auto, move |s| s.ack(&acks, now)).await?;
    let out: Vec<serde_json::Value> = keys
        .into_iter()
        .zip(found)
        .map(|(key, found)| serde_json::json!({"key": key, "found": found}))
        .collect();
    Ok(axum::Json(serde_json::Value::Array(out)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ClockRequest {
    /// The new instant (RFC 3339), not before the clock.
    now: String,
}

#[utoipa::path(post, path = "/v1/clock", request_body = ClockRequest,
    responses((status = 200, description = "`{\"now\",\"fired\"}`: the clock moved and the timers due by then fired (a service started with --manual-clock only)", body = Object),
        (status = 400, body = super::ErrorBody), (status = 404, description = "the runtime is off", body = super::ErrorBody)))]
pub(super) async fn post_clock(
    State(state): State<AppState>,
    body: Body,
) -> Result<Response, ApiError> {
    let auto = runtime(&state)?;
    let bytes = read_body(&state, body).await?;
    let req: ClockRequest = super::parse_body(&bytes)?;
    let to = regua_sdk::Timestamp::parse(&req.now)
        .map_err(|e| ApiError::bad(format!("field `now`: {e}")))?;
    auto.set_clock(to).map_err(ApiError::bad)?;
    let me = auto.clone();
    let fired = state
        .evaluator()
        .run(move |w| me.fire_due(w, to, usize::MAX, true))
        .await?
        .map_err(internal)?;
    Ok(axum::Json(serde_json::json!({"now": to, "fired": fired})).into_response())
}
