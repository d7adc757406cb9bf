//! The service as an outsider attacks it, without a token, from loopback: a real `regua serve`
//! on 127.0.0.1 port 0, every request bounded in count and time.

use serde_json::{Value, json};

use crate::decisions::Served;
use regua_tests::plugins_dir;

/// 01:30Z is 22:30 in São Paulo: inside the company's quiet hours, so the rest policy defers.
const NIGHT: &str = "2025-03-11T01:30:00Z";

fn customer() -> Value {
    json!({"id": "cus-night", "tz": "America/Sao_Paulo",
        "profile": {"created_at": "2025-03-10T12:00:00Z"},
        "consents": {"push": {"marketing": {"status": "granted", "at": "2025-01-01T00:00:00Z"}}},
        "transactions": [{"id": "t1", "at": "2025-01-02T10:00:00Z", "kind": "purchase", "amount": 10}]})
}

const PUSH: &str = r#"{"channel":"push","category":"marketing","campaign":"CMP-1"}"#;
const REST_PARAMS: &str =
    r#"{"rules":[{"id":"night","type":"quiet_hours","start":"22:00","end":"08:00"}]}"#;

/// Checks one plugin's answer by its kind, and its decision id by whether the log is on.
fn check_answer(kind: &str, answer: &Value, logged: bool, ids: &mut Vec<String>, at: &str) {
    match kind {
        "segment" => assert!(answer["match"].is_boolean(), "{at}: {answer}"),
        "journey" => assert!(answer["actions"].is_array(), "{at}: {answer}"),
        _ => {
            assert_eq!(
                answer["decision"], "defer",
                "{at}: the verdict is kept: {answer}"
            );
            assert_eq!(answer["reason"], "QUIET_HOURS", "{at}: {answer}");
        }
    }
    match (&answer["decision_id"], logged) {
        (Value::String(id), true) => ids.push(id.clone()),
        (Value::Null, false) => {}
        (other, _) => panic!("{at}: decision_id {other} with the log {logged}: {answer}"),
    }
}

/// A rest policy's answer says `decision: defer` with the log on and off, on every endpoint,
/// for every kind of plugin, and the decision id has a key of its own, `decision_id`, that
/// `GET /v1/decisions/{id}` finds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_keeps_the_verdict_and_gives_the_decision_id_its_own_key() {
    let plugins = [
        ("lapsed", "segment"),
        ("welcome", "journey"),
        ("standard-rest", "rest"),
    ];
    for logged in [false, true] {
        let log = tempfile::tempdir().unwrap();
        let dir = plugins_dir().to_str().unwrap().to_owned();
        let mut args = vec!["--plugins", &dir];
        let log_dir = log.path().join("decisions");
        let log_arg = log_dir.to_str().unwrap().to_owned();
        if logged {
            args.extend(["--decision-log", &log_arg]);
        }
        let s = Served::spawn(&args);
        let mut ids = Vec::new();
        for (name, kind) in plugins {
            let mut body = json!({"customer": customer(), "now": NIGHT});
            if kind == "rest" {
                body["message"] = serde_json::from_str(PUSH).unwrap();
                body["params"] = serde_json::from_str(REST_PARAMS).unwrap();
            }
            let (status, answer) = s
                .post(&format!("/v1/plugins/{name}/evaluate"), &body)
                .await
                .unwrap();
            assert_eq!(status, 200, "{answer}");
            check_answer(kind, &answer, logged, &mut ids, &format!("evaluate {name}"));
        }
        let many = json!({"customer": customer(), "now": NIGHT,
            "plugins": plugins.map(|(n, _)| n), "message": serde_json::from_str::<Value>(PUSH).unwrap(),
            "params": {"standard-rest": serde_json::from_str::<Value>(REST_PARAMS).unwrap()}});
        let (status, answer) = s.post("/v1/evaluate", &many).await.unwrap();
        assert_eq!(status, 200, "{answer}");
        for (name, kind) in plugins {
            check_answer(
                kind,
                &answer["results"][name],
                logged,
                &mut ids,
                "/v1/evaluate",
            );
        }
        let query = |extra: &str| format!("now={NIGHT}{extra}");
        let message = format!("&message={}", urlencoding(PUSH));
        let line = format!("{}\n", customer());
        let text = s
            .post_text(
                &format!(
                    "/v1/batch?plugins=lapsed,welcome,standard-rest&{}",
                    query(&format!(
                        "{message}&params={}",
                        urlencoding(&format!(r#"{{"standard-rest":{REST_PARAMS}}}"#))
                    ))
                ),
                line.clone(),
            )
            .await;
        let answer: Value =
            serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
        for (name, kind) in plugins {
            check_answer(
                kind,
                &answer["results"][name],
                logged,
                &mut ids,
                "/v1/batch",
            );
        }
        for (name, kind) in plugins {
            let params = if kind == "rest" {
                format!("{message}&params={}", urlencoding(REST_PARAMS))
            } else {
                String::new()
            };
            let text = s
                .post_text(
                    &format!("/v1/plugins/{name}/batch?{}", query(&params)),
                    line.clone(),
                )
                .await;
            let answer: Value =
                serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
            let answer = if answer["results"].is_object() {
                answer["results"][name].clone()
            } else {
                answer
            };
            check_answer(kind, &answer, logged, &mut ids, &format!("batch {name}"));
        }
        if logged {
            assert_eq!(ids.len(), 12);
            for id in &ids {
                let (status, body) = s.get(&format!("/v1/decisions/{id}")).await;
                assert_eq!(status, 200, "{id}: {body}");
            }
        } else {
            assert!(ids.is_empty());
        }
    }
}

/// Percent-encodes a query parameter's value.
pub(crate) fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Twelve uploads of one plugin at once: each answers 2xx or a clear 409, and what is served
/// afterwards is one of the uploaded builds, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_of_one_plugin_all_succeed_or_say_conflict() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::copy(
        plugins_dir().join("lapsed.wasm"),
        folder.path().join("lapsed.wasm"),
    )
    .unwrap();
    let dir = folder.path().to_str().unwrap().to_owned();
    let s = Served::spawn(&["--plugins", &dir, "--admin-token", "s3cret"]);
    let bytes = std::fs::read(plugins_dir().join("lapsed.wasm")).unwrap();
    let client = reqwest::Client::new();
    let uploads = (0..12).map(|_| {
        client
            .put(format!("{}/v1/plugins/lapsed", s.base))
            .bearer_auth("s3cret")
            .header("content-type", "application/wasm")
            .body(bytes.clone())
            .send()
    });
    for answer in futures_util::future::join_all(uploads).await {
        let answer = answer.unwrap();
        let status = answer.status().as_u16();
        let body = answer.text().await.unwrap();
        assert!(
            (200..300).contains(&status) || status == 409,
            "{status}: {body}"
        );
    }
    let (status, body) = s.get("/v1/plugins/lapsed").await;
    assert_eq!(status, 200, "{body}");
    let leftovers: Vec<_> = std::fs::read_dir(folder.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lapsed.wasm")
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    assert_eq!(
        std::fs::read(folder.path().join("lapsed.wasm")).unwrap(),
        bytes
    );
}

/// `regua serve` over every built plugin and the example campaigns, with `extra` arguments.
fn examples(extra: &[&str]) -> Served {
    let dir = plugins_dir().to_str().unwrap().to_owned();
    let mut args = vec!["--plugins", &dir, "--campaigns", "examples/campaigns"];
    args.extend(extra);
    Served::spawn(&args)
}

/// [`examples`] logging its decisions: the service, the folder that holds the log, and the log.
fn logging(extra: &[&str]) -> (Served, tempfile::TempDir, std::path::PathBuf) {
    let log = tempfile::tempdir().unwrap();
    let log_dir = log.path().join("decisions");
    let mut args = vec!["--decision-log", log_dir.to_str().unwrap()];
    args.extend(extra);
    let s = examples(&args);
    (s, log, log_dir)
}

/// The resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib >> 10
}

/// Samples the resident memory of `pid` every 20 ms until dropped; `peak` is the largest seen.
struct Watch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    fn start(pid: u32) -> Watch {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(rss_mib(pid)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_mib(pid), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        Watch {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn peak(mut self) -> u64 {
        use std::sync::atomic::Ordering;
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.peak.load(Ordering::Relaxed)
    }
}

/// Waits (at most a minute) for the resident memory of `pid` to come down to `bound` MiB; the
/// last figure seen.
async fn settles(pid: u32, bound: u64) -> u64 {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let now = rss_mib(pid);
        if now <= bound || std::time::Instant::now() > until {
            return now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The host and port of a served base URL, for raw sockets.
fn address(s: &Served) -> String {
    s.base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// Reads what the server sends on `stream` until it closes the connection (or `limit` passes,
/// which fails the test): the text of the answer, if any.
fn until_closed(stream: &mut std::net::TcpStream, limit: std::time::Duration) -> String {
    use std::io::Read;
    let until = std::time::Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        assert!(
            !left.is_zero(),
            "the service did not close the connection in time"
        );
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break, // reset: closed
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Forty connections each announce a 16 MiB body and send all but its last 4 KiB: the service
/// holds at most its body budget (64 MiB here) of them, answers the rest 503, closes the
/// unfinished ones after the body timeout, answers other clients meanwhile, and its memory stays
/// under the budget's bound and comes back down afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_bodies_are_bounded_by_the_budget_and_timed_out() {
    let s = examples(&[
        "--body-budget",
        "64",
        "--body-timeout",
        "5",
        "--header-timeout",
        "5",
    ]);
    let pid = s.pid();
    let (status, _) = s.get("/healthz").await;
    assert_eq!(status, 200);
    let before = rss_mib(pid);
    let watch = Watch::start(pid);
    let addr = address(&s);
    let size = 16usize << 20;
    let mut attackers = Vec::new();
    for _ in 0..40 {
        let addr = addr.clone();
        attackers.push(std::thread::spawn(move || {
            use std::io::Write;
            let mut stream = std::net::TcpStream::connect(&addr).unwrap();
            let head = format!(
                "POST /v1/decide HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {size}\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream
                .set_write_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            let piece = vec![b' '; 1 << 20];
            let mut sent = 0;
            // Stops when the service stops reading (a 503, a closed connection) or at the end.
            while sent + piece.len() <= size - 4096 {
                match stream.write_all(&piece) {
                    Ok(()) => sent += piece.len(),
                    Err(_) => break,
                }
            }
            until_closed(&mut stream, std::time::Duration::from_secs(60))
        }));
    }
    // Other clients are answered while the attack runs.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let (status, _) = s.get("/healthz").await;
    assert_eq!(status, 200);
    let mut answers = std::collections::BTreeMap::new();
    for a in attackers {
        let text = tokio::task::spawn_blocking(move || a.join().unwrap())
            .await
            .unwrap();
        let status = text.get(9..12).unwrap_or("closed").to_owned();
        *answers.entry(status).or_insert(0) += 1;
    }
    let peak = watch.peak();
    // The budget (64 MiB) and what the service needs around it; 40 × 16 MiB would be 640.
    assert!(
        peak <= before + 64 + 96,
        "resident memory went from {before} MiB to {peak} MiB; answers {answers:?}"
    );
    assert!(answers.get("503").copied().unwrap_or(0) > 0, "{answers:?}");
    assert!(
        answers
            .keys()
            .all(|k| ["503", "408", "closed"].contains(&k.as_str())),
        "{answers:?}"
    );
    let after = settles(pid, before + 48).await;
    assert!(
        after <= before + 48,
        "memory stayed at {after} MiB (from {before})"
    );
    let (status, _) = s.get("/healthz").await;
    assert_eq!(status, 200);
}

/// Idle connections, headers sent halfway and a chunked body that never ends are all closed
/// after the documented timeouts (here 2 s for headers and idle keep-alive, 3 s for a body),
/// while other clients are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_after_their_timeouts() {
    use std::io::Write;
    use std::net::TcpStream;
    let s = examples(&["--header-timeout", "2", "--body-timeout", "3"]);
    let addr = address(&s);
    let started = std::time::Instant::now();
    let mut idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let mut half: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut stream = TcpStream::connect(&addr).unwrap();
            stream
                .write_all(b"POST /v1/decide HTTP/1.1\r\nHost: x\r\ncontent-ty")
                .unwrap();
            stream
        })
        .collect();
    // A kept-alive connection after one answered request.
    let mut kept = TcpStream::connect(&addr).unwrap();
    kept.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    // A chunked body that goes on for ever, a byte every half second.
    let endless_addr = addr.clone();
    let endless = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(&endless_addr).unwrap();
        let head = format!(
            "POST /v1/decide HTTP/1.1\r\nHost: {endless_addr}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let feeding = std::thread::spawn(move || {
            for _ in 0..60 {
                if writer.write_all(b"1\r\n \r\n").is_err() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        });
        let answer = until_closed(&mut stream, std::time::Duration::from_secs(30));
        drop(feeding);
        answer
    });
    // Meanwhile, others are answered.
    for _ in 0..5 {
        let (status, _) = s.get("/healthz").await;
        assert_eq!(status, 200);
    }
    let limit = std::time::Duration::from_secs(20);
    let closed = tokio::task::spawn_blocking(move || {
        for stream in idle.iter_mut().chain(half.iter_mut()) {
            until_closed(stream, limit);
        }
        until_closed(&mut kept, limit)
    })
    .await
    .unwrap();
    assert!(closed.starts_with("HTTP/1.1 200"), "{closed}");
    // Closed by the timeouts, not at once: the idle ones lived about two seconds.
    assert!(started.elapsed() >= std::time::Duration::from_millis(1500));
    let cut = tokio::task::spawn_blocking(move || endless.join().unwrap())
        .await
        .unwrap();
    assert!(cut.starts_with("HTTP/1.1 408"), "{cut}");
    let (status, _) = s.get("/healthz").await;
    assert_eq!(status, 200);
}

/// Every decision line of the log folder `dir`.
fn log_lines(dir: &std::path::Path) -> Vec<Value> {
    let Ok(files) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for file in files {
        for line in std::fs::read_to_string(file.unwrap().path())
            .unwrap()
            .lines()
        {
            lines.push(serde_json::from_str(line).unwrap());
        }
    }
    lines
}

/// A web page of another site cannot make the service decide, nor write to its log: a "simple"
/// cross-site request (`text/plain`, a foreign `Origin`) is refused, as is JSON from a foreign
/// origin; the service's own origin (its console) and programs (no `Origin`) are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_decisions_are_refused_and_never_logged() {
    let (s, _log, log_dir) = logging(&[]);
    let client = reqwest::Client::new();
    let body = |id: &str| {
        let mut c = customer();
        c["id"] = id.into();
        json!({"customer": c, "now": NIGHT}).to_string()
    };
    let own = s.base.trim_end_matches('/').to_owned();
    let tries = [
        (
            "forged-text",
            Some("http://evil.example"),
            Some("text/plain"),
            403,
        ),
        (
            "forged-form",
            None,
            Some("application/x-www-form-urlencoded"),
            415,
        ),
        ("forged-plain", None, Some("text/plain;charset=UTF-8"), 415),
        // No content type and no Origin: a program, not a page.
        ("no-type", None, None, 200),
        (
            "forged-json",
            Some("http://evil.example"),
            Some("application/json"),
            403,
        ),
        ("forged-null", Some("null"), Some("application/json"), 403),
        (
            "own-origin",
            Some(own.as_str()),
            Some("application/json"),
            200,
        ),
        ("a-program", None, Some("application/json"), 200),
    ];
    for (id, origin, content_type, want) in tries {
        for path in ["/v1/decide", "/v1/plugins/lapsed/evaluate"] {
            let mut r = client.post(format!("{own}{path}")).body(body(id));
            if let Some(o) = origin {
                r = r.header("origin", o);
            }
            if let Some(t) = content_type {
                r = r.header("content-type", t);
            }
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            assert_eq!(status, want, "{id} {path}: {text}");
            if want != 200 {
                assert!(
                    text.contains("origin") || text.contains("application/json"),
                    "{text}"
                );
            }
        }
    }
    // NDJSON endpoints refuse a form's content types too.
    let r = client
        .post(format!("{own}/v1/campaigns/run?now={NIGHT}"))
        .header("content-type", "text/plain")
        .body(format!("{}\n", customer()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    // The log holds the two answered customers' decisions and nothing forged (the listing
    // waits for the log to be written).
    let (status, _) = s.get("/v1/decisions?limit=200").await;
    assert_eq!(status, 200);
    let logged: std::collections::BTreeSet<String> = log_lines(&log_dir)
        .iter()
        .map(|l| l["customer"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        logged,
        ["a-program", "no-type", "own-origin"]
            .map(String::from)
            .into(),
        "the log holds only what was answered"
    );
}

/// A customer id of megabytes is refused, named, on every path, and never reaches the log; a
/// kept field longer than the log keeps is refused the same way. A field the record has is
/// logged even when no plugin reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_ids_and_fields_are_refused_and_kept_fields_are_logged_as_documented() {
    let (s, _log, log_dir) = logging(&["--decision-log-field", "profile.email"]);
    let huge = "x".repeat(10 << 20);
    let mut long = customer();
    long["id"] = huge.clone().into();
    for path in ["/v1/decide", "/v1/plugins/lapsed/evaluate"] {
        let (status, answer) = s
            .post(path, &json!({"customer": long, "now": NIGHT}))
            .await
            .unwrap();
        assert_eq!(status, 400, "{path}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("customer.id") && message.contains("at most 256"),
            "{message}"
        );
        assert!(message.len() < 1000, "the id is not echoed back");
    }
    let ndjson = format!("{long}\n{}\n", customer());
    for path in [
        format!("/v1/campaigns/run?now={NIGHT}"),
        format!("/v1/batch?plugins=lapsed&now={NIGHT}"),
    ] {
        let text = s.post_text(&path, ndjson.clone()).await;
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{path}: one line per input line");
        let error = lines[0]["error"].as_str().unwrap();
        assert!(error.contains("at most 256"), "{error}");
        assert!(text.len() < 100_000, "{path}: the id is not echoed back");
    }
    // A kept field longer than the log keeps: refused, named.
    let mut wordy = customer();
    wordy["id"] = "wordy".into();
    wordy["profile"]["email"] = "a".repeat(5000).into();
    let (status, answer) = s
        .post(
            "/v1/plugins/lapsed/evaluate",
            &json!({"customer": wordy, "now": NIGHT}),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("profile.email")
    );
    // `lapsed` reads no profile: the email is logged all the same, and `null` where it is none.
    let mut with_email = customer();
    with_email["id"] = "with-email".into();
    with_email["profile"]["email"] = "bia@example.com".into();
    let mut without = customer();
    without["id"] = "without-email".into();
    for c in [&with_email, &without] {
        let (status, answer) = s
            .post(
                "/v1/plugins/lapsed/evaluate",
                &json!({"customer": c, "now": NIGHT}),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{answer}");
    }
    let (status, _) = s.get("/v1/decisions?limit=200").await;
    assert_eq!(status, 200);
    let lines = log_lines(&log_dir);
    let email_of = |id: &str| {
        lines
            .iter()
            .find(|l| l["customer"] == id)
            .unwrap_or_else(|| panic!("{id} is logged"))["fields"]["profile.email"]
            .clone()
    };
    assert_eq!(email_of("with-email"), "bia@example.com");
    assert_eq!(email_of("without-email"), Value::Null);
    assert!(
        lines
            .iter()
            .all(|l| l["customer"].as_str().unwrap().len() <= 256 && l["customer"] != "wordy"),
        "nothing refused is logged"
    );
}

/// Lookups of decision ids the log does not hold, 48 at once, with ids from the log's own
/// period (so they must be looked for): all answered 404, and the service's memory stays
/// within a small bound instead of reading the log whole per lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_decision_ids_cost_bounded_memory() {
    let (s, _log, log_dir) = logging(&["--decision-log-max-mib", "8"]);
    // About 20 MB of log: 7 campaigns × 6,000 customers.
    let generated = std::process::Command::new(regua_tests::regua_bin())
        .args(["generate", "--count", "6000"])
        .output()
        .unwrap();
    assert!(generated.status.success());
    let text = s
        .post_text(
            "/v1/campaigns/run?now=2025-03-11T12:00:00Z",
            generated.stdout,
        )
        .await;
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let known = first["decisions"][0]["decision_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = s.get(&format!("/v1/decisions/{known}")).await;
    assert_eq!(status, 200);
    let size: u64 = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|f| f.unwrap().metadata().unwrap().len())
        .sum();
    assert!(size > 15 << 20, "{size} bytes of log");
    let pid = s.pid();
    let before = rss_mib(pid);
    let watch = Watch::start(pid);
    // The known id's millisecond and process, with sequence numbers never given.
    let prefix = known.rsplit_once('-').unwrap().0.to_owned();
    let lookups = (0..48).map(|n| {
        let path = format!("/v1/decisions/{prefix}-{:x}", 0xfff_0000 + n);
        let s = &s;
        async move { s.get(&path).await.0 }
    });
    let statuses = futures_util::future::join_all(lookups).await;
    let peak = watch.peak();
    assert!(statuses.iter().all(|&st| st == 404), "{statuses:?}");
    assert!(
        peak <= before + 64,
        "resident memory went from {before} MiB to {peak} MiB for {size} bytes of log"
    );
}

/// A refused request's reason is in the service's log, not only its status: a plugin that fails
/// on the customer (422) says why there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_says_why_a_request_was_refused() {
    let s = examples(&[]);
    let body = json!({"customer": {"id": "bad-7"}, "now": NIGHT, "params": {"mode": "fail"}});
    let (status, answer) = s.post("/v1/plugins/hostile/evaluate", &body).await.unwrap();
    assert_eq!(status, 422, "{answer}");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let log = s.log();
        if log
            .iter()
            .any(|l| l.contains("422") && l.contains("cannot judge customer bad-7"))
        {
            break;
        }
        assert!(std::time::Instant::now() < until, "{log:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
