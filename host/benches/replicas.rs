//! The journey runtime beyond one machine: replicas of `regua serve` on one PostgreSQL
//! database, fed by one NATS JetStream stream. Measures, in the same run, one replica against
//! two on the same inputs: events/s (published → every input applied) and timers/s (the
//! clocks moved 40 days on → every due timer fired, counted as the decisions made on timers);
//! checks that both runs planned the same
//! outbox, every input applied once and no message twice; then SIGKILLs one of two replicas
//! under load and measures how soon its claims are free (its database sessions gone) and how
//! soon every input is applied by the survivor (the killed one's unacknowledged messages come
//! again after the ack wait).
//!
//! Needs a PostgreSQL server it may create databases on and the nats-server binary:
//! `REGUA_BENCH_POSTGRES=postgres://USER@127.0.0.1:PORT/postgres
//!  REGUA_BENCH_NATS_SERVER=/usr/sbin/nats-server cargo bench -p regua-host --bench replicas
//!  -- [customers]` (default 5000). BENCHMARKS.md has the figures.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REGUA: &str = env!("CARGO_BIN_EXE_regua");
const START: &str = "2025-03-01T00:00:00Z";
const LATER: &str = "2025-04-10T00:00:00Z";
const ACK_WAIT: &str = "5";

#[path = "common/runtime_inputs.rs"]
mod common;
use common::run;

/// One query, its first column of its first row as text (on a thread of its own: the
/// synchronous client runs a runtime of its own).
fn sql(url: &str, query: &str) -> String {
    let (url, query) = (url.to_owned(), query.to_owned());
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let rows = c.simple_query(&query).unwrap();
        rows.into_iter()
            .find_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_owned()),
                _ => None,
            })
            .unwrap_or_default()
    })
    .join()
    .unwrap()
}

fn count(url: &str, query: &str) -> u64 {
    sql(url, query).parse().unwrap()
}

/// A fresh database on the server: its URL.
fn database(admin: &str, name: &str) -> String {
    sql(admin, &format!("DROP DATABASE IF EXISTS {name}"));
    sql(admin, &format!("CREATE DATABASE {name}"));
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

struct Replica {
    child: Child,
    base: String,
}

impl Replica {
    fn start(plugins: &Path, campaigns: &Path, db: &str, events: &str) -> Replica {
        let (child, base) = common::serve(
            Command::new(REGUA)
                .args([
                    "serve",
                    "--addr",
                    "127.0.0.1:0",
                    "--threads",
                    "2",
                    "--plugins",
                ])
                .arg(plugins)
                .arg("--campaigns")
                .arg(campaigns)
                .args(["--state", db, "--manual-clock", START, "--events", events])
                .args(["--events-ack-wait", ACK_WAIT]),
        );
        Replica { child, base }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publishes `events` (their id as the message id) and waits until `db` has applied all of
/// them; answers the seconds from the first publish.
async fn stream(
    js: &async_nats::jetstream::Context,
    subject: &str,
    events: &[String],
    db: &str,
) -> f64 {
    let t = Instant::now();
    // The client holds a few thousand publications unacknowledged at most: their acks are
    // awaited a thousand at a time.
    for chunk in events.chunks(1_000) {
        let mut acks = Vec::with_capacity(chunk.len());
        for e in chunk {
            let v: serde_json::Value = serde_json::from_str(e).unwrap();
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", v["id"].as_str().unwrap());
            acks.push(
                js.publish_with_headers(subject.to_owned(), headers, e.clone().into())
                    .await
                    .unwrap(),
            );
        }
        for a in acks {
            a.await.unwrap();
        }
    }
    wait_applied(db, events.len() as u64).await;
    t.elapsed().as_secs_f64()
}

async fn wait_applied(db: &str, n: u64) {
    let t = Instant::now();
    while count(db, "SELECT count(*) FROM events") < n {
        assert!(
            t.elapsed() < Duration::from_secs(1800),
            "inputs never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Decisions made on timers so far.
fn timer_decisions(db: &str) -> u64 {
    count(
        db,
        "SELECT count(*) FROM decisions WHERE input LIKE 'timer@%'",
    )
}

/// Moves every replica's clock to `to` at once and waits until every timer due by then has
/// fired (each answers once none is left); answers (timer decisions made, seconds).
async fn tick(db: &str, replicas: &[&Replica], to: &str) -> (u64, f64) {
    let before = timer_decisions(db);
    let t = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    let posts = replicas.iter().map(|r| {
        client
            .post(format!("{}/v1/clock", r.base))
            .json(&serde_json::json!({"now": to}))
            .send()
    });
    for answer in futures_util::future::join_all(posts).await {
        let v: serde_json::Value = answer.unwrap().json().await.unwrap();
        assert!(v["fired"].is_u64(), "{v}");
    }
    let secs = t.elapsed().as_secs_f64();
    (timer_decisions(db) - before, secs)
}

/// The inputs from the stream a replica applied (its metrics).
async fn stream_applied(base: &str) -> u64 {
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find(|l| {
            l.starts_with("regua_runtime_inputs_total{")
                && l.contains(r#"source="stream""#)
                && l.contains(r#"status="applied""#)
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

fn outbox(db: &str) -> String {
    sql(
        db,
        "SELECT md5(string_agg(key || send_at || template, ',' ORDER BY key)) FROM outbox",
    )
}

fn main() {
    let customers: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5_000);
    let admin = std::env::var("REGUA_BENCH_POSTGRES")
        .expect("REGUA_BENCH_POSTGRES: a PostgreSQL URL to create the benchmark's databases on");
    let nats_bin = std::env::var("REGUA_BENCH_NATS_SERVER").unwrap_or("nats-server".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let common::Material {
        plugins,
        people,
        events,
    } = common::material(dir.path(), customers);
    let campaigns = root.join("examples/reguas");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nats_dir = dir.path().join("nats");
    let mut nats = Command::new(&nats_bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(&nats_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting nats-server");
    let nats_url = format!("nats://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let js = rt.block_on(async {
        let t = Instant::now();
        let client = loop {
            match async_nats::connect(nats_url.as_str()).await {
                Ok(c) => break c,
                Err(_) if t.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("nats-server: {e}"),
            }
        };
        async_nats::jetstream::new(client)
    });

    let mut rows = Vec::new();
    let mut digests = Vec::new();
    for n in [1usize, 2] {
        let db = database(&admin, &format!("regua_bench_{n}"));
        run(Command::new(REGUA)
            .args(["customers", "import", "-q", "--state", &db])
            .arg(&people));
        let subject = format!("bench.events{n}");
        rt.block_on(async {
            js.create_stream(async_nats::jetstream::stream::Config {
                name: format!("BENCH{n}"),
                subjects: vec![subject.clone()],
                ..Default::default()
            })
            .await
            .unwrap();
        });
        let url = format!("{nats_url}/{subject}");
        let replicas: Vec<Replica> = (0..n)
            .map(|_| Replica::start(&plugins, &campaigns, &db, &url))
            .collect();
        let all: Vec<&Replica> = replicas.iter().collect();
        let (secs, (fired, tsecs)) = rt.block_on(async {
            let secs = stream(&js, &subject, &events, &db).await;
            (secs, tick(&db, &all, LATER).await)
        });
        let twice = count(
            &db,
            "SELECT count(*) FROM (SELECT 1 FROM decisions GROUP BY customer, input, campaign
             HAVING count(*) > 1) d",
        );
        assert_eq!(twice, 0, "{n} replicas: inputs decided twice");
        let entries = count(&db, "SELECT count(*) FROM outbox");
        digests.push(outbox(&db));
        rows.push((n, secs, fired, tsecs, entries));
    }
    assert_eq!(
        digests[0], digests[1],
        "one replica and two planned different outboxes"
    );

    // Two replicas under load, one SIGKILLed a third of the way in.
    let db = database(&admin, "regua_bench_kill");
    run(Command::new(REGUA)
        .args(["customers", "import", "-q", "--state", &db])
        .arg(&people));
    let subject = "bench.kill";
    rt.block_on(async {
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "BENCHKILL".into(),
            subjects: vec![subject.into()],
            ..Default::default()
        })
        .await
        .unwrap();
    });
    let url = format!("{nats_url}/{subject}");
    let mut pair = vec![
        Replica::start(&plugins, &campaigns, &db, &url),
        Replica::start(&plugins, &campaigns, &db, &url),
    ];
    let sessions = || {
        count(
            &db,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'regua'
             AND datname = current_database()",
        )
    };
    let (freed, all_applied) = rt.block_on(async {
        let publisher = {
            let (js, events) = (js.clone(), events.clone());
            tokio::spawn(async move {
                for e in &events {
                    let v: serde_json::Value = serde_json::from_str(e).unwrap();
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Nats-Msg-Id", v["id"].as_str().unwrap());
                    js.publish_with_headers(subject, headers, e.clone().into())
                        .await
                        .unwrap()
                        .await
                        .unwrap();
                }
            })
        };
        wait_applied(&db, events.len() as u64 / 3).await;
        // The replica reading the stream (one at a time does).
        let mut took = Vec::new();
        for r in &pair {
            took.push(stream_applied(&r.base).await);
        }
        let reader = if took[0] > 0 { 0 } else { 1 };
        let mut killed = pair.remove(reader);
        let before = sessions();
        let t = Instant::now();
        killed.child.kill().unwrap();
        let _ = killed.child.wait();
        while sessions() >= before {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let freed = t.elapsed().as_secs_f64();
        publisher.await.unwrap();
        wait_applied(&db, events.len() as u64).await;
        (freed, t.elapsed().as_secs_f64())
    });
    let survivor = pair.pop().unwrap();
    let (fired, _) = rt.block_on(tick(&db, &[&survivor], LATER));
    let twice = count(
        &db,
        "SELECT count(*) FROM (SELECT 1 FROM decisions GROUP BY customer, input, campaign
         HAVING count(*) > 1) d",
    );
    assert_eq!(twice, 0, "after the kill: inputs decided twice");
    let same = outbox(&db) == digests[0];
    drop(survivor);
    let _ = nats.kill();
    let _ = nats.wait();

    println!(
        "{customers} customers, {} inputs on one stream; timers fired by moving the clocks \
         {START} → {LATER}",
        events.len()
    );
    println!("| replicas | events/s | timer decisions | timer decisions/s | outbox entries |");
    println!("|---|---|---|---|---|");
    for (n, secs, fired, tsecs, entries) in &rows {
        println!(
            "| {n} | {:.0} | {fired} | {:.0} | {entries} |",
            events.len() as f64 / secs,
            *fired as f64 / tsecs
        );
    }
    println!(
        "two replicas / one: events/s {:.2} ×, timer decisions/s {:.2} ×; the same outbox: yes",
        rows[0].1 / rows[1].1,
        (rows[1].2 as f64 / rows[1].3) / (rows[0].2 as f64 / rows[0].3)
    );
    println!(
        "SIGKILL of the replica reading the stream a third of the way in: its claims free after {:.0} ms \
         (its sessions gone); every input applied {:.1} s after the kill (ack wait {ACK_WAIT} s); \
         {fired} timer decisions then; no input decided twice; the same outbox as one replica: {}",
        freed * 1000.0,
        all_applied,
        if same { "yes" } else { "NO" }
    );
}
