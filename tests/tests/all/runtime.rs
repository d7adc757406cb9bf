//! Réguas that run themselves (docs/RUNTIME.md): the seed scenarios through `regua replay` and
//! through `regua serve --state`, caps across réguas, duplicate, late and broken inputs, a
//! SIGKILL mid-stream and a restart after downtime. Every expected message is worked out from
//! the journeys' steps and the example company's rest rules (one marketing message per local
//! day, quiet hours 22:00–08:00 São Paulo), not read from a run.

use std::path::Path;

use regua_tests::plugins_dir;
use serde_json::{Value, json};

use crate::cli::{regua, text};
use crate::decisions::Served;

const REGUAS: &str = "examples/reguas";

// The customers' ids are outside the 5 % global holdout and the welcome journey's control
// variant (buckets of SHA-256("global:<id>") and ("welcome:<id>"): eva 5065 and 6416, bia 1392
// and 8153, caio 2858 and 6899; duda 1484, and 9325 in the welcome control, has no welcome).

/// A customer created on 2025-03-10 12:00Z with marketing consent on `channels`.
fn customer(id: &str, channels: &[&str], extra: Value) -> Value {
    let consent = json!({"marketing": {"status": "granted", "at": "2025-03-01T00:00:00Z"}});
    let consents: serde_json::Map<String, Value> = channels
        .iter()
        .map(|c| (c.to_string(), consent.clone()))
        .collect();
    let mut c = json!({"id": id, "tz": "America/Sao_Paulo",
        "profile": {"created_at": "2025-03-10T12:00:00Z", "product": "gold"},
        "consents": consents});
    if let Some(o) = extra.as_object() {
        for (k, v) in o {
            c[k] = v.clone();
        }
    }
    c
}

fn ndjson(values: &[Value]) -> String {
    values.iter().map(|v| format!("{v}\n")).collect()
}

fn read_ndjson(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `regua replay` over the example réguas: (outbox, answers, stderr).
fn replay(customers: &[Value], events: &str, until: &str) -> (Vec<Value>, Vec<Value>, String) {
    replay_in(REGUAS, customers, events, &["--until", until])
}

/// `regua replay` over the campaigns in `campaigns`, with `args`: (outbox, answers, stderr).
fn replay_in(
    campaigns: &str,
    customers: &[Value],
    events: &str,
    args: &[&str],
) -> (Vec<Value>, Vec<Value>, String) {
    let dir = tempfile::tempdir().unwrap();
    let (c, e) = (dir.path().join("c.ndjson"), dir.path().join("e.ndjson"));
    std::fs::write(&c, ndjson(customers)).unwrap();
    std::fs::write(&e, events).unwrap();
    let (out, answers) = (dir.path().join("out.ndjson"), dir.path().join("a.ndjson"));
    let mut all = vec![
        "replay",
        "--campaigns",
        campaigns,
        "--plugins-dir",
        plugins_dir().to_str().unwrap(),
        "--customers",
        c.to_str().unwrap(),
        "--events",
        e.to_str().unwrap(),
        "--answers",
        answers.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    all.extend(args);
    let run = regua(&all, "");
    let err = text(&run.stderr);
    assert!(run.status.success(), "{err}");
    (read_ndjson(&out), read_ndjson(&answers), err)
}

/// Each answer's status, in order.
fn statuses(answers: &[Value]) -> Vec<&str> {
    answers
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect()
}

/// The outbox as (customer, campaign, channel, step, send_at), in send order.
fn sends(outbox: &[Value]) -> Vec<(String, String, String, String, String)> {
    let mut v: Vec<_> = outbox
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("").to_owned();
            (
                s("customer"),
                s("campaign"),
                s("channel"),
                s("step"),
                s("send_at"),
            )
        })
        .collect();
    v.sort_by(|a, b| (&a.4, &a.0, &a.1).cmp(&(&b.4, &b.0, &b.1)));
    v
}

fn send(
    c: &str,
    campaign: &str,
    channel: &str,
    step: &str,
    at: &str,
) -> (String, String, String, String, String) {
    (
        c.into(),
        campaign.into(),
        channel.into(),
        step.into(),
        at.into(),
    )
}

const WELCOME: &str = "BRF-2025-001";
const ACTIVATION: &str = "BEN-2025-007";
const CART: &str = "BRF-2025-022";
const INACTIVITY: &str = "BRF-2025-031";

fn event(id: &str, customer: &str, at: &str, name: &str) -> String {
    format!(
        "{}\n",
        json!({"id": id, "customer": customer, "at": at, "name": name})
    )
}

/// Welcome (e-mail, 1 day, push, 2 days, WhatsApp at the next 09:00) and app activation (push
/// 24 h after the first e-mail or WhatsApp, then WhatsApp 24 h later) under one marketing
/// message a local day: the welcome push (priority 10) takes the day both want; the activation
/// push is denied and its journey keeps its spacing, so its WhatsApp comes 24 h after the
/// denial; a customer who activated the app first gets no nudge.
#[test]
fn welcome_and_app_activation_run_on_their_timers_and_share_the_daily_cap() {
    let customers = [
        customer("eva", &["email", "push", "whatsapp"], json!({})),
        customer("bia", &["email", "push", "whatsapp"], json!({})),
    ];
    let events = [
        event("e1", "eva", "2025-03-10T15:00:00Z", "account_created"),
        event("e2", "bia", "2025-03-10T15:00:00Z", "account_created"),
        event("e3", "bia", "2025-03-11T10:00:00Z", "app_activated"),
    ]
    .concat();
    let (outbox, answers, _) = replay(&customers, &events, "2025-03-20T00:00:00Z");
    assert!(
        answers.iter().all(|a| a["status"] == "applied"),
        "{answers:?}"
    );
    let mut expected = vec![
        send("eva", WELCOME, "email", "welcome", "2025-03-10T15:00:00Z"),
        send("bia", WELCOME, "email", "welcome", "2025-03-10T15:00:00Z"),
        send("eva", WELCOME, "push", "app", "2025-03-11T15:00:00Z"),
        send("bia", WELCOME, "push", "app", "2025-03-11T15:00:00Z"),
        send(
            "eva",
            ACTIVATION,
            "whatsapp",
            "whatsapp-nudge",
            "2025-03-12T15:00:00Z",
        ),
        // The push step waits 2 days; then the WhatsApp, the only message of that day.
        send(
            "eva",
            WELCOME,
            "whatsapp",
            "first-purchase",
            "2025-03-13T15:00:00Z",
        ),
        send(
            "bia",
            WELCOME,
            "whatsapp",
            "first-purchase",
            "2025-03-13T15:00:00Z",
        ),
    ];
    expected.sort_by(|a, b| (&a.4, &a.0, &a.1).cmp(&(&b.4, &b.0, &b.1)));
    assert_eq!(sends(&outbox), expected);
    // One message per key: the outbox never holds a step twice.
    let mut keys: Vec<&str> = outbox.iter().map(|e| e["key"].as_str().unwrap()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), outbox.len());
}

/// Cart abandonment: a push an hour after the cart, an e-mail 23 h after the push; a purchase
/// after the cart exits before the push.
#[test]
fn cart_abandonment_pushes_an_hour_later_unless_a_purchase_came_first() {
    let customers = [
        customer("caio", &["email", "push"], json!({})),
        customer("duda", &["email", "push"], json!({})),
    ];
    let purchase = json!({"id": "p1", "customer": "duda", "at": "2025-03-12T14:59:59Z",
        "transaction": {"id": "t1", "kind": "purchase", "amount": 120.0, "currency": "BRL"}});
    let events = [
        event("c1", "caio", "2025-03-12T14:00:00Z", "cart_abandoned"),
        event("c2", "duda", "2025-03-12T14:00:00Z", "cart_abandoned"),
        format!("{purchase}\n"),
    ]
    .concat();
    let (outbox, answers, _) = replay(&customers, &events, "2025-03-20T00:00:00Z");
    assert!(
        answers.iter().all(|a| a["status"] == "applied"),
        "{answers:?}"
    );
    assert_eq!(
        sends(&outbox),
        [
            send(
                "caio",
                CART,
                "push",
                "push-reminder",
                "2025-03-12T15:00:00Z"
            ),
            send(
                "caio",
                CART,
                "email",
                "email-reminder",
                "2025-03-13T14:00:00Z"
            ),
        ]
    );
}

/// The inactivity offer: 30 days (and a moment) after the last purchase, with no input then;
/// its reminder three days later.
#[test]
fn the_inactivity_offer_comes_thirty_days_after_the_last_purchase_with_nothing_happening() {
    let buyer = customer(
        "edu",
        &["email", "push"],
        json!({"transactions": [{"id": "t", "at": "2025-02-01T12:00:00Z", "kind": "purchase",
            "amount": 99.0, "currency": "BRL"}]}),
    );
    let events = event("l1", "edu", "2025-02-05T12:00:00Z", "login");
    let (outbox, _, _) = replay(&[buyer], &events, "2025-03-31T00:00:00Z");
    assert_eq!(
        sends(&outbox),
        [
            send(
                "edu",
                INACTIVITY,
                "email",
                "offer",
                "2025-03-03T12:00:00.001Z"
            ),
            send(
                "edu",
                INACTIVITY,
                "push",
                "reminder",
                "2025-03-06T12:00:00.001Z"
            ),
        ]
    );
}

/// Every input line gets an answer: a repeated id is a duplicate (applied once), a line out of
/// time order or broken is refused with what is wrong, and nothing else changes.
#[test]
fn a_replay_answers_every_line_and_applies_a_repeated_id_once() {
    let customers = [customer("caio", &["email", "push"], json!({}))];
    let events = [
        event("c1", "caio", "2025-03-12T14:00:00Z", "cart_abandoned"),
        event("c1", "caio", "2025-03-12T14:00:01Z", "cart_abandoned"),
        event("x", "caio", "2025-03-12T13:00:00Z", "login"),
        "{\"id\":\"y\",\"customer\":\"caio\",\"at\":\"2025-03-12T14:00:02Z\",\"nam\":\"login\"}\n"
            .into(),
        "not json\n".into(),
        "{\"id\":\"z\",\"customer\":\"caio\",\"name\":\"login\"}\n".into(),
    ]
    .concat();
    let (outbox, answers, err) = replay(&customers, &events, "2025-03-20T00:00:00Z");
    let status = statuses(&answers);
    assert_eq!(
        status,
        [
            "applied",
            "duplicate",
            "refused",
            "refused",
            "refused",
            "refused"
        ]
    );
    let lines: Vec<u64> = answers
        .iter()
        .map(|a| a["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [1, 2, 3, 4, 5, 6]);
    let error = |i: usize| answers[i]["error"].as_str().unwrap().to_owned();
    assert!(error(2).contains("before line 2"), "{}", error(2));
    assert!(error(3).contains("`nam`"), "{}", error(3));
    assert!(error(5).contains("`at`"), "{}", error(5));
    assert!(err.contains("1 duplicates, 4 refused"), "{err}");
    assert_eq!(
        outbox.len(),
        2,
        "the cart's push and e-mail, once: {outbox:?}"
    );
}

/// The scenario of several réguas as inputs: (customers, events).
fn mixed() -> (Vec<Value>, Vec<Value>) {
    let customers = vec![
        customer("eva", &["email", "push", "whatsapp"], json!({})),
        customer("bia", &["email", "push", "whatsapp"], json!({})),
        customer("caio", &["email", "push"], json!({})),
        customer("duda", &["email", "push"], json!({})),
    ];
    let mut events = Vec::new();
    let mut n = 0;
    let mut push = |c: &str, at: &str, name: &str| {
        n += 1;
        events.push(json!({"id": format!("ev-{n}"), "customer": c, "at": at, "name": name}));
    };
    push("eva", "2025-03-10T15:00:00Z", "account_created");
    push("bia", "2025-03-10T15:00:00Z", "account_created");
    push("caio", "2025-03-10T16:00:00Z", "account_created");
    push("bia", "2025-03-11T10:00:00Z", "app_activated");
    push("caio", "2025-03-12T14:00:00Z", "cart_abandoned");
    push("duda", "2025-03-12T14:00:00Z", "cart_abandoned");
    push("eva", "2025-03-12T18:00:00Z", "login");
    push("duda", "2025-03-13T11:00:00Z", "cart_abandoned");
    (customers, events)
}

/// Which store a test's runtime keeps its state in.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Sqlite,
    Postgres,
}

/// A test's store: a folder of its own (SQLite), or a database of its own on the PostgreSQL
/// server the test command started.
pub(crate) enum Db {
    Folder(tempfile::TempDir),
    Postgres(String),
}

impl Db {
    pub(crate) fn new(kind: Kind) -> Db {
        match kind {
            Kind::Sqlite => Db::Folder(tempfile::tempdir().unwrap()),
            Kind::Postgres => Db::Postgres(regua_tests::postgres_db()),
        }
    }

    /// What `--state` is given.
    pub(crate) fn arg(&self) -> &str {
        match self {
            Db::Folder(dir) => dir.path().to_str().unwrap(),
            Db::Postgres(url) => url,
        }
    }
}

/// A test of the service's runtime, run on each store: `NAME::sqlite` and `NAME::postgres`.
macro_rules! on_both_stores {
    ($(#[$meta:meta])* async fn $name:ident($kind:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            use super::*;

            async fn run($kind: Kind) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(Kind::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run(Kind::Postgres).await
            }
        }
    };
}

const START: &str = "2025-03-10T00:00:00Z";
const END: &str = "2025-03-20T00:00:00Z";

fn serve_state(state: &Db, clock: &str) -> Served {
    serve_state_with(state, clock, &[])
}

fn serve_state_with(state: &Db, clock: &str, extra: &[&str]) -> Served {
    let mut args = vec![
        "--plugins",
        plugins_dir().to_str().unwrap(),
        "--campaigns",
        REGUAS,
        "--state",
        state.arg(),
        "--manual-clock",
        clock,
    ];
    args.extend(extra);
    Served::spawn(&args)
}

/// Posts each event after moving the clock to its instant (when that is not behind the clock);
/// answers the statuses.
async fn feed(s: &Served, events: &[Value]) -> Vec<Value> {
    let mut statuses = Vec::new();
    for e in events {
        s.post("/v1/clock", &json!({"now": e["at"]})).await.unwrap();
        let (code, a) = s.post("/v1/events", e).await.unwrap();
        assert_eq!(code, 200, "{a}");
        statuses.push(a);
    }
    statuses
}

fn keyed(outbox: &[Value]) -> Vec<(String, String, String, String)> {
    let mut v: Vec<_> = outbox
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("").to_owned();
            (s("key"), s("send_at"), s("template"), s("decided_at"))
        })
        .collect();
    v.sort();
    v
}

on_both_stores! {
/// The service on a manual clock, fed the same inputs at their instants, plans the outbox the
/// replay plans, message for message (key, instant, template and when it was decided).
async fn the_service_and_replay_plan_the_same_outbox(kind) {
    let (customers, events) = mixed();
    let (replayed, _, _) = replay(&customers, &ndjson(&events), END);
    assert!(replayed.len() >= 8, "{replayed:?}");
    let state = Db::new(kind);
    let s = serve_state(&state, START);
    let imported = s.post_text("/v1/customers", ndjson(&customers)).await;
    assert_eq!(imported.lines().count(), customers.len(), "{imported}");
    let statuses = feed(&s, &events).await;
    assert!(
        statuses.iter().all(|a| a["status"] == "applied"),
        "{statuses:?}"
    );
    let (_, moved) = s.post("/v1/clock", &json!({"now": END})).await.unwrap();
    assert!(moved["fired"].as_u64().unwrap() > 0, "{moved}");
    let (_, all) = s.get("/v1/outbox?state=all&limit=10000").await;
    let all: Value = serde_json::from_str(&all).unwrap();
    assert_eq!(keyed(all["entries"].as_array().unwrap()), keyed(&replayed));

    // The customer's view: record, journeys, timers, outbox and decisions.
    let (code, view) = s.get("/v1/customers/eva").await;
    assert_eq!(code, 200);
    let view: Value = serde_json::from_str(&view).unwrap();
    assert!(
        view["journeys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["journey"] == "welcome")
    );
    assert!(!view["outbox"].as_array().unwrap().is_empty());
    assert!(!view["decisions"].as_array().unwrap().is_empty());
    // Each send is a contact of the record, with the template it went with.
    let contacts = view["record"]["contacts"].as_array().unwrap();
    for entry in view["outbox"].as_array().unwrap() {
        assert!(
            contacts.iter().any(|c| c["channel"] == entry["channel"]
                && c["at"] == entry["send_at"]
                && c["template"] == entry["template"]),
            "{entry} is not among the contacts {contacts:?}"
        );
    }
    assert_eq!(s.get("/v1/customers/nobody").await.0, 404);

    // Delivery: due entries until acknowledged; a failed one is recorded as failed.
    let (_, due) = s.get("/v1/outbox").await;
    let due: Value = serde_json::from_str(&due).unwrap();
    let due = due["entries"].as_array().unwrap().clone();
    assert_eq!(due.len(), replayed.len(), "every message is due by the end");
    let acks: Vec<Value> = due
        .iter()
        .enumerate()
        .map(
            |(i, e)| json!({"key": e["key"], "state": if i == 0 { "failed" } else { "delivered" }}),
        )
        .collect();
    let (code, found) = s.post("/v1/outbox/ack", &Value::Array(acks)).await.unwrap();
    assert_eq!(code, 200);
    assert!(found.as_array().unwrap().iter().all(|f| f["found"] == true));
    let (_, left) = s.get("/v1/outbox").await;
    assert_eq!(
        serde_json::from_str::<Value>(&left).unwrap()["entries"],
        json!([])
    );
    let (_, all) = s.get("/v1/outbox?state=all").await;
    let all: Value = serde_json::from_str(&all).unwrap();
    let failed = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["state"] == "failed")
        .count();
    assert_eq!(failed, 1);
}
}

on_both_stores! {
/// A repeated event id is a duplicate; an event before the customer's last applied input is
/// refused as late, naming both instants; one more than 5 minutes ahead of the clock is refused.
async fn duplicate_late_and_future_events_are_answered_and_not_applied(kind) {
    let state = Db::new(kind);
    let s = serve_state(&state, "2025-03-12T14:00:00Z");
    let lines = [
        json!({"id": "a", "customer": "caio", "name": "cart_abandoned"}),
        json!({"id": "a", "customer": "caio", "name": "cart_abandoned"}),
        json!({"id": "b", "customer": "caio", "at": "2025-03-12T13:00:00Z", "name": "login"}),
        json!({"id": "c", "customer": "caio", "at": "2025-03-12T15:00:00Z", "name": "login"}),
        json!({"id": "d", "customer": "caio", "at": "2025-03-12T14:00:00Z"}),
    ];
    let answers = s.post_text("/v1/events", ndjson(&lines)).await;
    let answers: Vec<Value> = answers
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let status = statuses(&answers);
    assert_eq!(
        status,
        ["applied", "duplicate", "refused", "refused", "refused"],
        "{answers:?}"
    );
    let late = answers[2]["error"].as_str().unwrap();
    assert!(
        late.contains("late") && late.contains("2025-03-12T14:00:00Z"),
        "{late}"
    );
    assert!(
        answers[3]["error"].as_str().unwrap().contains("ahead"),
        "{answers:?}"
    );
    assert!(
        answers[4]["error"]
            .as_str()
            .unwrap()
            .contains("exactly one of"),
        "{answers:?}"
    );
    let view: Value = serde_json::from_str(&s.get("/v1/customers/caio").await.1).unwrap();
    let names: Vec<&str> = view["record"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["cart_abandoned"],
        "applied once, the refused ones not at all"
    );
}
}

/// Many customers' inputs over ten days, in time order: sign-ups, carts, purchases, app
/// activations and logins, so that journeys, timers and caps interleave.
fn many(n: usize) -> (Vec<Value>, Vec<Value>) {
    let channels = ["email", "push", "whatsapp"];
    let customers: Vec<Value> = (0..n)
        .map(|i| customer(&format!("m{i:03}"), &channels, json!({})))
        .collect();
    let mut events = Vec::new();
    for i in 0..n {
        let c = format!("m{i:03}");
        let at = |day: u32, minute: usize| {
            format!(
                "2025-03-{:02}T{:02}:{:02}:00Z",
                10 + day,
                13 + minute / 60,
                minute % 60
            )
        };
        events.push(json!({"customer": c, "at": at(0, i), "name": "account_created"}));
        events.push(json!({"customer": c, "at": at(2, i), "name": "cart_abandoned"}));
        match i % 3 {
            0 => events.push(json!({"customer": c, "at": at(2, i + 30), "transaction":
                {"id": format!("t{i}"), "kind": "purchase", "amount": 50.0, "currency": "BRL"}})),
            1 => events.push(json!({"customer": c, "at": at(1, i), "name": "app_activated"})),
            _ => events.push(json!({"customer": c, "at": at(4, i), "name": "login"})),
        }
    }
    events.sort_by(|a, b| a["at"].as_str().cmp(&b["at"].as_str()));
    for (k, e) in events.iter_mut().enumerate() {
        e["id"] = json!(format!("in-{k}"));
    }
    (customers, events)
}

on_both_stores! {
/// Inputs of many customers posted as one NDJSON batch (the service decides distinct
/// customers' steps together, one plugin call per campaign step) plan the outbox the replay
/// plans one input at a time; in the same batch a customer's later inputs wait for its earlier
/// ones, a repeated id is a duplicate and an input older than its customer's last is late.
async fn a_batch_of_many_customers_inputs_plans_what_one_at_a_time_plans(kind) {
    let (customers, events) = many(120);
    let (replayed, _, _) = replay(&customers, &ndjson(&events), END);
    assert!(replayed.len() > 150, "{}", replayed.len());
    let state = Db::new(kind);
    let last = events.last().unwrap()["at"].as_str().unwrap().to_owned();
    let s = serve_state(&state, &last);
    s.post_text("/v1/customers", ndjson(&customers)).await;
    let mut batch = events.clone();
    // A repeat of an input of this batch, and m000's login before its last input.
    batch.push(events[5].clone());
    batch.push(
        json!({"id": "late-1", "customer": "m000", "at": "2025-03-11T09:00:00Z",
                      "name": "login"}),
    );
    let answers = s.post_text("/v1/events", ndjson(&batch)).await;
    let answers: Vec<Value> = answers
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), batch.len());
    let n = events.len();
    assert!(
        answers[..n].iter().all(|a| a["status"] == "applied"),
        "{:?}",
        answers.iter().find(|a| a["status"] != "applied")
    );
    assert_eq!(answers[n]["status"], "duplicate", "{}", answers[n]);
    assert_eq!(answers[n + 1]["status"], "refused", "{}", answers[n + 1]);
    assert!(
        answers[n + 1]["error"]
            .as_str()
            .unwrap()
            .starts_with("late"),
        "{}",
        answers[n + 1]
    );
    s.post("/v1/clock", &json!({"now": END})).await.unwrap();
    let (_, all) = s.get("/v1/outbox?state=all&limit=10000").await;
    let all: Value = serde_json::from_str(&all).unwrap();
    assert_eq!(keyed(all["entries"].as_array().unwrap()), keyed(&replayed));
}
}

on_both_stores! {
/// Clients posting at once, each with the inputs of its own customers (in time order, in
/// batches) and some with a copy of another client's input: the service's evaluation threads
/// decide them concurrently, yet each input is applied once, each customer's in order, and the
/// outbox is the replay's of the same inputs. All inputs fall within the five minutes an input
/// may be ahead of the service's clock, so no timer is due before they are all applied.
async fn concurrent_clients_inputs_are_each_applied_once_in_their_customers_order(kind) {
    const CLIENTS: usize = 4;
    let channels = ["email", "push", "whatsapp"];
    let customers: Vec<Value> = (0..48)
        .map(|i| customer(&format!("k{i:02}"), &channels, json!({})))
        .collect();
    let at = |second: usize| format!("2025-03-10T00:{:02}:{:02}Z", second / 60, second % 60);
    // Per client, its customers' inputs in time order.
    let mut of_client: Vec<Vec<Value>> = vec![Vec::new(); CLIENTS];
    let mut all = Vec::new();
    for i in 0..48 {
        let c = format!("k{i:02}");
        let mut push = |second: usize, what: Value| {
            let mut e = json!({"id": format!("{c}-{second}"), "customer": c, "at": at(second)});
            for (k, v) in what.as_object().unwrap() {
                e[k] = v.clone();
            }
            of_client[i % CLIENTS].push(e.clone());
            all.push(e);
        };
        push(i, json!({"name": "account_created"}));
        push(i + 60, json!({"name": "cart_abandoned"}));
        match i % 3 {
            0 => push(
                i + 120,
                json!({"transaction": {"id": format!("t{i}"),
                "kind": "purchase", "amount": 50.0, "currency": "BRL"}}),
            ),
            1 => push(i + 120, json!({"name": "app_activated"})),
            _ => push(i + 120, json!({"name": "login"})),
        }
    }
    all.sort_by(|a, b| a["at"].as_str().cmp(&b["at"].as_str()));
    let (replayed, _, _) = replay(&customers, &ndjson(&all), END);
    assert!(replayed.len() > 24, "{}", replayed.len());
    for inputs in &mut of_client {
        inputs.sort_by(|a, b| a["at"].as_str().cmp(&b["at"].as_str()));
    }
    // A copy of each third customer's first input, in the first batch of another client.
    let copies: Vec<Value> = all
        .iter()
        .filter(|e| e["name"] == "account_created")
        .step_by(3)
        .cloned()
        .collect();
    for (n, copy) in copies.iter().enumerate() {
        of_client[(n + 1) % CLIENTS].insert(0, copy.clone());
    }

    let state = Db::new(kind);
    let s = serve_state(&state, START);
    s.post_text("/v1/customers", ndjson(&customers)).await;
    // Batches of 9, and one client one input per request (requests waiting together are
    // applied together: each still gets its own answers).
    let clients = of_client.iter().enumerate().map(|(n, inputs)| {
        let s = &s;
        async move {
            let mut answers = Vec::new();
            for batch in inputs.chunks(if n == 0 { 1 } else { 9 }) {
                let text = s.post_text("/v1/events", ndjson(batch)).await;
                let got: Vec<Value> = text
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                assert_eq!(got.len(), batch.len());
                for (answer, input) in got.iter().zip(batch) {
                    assert_eq!(answer["id"], input["id"]);
                    // An applied input's status says its instant.
                    if answer["status"] == "applied" {
                        assert_eq!(
                            answer["at"], input["at"],
                            "another input's status: {answer}"
                        );
                    }
                }
                answers.extend(got);
            }
            answers
        }
    });
    let answers: Vec<Value> = futures_util::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(answers.len(), all.len() + copies.len());
    let count = |status: &str| answers.iter().filter(|a| a["status"] == status).count();
    assert_eq!(count("applied"), all.len(), "{answers:?}");
    assert_eq!(count("duplicate"), copies.len(), "{answers:?}");
    s.post("/v1/clock", &json!({"now": END})).await.unwrap();
    let (_, outbox) = s.get("/v1/outbox?state=all&limit=10000").await;
    let outbox: Value = serde_json::from_str(&outbox).unwrap();
    assert_eq!(
        keyed(outbox["entries"].as_array().unwrap()),
        keyed(&replayed)
    );
}
}

on_both_stores! {
/// SIGKILL while inputs stream in, on a signal once half of them were accepted, so that it
/// lands amid requests: after a restart on the same folder, resending every input (a client
/// retries what it has no answer for) finds each accepted one a duplicate, applies the rest, and
/// the outbox is the replay's of the same inputs: nothing lost, no message twice.
async fn a_sigkill_mid_stream_loses_no_accepted_event_and_sends_nothing_twice(kind) {
    let (customers, events) = many(40);
    let (replayed, _, _) = replay(&customers, &ndjson(&events), END);
    assert!(replayed.len() > 60, "{}", replayed.len());
    let state = Db::new(kind);
    let s = serve_state(&state, START);
    s.post_text("/v1/customers", ndjson(&customers)).await;
    let (half_tx, half_rx) = tokio::sync::oneshot::channel();
    let feeder = {
        let (base, events) = (s.base.clone(), events.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let (mut accepted, mut half_tx) = (Vec::new(), Some(half_tx));
            for e in &events {
                let clock = client
                    .post(format!("{base}/v1/clock"))
                    .json(&json!({"now": e["at"]}));
                let Ok(_) = clock.send().await else { break };
                let post = client.post(format!("{base}/v1/events")).json(e).send();
                let Ok(Ok(answer)) = (match post.await {
                    Ok(r) => Ok(r.json::<Value>().await),
                    Err(e) => Err(e),
                }) else {
                    break;
                };
                accepted.push(answer);
                if accepted.len() == events.len() / 2
                    && let Some(tx) = half_tx.take()
                {
                    let _ = tx.send(());
                }
            }
            accepted
        })
    };
    half_rx.await.unwrap();
    std::process::Command::new("kill")
        .args(["-KILL", &s.pid().to_string()])
        .status()
        .unwrap();
    let accepted = feeder.await.unwrap();
    drop(s);
    assert!(
        accepted.len() < events.len(),
        "the kill came after the last input"
    );
    assert!(
        accepted.iter().all(|a| a["status"] == "applied"),
        "{accepted:?}"
    );
    // The clock restarts where the last accepted input left it.
    let resume = accepted.last().unwrap()["at"].as_str().unwrap().to_owned();
    let s = serve_state(&state, &resume);
    let again = feed(&s, &events).await;
    for (i, a) in again.iter().enumerate().take(accepted.len()) {
        assert_eq!(
            a["status"], "duplicate",
            "input {i} was accepted before the kill: {a}"
        );
    }
    // The one in flight at the kill may have been applied or not; every later one is new.
    for a in &again[accepted.len() + 1..] {
        assert_eq!(a["status"], "applied", "{a}");
    }
    s.post("/v1/clock", &json!({"now": END})).await.unwrap();
    let (_, all) = s.get("/v1/outbox?state=all&limit=10000").await;
    let all: Value = serde_json::from_str(&all).unwrap();
    assert_eq!(keyed(all["entries"].as_array().unwrap()), keyed(&replayed));
}
}

on_both_stores! {
/// Down for a week: on restart the overdue timers fire in order, each at its own due instant
/// (the messages say when they were decided), not all at the restart.
async fn a_restart_after_downtime_fires_overdue_timers_in_order_at_their_instants(kind) {
    let (customers, events) = mixed();
    let first_day: Vec<Value> = events
        .iter()
        .filter(|e| e["at"].as_str().unwrap() < "2025-03-11")
        .cloned()
        .collect();
    let (replayed, _, _) = replay(&customers, &ndjson(&first_day), END);
    let state = Db::new(kind);
    {
        let s = serve_state(&state, START);
        s.post_text("/v1/customers", ndjson(&customers)).await;
        feed(&s, &first_day).await;
    }
    // Restarted at the end of the period: the timer loop catches up on its own.
    let s = serve_state(&state, END);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, all) = s.get("/v1/outbox?state=all&limit=10000").await;
        let all: Value = serde_json::from_str(&all).unwrap();
        let got = keyed(all["entries"].as_array().unwrap());
        if got == keyed(&replayed) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{got:?}\n!=\n{:?}",
            keyed(&replayed)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Planned by timers that fired after the restart, each at its own due instant, and each
    // customer's in order.
    let (_, all) = s.get("/v1/outbox?state=all&limit=10000").await;
    let all: Value = serde_json::from_str(&all).unwrap();
    let entries = all["entries"].as_array().unwrap();
    let fired: Vec<&Value> = entries
        .iter()
        .filter(|e| e["input"].as_str().unwrap().starts_with("timer@"))
        .collect();
    assert!(fired.len() >= 3, "{entries:?}");
    for e in &fired {
        let decided = e["decided_at"].as_str().unwrap();
        assert_eq!(e["input"], format!("timer@{decided}"), "{e}");
        assert_ne!(decided, END, "{e}");
    }
    for c in ["eva", "bia", "caio"] {
        let times: Vec<&str> = entries
            .iter()
            .filter(|e| e["customer"] == c)
            .map(|e| e["decided_at"].as_str().unwrap())
            .collect();
        assert!(times.is_sorted(), "{c}: {times:?}");
    }
}
}

#[test]
fn customers_import_reports_bad_lines_with_their_numbers_and_imports_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.ndjson");
    std::fs::write(
        &file,
        format!(
            "{}\n{{\"id\":\"\"}}\n{}\n",
            customer("a", &["email"], json!({})),
            customer("b", &["email"], json!({}))
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let out = regua(
        &[
            "customers",
            "import",
            "--state",
            state.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
        "",
    );
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("line 2") && err.contains("`id`"), "{err}");
    assert!(err.contains("2 customers imported from 3 lines"), "{err}");
}

on_both_stores! {
/// A journey failing on one customer (its push template, with a 3,000-character product, is
/// more than the plugins' 2 KiB output limit) fails that campaign for that customer only: the
/// other customer's push goes, the same customer's app-activation push goes in the same step,
/// and the failing timer is retried 1, 2, 4 and 8 minutes later, then dropped, every attempt
/// recorded as an error decision.
async fn a_plugin_failing_on_one_customer_fails_that_campaign_only_and_is_retried_then_dropped(kind) {
    let state = Db::new(kind);
    let s = serve_state_with(&state, START, &["--output-limit", "2"]);
    let channels = ["email", "push", "whatsapp"];
    let customers = [
        customer("eva", &channels, json!({})),
        customer("bia", &channels, json!({})),
    ];
    s.post_text("/v1/customers", ndjson(&customers)).await;
    let long = json!({"id": "p1", "customer": "bia", "at": "2025-03-10T16:00:00Z",
        "profile": {"product": "x".repeat(3000)}});
    let events = [
        json!({"id": "e1", "customer": "eva", "at": "2025-03-10T15:00:00Z", "name": "account_created"}),
        json!({"id": "e2", "customer": "bia", "at": "2025-03-10T15:00:00Z", "name": "account_created"}),
        long,
    ];
    let answers = feed(&s, &events).await;
    assert_eq!(
        statuses(&answers),
        ["applied", "applied", "applied"],
        "{answers:?}"
    );
    let (_, moved) = s
        .post("/v1/clock", &json!({"now": "2025-03-11T16:00:00Z"}))
        .await
        .unwrap();
    assert_eq!(moved["now"], "2025-03-11T16:00:00Z");

    let view: Value = serde_json::from_str(&s.get("/v1/customers/bia").await.1).unwrap();
    let failures: Vec<&str> = view["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["decision"]["campaign"] == WELCOME && d["decision"]["outcome"] == "error")
        .map(|d| d["at"].as_str().unwrap())
        .collect();
    assert_eq!(
        failures,
        [
            "2025-03-11T15:15:00Z",
            "2025-03-11T15:07:00Z",
            "2025-03-11T15:03:00Z",
            "2025-03-11T15:01:00Z",
            "2025-03-11T15:00:00Z",
        ],
        "newest first: {view}"
    );
    let error = view["decisions"][0]["decision"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("output"), "the limit is named: {error}");
    assert!(
        view["timers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["campaign"] != WELCOME),
        "the welcome timer is dropped after the fifth failure: {}",
        view["timers"]
    );
    let sent = |v: &Value| -> Vec<(String, String)> {
        v["outbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["campaign"].as_str().unwrap().into(),
                    e["send_at"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    assert_eq!(
        sent(&view),
        [
            (WELCOME.to_owned(), "2025-03-10T15:00:00Z".to_owned()),
            (ACTIVATION.to_owned(), "2025-03-11T15:00:00Z".to_owned()),
        ],
        "the e-mail before the failure, and the activation push the welcome could not take"
    );
    let eva: Value = serde_json::from_str(&s.get("/v1/customers/eva").await.1).unwrap();
    assert_eq!(
        sent(&eva),
        [
            (WELCOME.to_owned(), "2025-03-10T15:00:00Z".to_owned()),
            (WELCOME.to_owned(), "2025-03-11T15:00:00Z".to_owned()),
        ]
    );
}
}

on_both_stores! {
/// Hot reload mid-stream: a new version of the cart-abandonment campaign (other steps) applies at
/// each customer's next input or timer. A customer waiting on a step the new version does not
/// have leaves the journey, saying why, and is sent nothing; a customer entering after the
/// reload gets the new version's first message.
async fn a_new_version_applies_at_the_next_input_and_an_instance_on_a_removed_step_exits(kind) {
    let dir = tempfile::tempdir().unwrap();
    let campaigns = dir.path().join("campaigns");
    std::fs::create_dir(&campaigns).unwrap();
    for e in std::fs::read_dir(regua_tests::repo().join(REGUAS)).unwrap() {
        let path = e.unwrap().path();
        std::fs::write(
            campaigns.join(path.file_name().unwrap()),
            std::fs::read(&path).unwrap(),
        )
        .unwrap();
    }
    let state = Db::new(kind);
    let s = Served::spawn(&[
        "--plugins",
        plugins_dir().to_str().unwrap(),
        "--campaigns",
        campaigns.to_str().unwrap(),
        "--state",
        state.arg(),
        "--manual-clock",
        "2025-03-12T13:00:00Z",
    ]);
    let customers = [
        customer("caio", &["email", "push"], json!({})),
        customer("duda", &["email", "push"], json!({})),
    ];
    s.post_text("/v1/customers", ndjson(&customers)).await;
    let before = feed(
        &s,
        &[json!({"id": "c1", "customer": "caio", "at": "2025-03-12T14:00:00Z", "name": "cart_abandoned"})],
    )
    .await;
    assert_eq!(statuses(&before), ["applied"]);

    let file = campaigns.join("cart-abandonment.toml");
    let text = std::fs::read_to_string(&file).unwrap().replace(
        r#"params = { campaign = "BRF-2025-022" }"#,
        r#"params = { campaign = "BRF-2025-022", steps = [{ id = "nudge", send = { channel = "push", template = "cart-nudge" }, wait = { for = "1d" } }] }"#,
    );
    assert!(text.contains("cart-nudge"));
    std::fs::write(&file, text).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !s
        .get("/v1/campaigns/BRF-2025-022")
        .await
        .1
        .contains("cart-nudge")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the campaign was not reloaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let after = feed(
        &s,
        &[json!({"id": "d1", "customer": "duda", "at": "2025-03-12T16:00:00Z", "name": "cart_abandoned"})],
    )
    .await;
    assert_eq!(statuses(&after), ["applied"]);
    s.post("/v1/clock", &json!({"now": END})).await.unwrap();

    let caio: Value = serde_json::from_str(&s.get("/v1/customers/caio").await.1).unwrap();
    let cart = caio["journeys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["journey"] == "cart-abandonment")
        .unwrap();
    assert_eq!(cart["status"], "exited", "{cart}");
    assert_eq!(
        cart["exit_reason"], "step `cool-off` no longer exists in `cart-abandonment`",
        "{cart}"
    );
    assert!(
        caio["outbox"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["campaign"] != CART),
        "{}",
        caio["outbox"]
    );
    let duda: Value = serde_json::from_str(&s.get("/v1/customers/duda").await.1).unwrap();
    let sent: Vec<(&str, &str)> = duda["outbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["template"].as_str().unwrap(),
                e["send_at"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(sent, [("cart-nudge", "2025-03-12T16:00:00Z")]);
}
}

/// A campaigns folder with the example company's settings and one birthday message campaign
/// (SMS, `BIRTHDAY`) sent daily at `time`, local to each customer.
fn daily_birthday(time: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let company = regua_tests::repo().join("examples/campaigns/company.toml");
    std::fs::copy(company, dir.path().join("company.toml")).unwrap();
    let campaign = format!(
        r#"code = "{BIRTHDAY}"
name = "Birthday discount"
requester = "marina.souza"
owner = "crm-cards"
priority = 15
start = "2025-01-01T00:00:00Z"

[audience]
all_of = [{{ plugin = "birthday-today" }}]

[message]
channel = "sms"
template = "birthday-discount-sms"

[delivery]
daily = "{time}"
"#
    );
    std::fs::write(dir.path().join("birthday.toml"), campaign).unwrap();
    dir
}

const BIRTHDAY: &str = "BRF-2025-019";

/// (customer, decided_at, send_at) of each outbox entry, in outbox order.
fn decided(outbox: &[Value]) -> Vec<(&str, &str, &str)> {
    outbox
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap();
            (s("customer"), s("decided_at"), s("send_at"))
        })
        .collect()
}

/// A daily campaign reaches customers who send no event at all, at the local time in each
/// one's zone: 10:00 on the 12th is 01:00Z in Tokyo and 13:00Z in São Paulo; a customer with
/// no birthday that day gets nothing, and every customer keeps a timer for the next 10:00.
#[test]
fn a_daily_campaign_reaches_customers_who_do_nothing_at_their_local_time() {
    let campaigns = daily_birthday("10:00");
    let born = |id: &str, tz: &str, birthday: Option<&str>| {
        let mut c = customer(id, &["sms"], json!({"tz": tz}));
        if let Some(b) = birthday {
            c["profile"]["birthday"] = json!(b);
        }
        c
    };
    let customers = [
        born("eva", "America/Sao_Paulo", Some("1990-03-12")),
        born("bia", "Asia/Tokyo", Some("1985-03-12")),
        born("caio", "America/Sao_Paulo", None),
    ];
    let (outbox, answers, err) = replay_in(
        campaigns.path().to_str().unwrap(),
        &customers,
        "",
        &[
            "--from",
            "2025-03-10T00:00:00Z",
            "--until",
            "2025-03-14T00:00:00Z",
        ],
    );
    assert!(answers.is_empty());
    assert_eq!(
        decided(&outbox),
        [
            ("bia", "2025-03-12T01:00:00Z", "2025-03-12T01:00:00Z"),
            ("eva", "2025-03-12T13:00:00Z", "2025-03-12T13:00:00Z"),
        ]
    );
    assert_eq!(
        outbox[0]["key"],
        "bia/BRF-2025-019/timer@2025-03-12T01:00:00Z"
    );
    // Four days of 10:00 for three customers, and the next one each still waiting.
    assert!(err.contains("12 timers fired, 3 still waiting"), "{err}");
}

/// Across daylight saving (New York, 2025): a daily 02:30 that the spring-forward gap skips
/// is taken when the clock jumps, 03:00 EDT (07:00Z), then deferred by the company's quiet
/// hours to 08:00 (12:00Z); a daily 01:30 that the fall-back fold repeats is taken once, at
/// its first occurrence (05:30Z), deferred to 08:00 EST (13:00Z).
#[test]
fn a_daily_time_is_taken_once_a_local_day_across_daylight_saving() {
    let ny = |birthday: &str| {
        let mut c = customer("eva", &["sms"], json!({"tz": "America/New_York"}));
        c["profile"]["birthday"] = json!(birthday);
        c
    };
    let spring = daily_birthday("02:30");
    let (outbox, _, _) = replay_in(
        spring.path().to_str().unwrap(),
        &[ny("1990-03-09")],
        "",
        &[
            "--from",
            "2025-03-08T00:00:00Z",
            "--until",
            "2025-03-11T00:00:00Z",
        ],
    );
    assert_eq!(
        decided(&outbox),
        [("eva", "2025-03-09T07:00:00Z", "2025-03-09T12:00:00Z")]
    );
    let fall = daily_birthday("01:30");
    let (outbox, _, err) = replay_in(
        fall.path().to_str().unwrap(),
        &[ny("1990-11-02")],
        "",
        &[
            "--from",
            "2025-11-01T00:00:00Z",
            "--until",
            "2025-11-04T00:00:00Z",
        ],
    );
    assert_eq!(
        decided(&outbox),
        [("eva", "2025-11-02T05:30:00Z", "2025-11-02T13:00:00Z")]
    );
    // The 1st, the 2nd once, the 3rd: three occurrences.
    assert!(err.contains("3 timers fired"), "{err}");
}

on_both_stores! {
/// In the service, a customer upserted through `POST /v1/customers` gets the daily campaign's
/// timer at once, and the service fires it as its clock passes 10:00 local.
async fn the_service_runs_a_daily_campaign_for_customers_it_imports(kind) {
    let campaigns = daily_birthday("10:00");
    let state = Db::new(kind);
    let s = Served::spawn(&[
        "--plugins",
        plugins_dir().to_str().unwrap(),
        "--campaigns",
        campaigns.path().to_str().unwrap(),
        "--state",
        state.arg(),
        "--manual-clock",
        "2025-03-10T00:00:00Z",
    ]);
    let mut eva = customer("eva", &["sms"], json!({}));
    eva["profile"]["birthday"] = json!("1990-03-12");
    s.post_text("/v1/customers", ndjson(&[eva])).await;
    let view: Value = serde_json::from_str(&s.get("/v1/customers/eva").await.1).unwrap();
    assert_eq!(view["timers"][0]["due"], "2025-03-10T13:00:00Z", "{view}");
    let (_, moved) = s
        .post("/v1/clock", &json!({"now": "2025-03-13T00:00:00Z"}))
        .await
        .unwrap();
    assert_eq!(moved["fired"], 3, "{moved}");
    let (_, due) = s.get("/v1/outbox").await;
    let due: Value = serde_json::from_str(&due).unwrap();
    assert_eq!(
        decided(due["entries"].as_array().unwrap()),
        [("eva", "2025-03-12T13:00:00Z", "2025-03-12T13:00:00Z")]
    );
}
}

/// Every decision the runtime makes is also a line of the decision log (`--decision-log`),
/// made for the step's instant: each message of the outbox is in a line of its customer and
/// campaign whose `now` is the instant it was decided.
#[test]
fn every_runtime_decision_is_a_line_of_the_decision_log() {
    let (customers, events) = mixed();
    let log = tempfile::tempdir().unwrap();
    let (outbox, _, _) = replay_in(
        REGUAS,
        &customers,
        &ndjson(&events),
        &[
            "--until",
            END,
            "--decision-log",
            log.path().to_str().unwrap(),
        ],
    );
    assert!(outbox.len() >= 8, "{outbox:?}");
    let mut lines = Vec::new();
    for f in std::fs::read_dir(log.path()).unwrap() {
        lines.extend(read_ndjson(&f.unwrap().path()));
    }
    assert!(
        lines
            .iter()
            .all(|l| l["source"] == "campaign" && l["now"].as_str().unwrap() >= START),
        "{lines:?}"
    );
    for m in &outbox {
        let logged = lines.iter().any(|l| {
            l["customer"] == m["customer"]
                && l["campaign"] == m["campaign"]
                && l["now"] == m["decided_at"]
                && l["messages"]
                    .as_array()
                    .is_some_and(|ms| ms.iter().any(|x| x["template"] == m["template"]))
        });
        assert!(logged, "no log line for {m}");
    }
}

/// A webhook receiver on loopback: answers 400 to every entry of `refused_customer`, 503 to
/// the first post of every other key and 200 to the next; keeps (key header, entry) per post.
async fn receiver(
    refused_customer: &'static str,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>,
) {
    use axum::http::{HeaderMap, StatusCode};
    let posts = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, Value)>::new()));
    let kept = posts.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let posts = kept.clone();
            async move {
                let key = headers["idempotency-key"].to_str().unwrap().to_owned();
                let entry: Value = serde_json::from_str(&body).unwrap();
                let mut posts = posts.lock().unwrap();
                let seen = posts.iter().any(|(k, _)| *k == key);
                posts.push((key, entry.clone()));
                if entry["customer"] == refused_customer {
                    (StatusCode::BAD_REQUEST, "unknown template")
                } else if seen {
                    (StatusCode::OK, "queued")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "try later")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, posts)
}

on_both_stores! {
/// With `--webhook`, the service posts each due entry with its key in `Idempotency-Key`: a 503
/// is retried 30 s later (by the service's clock) and then delivered; a 400 fails at once, the
/// provider's answer kept as the detail; every key is posted exactly as often as that.
async fn the_webhook_delivers_each_entry_retrying_what_may_pass_and_failing_what_is_refused(kind) {
    let (url, posts) = receiver("duda").await;
    let (customers, events) = mixed();
    let state = Db::new(kind);
    let s = serve_state_with(&state, START, &["--webhook", &url]);
    s.post_text("/v1/customers", ndjson(&customers)).await;
    feed(&s, &events).await;
    s.post("/v1/clock", &json!({"now": END})).await.unwrap();
    let all = || async {
        let (_, all) = s.get("/v1/outbox?state=all&limit=10000").await;
        serde_json::from_str::<Value>(&all).unwrap()["entries"]
            .as_array()
            .unwrap()
            .clone()
    };
    // Every entry is attempted once at least; then a minute later every retry is due.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let entries = all().await;
        let posted = posts.lock().unwrap().clone();
        if entries
            .iter()
            .all(|e| posted.iter().any(|(k, _)| e["key"] == k.as_str()))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every entry was posted: {entries:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    s.post("/v1/clock", &json!({"now": "2025-03-20T00:01:00Z"}))
        .await
        .unwrap();
    let entries = loop {
        let entries = all().await;
        if entries.iter().all(|e| e["state"] != "pending") {
            break entries;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still pending: {entries:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(entries.len() >= 8, "{entries:?}");
    let posted = posts.lock().unwrap().clone();
    for e in &entries {
        let key = e["key"].as_str().unwrap();
        let times = posted.iter().filter(|(k, _)| k == key).count();
        let body = &posted.iter().find(|(k, _)| k == key).unwrap().1;
        assert_eq!(
            body["template"], e["template"],
            "the entry itself is posted"
        );
        if e["customer"] == "duda" {
            assert_eq!((times, e["state"].as_str()), (1, Some("failed")), "{e}");
            assert_eq!(e["detail"], "webhook: HTTP 400: unknown template", "{e}");
        } else {
            assert_eq!((times, e["state"].as_str()), (2, Some("delivered")), "{e}");
            assert_eq!(
                (e["detail"].as_str(), e["attempts"].as_u64()),
                (Some("webhook: HTTP 200: queued"), Some(1)),
                "{e}"
            );
        }
    }
    assert!(entries.iter().any(|e| e["customer"] == "duda"));
}
}

/// A webhook URL the service cannot post to is refused at start, saying why.
#[test]
fn a_webhook_url_that_cannot_be_posted_to_is_refused_at_start() {
    let state = tempfile::tempdir().unwrap();
    let plugins = plugins_dir();
    let serve = |url: &str| {
        let run = regua(
            &[
                "serve",
                "--plugins",
                plugins.to_str().unwrap(),
                "--campaigns",
                REGUAS,
                "--state",
                state.path().to_str().unwrap(),
                "--addr",
                "127.0.0.1:0",
                "--webhook",
                url,
            ],
            "",
        );
        assert!(!run.status.success());
        text(&run.stderr)
    };
    let err = serve("https://provider.example/hook");
    assert!(
        err.contains("only http:// URLs") && err.contains("relay"),
        "{err}"
    );
    let err = serve("not a url");
    assert!(err.contains("--webhook: `not a url`"), "{err}");
}

on_both_stores! {
/// Inputs without `at` take the service's clock as they are applied: concurrent requests for
/// one customer are all applied, none refused as late because another was stamped after it
/// and applied before it.
async fn concurrent_inputs_without_an_instant_are_all_applied_in_turn(kind) {
    let state = Db::new(kind);
    let s = Served::spawn(&[
        "--plugins",
        plugins_dir().to_str().unwrap(),
        "--campaigns",
        REGUAS,
        "--state",
        state.arg(),
    ]);
    let s = std::sync::Arc::new(s);
    let mut tasks = Vec::new();
    for t in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..25 {
                let e = json!({"id": format!("c{t}-{i}"), "customer": "eva", "name": "login"});
                let (code, a) = s.post("/v1/events", &e).await.unwrap();
                assert_eq!(code, 200, "{a}");
                statuses.push(a["status"].as_str().unwrap().to_owned());
            }
            statuses
        }));
    }
    for t in tasks {
        let statuses = t.await.unwrap();
        assert!(statuses.iter().all(|s| s == "applied"), "{statuses:?}");
    }
}
}

on_both_stores! {
/// An input's id is remembered for `--dedup-days` after its instant: a repeat within them is
/// a duplicate; after them the id is forgotten (the store does not keep every id ever), unless
/// it is at its customer's clock, so a repeat with its own `at` is still never reapplied: it
/// is late, or still a duplicate.
async fn input_ids_are_remembered_for_the_dedup_window_and_late_repeats_stay_refused(kind) {
    let state = Db::new(kind);
    let s = serve_state_with(&state, START, &["--dedup-days", "1"]);
    let login =
        |id: &str, at: &str| json!({"id": id, "customer": "eva", "at": at, "name": "login"});
    let status = |a: &Value| a["status"].as_str().unwrap().to_owned();
    let later = "2025-03-10T00:04:00Z";
    for (e, at) in [("e1", START), ("e2", later)] {
        let (_, a) = s.post("/v1/events", &login(e, at)).await.unwrap();
        assert_eq!(status(&a), "applied", "{a}");
    }
    s.post("/v1/clock", &json!({"now": "2025-03-10T23:00:00Z"}))
        .await
        .unwrap();
    let (_, a) = s.post("/v1/events", &login("e1", START)).await.unwrap();
    assert_eq!(status(&a), "duplicate", "within the day: {a}");
    s.post("/v1/clock", &json!({"now": "2025-03-12T00:00:00Z"}))
        .await
        .unwrap();
    // e1 is forgotten: its repeat is late (eva's clock is e2's instant).
    let (_, a) = s.post("/v1/events", &login("e1", START)).await.unwrap();
    assert_eq!(status(&a), "refused", "{a}");
    assert!(a["error"].as_str().unwrap().starts_with("late"), "{a}");
    // e2, at eva's clock, is kept: its repeat is still a duplicate.
    let (_, a) = s.post("/v1/events", &login("e2", later)).await.unwrap();
    assert_eq!(status(&a), "duplicate", "{a}");
    // A new input with the forgotten id is applied.
    let (_, a) = s
        .post("/v1/events", &login("e1", "2025-03-12T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(status(&a), "applied", "{a}");
}
}

/// Two replicas of the service on one PostgreSQL database, fed by one NATS JetStream stream
/// (a durable consumer they share, read by one of them at a time so a customer's inputs keep
/// the stream's order), the one reading it SIGKILLed mid-stream: the other takes over (the
/// killed one's unacknowledged messages are delivered to it again), and in the end every input
/// was applied exactly once, a message published twice with one id once, and the outbox holds
/// each message exactly once: the outbox `regua replay` plans from the same inputs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_database_and_one_stream_survive_a_sigkill_and_apply_each_input_once() {
    let (customers, events) = many(40);
    let (replayed, _, _) = replay(&customers, &ndjson(&events), END);
    assert!(replayed.len() > 60, "{}", replayed.len());
    let nats = regua_tests::Nats::start();
    let db = regua_tests::postgres_db();
    const SUBJECT: &str = "crm.events";
    // The stream, as its operators would make it; the replicas find it by its subject.
    let client = async_nats::connect(nats.url.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "CRM".into(),
        subjects: vec![SUBJECT.into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let events_url = format!("{}/{SUBJECT}", nats.url);
    let replica = || {
        Some(Served::spawn(&[
            "--plugins",
            plugins_dir().to_str().unwrap(),
            "--campaigns",
            REGUAS,
            "--state",
            &db,
            "--manual-clock",
            START,
            "--events",
            &events_url,
            "--events-ack-wait",
            "2",
        ]))
    };
    let mut replicas = [replica(), replica()];
    replicas[0]
        .as_ref()
        .unwrap()
        .post_text("/v1/customers", ndjson(&customers))
        .await;

    // Inputs a few minutes apart at most go together, each replica's clock at the first of
    // them (an input may be up to 5 minutes ahead of it), so no timer due after one of them
    // fires before it arrives.
    let millis = |e: &Value| {
        regua_sdk::Timestamp::parse(e["at"].as_str().unwrap())
            .unwrap()
            .as_millis()
    };
    let mut groups: Vec<Vec<Value>> = Vec::new();
    for e in &events {
        match groups.last_mut() {
            Some(g) if millis(e) - millis(&g[0]) <= 4 * 60_000 => g.push(e.clone()),
            _ => groups.push(vec![e.clone()]),
        }
    }
    let applied = || {
        regua_tests::sql(&db, "SELECT count(*) FROM events")[0][0]
            .as_ref()
            .unwrap()
            .parse::<usize>()
            .unwrap()
    };
    let mut published = 0;
    for (k, group) in groups.iter().enumerate() {
        let clock = json!({"now": group[0]["at"]});
        for s in replicas.iter().flatten() {
            let (code, answer) = s.post("/v1/clock", &clock).await.unwrap();
            assert_eq!(code, 200, "{answer}");
        }
        for e in group {
            let id = e["id"].as_str().unwrap();
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id);
            // The message id is the input's id: the payload need not repeat it.
            let mut payload = e.clone();
            payload.as_object_mut().unwrap().remove("id");
            let copies = if k == 3 { 2 } else { 1 };
            for _ in 0..copies {
                js.publish_with_headers(SUBJECT, headers.clone(), payload.to_string().into())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
            published += 1;
        }
        if k == groups.len() / 2 {
            // Mid-stream, with this group's messages in flight: the replica reading the stream
            // (the one that applied its inputs so far: one at a time reads it).
            let mut took = Vec::new();
            for s in replicas.iter().flatten() {
                took.push(stream_applied(s).await);
            }
            let reader = match took[..] {
                [n, 0] if n > 0 => 0,
                [0, n] if n > 0 => 1,
                _ => panic!("inputs from the stream applied by each replica: {took:?}"),
            };
            let killed = replicas[reader].take().unwrap();
            std::process::Command::new("kill")
                .args(["-KILL", &killed.pid().to_string()])
                .status()
                .unwrap();
            drop(killed);
        }
        let waited = std::time::Instant::now();
        while applied() < published {
            assert!(
                waited.elapsed() < std::time::Duration::from_secs(60),
                "group {k}: {} of {published} inputs applied after a minute",
                applied()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let survivor = replicas.iter().flatten().next().unwrap();
    assert!(
        stream_applied(survivor).await > 0,
        "the survivor took over nothing"
    );
    // Two services watching one campaigns folder do not set each other reloading (each load
    // reads the files, which the other's watcher reports).
    let loads = survivor
        .log()
        .iter()
        .filter(|l| l.contains("campaigns loaded"))
        .count();
    assert_eq!(loads, 1, "the campaigns were loaded {loads} times");
    let (code, answer) = survivor
        .post("/v1/clock", &json!({"now": END}))
        .await
        .unwrap();
    assert_eq!(code, 200, "{answer}");

    let ids: Vec<String> = regua_tests::sql(&db, "SELECT id FROM events ORDER BY id")
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    let mut expected: Vec<String> = events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    expected.sort();
    assert_eq!(ids, expected, "an input lost, or one that was never sent");
    let twice = regua_tests::sql(
        &db,
        "SELECT customer, input, campaign, count(*) FROM decisions
         GROUP BY customer, input, campaign HAVING count(*) > 1",
    );
    assert!(twice.is_empty(), "inputs decided twice: {twice:?}");
    let (_, all) = survivor.get("/v1/outbox?state=all&limit=10000").await;
    let all: Value = serde_json::from_str(&all).unwrap();
    assert_eq!(keyed(all["entries"].as_array().unwrap()), keyed(&replayed));
}

/// The inputs from the stream a service applied (its metrics).
async fn stream_applied(s: &Served) -> u64 {
    let (_, metrics) = s.get("/metrics").await;
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

/// The PostgreSQL store's schema is created once and recorded with its version; opened again,
/// nothing is migrated twice; a database a newer regua migrated is refused, saying so, and a
/// customer imported into it twice is merged, not doubled.
#[test]
fn the_postgres_schema_is_migrated_once_and_a_newer_one_is_refused() {
    let db = regua_tests::postgres_db();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.ndjson");
    std::fs::write(&file, ndjson(&[customer("a", &["email"], json!({}))])).unwrap();
    let import = || {
        regua(
            &[
                "customers",
                "import",
                "--state",
                &db,
                file.to_str().unwrap(),
            ],
            "",
        )
    };
    for _ in 0..2 {
        let out = import();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let versions = regua_tests::sql(&db, "SELECT version FROM regua_schema ORDER BY version");
    assert_eq!(versions, vec![vec![Some("1".to_owned())]]);
    let customers = regua_tests::sql(&db, "SELECT id FROM customers");
    assert_eq!(customers, vec![vec![Some("a".to_owned())]]);

    regua_tests::sql(&db, "INSERT INTO regua_schema (version) VALUES (2)");
    let out = import();
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("schema is at version 2") && err.contains("newer"),
        "{err}"
    );
}
