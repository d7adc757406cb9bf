use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;

use super::LimitArgs;
use crate::authoring::build as wasm_build;
use crate::service::http::{AppState, OnLogFailure, ServiceConfig};
use crate::service::metrics::Metrics;
use crate::service::registry::Registry;
use crate::service::reload;

/// Serve the plugins of a folder over HTTP, reloading each plugin the moment a new build lands.
///
/// With no flags it serves the repository's example plugins from dist/plugins (building them
/// first if the folder has none). A new or changed .wasm in the folder is loaded and swapped in
/// without a restart; a file that fails to load leaves the last good version serving, with the
/// error in GET /v1/plugins; a deleted file unloads its plugin. With --dev the plugin crates'
/// sources are watched too, and a saved change is rebuilt and swapped in. With --campaigns the
/// campaigns of that folder are served too (GET /v1/campaigns, POST /v1/decide, …) and reloaded
/// as their files change; a file that breaks keeps its last good version serving. With
/// --decision-log every decision (campaign decisions and plugin calls) is logged, each answer
/// carries its id, and GET /v1/decisions/{id} explains one (docs/DECISIONS.md).
///
/// A plugin that is not in the compiled-code cache answers first from a quick baseline compile
/// (Winch), and from the optimised code (Cranelift) as soon as a background compile has it,
/// usually within a second; its answers are the same either way.
///
/// Example: regua serve --plugins dist/plugins --campaigns examples/campaigns --dev
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The folder of .wasm plugins to serve and watch.
    #[arg(long, value_name = "DIR", default_value = super::DEFAULT_PLUGINS_DIR)]
    plugins: PathBuf,
    /// A folder of campaign files (TOML) to serve and watch.
    #[arg(long, value_name = "DIR")]
    campaigns: Option<PathBuf>,
    /// Run the réguas: keep customers, journey instances, timers and an outbox in this folder
    /// (SQLite, embedded), or in the PostgreSQL database at this URL (postgres://USER@HOST/DB,
    /// shared by any number of replicas); take inputs at POST /v1/events and fire timers when
    /// due (docs/RUNTIME.md).
    #[arg(long, value_name = "DIR|URL", requires = "campaigns")]
    state: Option<String>,
    /// With --state: also take inputs from this NATS JetStream subject
    /// (nats://HOST:PORT/SUBJECT), through a durable consumer every replica shares; each
    /// message is one input, its Nats-Msg-Id header its id, acknowledged once applied.
    #[arg(long, value_name = "URL", requires = "state")]
    events: Option<String>,
    /// With --events: the stream to create for the subject when no stream has it.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "REGUA_EVENTS",
        requires = "events"
    )]
    events_stream: String,
    /// With --events: the durable consumer's name, the same on every replica.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "regua",
        requires = "events"
    )]
    events_consumer: String,
    /// With --events: seconds a message taken by a replica waits for its ack before it is
    /// delivered again: how soon another replica takes over the inputs of one that stopped.
    #[arg(long, value_name = "SECS", default_value_t = 10, requires = "events")]
    events_ack_wait: u64,
    /// With --state: the service's clock starts at this instant and moves only by POST
    /// /v1/clock, to rehearse réguas on recorded time.
    #[arg(long, value_name = "RFC3339", requires = "state")]
    manual_clock: Option<String>,
    /// With --state: post each due outbox entry to this URL (http://) as JSON, with its
    /// idempotency key in an `Idempotency-Key` header; a 2xx answer marks it delivered, another
    /// 4xx or a redirect failed, and no answer, 408, 429 or 5xx is retried 30 s later, doubling
    /// up to an hour. GET /v1/outbox keeps working beside it.
    #[arg(long, value_name = "URL", requires = "state")]
    webhook: Option<String>,
    /// With --state: days an input's id is remembered after its instant (a repeat within them
    /// is a duplicate; after them, an input older than its customer's clock is still refused
    /// as late, and the store does not grow with every id ever applied).
    #[arg(long, value_name = "DAYS", default_value_t = 30, requires = "state")]
    dedup_days: u32,
    /// Attempts of a webhook delivery before the entry is reported failed.
    #[arg(long, value_name = "N", default_value_t = 8, requires = "webhook")]
    webhook_attempts: u32,
    /// Seconds a webhook attempt may take before it counts as failed (and is retried).
    #[arg(long, value_name = "SECS", default_value_t = 10, requires = "webhook")]
    webhook_timeout: u64,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Also watch the plugin crates under --sources, rebuild the one that changed and swap it in.
    #[arg(long)]
    dev: bool,
    /// The plugin crates, for --dev and for the first build: one crate, or a folder of them.
    #[arg(long, value_name = "DIR", default_value = "plugins")]
    sources: PathBuf,
    /// Cargo's target folder for --dev rebuilds (default: the crates' workspace's).
    #[arg(long, value_name = "DIR")]
    target_dir: Option<PathBuf>,
    /// Token for PUT and DELETE /v1/plugins/{name} (Authorization: Bearer TOKEN); without one
    /// those endpoints are disabled.
    #[arg(long, env = "REGUA_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// The company's default time zone, for customers without one.
    #[arg(long, value_name = "IANA", default_value = "America/Sao_Paulo")]
    tz: String,
    /// Largest request body (and NDJSON line), in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 16)]
    max_body: usize,
    /// Request bodies held at once across every connection, in MiB: a JSON body that does not
    /// fit waits up to 5 s for room, then is answered 503 (streamed NDJSON bodies are read a
    /// chunk at a time and are not counted).
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    body_budget: usize,
    /// Seconds a client may take to send a request's headers; also the longest a kept-alive
    /// connection waits idle for its next request. Then the connection is closed.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// Seconds a whole JSON body may take to arrive (408 after), and the longest a streamed
    /// NDJSON body may pause between two pieces.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout: u64,
    /// Evaluation threads; default: one per core.
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    decision_log: super::decisions::DecisionLogArgs,
    /// While the decision log cannot be written (disk full, permissions): `answer` keeps
    /// answering and holds the decisions in memory (bounded) until the folder can be written;
    /// `refuse` answers decision requests with 503 until then. /healthz and /metrics show it
    /// either way.
    #[arg(
        long,
        value_enum,
        value_name = "WHAT",
        default_value = "answer",
        requires = "decision_log"
    )]
    decision_log_on_failure: OnLogFailure,
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing the requests in flight");
}

impl ServeArgs {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        regua_sdk::Zone::get(&self.tz).map_err(|e| anyhow::anyhow!("--tz: {e}"))?;
        release_freed_memory_at_once();
        std::fs::create_dir_all(&self.plugins).with_context(|| {
            format!(
                "cannot create the plugins folder `{}`",
                self.plugins.display()
            )
        })?;
        let empty = !std::fs::read_dir(&self.plugins)?
            .filter_map(|e| e.ok())
            .any(|e| crate::service::registry::is_wasm(&e.path()));
        if self.dev {
            // A crate or a folder of crates; anything else would be watched for nothing.
            let found = wasm_build::find_plugin_crates(&self.sources).unwrap_or_default();
            if found.is_empty() {
                anyhow::bail!(
                    "--sources `{}` holds no plugin crate to watch: give a plugin crate (a Cargo.toml \
                     with crate-type cdylib) or a folder of them",
                    self.sources.display()
                );
            }
        }
        if (empty || self.dev) && self.sources.is_dir() {
            tracing::info!(sources = %self.sources.display(), "building the plugin crates into {}", self.plugins.display());
            let crates =
                wasm_build::find_plugin_crates(&self.sources).map_err(anyhow::Error::msg)?;
            if let Err(e) = wasm_build::build(&crates, &self.plugins, self.target_dir.as_deref()) {
                tracing::warn!("some plugins did not build; serving those that did:\n{e}");
            }
        }

        let engine = self.limits.engine()?.tiered()?;
        let registry = Arc::new(Registry::new(engine, &self.plugins));
        let metrics = Arc::new(Metrics::new());
        reload::load_all(&registry, &metrics);
        let sources = self.dev.then(|| reload::DevSources {
            root: self.sources.clone(),
            target_dir: self.target_dir.clone(),
        });
        let _watchers = reload::watch(registry.clone(), metrics.clone(), sources)
            .context("cannot watch the plugins folder")?;
        let evaluator = crate::pipeline::evaluator::Evaluator::new(self.threads)
            .context("cannot start the evaluation threads")?;
        let config = ServiceConfig {
            admin_token: self.admin_token.filter(|t| !t.is_empty()),
            default_tz: self.tz,
            max_body: self.max_body.max(1) << 20,
            body_budget: self.body_budget.max(1) << 20,
            header_timeout: std::time::Duration::from_secs(self.header_timeout),
            body_timeout: std::time::Duration::from_secs(self.body_timeout),
            ..ServiceConfig::default()
        };
        if config.body_budget < config.max_body {
            anyhow::bail!(
                "--body-budget ({} MiB) is smaller than --max-body ({} MiB): a body of the largest size could never be read",
                self.body_budget,
                self.max_body
            );
        }
        let admin = config.admin_token.is_some();
        if let Some(dir) = &self.campaigns
            && !dir.is_dir()
        {
            anyhow::bail!("--campaigns: `{}` is not a folder", dir.display());
        }
        let store = crate::service::campaigns::CampaignStore::new(
            self.campaigns.clone(),
            registry.clone(),
            &config.default_tz,
        );
        store.reload();
        for e in store.errors() {
            tracing::warn!("campaign not served: {e}");
        }
        let _campaign_watcher = store.watch().context("cannot watch the campaigns folder")?;
        let webhook = self
            .webhook
            .as_deref()
            .map(|url| {
                crate::service::webhook::Webhook::new(
                    url,
                    std::time::Duration::from_secs(self.webhook_timeout.max(1)),
                    self.webhook_attempts,
                )
            })
            .transpose()?;
        let log = self.decision_log.open();
        let events = self
            .events
            .as_deref()
            .map(|url| {
                let (server, subject) = crate::service::stream::Source::parse(url)
                    .map_err(|e| anyhow::anyhow!("--events: {e}"))?;
                anyhow::Ok(crate::service::stream::Source {
                    server,
                    subject,
                    stream: self.events_stream.clone(),
                    consumer: self.events_consumer.clone(),
                    ack_wait: std::time::Duration::from_secs(self.events_ack_wait.max(1)),
                })
            })
            .transpose()?;
        let automation = match &self.state {
            Some(dir) => {
                let clock = match &self.manual_clock {
                    Some(t) => crate::service::automation::Clock::Manual(std::sync::Mutex::new(
                        regua_sdk::Timestamp::parse(t)
                            .map_err(|e| anyhow::anyhow!("--manual-clock: {e}"))?,
                    )),
                    None => crate::service::automation::Clock::Wall,
                };
                Some(crate::service::automation::Automation::open(
                    dir,
                    store.clone(),
                    &config.default_tz,
                    clock,
                    log.clone().map(|l| l as _),
                    regua_sdk::Duration::days(i64::from(self.dedup_days.max(1))),
                )?)
            }
            None => None,
        };
        let mut state = AppState::new(registry, evaluator, metrics, config).with_campaigns(store);
        if let Some(a) = &automation {
            state = state.with_automation(a.clone());
        }
        if let Some(log) = &log {
            state = state.with_decision_log(log.clone(), self.decision_log_on_failure);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind(self.addr)
                .await
                .with_context(|| format!("cannot listen on {}", self.addr))?;
            let addr = listener.local_addr()?;
            tracing::info!(
                "listening on http://{addr} (admin endpoints {}; dev mode {})",
                if admin { "on" } else { "off" },
                if self.dev { "on" } else { "off" }
            );
            eprintln!("regua: serving {} on http://{addr}", self.plugins.display());
            if let Some(a) = automation {
                // Overdue timers (the service was down) fire first, in order, at their due
                // instants; then each as it comes due.
                if let Some(w) = webhook {
                    tokio::spawn(w.run(a.clone()));
                }
                if let Some(source) = events {
                    tokio::spawn(crate::service::stream::run(
                        source,
                        a.clone(),
                        state.clone(),
                    ));
                }
                tokio::spawn(a.run_timers(state.clone()));
            }
            crate::service::http::serve(listener, state, shutdown_signal())
                .await
                .context("the server failed")
        })?;
        // Every request has been answered: write the last decisions and sync the file.
        super::decisions::close(log.as_ref())?;
        if let Some(log) = &log {
            eprintln!(
                "regua: {} decisions written to {}",
                log.sink.status().written,
                log.sink.dir().display()
            );
        }
        Ok(())
    }
}

/// Has the allocator give memory back to the system as soon as it is freed. mimalloc otherwise
/// keeps what a thread freed until that thread allocates again: after a burst of large request
/// bodies, the service's memory stayed at twice the body budget with every request answered.
/// Set for `regua serve` only: a batch's steady churn keeps its pages warm instead.
fn release_freed_memory_at_once() {
    unsafe extern "C" {
        fn mi_option_set(option: i32, value: std::ffi::c_long);
    }
    // `mi_option_purge_delay` in mimalloc's option enum (v2 and v3 alike): 0 purges at once.
    const MI_OPTION_PURGE_DELAY: i32 = 15;
    // SAFETY: sets one integer option of the allocator; safe at any time, from any thread.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}
