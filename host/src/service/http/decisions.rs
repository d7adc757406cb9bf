//! `GET /v1/decisions/{id}`: one decision of the log, as logged and in words; and
//! `POST /v1/backtest`: what a rest policy would have done to the messages sent.

use super::*;
use crate::decisions::Entry;
use crate::decisions::backtest::{self, Replay};

/// A decision of the log and what it means.
#[derive(Serialize, ToSchema)]
pub struct Explained {
    /// The log line.
    #[schema(value_type = Object)]
    entry: Entry,
    /// The decision in words, as `regua decisions show` prints it.
    explanation: String,
}

#[utoipa::path(get, path = "/v1/decisions/{id}",
    params(("id" = String, Path, description = "the decision's id (the `decision_id` field of an answer)")),
    responses((status = 200, body = Explained), (status = 404, body = ErrorBody)))]
pub(super) async fn get_decision(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Explained>, ApiError> {
    let log = state.decision_log().cloned().ok_or_else(no_log)?;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ApiError::bad(
            "the decision id is made of hex digits and dashes (the `decision_id` field of an answer)",
        ));
    }
    // At most two lookups read the log at once; the others wait their turn, holding nothing.
    static LOOKUPS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
    let _turn = LOOKUPS.acquire().await.map_err(ApiError::internal)?;
    let wanted = id.clone();
    let found = tokio::task::spawn_blocking(move || {
        // A decision answered a moment ago may still be on its way to the file.
        log.sink.sync();
        crate::decisions::find(log.sink.dir(), &wanted)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    match found {
        Some(entry) => Ok(Json(Explained {
            explanation: entry.explain(),
            entry,
        })),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no decision `{id}` in the decision log"),
        )),
    }
}

/// `GET /v1/decisions`: the latest decisions.
#[derive(Serialize, ToSchema)]
pub struct Latest {
    /// Newest first.
    #[schema(value_type = Vec<Object>)]
    decisions: Vec<Entry>,
}

/// Query parameters of `GET /v1/decisions`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LatestQuery {
    /// How many (1 to 200; default 20).
    limit: Option<usize>,
}

fn no_log() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "this service keeps no decision log (start it with --decision-log DIR)",
    )
}

#[utoipa::path(get, path = "/v1/decisions", params(LatestQuery),
    responses((status = 200, body = Latest), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn latest_decisions(
    State(state): State<AppState>,
    Query(q): Query<LatestQuery>,
) -> Result<Json<Latest>, ApiError> {
    let log = state.decision_log().cloned().ok_or_else(no_log)?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad(format!("`limit` is {limit}: give 1 to 200")));
    }
    let decisions = tokio::task::spawn_blocking(move || {
        log.sink.sync();
        crate::decisions::latest(log.sink.dir(), limit)
    })
    .await
    .map_err(ApiError::internal)?
    .or_else(|e| match e.kind() {
        // Nothing decided yet: the folder is made with the first decision.
        std::io::ErrorKind::NotFound => Ok(Vec::new()),
        _ => Err(ApiError::internal(e)),
    })?;
    Ok(Json(Latest { decisions }))
}

/// Query parameters of `POST /v1/backtest`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BacktestQuery {
    /// The rest policy, by name (or give `campaign`, or neither for the company's policy).
    policy: Option<String>,
    /// The policy's parameters (JSON), with `policy`.
    params: Option<String>,
    /// A campaign served: its rest policy, proposing only its messages again.
    campaign: Option<String>,
    /// The period's start (RFC 3339, inclusive).
    from: String,
    /// Its end (RFC 3339, exclusive).
    to: String,
    /// `day` (default), `hour` or a duration (`6h`).
    step: Option<String>,
    /// Example customers per rule (default 3).
    examples: Option<usize>,
}

fn backtest_replay(state: &AppState, q: &BacktestQuery) -> Result<Replay, ApiError> {
    let time = |t: &str, name: &str| {
        Timestamp::parse(t).map_err(|e| ApiError::bad(format!("query parameter `{name}`: {e}")))
    };
    let (from, to) = (time(&q.from, "from")?, time(&q.to, "to")?);
    let step = backtest::parse_step(q.step.as_deref().unwrap_or("day"))
        .map_err(|e| ApiError::bad(format!("query parameter `step`: {e}")))?;
    backtest::check_period(from, to, step).map_err(ApiError::bad)?;
    let mut own: BTreeMap<String, (String, String)> = BTreeMap::new();
    let (name, params) = match (&q.policy, &q.campaign) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad(
                "query parameters `policy` and `campaign` exclude each other",
            ));
        }
        (Some(p), None) => {
            let params = q.params.clone().unwrap_or_else(|| "{}".into());
            serde_json::from_str::<serde_json::Value>(&params)
                .map_err(|e| ApiError::bad(format!("query parameter `params`: {e}")))?;
            (p.clone(), params)
        }
        (None, campaign) => {
            if q.params.is_some() {
                return Err(ApiError::bad(
                    "query parameter `params` goes with `policy`; a campaign's policy has its own",
                ));
            }
            let current = state.campaigns().current();
            let r = backtest::campaign_policy(&current, campaign.as_deref())
                .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "not_found", e))?;
            own = backtest::own_policies(&current, campaign.as_deref());
            (r.plugin.clone(), r.params.to_string())
        }
    };
    let rest = |name: &str| {
        let policy = plugin(state, name)?;
        if policy.kind() != Kind::Rest {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "wrong_kind",
                format!(
                    "`{name}` is a {} plugin: a backtest replays a rest policy",
                    policy.kind()
                ),
            ));
        }
        Ok(policy)
    };
    let policy = rest(&name)?;
    let own_policies = own
        .into_iter()
        .map(|(code, (p, params))| Ok((code, (rest(&p)?, params))))
        .collect::<Result<_, ApiError>>()?;
    Ok(Replay {
        policy,
        params,
        default_tz: state.0.config.default_tz.clone(),
        from,
        to,
        step,
        campaign: q.campaign.clone(),
        own_policies,
        examples: q.examples.unwrap_or(3).min(100),
    })
}

#[utoipa::path(post, path = "/v1/backtest", params(BacktestQuery),
    request_body(content = String, content_type = "application/x-ndjson", description = "one customer record per line, with its contact history"),
    responses((status = 200, description = "what the policy would have done to the messages sent, as `regua backtest --json`", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 403, description = "from a web page of another origin", body = ErrorBody), (status = 415, body = ErrorBody)))]
pub(super) async fn run_backtest(
    State(state): State<AppState>,
    Query(q): Query<BacktestQuery>,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let bytes = read_body(&state, body).await?;
    let replay = backtest_replay(&state, &q)?;
    let text = String::from_utf8(bytes.to_vec()).map_err(|e| {
        ApiError::bad(format!(
            "the request body is not UTF-8 (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let report = state
        .evaluator()
        .run(move |w| {
            let mut report = replay.report();
            for (n, line) in text.lines().enumerate() {
                replay.line(w, &mut report, n as u64 + 1, line);
            }
            report
        })
        .await?;
    Ok(Json(
        serde_json::to_value(report).expect("a report is JSON"),
    ))
}
