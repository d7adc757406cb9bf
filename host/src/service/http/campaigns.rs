//! The campaign endpoints: list and read campaigns, decide for one customer (one campaign or
//! every active one), and run every campaign over a stream of customers as the CLI does.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::batches::stream_lines;
use super::{ApiError, AppState, parse_body, parse_field, parse_now, read_body};
use crate::pipeline::campaign::{self, Campaign, FileError, RunCollator, RunInputs};
use crate::pipeline::evaluator::Chunk;

/// `GET /v1/campaigns`.
#[derive(Serialize, ToSchema)]
pub struct CampaignList {
    /// The campaigns served, in run order.
    campaigns: Vec<CampaignInfo>,
    /// Files that did not load, or campaigns that failed a check.
    errors: Vec<FileError>,
}

/// A campaign served, with whether it is active now.
#[derive(Serialize, ToSchema)]
pub struct CampaignInfo {
    /// The definition and its file.
    #[serde(flatten)]
    campaign: Campaign,
    /// Whether it is in its active window now.
    active: bool,
}

fn info(c: &Campaign) -> CampaignInfo {
    let now = crate::wall_clock();
    CampaignInfo {
        active: c.active_at(now),
        campaign: c.clone(),
    }
}

#[utoipa::path(get, path = "/v1/campaigns",
    responses((status = 200, description = "the campaigns in run order, and the files with problems", body = CampaignList)))]
pub(super) async fn list_campaigns(State(state): State<AppState>) -> Json<CampaignList> {
    let current = state.0.campaigns.current();
    Json(CampaignList {
        campaigns: current.campaigns.iter().map(info).collect(),
        errors: current.errors.clone(),
    })
}

#[utoipa::path(get, path = "/v1/campaigns/{code}",
    params(("code" = String, Path, description = "the campaign's briefing code")),
    responses((status = 200, body = CampaignInfo), (status = 404, body = super::ErrorBody)))]
pub(super) async fn get_campaign(
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> Result<Json<CampaignInfo>, ApiError> {
    state
        .0
        .campaigns
        .current()
        .get(&code)
        .map(|c| Json(info(c)))
        .ok_or_else(|| no_campaign(&code))
}

fn no_campaign(code: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no campaign `{code}` is served (see GET /v1/campaigns)"),
    )
}

/// `POST /v1/decide` and `POST /v1/campaigns/{code}/decide`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideRequest {
    /// The customer record.
    #[schema(value_type = Object)]
    customer: Box<RawValue>,
    /// The instant (RFC 3339); default: the service's clock.
    now: Option<String>,
    /// The event that triggered the decision, given to the journeys.
    #[schema(value_type = Option<Object>)]
    event: Option<Box<RawValue>>,
}

async fn decide(state: AppState, only: Option<String>, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(&state, body).await?;
    state.log_gate()?;
    let req: DecideRequest = parse_body(&bytes)?;
    let now = parse_now(req.now.as_deref())?;
    let event = req
        .event
        .as_deref()
        .map(|e| parse_field(e, "event"))
        .transpose()?;
    let inputs = RunInputs {
        now,
        default_tz: state.0.config.default_tz.clone(),
        event,
    };
    let plan = match state.0.campaigns.plan(only.as_deref(), inputs) {
        Some(plan) => plan,
        None => return Err(no_campaign(only.as_deref().unwrap_or_default())),
    };
    // One customer is a batch of one: read for what the plan's plugins read, as a line is.
    let reads = super::plugins::logged_reads(&state, plan.reads());
    let customer = super::plugins::parse_customer_field(&req.customer, reads)?;
    let log = state.decision_log().cloned();
    let input = super::plugins::logged_input(&state, &customer)?;
    let plan = Arc::new(plan);
    let run_plan = plan.clone();
    let mut runs = state
        .evaluator()
        .run(move |w| run_plan.run(w, vec![customer]))
        .await?;
    let mut run = runs.pop().expect("one customer, one run");
    if let (Some(log), Some(input)) = (log, input) {
        let (lines, count) =
            crate::pipeline::recorder::Recorder::campaign_lines(&*log, &plan, &mut run, input);
        log.sink.record(lines, count);
    }
    state.metrics().decided(&run.decisions);
    Ok(Json(serde_json::to_value(run.answer()).expect("an answer is JSON")).into_response())
}

#[utoipa::path(post, path = "/v1/decide", request_body = DecideRequest,
    responses((status = 200, description = "what to send this customer now: `{\"id\",\"messages\",\"decisions\",\"journeys\"}`, every active campaign in run order, as a line of `regua campaign run`", body = Object),
        (status = 400, body = super::ErrorBody), (status = 403, description = "from a web page of another origin", body = super::ErrorBody), (status = 415, body = super::ErrorBody), (status = 408, description = "the body did not arrive in time", body = super::ErrorBody), (status = 503, description = "no room in the body budget: retry", body = super::ErrorBody)))]
pub(super) async fn decide_all(
    State(state): State<AppState>,
    body: Body,
) -> Result<Response, ApiError> {
    decide(state, None, body).await
}

#[utoipa::path(post, path = "/v1/campaigns/{code}/decide", request_body = DecideRequest,
    params(("code" = String, Path, description = "the campaign's briefing code")),
    responses((status = 200, description = "the campaign's decision for this customer, with the messages to send now or why not", body = Object),
        (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 403, description = "from a web page of another origin", body = super::ErrorBody), (status = 415, body = super::ErrorBody), (status = 408, description = "the body did not arrive in time", body = super::ErrorBody), (status = 503, description = "no room in the body budget: retry", body = super::ErrorBody)))]
pub(super) async fn decide_one(
    State(state): State<AppState>,
    Path(code): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    decide(state, Some(code), body).await
}

/// Query parameters of `POST /v1/campaigns/run`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    /// The instant (RFC 3339); default: the service's clock.
    now: Option<String>,
    /// `true` to decide every line even when its customer id was on an earlier line.
    allow_repeated_ids: Option<bool>,
}

#[utoipa::path(post, path = "/v1/campaigns/run", params(RunQuery),
    request_body(content = String, content_type = "application/x-ndjson", description = "one customer record per line"),
    responses((status = 200, content_type = "application/x-ndjson",
        description = "one line per input line, in order, as `regua campaign run` writes them", body = String),
        (status = 400, body = super::ErrorBody), (status = 403, description = "from a web page of another origin", body = super::ErrorBody), (status = 415, body = super::ErrorBody)))]
pub(super) async fn run_campaigns(
    State(state): State<AppState>,
    Query(q): Query<RunQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let inputs = match state.log_gate().and(parse_now(q.now.as_deref())) {
        Ok(now) => RunInputs {
            now,
            default_tz: state.0.config.default_tz.clone(),
            event: None,
        },
        Err(e) => {
            let _ = axum::body::to_bytes(body, state.0.config.max_body).await;
            return Err(e);
        }
    };
    let inputs_now = inputs.now;
    let plan = Arc::new(
        state
            .0
            .campaigns
            .plan(None, inputs)
            .expect("every campaign, even none")
            .logging(state.recorder()),
    );
    let mut collator = RunCollator::new(&plan, q.allow_repeated_ids.unwrap_or(false));
    let metrics = state.metrics().clone();
    let process = Arc::new(move |w: &mut crate::Worker, chunk: Chunk| {
        let lines = campaign::process(w, &plan, chunk);
        for l in &lines {
            if let Some(run) = &l.run {
                metrics.decided(&run.decisions);
            }
        }
        lines
    });
    let mut tracker = RunTracker::start(&state, inputs_now);
    let take = move |lines| {
        let out = collator.take(lines).0;
        tracker.update(&collator.report);
        out
    };
    Ok(stream_lines(
        state,
        body,
        Vec::new(),
        "application/x-ndjson",
        process,
        take,
    ))
}

/// `GET /v1/runs/latest`: the funnel of the latest `POST /v1/campaigns/run`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LatestRun {
    /// The run's number since the service started (1 for the first).
    run: u64,
    /// The instant it decided for.
    now: String,
    /// When it started, by the service's clock.
    started_at: String,
    /// When its last line was answered (or its client went away); absent while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<String>,
    /// The funnel of the lines answered so far, as `regua campaign run --report` counts it.
    report: campaign::Report,
}

/// Keeps the service's latest run up to date as a run's chunks are answered, and marks it
/// finished when the run's stream ends.
struct RunTracker {
    state: AppState,
    run: LatestRun,
}

impl RunTracker {
    fn start(state: &AppState, now: regua_sdk::Timestamp) -> Self {
        let mut latest = state.0.latest_run.lock().expect("latest run lock");
        let run = latest.as_ref().map_or(1, |r| r.run + 1);
        let tracker = RunTracker {
            state: state.clone(),
            run: LatestRun {
                run,
                now: now.to_string(),
                started_at: jiff::Timestamp::now().to_string(),
                finished_at: None,
                report: campaign::Report::default(),
            },
        };
        *latest = Some(tracker.run.clone());
        tracker
    }

    fn update(&mut self, report: &campaign::Report) {
        self.run.report = report.clone();
        self.store();
    }

    /// Stores this run unless a later one started meanwhile.
    fn store(&self) {
        let mut latest = self.state.0.latest_run.lock().expect("latest run lock");
        if latest.as_ref().is_none_or(|l| l.run <= self.run.run) {
            *latest = Some(self.run.clone());
        }
    }
}

impl Drop for RunTracker {
    fn drop(&mut self) {
        self.run.finished_at = Some(jiff::Timestamp::now().to_string());
        self.store();
    }
}

#[utoipa::path(get, path = "/v1/runs/latest",
    responses((status = 200, description = "the latest campaign run's funnel, live while it runs", body = LatestRun),
        (status = 404, body = super::ErrorBody)))]
pub(super) async fn latest_run(State(state): State<AppState>) -> Result<Json<LatestRun>, ApiError> {
    let latest = state.0.latest_run.lock().expect("latest run lock").clone();
    latest.map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no campaign run since the service started (POST /v1/campaigns/run)",
        )
    })
}
