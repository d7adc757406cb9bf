//! The admin endpoints: upload and delete plugins, behind the admin token.

use super::plugins::{PluginInfo, info};
use super::*;

pub(super) fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
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
pub(super) async fn put_plugin(
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
    // A file of its own per upload (concurrent uploads of one plugin once shared one and failed),
    // hidden from the folder's watcher by its leading dot, renamed over the plugin at once.
    static UPLOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = UPLOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.wasm.{}-{n}.upload", std::process::id()));
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
pub(super) async fn delete_plugin(
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
