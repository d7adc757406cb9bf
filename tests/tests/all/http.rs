//! The HTTP service, run for real on 127.0.0.1 port 0 over a temporary plugins folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use regua_host::pipeline::evaluator::Evaluator;
use regua_host::service::campaigns::CampaignStore;
use regua_host::service::http::{AppState, ServiceConfig};
use regua_host::service::metrics::Metrics;
use regua_host::service::registry::Registry;
use regua_host::service::reload;
use regua_host::{Engine, Limits};
use regua_tests::wasm;
use reqwest::StatusCode;
use serde_json::{Value, json};

const NOW: &str = "2025-03-11T12:00:00Z";

pub(crate) struct Service {
    base: String,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) client: reqwest::Client,
    _watchers: reload::Watchers,
    _campaigns: Option<Box<dyn std::any::Any + Send + Sync>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a service over a folder holding `plugins`.
pub(crate) async fn start(plugins: &[&str], admin_token: Option<&str>) -> Service {
    start_with(plugins, admin_token, None, tempfile::tempdir().unwrap()).await
}

async fn start_with(
    plugins: &[&str],
    admin_token: Option<&str>,
    dev: Option<reload::DevSources>,
    dir: tempfile::TempDir,
) -> Service {
    let limits = Limits {
        time_per_record: Duration::from_millis(50),
        ..Limits::default()
    };
    start_limited(plugins, admin_token, dev, dir, limits).await
}

/// Starts a service over a folder holding `plugins`, with the sandbox's `limits`.
pub(crate) async fn start_limited(
    plugins: &[&str],
    admin_token: Option<&str>,
    dev: Option<reload::DevSources>,
    dir: tempfile::TempDir,
    limits: Limits,
) -> Service {
    start_full(plugins, admin_token, dev, dir, limits, None).await
}

/// Starts a service over `plugins` that serves (and watches) the campaigns of `campaigns`.
pub(crate) async fn start_campaigns(plugins: &[&str], campaigns: &Path) -> Service {
    let limits = Limits::default();
    let dir = tempfile::tempdir().unwrap();
    start_full(plugins, None, None, dir, limits, Some(campaigns.to_owned())).await
}

async fn start_full(
    plugins: &[&str],
    admin_token: Option<&str>,
    dev: Option<reload::DevSources>,
    dir: tempfile::TempDir,
    limits: Limits,
    campaigns: Option<PathBuf>,
) -> Service {
    for p in plugins {
        std::fs::copy(wasm(p), dir.path().join(format!("{p}.wasm"))).unwrap();
    }
    let engine = Engine::new(limits).unwrap();
    let registry = Arc::new(Registry::new(engine, dir.path()));
    let metrics = Arc::new(Metrics::new());
    reload::load_all(&registry, &metrics);
    let watchers = reload::watch(registry.clone(), metrics.clone(), dev).unwrap();
    let config = ServiceConfig {
        admin_token: admin_token.map(str::to_owned),
        max_body: 1 << 20,
        ..ServiceConfig::default()
    };
    let store = CampaignStore::new(campaigns, registry.clone(), &config.default_tz);
    store.reload();
    let campaign_watcher = store
        .watch()
        .unwrap()
        .map(|w| Box::new(w) as Box<dyn std::any::Any + Send + Sync>);
    let state = AppState::new(registry, Evaluator::new(Some(2)).unwrap(), metrics, config)
        .with_campaigns(store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(regua_host::service::http::serve(
        listener,
        state,
        async move {
            let _ = stopped.await;
        },
    ));
    Service {
        base,
        dir,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        _watchers: watchers,
        _campaigns: campaign_watcher,
        stop: Some(stop),
    }
}

impl Service {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let r = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The Prometheus text of `/metrics`.
    pub(crate) async fn metrics(&self) -> String {
        let r = self.client.get(self.url("/metrics")).send().await.unwrap();
        r.text().await.unwrap()
    }

    pub(crate) fn plugin_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.wasm"))
    }
}

/// Writes `bytes` into `path` the way a build does: a temporary file, then a rename.
pub(crate) fn land(path: &Path, bytes: &[u8]) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The same plugin with another content hash: a custom section appended (valid wasm, new version).
pub(crate) fn rebuilt(name: &str, n: u8) -> Vec<u8> {
    let mut bytes = std::fs::read(wasm(name)).unwrap();
    let section_name = b"regua-test-build";
    bytes.push(0); // custom section id
    bytes.push((1 + section_name.len() + 1) as u8);
    bytes.push(section_name.len() as u8);
    bytes.extend_from_slice(section_name);
    bytes.push(n);
    bytes
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {v}"))
}

fn customer() -> Value {
    json!({"id": "c-1", "transactions": [{"id": "t", "at": "2025-01-01T00:00:00Z", "kind": "purchase", "amount": 10}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_with_the_right_status_and_shape() {
    let s = start(&["lapsed", "standard-rest", "welcome", "hostile"], None).await;

    let (status, v) = s.get("/healthz").await;
    assert_eq!((status, v["status"].as_str()), (StatusCode::OK, Some("ok")));

    let (status, v) = s.get("/v1/plugins").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hostile", "lapsed", "standard-rest", "welcome"]);
    let lapsed = &v["plugins"][1];
    for field in [
        "kind",
        "version",
        "abi",
        "description",
        "params",
        "code",
        "loaded_at",
        "source",
    ] {
        assert!(!lapsed[field].is_null(), "`{field}` missing in {lapsed}");
    }
    assert!(
        ["baseline", "optimised"].contains(&lapsed["code"].as_str().unwrap()),
        "{lapsed}"
    );
    assert!(lapsed["last_error"].is_null());

    let (status, v) = s.get("/v1/plugins/lapsed").await;
    assert_eq!(
        (status, v["params"]["days"].as_i64()),
        (StatusCode::OK, Some(30))
    );
    assert_eq!(v["reads"], json!(["transactions.at", "transactions.kind"]));
    let (status, v) = s.get("/v1/plugins/nope").await;
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::NOT_FOUND, "not_found")
    );

    // Evaluate: the result shape with plugin, version and reasons.
    let body = json!({"customer": customer(), "now": NOW}).to_string();
    let (status, v) = s.post("/v1/plugins/lapsed/evaluate", body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["plugin"].as_str(), v["match"].as_bool()),
        (Some("lapsed"), Some(true))
    );
    assert_eq!(v["version"].as_str().unwrap().len(), 16);
    assert!(v["reasons"][0].as_str().unwrap().contains("days"));

    let rest = json!({"customer": customer(), "now": NOW, "message": {"channel": "sms", "category": "marketing"}});
    let (status, v) = s
        .post("/v1/plugins/standard-rest/evaluate", rest.to_string())
        .await;
    assert_eq!(
        (status, v["decision"].as_str()),
        (StatusCode::OK, Some("deny")),
        "{v}"
    );
    assert_eq!(v["reason"], "NO_CONSENT");

    // Every refusal: the status, the error code, and a message that says what and where.
    let rest_message = json!({"channel": "sms", "category": "marketing"});
    let refusals = [
        (
            "/v1/plugins/lapsed/evaluate",
            json!({"customer": {"id": "c", "transactions": [{"id": "t", "at": "tomorrow", "kind": "purchase", "amount": 1}]}}).to_string(),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "field `customer.transactions[0].at`",
        ),
        ("/v1/plugins/lapsed/evaluate", String::new(), StatusCode::BAD_REQUEST, "bad_request", "empty"),
        ("/v1/plugins/lapsed/evaluate", json!({"customer": {"id": " "}}).to_string(), StatusCode::BAD_REQUEST, "bad_request", "field `customer.id` is empty"),
        ("/v1/plugins/lapsed/evaluate", json!({"customer": customer(), "now": "noon"}).to_string(), StatusCode::BAD_REQUEST, "bad_request", "field `now`"),
        ("/v1/plugins/lapsed/evaluate", json!({"customer": customer(), "params": {"dayz": 1}}).to_string(), StatusCode::BAD_REQUEST, "bad_request", "dayz"),
        ("/v1/plugins/lapsed/evaluate", json!({"customer": customer(), "extra": 1}).to_string(), StatusCode::BAD_REQUEST, "bad_request", "unknown field `extra`"),
        ("/v1/plugins/standard-rest/evaluate", json!({"customer": customer()}).to_string(), StatusCode::BAD_REQUEST, "bad_request", "`message` is missing: plugin `standard-rest` is a rest policy"),
        (
            "/v1/plugins/standard-rest/evaluate",
            json!({"customer": customer(), "message": {"channel": "fax", "category": "marketing"}}).to_string(),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "field `message.channel`",
        ),
        ("/v1/plugins/nope/evaluate", json!({"customer": customer()}).to_string(), StatusCode::NOT_FOUND, "not_found", "no plugin named `nope`"),
        (
            "/v1/plugins/lapsed/evaluate",
            json!({"customer": customer(), "message": rest_message}).to_string(),
            StatusCode::CONFLICT,
            "wrong_kind",
            "plugin `lapsed` is a segment plugin; `message` is for rest plugins",
        ),
        (
            "/v1/plugins/lapsed/evaluate",
            json!({"customer": {"id": "c", "profile": {"notes": "x".repeat(2 << 20)}}}).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "larger than",
        ),
        (
            "/v1/plugins/hostile/evaluate",
            json!({"customer": {"id": "bad-1"}, "params": {"mode": "panic"}}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "plugin_failed",
            "customer `bad-1`: panicked at",
        ),
        ("/v1/evaluate", json!({"customer": customer(), "plugins": ["lapsed", "nope"]}).to_string(), StatusCode::NOT_FOUND, "not_found", "`nope`"),
        ("/v1/evaluate", json!({"customer": customer(), "plugins": []}).to_string(), StatusCode::BAD_REQUEST, "bad_request", "field `plugins` is empty"),
    ];
    for (path, body, status, code, says) in refusals {
        let (got, v) = s.post(path, body).await;
        assert_eq!((got, error_code(&v)), (status, code), "{path}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(says),
            "{path}: want `{says}` in `{message}`"
        );
    }

    // Several plugins, one parse.
    let many = json!({"customer": customer(), "now": NOW, "plugins": ["lapsed", "welcome", "standard-rest"],
        "message": {"channel": "email", "category": "transactional"}, "params": {"lapsed": {"days": 400}}});
    let (status, v) = s.post("/v1/evaluate", many.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["id"], "c-1");
    assert_eq!(v["results"]["lapsed"]["match"], false);
    assert!(v["results"]["welcome"]["actions"].is_array());
    assert!(v["results"]["standard-rest"]["decision"].is_string());

    // Unknown endpoints answer in the same shape.
    let (status, v) = s.get("/v2/anything").await;
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::NOT_FOUND, "not_found")
    );

    // Metrics and the OpenAPI document.
    let metrics = s.metrics().await;
    for name in [
        "regua_http_requests_total",
        "regua_http_request_duration_seconds",
        "regua_evaluations_total",
        "regua_plugin_failures_total",
        "regua_reloads_total",
        "regua_last_successful_load_timestamp_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(
        metrics.contains(r#"regua_plugin_failures_total{plugin="hostile"} 1"#),
        "{metrics}"
    );
    let (status, doc) = s.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/v1/plugins",
        "/v1/plugins/{name}",
        "/v1/plugins/{name}/evaluate",
        "/v1/evaluate",
        "/v1/batch",
        "/v1/plugins/{name}/batch",
        "/metrics",
        "/healthz",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_line_batch_streams_back_in_order() {
    let s = start(&["lapsed", "cross-sell"], None).await;
    let mut body = String::new();
    for i in 0..10_000 {
        if i == 4321 {
            body.push_str("{\"id\": \"broken\", \"transactions\": 5}\n");
        } else if i == 9000 {
            // The same customer as line 18, chunks apart.
            body.push_str("{\"id\":\"c-17\"}\n");
        } else {
            body.push_str(&format!(
                "{{\"id\":\"c-{i}\",\"profile\":{{\"business_units\":[\"card\"]}}}}\n"
            ));
        }
    }
    let r = s
        .client
        .post(s.url(&format!("/v1/batch?plugins=lapsed,cross-sell&now={NOW}")))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 10_000);
    for (i, line) in lines.iter().enumerate() {
        if i == 4321 {
            assert_eq!(line["line"], 4322);
            assert_eq!(line["id"], "broken");
            assert!(
                line["error"]
                    .as_str()
                    .unwrap()
                    .contains("field `transactions`"),
                "{line}"
            );
        } else if i == 9000 {
            assert_eq!((&line["line"], &line["id"]), (&json!(9001), &json!("c-17")));
            assert!(
                line["error"]
                    .as_str()
                    .unwrap()
                    .contains("earlier line of the batch"),
                "{line}"
            );
        } else {
            assert_eq!(line["id"], format!("c-{i}"));
            assert_eq!(line["results"]["cross-sell"]["match"], true);
        }
    }
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(r#"regua_evaluations_total{plugin="cross-sell",outcome="ok"} 9998"#),
        "repeats and bad lines are not counted as evaluated:\n{metrics}"
    );

    // Asked to, the service evaluates repeats like any line.
    let r = s
        .client
        .post(s.url("/v1/plugins/lapsed/batch?allow_repeated_ids=true"))
        .body("{\"id\":\"a\"}\n{\"id\":\"a\"}\n")
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert_eq!(text.matches("\"results\"").count(), 2, "{text}");

    // CSV: a header, then a row per input line.
    let r = s
        .client
        .post(s.url("/v1/batch?plugins=lapsed,cross-sell&format=csv"))
        .body("{\"id\":\"a\"}\n{broken\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let text = r.text().await.unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert_eq!(rows[0], "line,id,lapsed,cross-sell,error");
    assert_eq!(rows[1], "1,a,false,false,");
    assert!(rows[2].starts_with("2,,,,"), "{text}");

    // A line too long to hold gets an error line; the stream goes on.
    let long = format!(
        "{{\"id\":\"a\"}}\n{{\"id\":\"big\",\"profile\":{{\"notes\":\"{}\"}}}}\n{{\"id\":\"b\"}}\n",
        "x".repeat(3 << 20)
    );
    let r = s
        .client
        .post(s.url("/v1/plugins/lapsed/batch"))
        .body(long)
        .send()
        .await
        .unwrap();
    let lines: Vec<Value> = r
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        (lines[0]["id"].as_str(), lines[2]["id"].as_str()),
        (Some("a"), Some("b"))
    );
    assert_eq!(lines[1]["line"], 2);
    assert!(
        lines[1]["error"]
            .as_str()
            .unwrap()
            .contains("longer than the limit"),
        "{}",
        lines[1]
    );

    // The single-plugin form, and its errors before any line is read.
    let r = s
        .client
        .post(s.url("/v1/plugins/lapsed/batch?params=%7B%22days%22%3A1%7D"))
        .body("{\"id\":\"a\"}\n{\"id\":\"b\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap().lines().count(), 2);
    let (status, v) = s
        .post(
            "/v1/plugins/lapsed/batch?params=%7B%22dayz%22%3A1%7D",
            "{\"id\":\"a\"}\n",
        )
        .await;
    assert!(
        status == StatusCode::BAD_REQUEST
            && v["error"]["message"].as_str().unwrap().contains("dayz"),
        "{v}"
    );
    let (status, _) = s
        .post("/v1/batch?plugins=lapsed,nope", "{\"id\":\"a\"}\n")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s.post("/v1/batch", "{\"id\":\"a\"}\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Waits until `done` holds, polling; fails with `what` after `within`.
pub(crate) async fn eventually(within: Duration, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < within, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `GET /v1/plugins/{name}` once it lists a load or build failure.
pub(crate) async fn listed_failure(s: &Service, name: &str, within: Duration) -> Value {
    let started = Instant::now();
    loop {
        let (_, v) = s.get(&format!("/v1/plugins/{name}")).await;
        if !v["last_error"].is_null() {
            return v;
        }
        assert!(
            started.elapsed() < within,
            "no failure of {name} was ever listed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn version_serving(s: &Service, name: &str) -> Option<String> {
    let (status, v) = s.get(&format!("/v1/plugins/{name}")).await;
    (status == StatusCode::OK).then(|| v["version"].as_str().unwrap().to_owned())
}

/// Lands `bytes` and waits for the first evaluation answered by their version (failing after a
/// generous timeout that only catches a hang).
pub(crate) async fn time_to_serve(s: &Service, name: &str, bytes: &[u8]) {
    let version = regua_host::runtime::plugin::version_of(bytes);
    let body = json!({"customer": customer(), "now": NOW}).to_string();
    let started = Instant::now();
    land(&s.plugin_path(name), bytes);
    loop {
        let (status, v) = s
            .post(&format!("/v1/plugins/{name}/evaluate"), body.clone())
            .await;
        if status == StatusCode::OK && v["version"] == version.as_str() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{name} {version} never served: {status} {v}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_build_is_served_once_it_lands() {
    // How fast is the benchmark's business (BENCHMARKS.md); here, only that it happens, with a
    // generous timeout (in `time_to_serve`) that only catches a hang.
    let s = start(&["lapsed"], None).await;
    for n in 1..=3 {
        time_to_serve(&s, "lapsed", &rebuilt("lapsed", n)).await;
    }
    time_to_serve(
        &s,
        "cross-sell",
        &std::fs::read(wasm("cross-sell")).unwrap(),
    )
    .await;
    // A build written in place, not renamed into the folder, is served once it is quiet.
    let in_place = rebuilt("lapsed", 4);
    let version = regua_host::runtime::plugin::version_of(&in_place);
    {
        use std::io::Write as _;
        let mut file = std::fs::File::create(s.plugin_path("lapsed")).unwrap();
        let half = in_place.len() / 2;
        file.write_all(&in_place[..half]).unwrap();
        file.flush().unwrap();
        file.write_all(&in_place[half..]).unwrap();
    }
    eventually(
        Duration::from_secs(60),
        "a build written in place was never served",
        async || version_serving(&s, "lapsed").await.as_deref() == Some(version.as_str()),
    )
    .await;
    // A deleted file unloads its plugin.
    std::fs::remove_file(s.plugin_path("cross-sell")).unwrap();
    eventually(
        Duration::from_secs(60),
        "cross-sell still served",
        async || version_serving(&s, "cross-sell").await.is_none(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_build_leaves_the_last_good_version_serving_with_the_error_listed() {
    let s = start(&["lapsed"], None).await;
    let good = version_serving(&s, "lapsed").await.unwrap();
    let mut broken = std::fs::read(wasm("lapsed")).unwrap();
    broken.truncate(broken.len() / 2);
    land(&s.plugin_path("lapsed"), &broken);
    let listed = listed_failure(&s, "lapsed", Duration::from_secs(60)).await;
    assert_eq!(
        listed["version"],
        good.as_str(),
        "the last good version keeps serving"
    );
    assert!(
        listed["last_error"]["error"]
            .as_str()
            .unwrap()
            .contains("not a WebAssembly module"),
        "{listed}"
    );
    let (status, v) = s
        .post(
            "/v1/plugins/lapsed/evaluate",
            json!({"customer": customer(), "now": NOW}).to_string(),
        )
        .await;
    assert_eq!(
        (status, v["version"].as_str()),
        (StatusCode::OK, Some(good.as_str()))
    );
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(r#"regua_reloads_total{result="failed"} 1"#),
        "{metrics}"
    );
    // Putting the good file back clears the error, as does a new good build.
    land(
        &s.plugin_path("lapsed"),
        &std::fs::read(wasm("lapsed")).unwrap(),
    );
    eventually(
        Duration::from_secs(60),
        "the error stayed listed",
        async || s.get("/v1/plugins/lapsed").await.1["last_error"].is_null(),
    )
    .await;
    land(&s.plugin_path("lapsed"), &broken);
    listed_failure(&s, "lapsed", Duration::from_secs(60)).await;
    time_to_serve(&s, "lapsed", &rebuilt("lapsed", 9)).await;
    let (_, v) = s.get("/v1/plugins/lapsed").await;
    assert!(v["last_error"].is_null(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_swaps_all_succeed_and_batches_keep_one_version() {
    let s = Arc::new(start(&["lapsed"], None).await);
    // Twenty swaps: fifteen new builds and, every fourth, a broken build that must change nothing.
    let builds: Vec<Vec<u8>> = (1..=15).map(|n| rebuilt("lapsed", n)).collect();
    let mut broken = std::fs::read(wasm("lapsed")).unwrap();
    broken.truncate(broken.len() / 3);
    let versions: Vec<String> = std::iter::once(std::fs::read(wasm("lapsed")).unwrap())
        .chain(builds.iter().cloned())
        .map(|b| regua_host::runtime::plugin::version_of(&b))
        .collect();

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (s, done, versions) = (s.clone(), done.clone(), versions.clone());
        clients.push(tokio::spawn(async move {
            let body = json!({"customer": customer(), "now": NOW}).to_string();
            let batch: String = (0..500)
                .map(|i| format!("{{\"id\":\"c-{i}\"}}\n"))
                .collect();
            let mut answered = 0;
            // Bounded in count and time: at most 2,000 requests or until the swaps are done.
            while !done.load(std::sync::atomic::Ordering::Relaxed) && answered < 2_000 {
                let (status, v) = s.post("/v1/plugins/lapsed/evaluate", body.clone()).await;
                assert_eq!(status, StatusCode::OK, "{v}");
                assert!(
                    versions.contains(&v["version"].as_str().unwrap().to_owned()),
                    "{v}"
                );
                let text = s
                    .client
                    .post(s.url("/v1/plugins/lapsed/batch"))
                    .body(batch.clone())
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                let seen: std::collections::BTreeSet<&str> = text
                    .lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap())
                    .map(|v| {
                        versions
                            .iter()
                            .find(|x| v["results"]["lapsed"]["version"] == x.as_str())
                            .map(String::as_str)
                            .expect("a known version")
                    })
                    .collect();
                assert_eq!(text.lines().count(), 500);
                assert_eq!(seen.len(), 1, "one batch, one version");
                answered += 2;
            }
            answered
        }));
    }
    let mut swaps = 0;
    for (n, build) in builds.iter().enumerate() {
        time_to_serve(&s, "lapsed", build).await;
        swaps += 1;
        if n % 3 == 2 {
            land(&s.plugin_path("lapsed"), &broken);
            listed_failure(&s, "lapsed", Duration::from_secs(60)).await;
            assert_eq!(
                version_serving(&s, "lapsed").await.as_deref(),
                Some(versions[n + 1].as_str())
            );
            swaps += 1;
        }
    }
    assert_eq!(swaps, 20);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        assert!(c.await.unwrap() > 0);
    }
    assert_eq!(
        version_serving(&s, "lapsed").await.as_deref(),
        versions.last().map(String::as_str)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_need_the_token() {
    let bytes = rebuilt("cross-sell", 1);
    // Without a token configured, they are disabled.
    let s = start(&["lapsed"], None).await;
    let r = s
        .client
        .put(s.url("/v1/plugins/cross-sell"))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = s
        .client
        .delete(s.url("/v1/plugins/lapsed"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(version_serving(&s, "lapsed").await.is_some());

    let s = start(&["lapsed"], Some("s3cret")).await;
    for auth in [None, Some("Bearer wrong"), Some("s3cret")] {
        let mut req = s
            .client
            .put(s.url("/v1/plugins/cross-sell"))
            .body(bytes.clone());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        assert_eq!(req.send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    let put = |name: &str, body: Vec<u8>| {
        s.client
            .put(s.url(&format!("/v1/plugins/{name}")))
            .bearer_auth("s3cret")
            .body(body)
    };
    let r = put("cross-sell", bytes.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["version"],
        regua_host::runtime::plugin::version_of(&bytes).as_str()
    );
    assert!(
        s.plugin_path("cross-sell").is_file(),
        "the upload is written into the folder"
    );
    let r = put("other-name", bytes.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = put("junk", b"not wasm".to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let delete = || {
        s.client
            .delete(s.url("/v1/plugins/cross-sell"))
            .bearer_auth("s3cret")
            .send()
    };
    assert_eq!(delete().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert!(version_serving(&s, "cross-sell").await.is_none());
    assert!(!s.plugin_path("cross-sell").exists());
    assert_eq!(delete().await.unwrap().status(), StatusCode::NOT_FOUND);
}

/// How many `--dev` rebuilds the service counted, ok and failed.
async fn dev_builds(s: &Service) -> (u64, u64) {
    let metrics = s.metrics().await;
    let count = |result: &str| {
        let sample = format!("regua_dev_builds_total{{result=\"{result}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&sample))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    (count("ok"), count("failed"))
}

/// `--sources` may name one crate: an idle service builds nothing (a build opens every source,
/// and reacting to that would make each build start the next), one save builds once, and a
/// compile error is shown while the last good build keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_rebuilds_a_saved_crate_and_shows_compile_errors() {
    let sources = tempfile::tempdir().unwrap();
    let krate = sources.path().join("dev-rule");
    let out = std::process::Command::new(regua_tests::regua_bin())
        .args(["new", "segment", "dev-rule", "--dir"])
        .arg(&krate)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let target = regua_tests::plugin_target_dir().to_owned();
    regua_host::authoring::build::build(std::slice::from_ref(&krate), dir.path(), Some(&target))
        .unwrap();
    let dev = reload::DevSources {
        root: krate.clone(),
        target_dir: Some(target),
    };
    let s = start_with(&[], None, Some(dev), dir).await;
    let first = version_serving(&s, "dev-rule")
        .await
        .expect("the first build is served");
    // Left alone, a dev service builds nothing, even when its crate is read.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = std::fs::read_to_string(krate.join("src/lib.rs")).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(dev_builds(&s).await, (0, 0), "an idle dev service built");

    let lib = krate.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(
        &lib,
        source.replace("purchases in the last", "purchases (edited) in the last"),
    )
    .unwrap();
    let body = json!({"customer": customer(), "now": NOW}).to_string();
    let started = Instant::now();
    let second = loop {
        let (status, v) = s.post("/v1/plugins/dev-rule/evaluate", body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        if v["reasons"][0].as_str().unwrap().contains("(edited)") {
            assert_ne!(v["version"], first.as_str());
            break v["version"].as_str().unwrap().to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the edit was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // One save, one build: the build's own reads of the sources start no other.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(dev_builds(&s).await, (1, 0), "one save, one build");

    std::fs::write(&lib, source.replace("pub struct Rule;", "pub struct Rule")).unwrap();
    let listed = listed_failure(&s, "dev-rule", Duration::from_secs(240)).await;
    assert_eq!(
        listed["version"],
        second.as_str(),
        "the last good build keeps serving"
    );
    let error = listed["last_error"]["error"].as_str().unwrap();
    assert!(
        error.contains("building dev-rule failed") && error.contains("error"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_requests_in_flight() {
    let mut s = start(&["hostile"], None).await;
    // Slow on purpose (a few hundred microseconds a record), so it is surely in flight when the
    // shutdown comes.
    let batch: String = (0..2_000)
        .map(|i| format!("{{\"id\":\"bad-{i}\"}}\n"))
        .collect();
    let url = format!(
        "/v1/plugins/hostile/batch?params={}",
        urlencode(r#"{"mode":"dawdle","spin":300000}"#)
    );
    let request = s.client.post(s.url(&url)).body(batch).send();
    let in_flight = tokio::spawn(async move {
        let r = request.await.unwrap();
        let (status, text) = (r.status(), r.text().await.unwrap());
        (
            status,
            text.lines().filter(|l| l.contains("dawdled")).count(),
            Instant::now(),
        )
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let shutdown_at = Instant::now();
    let _ = s.stop.take().unwrap().send(());
    let (status, answered, finished_at) = in_flight.await.unwrap();
    assert_eq!((status, answered), (StatusCode::OK, 2_000));
    assert!(
        finished_at > shutdown_at,
        "the request was not in flight at shutdown"
    );
    eventually(
        Duration::from_secs(60),
        "still accepting after shutdown",
        async || s.client.get(s.url("/healthz")).send().await.is_err(),
    )
    .await;
}

/// Every hostile behaviour through the HTTP batch path: only the victims fail, with errors naming
/// the line, plugin, version, customer and cause, while another plugin answers every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_fail_only_their_records_over_http_too() {
    let s = start(&["hostile", "lapsed"], None).await;
    let cases = [
        ("loop", "exceeded its time budget"),
        ("hog", "exceeded the memory cap"),
        ("recurse", "exhausted its stack"),
        ("panic", "has no wallet"),
        ("fail", "cannot judge customer"),
        ("flood", "over the output cap"),
    ];
    for (mode, cause) in cases {
        let params = format!(r#"{{"hostile":{{"mode":"{mode}"}}}}"#);
        let url = format!(
            "/v1/batch?plugins=hostile,lapsed&now={NOW}&params={}",
            urlencode(&params)
        );
        let r = s
            .client
            .post(s.url(&url))
            .body(crate::sandbox::MIXED)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{mode}");
        let lines: Vec<Value> = r
            .text()
            .await
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 5, "{mode}: one line per input line");
        assert!(
            lines
                .iter()
                .all(|l| l["results"]["lapsed"]["match"] == false),
            "{mode}: {lines:?}"
        );
        let results: Vec<Value> = lines
            .iter()
            .map(|l| l["results"]["hostile"].clone())
            .collect();
        crate::sandbox::assert_only_victims_failed(&results, cause);
    }
    // Slow but within budget succeeds.
    let url = format!(
        "/v1/plugins/hostile/batch?params={}",
        urlencode(r#"{"mode":"dawdle","spin":100000}"#)
    );
    let text = s
        .client
        .post(s.url(&url))
        .body(crate::sandbox::MIXED)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.lines().all(|l| l.contains("\"match\":true")), "{text}");
}

pub(crate) fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A batch of a million lines streams through: the request is sent as it is produced and the
/// answer counted as it arrives, so neither side holds it whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_line_batch_streams_through() {
    const LINES: usize = 1_000_000;
    let s = start(&["lapsed"], None).await;
    let body = futures_util::stream::iter((0..LINES / 10_000).map(|block| {
        let mut chunk = String::with_capacity(10_000 * 16);
        for i in block * 10_000..(block + 1) * 10_000 {
            if i == 777_777 {
                chunk.push_str("{\"id\":\n");
            } else {
                chunk.push_str(&format!("{{\"id\":\"c{i}\"}}\n"));
            }
        }
        Ok::<_, std::io::Error>(chunk)
    }));
    let r = s
        .client
        .post(s.url("/v1/plugins/lapsed/batch"))
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut stream = r.bytes_stream();
    let (mut lines, mut errors, mut partial) = (0usize, Vec::new(), Vec::new());
    use futures_util::StreamExt;
    while let Some(piece) = stream.next().await {
        partial.extend_from_slice(&piece.unwrap());
        let mut start = 0;
        while let Some(end) = partial[start..].iter().position(|b| *b == b'\n') {
            let line = &partial[start..start + end];
            if line.starts_with(b"{\"line\"") {
                errors.push((lines, String::from_utf8_lossy(line).into_owned()));
            } else if lines % 100_000 == 0 {
                let v: Value = serde_json::from_slice(line).unwrap();
                assert_eq!(v["id"], format!("c{lines}"), "answers in input order");
            }
            lines += 1;
            start += end + 1;
        }
        partial.drain(..start);
    }
    assert_eq!(lines, LINES);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, 777_777);
    assert!(errors[0].1.contains("\"line\":777778"), "{}", errors[0].1);
}

/// Load-time refusals and an answer that does not decode, through the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_that_break_the_abi_are_refused_or_fail_over_http_too() {
    let s = start(&["lapsed"], Some("s3cret")).await;
    for (name, bytes, why) in crate::sandbox::refused_modules() {
        // Uploaded: refused with the reason, nothing written.
        let r = s
            .client
            .put(s.url(&format!("/v1/plugins/{name}")))
            .bearer_auth("s3cret")
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{name}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"]["message"].as_str().unwrap().contains(why),
            "{name}: {v}"
        );
        assert!(!s.plugin_path(name).exists());
        // Dropped into the folder: listed as a failure, never served.
        land(&s.plugin_path(name), &bytes);
    }
    let started = Instant::now();
    loop {
        let (_, v) = s.get("/v1/plugins").await;
        if v["failures"].as_array().unwrap().len() == 4 {
            let all = v["failures"].to_string();
            assert!(
                all.contains("fd_write")
                    && all.contains("targets ABI 1")
                    && all.contains("targets ABI 4")
                    && all.contains("regua_alloc"),
                "{all}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "failures never listed: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    land(&s.plugin_path("liar"), &crate::sandbox::liar_wasm());
    eventually(Duration::from_secs(60), "liar never loaded", async || {
        version_serving(&s, "liar").await.is_some()
    })
    .await;
    let (status, v) = s
        .post(
            "/v1/plugins/liar/evaluate",
            json!({"customer": customer()}).to_string(),
        )
        .await;
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "plugin_failed")
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not decode"),
        "{v}"
    );
    let (status, v) = s.post("/v1/plugins/liar/batch", "{\"id\":\"a\"}\n").await;
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "plugin_failed")
    );
    // The other plugin is unaffected.
    let (status, _) = s
        .post(
            "/v1/plugins/lapsed/evaluate",
            json!({"customer": customer()}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// A single record is a batch of one: `regua eval`, `regua batch`, `POST …/evaluate` and
/// `POST …/batch` read a record for what its plugin reads and give the same answer, or reject
/// the same part of it, naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_record_answers_the_same_on_every_path() {
    let s = start(&["lapsed"], None).await;
    let now = "2025-03-11T12:00:00Z";
    let purchase = |at: &str, amount: Value| json!([{"id": "t", "at": at, "kind": "purchase", "amount": amount}]);
    let records = [
        json!({"id": "a", "transactions": purchase("2025-01-01T00:00:00Z", json!(10))}),
        // Wrong in parts lapsed does not read (amount, events): only checked to be JSON.
        json!({"id": "b", "transactions": purchase("2025-03-01T00:00:00Z", json!("ten")), "events": 5}),
        // Wrong in a part it reads.
        json!({"id": "c", "transactions": purchase("yesterday", json!(10))}),
    ];
    for record in &records {
        let line = record.to_string();
        let (status, http_one) = s
            .post(
                "/v1/plugins/lapsed/evaluate",
                json!({"customer": record, "now": now}).to_string(),
            )
            .await;
        let (_, http_batch) = s
            .post(
                &format!("/v1/plugins/lapsed/batch?now={now}"),
                format!("{line}\n"),
            )
            .await;
        let input = line.clone();
        let (cli_one, cli_batch) = tokio::task::spawn_blocking(move || {
            let wasm = regua_tests::wasm("lapsed");
            let wasm = wasm.to_str().unwrap();
            let one = crate::cli::regua(&["eval", wasm, "--customer", "-", "--now", now], &input);
            let batch = crate::cli::regua(&["batch", "-p", wasm, "-i", "-", "--now", now], &input);
            (one, batch)
        })
        .await
        .unwrap();
        let cli_batch: Value = serde_json::from_slice(&cli_batch.stdout).unwrap();
        if record["id"] == "c" {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{http_one}");
            let field = "transactions[0].at";
            let texts = [
                http_one["error"]["message"].to_string(),
                http_batch["error"].to_string(),
                crate::cli::text(&cli_one.stderr),
                cli_batch["error"].to_string(),
            ];
            for t in &texts {
                assert!(t.contains(field), "{field} not named in {t}");
            }
        } else {
            assert_eq!(status, StatusCode::OK, "{http_one}");
            let cli_one: Value = serde_json::from_slice(&cli_one.stdout).unwrap();
            assert_eq!(http_batch["results"]["lapsed"], http_one, "{line}");
            assert_eq!(cli_one, http_one, "{line}");
            assert_eq!(cli_batch["results"]["lapsed"], http_one, "{line}");
        }
    }
}
