//! Prometheus metrics of the service (`GET /metrics`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::pipeline::output::Tally;
use crate::runtime::worker::RecordResult;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EvalLabels {
    plugin: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CampaignLabels {
    campaign: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    campaign: String,
    channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InputLabels {
    source: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 13 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
}

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    evaluations: Family<EvalLabels, Counter>,
    failures: Family<PluginLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
    dev_builds: Family<ReloadLabels, Counter>,
    last_load: Gauge<f64, AtomicU64>,
    decisions: Family<CampaignLabels, Counter>,
    messages: Family<MessageLabels, Counter>,
    inputs: Family<InputLabels, Counter>,
    plugin_customers: Family<PluginLabels, Counter>,
    plugin_seconds: Family<PluginLabels, Counter<f64, AtomicU64>>,
    log_written: Counter,
    log_lost: Counter,
    log_pending: Gauge,
    log_failing: Gauge,
    /// Held while the log's counters catch up, so two renderings do not both add the same gap.
    log_update: std::sync::Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("regua");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer, by route (for streamed batches: to the first byte)",
            latency.clone(),
        );
        let evaluations = Family::<EvalLabels, Counter>::default();
        registry.register(
            "evaluations",
            "Customers evaluated, by plugin and outcome (ok, failed)",
            evaluations.clone(),
        );
        let failures = Family::<PluginLabels, Counter>::default();
        registry.register(
            "plugin_failures",
            "Customers a plugin failed on: traps, panics, limit hits, rule errors",
            failures.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "reloads",
            "Plugin file loads, by result (loaded, failed, removed)",
            reloads.clone(),
        );
        let dev_builds = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "dev_builds",
            "Rebuilds of plugin crates in --dev mode, by result (ok, failed)",
            dev_builds.clone(),
        );
        let last_load = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "last_successful_load_timestamp_seconds",
            "Unix time of the last plugin load that succeeded",
            last_load.clone(),
        );
        let decisions = Family::<CampaignLabels, Counter>::default();
        registry.register(
            "campaign_decisions",
            "Customers decided, by campaign and outcome (planned, denied, held_out, …)",
            decisions.clone(),
        );
        let inputs = Family::<InputLabels, Counter>::default();
        registry.register(
            "runtime_inputs",
            "Inputs the journey runtime answered, by source (http, stream) and status (applied, \
             duplicate, refused)",
            inputs.clone(),
        );
        let messages = Family::<MessageLabels, Counter>::default();
        registry.register(
            "campaign_messages",
            "Messages planned, by campaign and channel",
            messages.clone(),
        );
        let plugin_customers = Family::<PluginLabels, Counter>::default();
        registry.register(
            "plugin_customers",
            "Customers each plugin evaluated, on every path (plugin endpoints, batches, campaigns)",
            plugin_customers.clone(),
        );
        let plugin_seconds = Family::<PluginLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "plugin_seconds",
            "Time each plugin spent evaluating; over regua_plugin_customers_total, the mean time per customer",
            plugin_seconds.clone(),
        );
        let log_written = Counter::default();
        registry.register(
            "decision_log_written",
            "Decisions written to the decision log",
            log_written.clone(),
        );
        let log_lost = Counter::default();
        registry.register(
            "decision_log_lost",
            "Decisions dropped: the log folder failed for longer than the memory bound held",
            log_lost.clone(),
        );
        let log_pending = Gauge::default();
        registry.register(
            "decision_log_pending",
            "Decisions waiting to be written to the decision log",
            log_pending.clone(),
        );
        let log_failing = Gauge::default();
        registry.register(
            "decision_log_failing",
            "1 while the decision log's folder cannot be written, else 0",
            log_failing.clone(),
        );
        Metrics {
            plugin_customers,
            plugin_seconds,
            log_written,
            log_lost,
            log_pending,
            log_failing,
            log_update: std::sync::Mutex::new(()),
            decisions,
            messages,
            inputs,
            registry,
            requests,
            latency,
            evaluations,
            failures,
            reloads,
            dev_builds,
            last_load,
        }
    }

    /// Counts the statuses of inputs the runtime answered from `source` (`http`, `stream`).
    pub fn inputs(&self, source: &'static str, statuses: &[crate::automation::Status]) {
        use crate::automation::Status;
        for s in statuses {
            let status = match s {
                Status::Applied { .. } => "applied",
                Status::Duplicate => "duplicate",
                Status::Refused { .. } => "refused",
            };
            self.inputs
                .get_or_create(&InputLabels { source, status })
                .inc();
        }
    }

    /// Counts a request.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Counts one plugin's answers.
    pub fn evaluated(&self, plugin: &str, ok: u64, failed: u64) {
        let labels = |outcome: &str| EvalLabels {
            plugin: plugin.to_owned(),
            outcome: outcome.to_owned(),
        };
        if ok > 0 {
            self.evaluations.get_or_create(&labels("ok")).inc_by(ok);
        }
        if failed > 0 {
            self.evaluations
                .get_or_create(&labels("failed"))
                .inc_by(failed);
            self.failures
                .get_or_create(&PluginLabels {
                    plugin: plugin.to_owned(),
                })
                .inc_by(failed);
        }
    }

    /// Counts one answer.
    pub fn evaluated_one(&self, plugin: &str, result: &RecordResult) {
        let failed = u64::from(result.is_err());
        self.evaluated(plugin, 1 - failed, failed);
    }

    /// Counts a batch's answers of one plugin.
    pub fn evaluated_tally(&self, plugin: &str, tally: &Tally) {
        let total = tally.matched
            + tally.unmatched
            + tally.allow
            + tally.defer
            + tally.deny
            + tally.with_actions
            + tally.idle;
        self.evaluated(plugin, total, tally.failed);
    }

    /// Counts one customer's campaign decisions.
    pub fn decided(&self, decisions: &[crate::pipeline::campaign::Decision]) {
        for d in decisions {
            self.decisions
                .get_or_create(&CampaignLabels {
                    campaign: d.campaign.clone(),
                    outcome: d.outcome.as_str().to_owned(),
                })
                .inc();
            for m in &d.messages {
                self.messages
                    .get_or_create(&MessageLabels {
                        campaign: d.campaign.clone(),
                        channel: m.channel.as_str().to_owned(),
                    })
                    .inc();
            }
        }
    }

    /// Counts a rebuild of a plugin crate in dev mode.
    pub fn dev_build(&self, ok: bool) {
        self.dev_builds
            .get_or_create(&ReloadLabels {
                result: if ok { "ok" } else { "failed" }.to_owned(),
            })
            .inc();
    }

    /// Counts a reload.
    pub fn reload(&self, result: &str) {
        self.reloads
            .get_or_create(&ReloadLabels {
                result: result.to_owned(),
            })
            .inc();
        if result == "loaded" {
            let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
            self.last_load.set(now);
        }
    }

    /// Adds the time the serving plugins spent since the last rendering (called before each).
    pub fn plugin_time(&self, plugins: &[(String, crate::service::registry::Slot)]) {
        for (name, slot) in plugins {
            let (customers, seconds) = slot.plugin.time.take();
            if customers == 0 {
                continue;
            }
            let labels = PluginLabels {
                plugin: name.clone(),
            };
            self.plugin_customers
                .get_or_create(&labels)
                .inc_by(customers);
            self.plugin_seconds.get_or_create(&labels).inc_by(seconds);
        }
    }

    /// Brings the decision log's figures up to `status` (called before each rendering).
    pub fn decision_log(&self, status: &crate::decisions::SinkStatus) {
        let _held = self.log_update.lock().expect("metrics lock");
        self.log_written
            .inc_by(status.written.saturating_sub(self.log_written.get()));
        self.log_lost
            .inc_by(status.lost.saturating_sub(self.log_lost.get()));
        self.log_pending.set(status.pending as i64);
        self.log_failing.set(i64::from(status.error.is_some()));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}
