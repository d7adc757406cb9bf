//! `GET /v1/decisions/{id}`: one decision of the log, as logged and in words.

use super::*;
use crate::decisions::Entry;

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
    params(("id" = String, Path, description = "the decision's id (the `decision` field of an answer)")),
    responses((status = 200, body = Explained), (status = 404, body = ErrorBody)))]
pub(super) async fn get_decision(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Explained>, ApiError> {
    let Some(log) = state.decision_log().cloned() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this service keeps no decision log (start it with --decision-log DIR)",
        ));
    };
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ApiError::bad(
            "the decision id is made of hex digits and dashes (the `decision` field of an answer)",
        ));
    }
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
