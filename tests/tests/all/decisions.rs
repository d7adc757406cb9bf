//! The decision log of a campaign run: every decision the run answers is on the log exactly
//! once, with its campaign, requester and outcome, and `regua decisions show` explains it.

use std::collections::HashMap;

use regua_tests::{plugins_dir, repo};

use crate::cli::{regua, text};

fn campaign_run(input: &str, log: &std::path::Path) -> std::process::Output {
    let dir = repo().join("examples/campaigns");
    regua(
        &[
            "campaign",
            "run",
            "--campaigns",
            dir.to_str().unwrap(),
            "--plugins-dir",
            plugins_dir().to_str().unwrap(),
            "--input",
            "-",
            "--now",
            "2025-03-11T12:00:00Z",
            "-q",
            "--decision-log",
            log.to_str().unwrap(),
            "--decision-log-max-mib",
            "1",
        ],
        input,
    )
}

#[test]
fn every_decision_of_a_campaign_run_is_logged_once_and_explained() {
    let mut input = std::fs::read_to_string(repo().join("examples/customers.ndjson")).unwrap();
    let first = input.lines().next().unwrap().to_owned();
    input.push_str(&first); // a repeated id: an error line, its decisions not logged
    input.push('\n');
    let log = tempfile::tempdir().unwrap();
    let out = campaign_run(&input, log.path());
    assert!(out.status.success(), "{}", text(&out.stderr));

    let mut answered = HashMap::new();
    for line in text(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for d in v["decisions"].as_array().into_iter().flatten() {
            let id = d["decision_id"]
                .as_str()
                .expect("every decision has an id")
                .to_owned();
            let previous = answered.insert(id, (v["id"].clone(), d.clone()));
            assert!(previous.is_none(), "a decision id given twice");
        }
    }
    let mut logged = HashMap::new();
    for file in std::fs::read_dir(log.path()).unwrap() {
        for line in std::fs::read_to_string(file.unwrap().path())
            .unwrap()
            .lines()
        {
            let e: serde_json::Value = serde_json::from_str(line).unwrap();
            let id = e["decision"].as_str().unwrap().to_owned();
            assert!(logged.insert(id, e).is_none(), "a decision logged twice");
        }
    }
    assert_eq!(
        logged.len(),
        answered.len(),
        "the log holds exactly the decisions answered"
    );
    for (id, (customer, d)) in &answered {
        let e = &logged[id];
        assert_eq!(&e["customer"], customer);
        assert_eq!(e["campaign"], d["campaign"]);
        assert_eq!(e["outcome"], d["outcome"]);
        assert_eq!(e["now"], "2025-03-11T12:00:00Z");
        assert!(e["requester"].is_string() && e["input"].as_str().unwrap().starts_with("sha256:"));
        assert!(e.get("fields").is_none(), "no record fields unless named");
    }

    let (id, (_, d)) = answered
        .iter()
        .find(|(_, (_, d))| d["outcome"] == "denied" || d["outcome"] == "planned")
        .expect("the examples plan or deny something");
    let shown = regua(
        &[
            "decisions",
            "show",
            id,
            "--log",
            log.path().to_str().unwrap(),
        ],
        "",
    );
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let words = text(&shown.stdout);
    let campaign = d["campaign"].as_str().unwrap();
    assert!(
        words.contains(&format!("Campaign {campaign} (requested by ")),
        "{words}"
    );
    assert!(words.contains("Plugins: "), "{words}");

    let missing = regua(
        &[
            "decisions",
            "show",
            "no-such-id",
            "--log",
            log.path().to_str().unwrap(),
        ],
        "",
    );
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("no decision `no-such-id`"));
}

#[test]
fn a_log_folder_that_cannot_be_written_fails_the_run_and_says_how_many_were_not_logged() {
    let dir = tempfile::tempdir().unwrap();
    let in_the_way = dir.path().join("log");
    std::fs::write(&in_the_way, "a file where the folder should be").unwrap();
    let input = std::fs::read_to_string(repo().join("examples/customers.ndjson")).unwrap();
    let out = campaign_run(&input, &in_the_way);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("could not be written to the decision log"),
        "{err}"
    );
    assert!(err.contains(in_the_way.to_str().unwrap()), "{err}");
}

/// `regua serve` run for real on 127.0.0.1 port 0, logging its decisions.
/// The `regua serve` binary, run for real on 127.0.0.1 port 0.
pub(crate) struct Served {
    child: std::process::Child,
    pub(crate) base: String,
    client: reqwest::Client,
    /// What the service has written to its log (stderr) so far, a line each.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Served {
    /// The example plugins and campaigns, logging decisions to `log`.
    fn start(log: &std::path::Path, extra: &[&str]) -> Served {
        let log = log.to_str().unwrap();
        let mut args = vec!["--plugins", plugins_dir().to_str().unwrap()];
        args.extend(["--campaigns", "examples/campaigns", "--decision-log", log]);
        args.extend(extra);
        Served::spawn(&args)
    }

    /// `regua serve` with `args`, from the repository's root; returns once it listens.
    pub(crate) fn spawn(args: &[&str]) -> Served {
        use std::io::BufRead;
        let mut child = std::process::Command::new(regua_tests::regua_bin())
            .current_dir(repo())
            .args(["serve", "--addr", "127.0.0.1:0", "--threads", "2"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        // Reads the address, then keeps draining so the service never blocks on its stderr.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                kept.lock().unwrap().push(line.clone());
                if let Some(at) = line.find("regua: serving ")
                    && let Some(url) = line[at..]
                        .split_whitespace()
                        .find(|w| w.starts_with("http://"))
                {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let base = rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the service says where it listens");
        Served {
            child,
            base,
            log,
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Option<(u16, serde_json::Value)> {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.ok()?))
    }

    /// POSTs `body` (NDJSON lines, say) and returns the answer's text.
    /// The service's log so far.
    pub(crate) fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The service's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) async fn post_text(&self, path: &str, body: impl Into<reqwest::Body>) -> String {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .body(body)
            .send()
            .await
            .unwrap();
        r.text().await.unwrap()
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// SIGTERM, then the exit status (within a minute).
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < until,
                "the service did not stop"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // A `--dev` service runs cargo: its builds end with it.
        regua_tests::kill_tree(self.child.id(), None);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every line of every file of the log, by decision id; a repeated id fails.
fn read_log(dir: &std::path::Path) -> HashMap<String, serde_json::Value> {
    let mut logged = HashMap::new();
    for file in std::fs::read_dir(dir).unwrap() {
        for line in std::fs::read_to_string(file.unwrap().path())
            .unwrap()
            .lines()
        {
            let e: serde_json::Value = serde_json::from_str(line).unwrap();
            let id = e["decision"].as_str().unwrap().to_owned();
            assert!(!logged.contains_key(&id), "decision {id} logged twice");
            logged.insert(id, e);
        }
    }
    logged
}

fn example_customers() -> Vec<serde_json::Value> {
    std::fs::read_to_string(repo().join("examples/customers.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The decision ids of an answer of `/v1/decide` or `/v1/evaluate`.
fn ids_of(answer: &serde_json::Value) -> Vec<String> {
    let decisions = answer["decisions"].as_array().into_iter().flatten();
    let results = answer["results"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values());
    decisions
        .chain(results)
        .map(|d| {
            d["decision_id"]
                .as_str()
                .expect("each decision has an id")
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_of_a_service_is_logged_once_also_when_it_stops_under_load() {
    let log = tempfile::tempdir().unwrap();
    let mut served = Served::start(log.path(), &["--decision-log-max-mib", "1"]);
    let customers = std::sync::Arc::new(example_customers());
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let base = served.base.clone();
    let mut senders = Vec::new();
    for t in 0..4usize {
        let (client, customers, answered, base) = (
            served.client.clone(),
            customers.clone(),
            answered.clone(),
            base.clone(),
        );
        senders.push(tokio::spawn(async move {
            // Bounded: at most 3,000 requests per sender; it stops when the service does.
            for i in 0..3_000usize {
                let customer = &customers[(t + i) % customers.len()];
                let (path, body) = if i % 2 == 0 {
                    (
                        "/v1/decide",
                        serde_json::json!({"customer": customer, "now": "2025-03-11T12:00:00Z"}),
                    )
                } else {
                    (
                        "/v1/evaluate",
                        serde_json::json!({"customer": customer, "plugins": ["rfm", "lapsed"],
                            "now": "2025-03-11T12:00:00Z"}),
                    )
                };
                let Ok(r) = client
                    .post(format!("{base}{path}"))
                    .json(&body)
                    .send()
                    .await
                else {
                    break;
                };
                assert_eq!(r.status(), 200);
                let Ok(v) = r.json::<serde_json::Value>().await else {
                    break;
                };
                let id = customer["id"].as_str().unwrap().to_owned();
                let mut a = answered.lock().unwrap();
                for d in ids_of(&v) {
                    a.push((d, id.clone()));
                }
            }
        }));
    }
    // And one that streams batches: each line's answers carry their decision ids.
    {
        let (client, customers, answered, base) = (
            served.client.clone(),
            customers.clone(),
            answered.clone(),
            base.clone(),
        );
        senders.push(tokio::spawn(async move {
            let body: String = customers
                .iter()
                .take(25)
                .map(|c| format!("{c}\n"))
                .collect();
            for _ in 0..1_000 {
                let url =
                    format!("{base}/v1/batch?plugins=rfm,birthday-today&now=2025-03-11T12:00:00Z");
                let Ok(r) = client.post(url).body(body.clone()).send().await else {
                    break;
                };
                assert_eq!(r.status(), 200);
                let Ok(text) = r.text().await else { break };
                let mut a = answered.lock().unwrap();
                for line in text.lines() {
                    let v: serde_json::Value = serde_json::from_str(line).unwrap();
                    let id = v["id"].as_str().unwrap().to_owned();
                    for d in ids_of(&v) {
                        a.push((d, id.clone()));
                    }
                }
            }
        }));
    }
    // Stop while the senders are busy.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while answered.lock().unwrap().len() < 2_000 && std::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        senders.iter().all(|s| !s.is_finished()),
        "the service stops while every sender is still sending"
    );
    let status = tokio::task::block_in_place(|| served.terminate());
    assert!(status.success(), "a graceful stop exits 0: {status}");
    for s in senders {
        s.await.unwrap();
    }

    let logged = read_log(log.path());
    let answered = answered.lock().unwrap();
    assert!(
        answered.len() >= 2_000,
        "{} decisions answered",
        answered.len()
    );
    let mut seen = std::collections::HashSet::new();
    for (id, customer) in answered.iter() {
        assert!(seen.insert(id), "decision id {id} answered twice");
        let e = logged
            .get(id)
            .unwrap_or_else(|| panic!("decision {id}, answered, is not in the log"));
        assert_eq!(e["customer"], customer.as_str());
    }
    assert_eq!(
        logged.len(),
        answered.len(),
        "the log holds every decision answered, and nothing else"
    );
    let sources: std::collections::HashSet<_> = logged
        .values()
        .map(|e| e["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["campaign", "plugin"].into());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_log_shows_in_health_and_metrics_and_refuses_when_told_to() {
    let dir = tempfile::tempdir().unwrap();
    let in_the_way = dir.path().join("log");
    std::fs::write(&in_the_way, "a file where the folder should be").unwrap();
    let customer = example_customers().remove(0);
    let decide = serde_json::json!({"customer": customer, "now": "2025-03-11T12:00:00Z"});

    // Keeps answering: the decisions wait in memory, then are written once the folder is back.
    let mut answering = Served::start(&in_the_way, &[]);
    let (status, answer) = answering.post("/v1/decide", &decide).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    let ids = ids_of(&answer);
    assert!(!ids.is_empty());
    let (status, health) = answering.get("/healthz").await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["decision_log"]["ok"], false, "{health}");
    assert!(
        health["decision_log"]["error"]
            .as_str()
            .unwrap()
            .contains("cannot create the folder"),
        "{health}"
    );
    assert_eq!(health["decision_log"]["pending"], ids.len(), "{health}");
    let (_, metrics) = answering.get("/metrics").await;
    assert!(
        metrics.contains("regua_decision_log_failing 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("regua_decision_log_pending {}", ids.len())),
        "{metrics}"
    );

    std::fs::remove_file(&in_the_way).unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, metrics) = answering.get("/metrics").await;
        if metrics.contains("regua_decision_log_failing 0")
            && metrics.contains(&format!("regua_decision_log_written_total {}", ids.len()))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "the log never recovered:\n{metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, shown) = answering.get(&format!("/v1/decisions/{}", ids[0])).await;
    assert_eq!(status, 200, "{shown}");
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["entry"]["decision"], ids[0].as_str());
    assert!(
        shown["explanation"].as_str().unwrap().contains("Campaign "),
        "{shown}"
    );
    assert_eq!(answering.get("/v1/decisions/0-0-0").await.0, 404);
    assert!(answering.terminate().success());
    assert_eq!(read_log(&in_the_way).len(), ids.len());

    // Refuses while the folder cannot be written.
    let in_the_way = dir.path().join("log2");
    std::fs::write(&in_the_way, "in the way").unwrap();
    let refusing = Served::start(&in_the_way, &["--decision-log-on-failure", "refuse"]);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, answer) = refusing.post("/v1/decide", &decide).await.unwrap();
        if status == 503 {
            assert_eq!(answer["error"]["code"], "decision_log_failing", "{answer}");
            break;
        }
        assert!(std::time::Instant::now() < until, "never refused: {answer}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let evaluate = serde_json::json!({"customer": customer, "plugins": ["rfm"]});
    assert_eq!(
        refusing.post("/v1/evaluate", &evaluate).await.unwrap().0,
        503
    );
    assert_eq!(
        refusing.get("/v1/plugins").await.0,
        200,
        "reads still answer"
    );
}
