//! The console: a web page at `/` for the people who run campaigns. Plugins with their versions,
//! counts, latency and reload errors; "try it" on a plugin or a campaign; each campaign with the
//! funnel of the latest run; the latest decisions, explained.
//!
//! Three static files embedded in the binary (no CDN, no build step): the page reads the same
//! JSON API as everyone else, so the console shows nothing the API does not. It is a few hundred
//! lines of plain JavaScript rather than a framework: the pages are tables, a form and a bar
//! chart drawn from JSON, which needs no library, and the service stays one binary that works
//! offline. The console only reads and evaluates, as the API allows without a token; nothing on
//! it changes state (uploading and deleting plugins stay behind the admin token of the API).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");
/// The bundled example customer, for "try it".
const EXAMPLE: &str = include_str!("../../../../examples/customer.json");

/// Only the console's own files run: no inline script, nothing from elsewhere.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The files change with the binary; a browser asks again rather than keep an old console.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

pub(super) async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

pub(super) async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

pub(super) async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

pub(super) async fn example() -> Response {
    asset(EXAMPLE, "application/json")
}
