//! The console, driven in headless Chromium over WebDriver (Debian's `chromium` and
//! `chromium-driver`, which `cargo xtask test` installs when missing) against the real
//! `regua serve` on 127.0.0.1 port 0: what the pages show is checked against the API's own
//! answers for the same input. Each page's screenshot goes to target/console-screenshots/.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use regua_tests::{ProcessTree, repo, wasm};
use serde_json::{Value, json};

use crate::decisions::Served;
use crate::http::{land, rebuilt};

const NOW: &str = "2025-03-11T12:00:00Z";
const WAIT: Duration = Duration::from_secs(60);

/// A chromedriver on a free loopback port and a headless Chromium session on it. Dropping it
/// (the test over, passed or failed) ends the driver, the browser and every process the browser
/// started (zygotes, renderers, crash handler), found by their parents and by the browser's own
/// profile folder in their command lines.
struct Browser {
    client: Client,
    _driver: ProcessTree,
    _profile: tempfile::TempDir,
}

fn program(name: &str) -> PathBuf {
    let path = Path::new("/usr/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: the console tests drive Debian's chromium and chromium-driver \
         (`cargo xtask test` installs them)",
        path.display()
    );
    path
}

impl Browser {
    async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let profile = tempfile::Builder::new()
            .prefix("regua-console-browser-")
            .tempdir()
            .unwrap();
        let driver = ProcessTree::spawn(
            std::process::Command::new(program("chromedriver"))
                .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
            Some(profile.path().display().to_string()),
        );
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": program("chromium"),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1366,900", "--no-first-run", "--disable-extensions",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-quic",
                    format!("--user-data-dir={}", profile.path().display())],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) => {
                    assert!(started.elapsed() < WAIT, "no browser session: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    /// Runs `script` in the page and returns its value.
    async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap()
    }

    /// Waits until `script` returns a truthy value (or fails with `what` after a generous
    /// timeout that only catches a hang), and returns the value.
    async fn until(&self, what: &str, script: &str) -> Value {
        let started = Instant::now();
        loop {
            let v = self.js(script, vec![]).await;
            if !(v.is_null() || v == false || v == "" || v == 0) {
                return v;
            }
            assert!(started.elapsed() < WAIT, "{what}: never happened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Text of the first element matching `css`.
    async fn text(&self, css: &str) -> String {
        let el = self.client.find(Locator::Css(css)).await.unwrap();
        el.text().await.unwrap()
    }

    /// The console's own record of JavaScript errors on the page: none, or the test fails.
    async fn no_errors(&self, page: &str) {
        let errors = self.js(
            "return window.consoleErrors || ['no console script'];",
            vec![],
        );
        assert_eq!(errors.await, json!([]), "JavaScript errors on {page}");
    }

    /// A screenshot of the page, checked for being more than a blank page, written to
    /// target/console-screenshots/`name`.png.
    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut pixels).unwrap();
        let step = info.color_type.samples();
        let colours: std::collections::HashSet<&[u8]> = pixels[..info.buffer_size()]
            .chunks(step)
            .step_by(7)
            .collect();
        assert!(
            colours.len() > 20,
            "the {name} screenshot is blank ({} colours)",
            colours.len()
        );
        let dir = repo().join("target/console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
    }

    async fn page(&self, base: &str, hash: &str) {
        self.client.goto(&format!("{base}/#{hash}")).await.unwrap();
        self.until(
            "the page shows",
            &format!("return !document.querySelector('#page-{hash}').hidden;"),
        )
        .await;
    }
}

/// A plugins folder with a copy of every example plugin.
fn example_plugins() -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(repo().join("plugins"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for name in &names {
        std::fs::copy(wasm(name), dir.path().join(format!("{name}.wasm"))).unwrap();
    }
    (dir, names)
}

/// The answer without its decision id, which differs between two calls of the same input.
fn without_ids(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("decision_id");
    }
    if let Some(ds) = v.get_mut("decisions").and_then(Value::as_array_mut) {
        for d in ds {
            d.as_object_mut().unwrap().remove("decision_id");
        }
    }
    v
}

fn served(plugins: &Path, log: Option<&Path>) -> Served {
    let mut args = vec!["--plugins", plugins.to_str().unwrap()];
    args.extend(["--campaigns", "examples/campaigns"]);
    if let Some(log) = log {
        args.extend(["--decision-log", log.to_str().unwrap()]);
    }
    Served::spawn(&args)
}

async fn plugins_api(s: &Served) -> Value {
    let (status, text) = s.get("/v1/plugins").await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn version_on_page(b: &Browser, name: &str) -> Value {
    let script = format!(
        "const c = document.querySelector('tr[data-plugin=\"{name}\"] .version'); return c && c.textContent;"
    );
    b.js(&script, vec![]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_what_the_api_says_in_a_real_browser() {
    let (plugins, names) = example_plugins();
    let log = tempfile::tempdir().unwrap();
    let s = served(plugins.path(), Some(log.path()));
    let b = Browser::start().await;

    // Plugins: every plugin with the version the API serves.
    b.page(&s.base, "plugins").await;
    let count = names.len();
    b.until(
        "every plugin listed",
        &format!("return document.querySelectorAll('tr[data-plugin]').length === {count};"),
    )
    .await;
    for p in plugins_api(&s).await["plugins"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        assert_eq!(version_on_page(&b, name).await, p["version"], "{name}");
    }
    b.screenshot("plugins").await;

    // A new build is shown without a page reload.
    b.js("window.sameLoad = true;", vec![]).await;
    let build = rebuilt("lapsed", 1);
    let version = regua_host::runtime::plugin::version_of(&build);
    land(&plugins.path().join("lapsed.wasm"), &build);
    b.until(
        "the new version shown",
        &format!(
            "const c = document.querySelector('tr[data-plugin=\"lapsed\"] .version'); return c && c.textContent === '{version}';"
        ),
    )
    .await;
    assert_eq!(b.js("return window.sameLoad;", vec![]).await, true);

    // A broken build shows its error, in red, and the last good version keeps serving.
    let good = version_on_page(&b, "rfm").await;
    let mut broken = std::fs::read(wasm("rfm")).unwrap();
    broken.truncate(broken.len() / 2);
    land(&plugins.path().join("rfm.wasm"), &broken);
    b.until(
        "the error shown",
        "return document.querySelector('tr[data-error-of=\"rfm\"]');",
    )
    .await;
    let error = b.text("tr[data-error-of=\"rfm\"]").await;
    assert!(error.contains("not a WebAssembly module"), "{error}");
    assert!(error.contains(good.as_str().unwrap()), "{error}");
    let colour = b
        .client
        .find(Locator::Css("tr[data-error-of=\"rfm\"] td"))
        .await
        .unwrap()
        .css_value("color")
        .await
        .unwrap();
    assert!(colour.contains("179, 38, 30"), "the error is red: {colour}");
    assert_eq!(version_on_page(&b, "rfm").await, good);
    b.js(
        "document.querySelector('tr[data-error-of=\"rfm\"]').scrollIntoView({block: 'center'});",
        vec![],
    )
    .await;
    b.screenshot("plugins-error").await;
    b.no_errors("the plugins page").await;
    land(
        &plugins.path().join("rfm.wasm"),
        &std::fs::read(wasm("rfm")).unwrap(),
    );

    // Try it: a plugin, then a campaign, give the API's answer for the same input.
    b.page(&s.base, "try").await;
    b.until(
        "the targets listed",
        "return document.querySelector('#try-target option[value=\"plugin:lapsed\"]');",
    )
    .await;
    let target = b.client.find(Locator::Css("#try-target")).await.unwrap();
    target.select_by_value("plugin:lapsed").await.unwrap();
    let customer = json!({"id": "c-try", "transactions": [{"id": "t1", "at": "2025-01-02T10:00:00Z", "kind": "purchase", "amount": 80}]});
    let params = json!({"days": 30});
    b.js(
        "document.querySelector('#try-customer').value = arguments[0];
         document.querySelector('#try-now').value = arguments[1];
         document.querySelector('#try-params').value = arguments[2];",
        vec![
            customer.to_string().into(),
            NOW.into(),
            params.to_string().into(),
        ],
    )
    .await;
    b.client
        .find(Locator::Css("#try-run"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let shown = b
        .until(
            "the plugin's answer",
            "return document.querySelector('#try-result .result') && document.querySelector('#try-answer').textContent;",
        )
        .await;
    let shown: Value = serde_json::from_str(shown.as_str().unwrap()).unwrap();
    let request = json!({"customer": customer, "now": NOW, "params": params});
    let (status, api) = s
        .post("/v1/plugins/lapsed/evaluate", &request)
        .await
        .unwrap();
    assert_eq!(status, 200, "{api}");
    assert_eq!(without_ids(shown.clone()), without_ids(api.clone()));
    assert_eq!(shown["version"], version.as_str(), "the new build answers");
    let reasons = b.text("#try-result .reasons").await;
    for r in api["reasons"].as_array().unwrap() {
        assert!(reasons.contains(r.as_str().unwrap()), "{reasons} lacks {r}");
    }
    // The words shown: the last purchase was 68 days before NOW, so past the 30 days.
    assert_eq!(b.text("#try-result .outcome").await, "match: true");

    // Each kind of plugin in the API's own words: a customer in São Paulo at 22:30 local, whom
    // a push now falls in the company's quiet hours (deferred to 08:00, 11:00Z), and a fresh
    // sign-up the welcome journey enters.
    let night = "2025-03-11T01:30:00Z";
    let sp = json!({"id": "c-night", "tz": "America/Sao_Paulo",
        "profile": {"created_at": "2025-03-10T12:00:00Z", "product": "gold"},
        "consents": {"push": {"marketing": {"status": "granted", "at": "2025-01-01T00:00:00Z"}}}});
    let kinds = [
        (
            "plugin:standard-rest",
            r#"{"channel":"push","category":"marketing"}"#,
            "defer by night (QUIET_HOURS) until 2025-03-11T11:00:00Z",
        ),
        ("plugin:lapsed", "", "match: false"),
        ("plugin:welcome", "", "action(s)"),
    ];
    for (value, message, words) in kinds {
        target.select_by_value(value).await.unwrap();
        b.js(
            "document.querySelector('#try-customer').value = arguments[0];
             document.querySelector('#try-now').value = arguments[1];
             document.querySelector('#try-params').value = '';
             document.querySelector('#try-message').value = arguments[2];
             document.querySelector('#try-result').textContent = '';",
            vec![sp.to_string().into(), night.into(), message.into()],
        )
        .await;
        b.client
            .find(Locator::Css("#try-run"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let outcome = b
            .until(
                value,
                "const o = document.querySelector('#try-result .outcome'); return o && o.textContent;",
            )
            .await;
        let outcome = outcome.as_str().unwrap();
        assert!(
            outcome.contains(words),
            "{value}: shows {outcome:?}, not {words:?}"
        );
        assert_ne!(outcome, "answered");
    }

    // The campaign, through the keyboard: the bundled example picked, Enter on the button.
    target
        .select_by_value("campaign:BEN-2025-007")
        .await
        .unwrap();
    let examples = b.client.find(Locator::Css("#try-example")).await.unwrap();
    examples.select_by_index(1).await.unwrap();
    examples.select_by_index(0).await.unwrap();
    b.until(
        "the bundled example loaded",
        &format!("return document.querySelector('#try-now').value === '{NOW}' && document.querySelector('#try-customer').value.includes('cus-0000042');"),
    )
    .await;
    b.js(
        "document.querySelector('#try-answer').textContent = '';",
        vec![],
    )
    .await;
    b.client
        .find(Locator::Css("#try-run"))
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    let shown = b
        .until(
            "the campaign's trail",
            "return document.querySelector('#try-result ol.trail') && document.querySelector('#try-answer').textContent;",
        )
        .await;
    let shown: Value = serde_json::from_str(shown.as_str().unwrap()).unwrap();
    let customer: Value =
        serde_json::from_slice(&std::fs::read(repo().join("examples/customer.json")).unwrap())
            .unwrap();
    let (status, api) = s
        .post(
            "/v1/campaigns/BEN-2025-007/decide",
            &json!({"customer": customer, "now": NOW}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{api}");
    assert_eq!(without_ids(shown), without_ids(api.clone()));
    let trail = b.text("#try-result ol.trail").await;
    let decision = &api["decisions"][0];
    for r in decision["reasons"].as_array().unwrap() {
        assert!(trail.contains(r.as_str().unwrap()), "{trail} lacks {r}");
    }
    assert!(
        b.text("#try-result .outcome")
            .await
            .contains(&decision["outcome"].as_str().unwrap().replace('_', " "))
    );
    b.screenshot("try-it").await;
    b.no_errors("try it").await;

    // Campaigns: the funnel of a run, drawn with the run's counts.
    let input = std::fs::read(repo().join("examples/customers.ndjson")).unwrap();
    let answer = s
        .post_text(&format!("/v1/campaigns/run?now={NOW}"), input)
        .await;
    let expected = funnel_of(&answer);
    b.page(&s.base, "campaigns").await;
    b.until(
        "the funnels drawn",
        "return document.querySelectorAll('svg.funnel').length > 0 && document.querySelector('#run-status').textContent.includes('finished');",
    )
    .await;
    let drawn = b
        .js(
            "const out = {};
             for (const svg of document.querySelectorAll('svg.funnel')) {
               const bars = {};
               for (const g of svg.querySelectorAll('g.bar')) bars[g.dataset.step] = Number(g.dataset.count);
               out[svg.dataset.campaign] = bars;
             }
             return out;",
            vec![],
        )
        .await;
    assert_eq!(
        drawn.as_object().unwrap().len(),
        expected.len(),
        "one funnel per campaign: {drawn}"
    );
    for (campaign, bars) in &expected {
        for (step, n) in bars {
            assert_eq!(
                drawn[campaign][step], *n,
                "{campaign} {step} (drawn {})",
                drawn[campaign]
            );
        }
    }
    let width = b
        .js(
            "return Number(document.querySelector('svg.funnel g.bar[data-step=\"read\"] rect').getAttribute('width'));",
            vec![],
        )
        .await;
    assert!(
        width.as_f64().unwrap() > 100.0,
        "the bars are drawn: {width}"
    );
    b.screenshot("campaigns").await;
    b.no_errors("the campaigns page").await;

    // Decisions: the latest, newest first; one explained, by keyboard.
    b.page(&s.base, "decisions").await;
    b.until(
        "the latest decisions listed",
        "return document.querySelectorAll('#decision-table tr[data-decision]').length === 20;",
    )
    .await;
    let newest = b
        .js(
            "return document.querySelector('#decision-table tr[data-decision]').dataset.decision;",
            vec![],
        )
        .await;
    assert_eq!(
        newest.as_str().unwrap(),
        last_decision_logged(log.path()),
        "newest first"
    );
    b.client
        .find(Locator::Css("#decision-table tr[data-decision] button"))
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    let explained = b
        .until(
            "the decision explained",
            "return document.querySelector('#decision-answer').textContent;",
        )
        .await;
    let (status, api) = s
        .get(&format!("/v1/decisions/{}", newest.as_str().unwrap()))
        .await;
    assert_eq!(status, 200);
    let api: Value = serde_json::from_str(&api).unwrap();
    assert_eq!(explained, api["explanation"]);
    b.screenshot("decisions").await;
    b.no_errors("the decisions page").await;

    // Counts and latency per plugin, from the same counters as /metrics.
    b.page(&s.base, "plugins").await;
    // `lapsed` answered three times: Try it twice (the segment, then each kind) and the API once.
    b.until(
        "the counts shown",
        "const c = document.querySelector('tr[data-plugin=\"lapsed\"] .evaluations'); return c && c.dataset.ok === '3';",
    )
    .await;
    let latency = b.text("tr[data-plugin=\"welcome\"] .latency").await;
    assert!(
        latency.ends_with("µs") || latency.ends_with("ms"),
        "{latency}"
    );

    // A phone's screen: no page-wide sideways scrolling, the navigation on screen.
    b.client.set_window_size(390, 844).await.unwrap();
    for page in ["plugins", "try", "campaigns", "decisions"] {
        b.page(&s.base, page).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let fits = b
            .js(
                "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
                vec![],
            )
            .await;
        assert_eq!(fits, true, "the {page} page is wider than a phone");
        b.screenshot(&format!("{page}-phone")).await;
        b.no_errors(page).await;
    }
    b.client.set_window_size(1366, 900).await.unwrap();

    // Without a decision log, the console says so.
    let s = served(plugins.path(), None);
    b.page(&s.base, "decisions").await;
    let off = b
        .until(
            "the console says there is no log",
            "const p = document.querySelector('#decisions-off'); return !p.hidden && p.textContent;",
        )
        .await;
    assert!(
        off.as_str().unwrap().contains("keeps no decision log"),
        "{off}"
    );
    b.page(&s.base, "campaigns").await;
    b.until(
        "the console says there is no run",
        "return document.querySelector('#run-status').textContent.includes('No campaign run');",
    )
    .await;
    b.no_errors("a service without a log").await;
}

/// Each campaign's funnel, counted from the answer lines of a run: what the chart must show.
fn funnel_of(answer: &str) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut funnels: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for line in answer.lines() {
        let line: Value = serde_json::from_str(line).unwrap();
        for d in line["decisions"].as_array().unwrap() {
            let f = funnels
                .entry(d["campaign"].as_str().unwrap().to_owned())
                .or_default();
            let mut count = |step: String| *f.entry(step).or_default() += 1;
            count("read".into());
            let outcome = d["outcome"].as_str().unwrap();
            if !["inactive", "not_in_audience"].contains(&outcome) {
                count("in_audience".into());
            }
            count(
                if outcome == "error" {
                    "errors"
                } else {
                    outcome
                }
                .into(),
            );
            let variant = d["variant"].as_str().unwrap_or("-");
            for m in d["messages"].as_array().into_iter().flatten() {
                count(format!("sent:{variant}:{}", m["channel"].as_str().unwrap()));
            }
            for x in d["denied"].as_array().into_iter().flatten() {
                let (rule, reason) = (x["rule"].as_str().unwrap(), x["reason"].as_str().unwrap());
                count(format!("denied:{rule}/{reason}"));
            }
        }
    }
    funnels
}

/// The id of the last decision written to the log.
fn last_decision_logged(dir: &Path) -> String {
    let newest = regua_host::decisions::sink::log_files(dir)
        .unwrap()
        .pop()
        .unwrap()
        .1;
    let text = std::fs::read_to_string(newest).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    last["decision"].as_str().unwrap().to_owned()
}

fn metric(metrics: &str, sample: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(sample))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// What the console reads besides the plugin and campaign lists: the latest run's funnel, the
/// latest decisions, the time per plugin, and its own files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_reads_the_latest_run_the_latest_decisions_and_the_time_per_plugin() {
    let (plugins, _) = example_plugins();
    let log = tempfile::tempdir().unwrap();
    let s = served(plugins.path(), Some(log.path()));
    let (status, body) = s.get("/v1/runs/latest").await;
    assert_eq!(status, 404, "no run yet: {body}");
    assert!(body.contains("no campaign run"), "{body}");

    // A run with a bad line and a repeated id: the funnel counts the lines kept.
    let text = std::fs::read_to_string(repo().join("examples/customers.ndjson")).unwrap();
    let mut lines: Vec<&str> = text.lines().take(40).collect();
    lines.insert(10, "{not json");
    lines.push(lines[3]);
    let input = lines.join("\n") + "\n";
    let answer = s
        .post_text(&format!("/v1/campaigns/run?now={NOW}"), input)
        .await;
    assert_eq!(answer.lines().count(), 42);
    let (status, body) = s.get("/v1/runs/latest").await;
    assert_eq!(status, 200, "{body}");
    let latest: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(latest["run"], 1);
    assert_eq!(latest["now"], NOW);
    assert!(latest["finished_at"].is_string(), "{latest}");
    let report = &latest["report"];
    assert_eq!(
        (&report["lines"], &report["customers"], &report["bad_lines"]),
        (&json!(42), &json!(40), &json!(2)),
        "{report}"
    );
    let kept: String = answer
        .lines()
        .filter(|l| !l.contains("\"error\""))
        .map(|l| format!("{l}\n"))
        .collect();
    let expected = funnel_of(&kept);
    for f in report["campaigns"].as_array().unwrap() {
        let counts = &expected[f["campaign"].as_str().unwrap()];
        assert_eq!(f["read"], 40, "{f}");
        for (step, field) in [
            ("in_audience", "in_audience"),
            ("held_out", "held_out"),
            ("planned", "planned"),
            ("denied", "denied"),
        ] {
            assert_eq!(
                f[field],
                counts.get(step).copied().unwrap_or(0),
                "{step} of {f}"
            );
        }
    }

    // The latest decisions, newest first: the run's last ones, in reverse.
    for bad in ["0", "201", "x"] {
        let (status, body) = s.get(&format!("/v1/decisions?limit={bad}")).await;
        assert_eq!(status, 400, "limit={bad}: {body}");
    }
    let ids: Vec<String> = kept
        .lines()
        .flat_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let ds = v["decisions"].as_array().unwrap().clone();
            ds.into_iter()
                .map(|d| d["decision_id"].as_str().unwrap().to_owned())
        })
        .collect();
    let (status, body) = s.get("/v1/decisions?limit=5").await;
    assert_eq!(status, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).unwrap();
    let listed: Vec<&str> = listed["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["decision"].as_str().unwrap())
        .collect();
    let newest: Vec<&str> = ids.iter().rev().take(5).map(String::as_str).collect();
    assert_eq!(listed, newest);
    let (_, body) = s.get("/v1/decisions?limit=200").await;
    let all: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(all["decisions"].as_array().unwrap().len(), 200);

    // The time per plugin counts every customer the plugin evaluated.
    let before = s.get("/metrics").await.1;
    let sample = r#"regua_plugin_customers_total{plugin="lapsed"} "#;
    let batch: String = text.lines().take(25).map(|l| format!("{l}\n")).collect();
    let r = reqwest::Client::new()
        .post(format!("{}/v1/plugins/lapsed/batch?now={NOW}", s.base))
        .body(batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap().lines().count(), 25);
    let after = s.get("/metrics").await.1;
    assert_eq!(metric(&after, sample) - metric(&before, sample), 25.0);
    assert!(metric(&after, r#"regua_plugin_seconds_total{plugin="lapsed"} "#) > 0.0);

    // The console's files, under a policy that lets only them run.
    for (path, kind) in [
        ("/", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
        ("/console/example-customer.json", "application/json"),
    ] {
        let r = reqwest::get(format!("{}{path}", s.base)).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let header = |h: &str| r.headers()[h].to_str().unwrap().to_owned();
        assert!(header("content-type").starts_with(kind), "{path}");
        assert!(
            header("content-security-policy").contains("script-src 'self'"),
            "{path}"
        );
    }
    let (status, _) = s.get("/console/nothing.js").await;
    assert_eq!(status, 404);

    // Without a decision log, the list says how to get one.
    let s = served(plugins.path(), None);
    let (status, body) = s.get("/v1/decisions").await;
    assert_eq!(status, 404);
    assert!(body.contains("--decision-log"), "{body}");
}

/// The Customers page shows a customer of the journey runtime as a timeline: one row for each
/// event, decision, message and waiting timer `/v1/customers/{id}` lists, oldest first; a
/// service without `--state` says the runtime is off and how to start it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customers_page_shows_a_runtime_customer_as_a_timeline() {
    let state = tempfile::tempdir().unwrap();
    let plugins = regua_tests::plugins_dir();
    let s = Served::spawn(&[
        "--plugins",
        plugins.to_str().unwrap(),
        "--campaigns",
        "examples/reguas",
        "--state",
        state.path().to_str().unwrap(),
        "--manual-clock",
        "2025-03-10T12:00:00Z",
    ]);
    let granted = json!({"marketing": {"status": "granted", "at": "2025-03-01T00:00:00Z"}});
    let eva = json!({"id": "eva", "tz": "America/Sao_Paulo",
        "profile": {"created_at": "2025-03-10T12:00:00Z"},
        "consents": {"email": granted, "push": granted, "whatsapp": granted}});
    s.post_text("/v1/customers", format!("{eva}\n")).await;
    s.post("/v1/clock", &json!({"now": "2025-03-10T15:00:00Z"}))
        .await
        .unwrap();
    let (code, a) = s
        .post(
            "/v1/events",
            &json!({"id": "e1", "customer": "eva", "name": "account_created"}),
        )
        .await
        .unwrap();
    assert_eq!((code, &a["status"]), (200, &json!("applied")), "{a}");
    s.post("/v1/clock", &json!({"now": "2025-03-12T00:00:00Z"}))
        .await
        .unwrap();
    let view: Value = serde_json::from_str(&s.get("/v1/customers/eva").await.1).unwrap();
    let count = |k: &str| view[k].as_array().unwrap().len();
    let events = view["record"]["events"].as_array().unwrap().len();
    let rows = events + count("decisions") + count("outbox") + count("timers");
    assert!(count("outbox") >= 2 && count("timers") >= 1, "{view}");

    let b = Browser::start().await;
    b.client
        .goto(&format!("{}/#customers/eva", s.base))
        .await
        .unwrap();
    b.until(
        "the timeline shown",
        &format!("return document.querySelectorAll('#timeline tbody tr').length === {rows};"),
    )
    .await;
    let table: Value = b
        .js(
            "return [...document.querySelectorAll('#timeline tbody tr')].map((r) => [...r.cells].map((c) => c.textContent));",
            vec![],
        )
        .await;
    let table = table.as_array().unwrap();
    assert_eq!(table[0][1], "event account_created", "{table:?}");
    let whens: Vec<&str> = table.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert!(
        whens.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {whens:?}"
    );
    for m in view["outbox"].as_array().unwrap() {
        let what = format!(
            "{} {}",
            m["channel"].as_str().unwrap(),
            m["template"].as_str().unwrap()
        );
        assert!(
            table
                .iter()
                .any(|r| r[0] == m["send_at"] && r[1] == what.as_str() && r[2] == m["campaign"]),
            "{what} at {} not on the page: {table:?}",
            m["send_at"]
        );
    }
    let timer = &view["timers"][0];
    assert!(
        table
            .iter()
            .any(|r| r[0] == timer["due"] && r[1] == "timer waiting" && r[2] == timer["campaign"]),
        "{table:?}"
    );
    assert!(
        b.text("#customer-summary")
            .await
            .contains("welcome #1 active")
    );
    b.no_errors("customers").await;
    b.screenshot("customers").await;

    // Without --state, the page says the runtime is off.
    let (plugins_copy, _) = example_plugins();
    let off = served(plugins_copy.path(), None);
    b.client
        .goto(&format!("{}/#customers/eva", off.base))
        .await
        .unwrap();
    b.until(
        "the runtime said to be off",
        "const p = document.querySelector('#customers-off'); return !p.hidden && p.textContent.includes('--state');",
    )
    .await;
    b.no_errors("customers without the runtime").await;
}
