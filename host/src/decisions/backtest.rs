//! The backtest: what a rest policy would have done to the messages that were actually sent.
//!
//! The period `[from, to)` is cut into steps (a day, an hour): each step stands for a run at
//! its start `t`. Every message the customer's record says was sent during `[t, t + step)` is
//! proposed again to the policy, with `now = t` and the customer's contacts cut to those sent
//! before `t`. As in a campaign run (DOMAIN §4a), the messages of the same step that the policy
//! lets through (now, or deferred to `until`) count toward the next ones' caps and gaps, and the
//! ones it denies do not. Each message answers allow, deny (by rule) or defer (by rule); the
//! tallies go by rule, channel, campaign and step, with example customers.
//!
//! One record at a time, so memory stays bounded whatever the file's size.

use std::collections::BTreeMap;
use std::sync::Arc;

use regua_sdk::{Contact, Duration, Fields, Message, Record, Timestamp, Verdict};
use serde::Serialize;

use crate::runtime::chunk::EncodedBatch;
use crate::runtime::plugin::Plugin;
use crate::runtime::worker::{Evaluation, Inputs, Outcome, Worker};

/// What to replay.
#[derive(Clone)]
pub struct Replay {
    /// The rest policy.
    pub policy: Arc<Plugin>,
    /// Its parameters, JSON.
    pub params: String,
    /// The company's default zone.
    pub default_tz: String,
    /// The period's start (inclusive).
    pub from: Timestamp,
    /// Its end (exclusive).
    pub to: Timestamp,
    /// One step: the time between two runs.
    pub step: Duration,
    /// Only the messages of this campaign are proposed again (all count as history).
    pub campaign: Option<String>,
    /// Campaigns with a rest policy of their own: their messages go to it instead, with its
    /// parameters (a campaigns folder replayed whole).
    pub own_policies: BTreeMap<String, (Arc<Plugin>, String)>,
    /// Examples kept per rule.
    pub examples: usize,
}

/// Counts of one slice (a rule, a channel, a campaign, a step).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    /// Messages sent in the period and proposed again.
    pub sent: u64,
    /// Of them, the policy allowed.
    pub allowed: u64,
    /// Denied.
    pub denied: u64,
    /// Deferred.
    pub deferred: u64,
    /// The policy failed on them.
    pub failed: u64,
}

impl Counts {
    fn add(&mut self, outcome: &Answer) {
        self.sent += 1;
        match outcome {
            Answer::Allow => self.allowed += 1,
            Answer::Deny(..) => self.denied += 1,
            Answer::Defer(..) => self.deferred += 1,
            Answer::Failed(_) => self.failed += 1,
        }
    }
}

/// A message the policy would have blocked or deferred.
#[derive(Clone, Debug, Serialize)]
pub struct Example {
    /// The customer.
    pub customer: String,
    /// When it was sent.
    pub sent_at: String,
    /// The channel.
    pub channel: String,
    /// Its campaign.
    pub campaign: Option<String>,
    /// `deny` or `defer`.
    pub outcome: String,
    /// The rule.
    pub rule: String,
    /// The reason code.
    pub reason: Option<String>,
    /// For a defer: the earliest it could have gone.
    pub until: Option<String>,
}

/// A step's counts.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// Its start, the `now` of its run.
    pub start: String,
    /// Its counts.
    #[serde(flatten)]
    pub counts: Counts,
}

/// A rule's counts.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct RuleCounts {
    /// Messages it denied.
    pub denied: u64,
    /// Messages it deferred.
    pub deferred: u64,
}

/// A failure: a record that could not be read, or a message the policy failed on.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    /// The input line.
    pub line: u64,
    /// The customer, when known.
    pub customer: Option<String>,
    /// What went wrong.
    pub error: String,
}

/// The backtest's answer.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The policy and its version.
    pub policy: String,
    /// Its version.
    pub version: String,
    /// The campaign whose messages were proposed again, if one was named.
    pub campaign: Option<String>,
    /// The campaigns judged by a policy of their own, and its name and version.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub own_policies: BTreeMap<String, String>,
    /// The period's start.
    pub from: String,
    /// Its end (exclusive).
    pub to: String,
    /// The step.
    pub step: String,
    /// Customer records read.
    pub customers: u64,
    /// Lines that were not a customer record.
    pub bad_lines: u64,
    /// Every message proposed again.
    #[serde(flatten)]
    pub total: Counts,
    /// Denied and deferred by rule.
    pub by_rule: BTreeMap<String, RuleCounts>,
    /// By channel.
    pub by_channel: BTreeMap<String, Counts>,
    /// By campaign code (`(none)` for messages without one).
    pub by_campaign: BTreeMap<String, Counts>,
    /// By step, every step of the period in order.
    pub by_step: Vec<Step>,
    /// Example customers, a few per rule.
    pub examples: Vec<Example>,
    /// The first failures (bad lines, policy errors), up to 100.
    pub failures: Vec<Failure>,
}

enum Answer {
    Allow,
    Deny(String, Option<String>),
    Defer(String, Option<String>, Timestamp),
    Failed(String),
}

const MAX_FAILURES: usize = 100;

impl Replay {
    /// The number of steps in the period.
    pub fn steps(&self) -> usize {
        let span = self.to.as_millis() - self.from.as_millis();
        let step = self.step.as_millis();
        usize::try_from((span + step - 1) / step).unwrap_or(0)
    }

    /// An empty report for this replay.
    pub fn report(&self) -> Report {
        Report {
            policy: self.policy.name().to_owned(),
            version: self.policy.version.clone(),
            campaign: self.campaign.clone(),
            own_policies: self
                .own_policies
                .iter()
                .map(|(c, (p, _))| (c.clone(), format!("{} {}", p.name(), p.version)))
                .collect(),
            from: self.from.to_string(),
            to: self.to.to_string(),
            step: self.step.to_string(),
            customers: 0,
            bad_lines: 0,
            total: Counts::default(),
            by_rule: BTreeMap::new(),
            by_channel: BTreeMap::new(),
            by_campaign: BTreeMap::new(),
            by_step: (0..self.steps())
                .map(|k| Step {
                    start: (self.from + Duration::millis(k as i64 * self.step.as_millis()))
                        .to_string(),
                    counts: Counts::default(),
                })
                .collect(),
            examples: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Replays one line of NDJSON into `report`.
    pub fn line(&self, worker: &mut Worker, report: &mut Report, line_no: u64, text: &str) {
        if text.trim().is_empty() {
            return;
        }
        match regua_sdk::json::from_str::<Record>(text, None) {
            Ok(record) => self.customer(worker, report, line_no, record),
            Err(e) => self.bad_line(report, line_no, e),
        }
    }

    /// Counts a line that is not a customer record, naming it among the first failures.
    pub fn bad_line(&self, report: &mut Report, line_no: u64, error: String) {
        report.bad_lines += 1;
        if report.failures.len() < MAX_FAILURES {
            report.failures.push(Failure {
                line: line_no,
                customer: None,
                error,
            });
        }
    }

    /// Replays one customer's messages of the period into `report`.
    pub fn customer(&self, worker: &mut Worker, report: &mut Report, line_no: u64, record: Record) {
        report.customers += 1;
        let step = self.step.as_millis();
        let mut by_step: BTreeMap<i64, Vec<&Contact>> = BTreeMap::new();
        for c in &record.contacts {
            let proposed = self
                .campaign
                .as_ref()
                .is_none_or(|code| c.campaign.as_ref() == Some(code));
            if proposed && c.at >= self.from && c.at < self.to {
                let k = (c.at.as_millis() - self.from.as_millis()) / step;
                by_step.entry(k).or_default().push(c);
            }
        }
        for (k, mut sent) in by_step {
            sent.sort_by_key(|c| c.at);
            let now = self.from + Duration::millis(k * step);
            let mut seen = Record {
                contacts: record
                    .contacts
                    .iter()
                    .filter(|c| c.at < now)
                    .cloned()
                    .collect(),
                ..record.clone()
            };
            for c in sent {
                let answer = self.ask(worker, &seen, now, c);
                match &answer {
                    Answer::Allow => seen.contacts.push(Contact {
                        at: now,
                        ..c.clone()
                    }),
                    Answer::Defer(_, _, until) => seen.contacts.push(Contact {
                        at: *until,
                        ..c.clone()
                    }),
                    Answer::Deny(..) | Answer::Failed(_) => {}
                }
                self.count(report, k as usize, line_no, &record.id, c, &answer);
            }
        }
    }

    fn ask(&self, worker: &mut Worker, customer: &Record, now: Timestamp, c: &Contact) -> Answer {
        let (policy, params) = c
            .campaign
            .as_ref()
            .and_then(|code| self.own_policies.get(code))
            .map_or((&self.policy, &self.params), |(p, params)| (p, params));
        let inputs = Inputs {
            now,
            default_tz: self.default_tz.clone(),
            params: params.clone(),
            message: Some(Message {
                channel: c.channel,
                campaign: c.campaign.clone(),
                category: c.category,
                tags: c.tags.clone(),
                // What was sent: a templated WhatsApp message is judged as one.
                template: c.template.clone(),
            }),
            event: None,
        };
        let eval = match Evaluation::new(policy.clone(), &inputs) {
            Ok(e) => e,
            Err(e) => return Answer::Failed(e.to_string()),
        };
        let mut batch = EncodedBatch::reading(Fields::of(&policy.meta.reads));
        batch.push(customer);
        match worker.evaluate(&eval, &batch).map(|mut r| r.remove(0)) {
            Ok(Ok(Outcome::Rest(d))) => {
                let rule = d.rule.clone().unwrap_or_else(|| "(unnamed)".into());
                match d.decision {
                    Verdict::Allow => Answer::Allow,
                    Verdict::Deny => Answer::Deny(rule, d.reason),
                    Verdict::Defer => Answer::Defer(rule, d.reason, d.until.unwrap_or(now)),
                }
            }
            Ok(Ok(_)) => Answer::Failed("the policy did not answer as a rest policy".into()),
            Ok(Err(e)) => Answer::Failed(e),
            Err(e) => Answer::Failed(e.to_string()),
        }
    }

    fn count(
        &self,
        report: &mut Report,
        step: usize,
        line_no: u64,
        customer: &str,
        c: &Contact,
        answer: &Answer,
    ) {
        report.total.add(answer);
        report
            .by_channel
            .entry(c.channel.as_str().to_owned())
            .or_default()
            .add(answer);
        report
            .by_campaign
            .entry(c.campaign.clone().unwrap_or_else(|| "(none)".into()))
            .or_default()
            .add(answer);
        if let Some(s) = report.by_step.get_mut(step) {
            s.counts.add(answer);
        }
        let (outcome, rule, reason, until) = match answer {
            Answer::Allow => return,
            Answer::Failed(e) => {
                if report.failures.len() < MAX_FAILURES {
                    report.failures.push(Failure {
                        line: line_no,
                        customer: Some(customer.to_owned()),
                        error: e.clone(),
                    });
                }
                return;
            }
            Answer::Deny(rule, reason) => {
                report.by_rule.entry(rule.clone()).or_default().denied += 1;
                ("deny", rule, reason, None)
            }
            Answer::Defer(rule, reason, until) => {
                report.by_rule.entry(rule.clone()).or_default().deferred += 1;
                ("defer", rule, reason, Some(until.to_string()))
            }
        };
        let shown = report.examples.iter().filter(|e| &e.rule == rule).count();
        if shown < self.examples {
            report.examples.push(Example {
                customer: customer.to_owned(),
                sent_at: c.at.to_string(),
                channel: c.channel.as_str().to_owned(),
                campaign: c.campaign.clone(),
                outcome: outcome.to_owned(),
                rule: rule.clone(),
                reason: reason.clone(),
                until,
            });
        }
    }
}

impl Report {
    /// The report as tables, for people.
    pub fn table(&self) -> String {
        let pct = |n: u64| {
            if self.total.sent == 0 {
                0.0
            } else {
                100.0 * n as f64 / self.total.sent as f64
            }
        };
        let mut s = format!(
            "Backtest of {} ({}) over [{}, {}), a run every {}{}.\n\
             {} customers, {} messages sent and proposed again: {} allowed, {} denied ({:.1} %), \
             {} deferred ({:.1} %), {} failed.\n",
            self.policy,
            self.version,
            self.from,
            self.to,
            self.step,
            self.campaign
                .as_ref()
                .map(|c| format!(", messages of campaign {c}"))
                .unwrap_or_default(),
            self.customers,
            self.total.sent,
            self.total.allowed,
            self.total.denied,
            pct(self.total.denied),
            self.total.deferred,
            pct(self.total.deferred),
            self.total.failed
        );
        if self.bad_lines > 0 {
            s.push_str(&format!(
                "{} lines were not customer records (see `failures` in --json).\n",
                self.bad_lines
            ));
        }
        s.push_str(&format!(
            "\n  {:<24} {:>8} {:>8}\n",
            "by rule", "denied", "deferred"
        ));
        for (rule, c) in &self.by_rule {
            s.push_str(&format!("  {rule:<24} {:>8} {:>8}\n", c.denied, c.deferred));
        }
        for (title, map) in [
            ("by channel", &self.by_channel),
            ("by campaign", &self.by_campaign),
        ] {
            s.push_str(&format!(
                "\n  {title:<24} {:>8} {:>8} {:>8} {:>8}\n",
                "sent", "allowed", "denied", "deferred"
            ));
            for (k, c) in map {
                s.push_str(&format!(
                    "  {k:<24} {:>8} {:>8} {:>8} {:>8}\n",
                    c.sent, c.allowed, c.denied, c.deferred
                ));
            }
        }
        if !self.examples.is_empty() {
            s.push_str("\n  examples\n");
            for e in &self.examples {
                s.push_str(&format!(
                    "  {} {} sent {} ({}): {} by `{}`{}{}\n",
                    e.customer,
                    e.channel,
                    e.sent_at,
                    e.campaign.as_deref().unwrap_or("no campaign"),
                    e.outcome,
                    e.rule,
                    e.reason
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default(),
                    e.until
                        .as_ref()
                        .map(|u| format!(" until {u}"))
                        .unwrap_or_default()
                ));
            }
        }
        s
    }
}

/// Reads a step: `day`, `hour` or a duration (`6h`).
pub fn parse_step(text: &str) -> Result<Duration, String> {
    let d = match text {
        "day" => Duration::days(1),
        "hour" => Duration::hours(1),
        other => Duration::parse(other).map_err(|e| format!("{e}, or `day` or `hour`"))?,
    };
    if d.as_millis() < 60_000 {
        return Err(format!("`{text}` is shorter than a minute"));
    }
    Ok(d)
}

/// Checks a period: `from` before `to`, and not more than 100,000 steps.
pub fn check_period(from: Timestamp, to: Timestamp, step: Duration) -> Result<(), String> {
    if from >= to {
        return Err(format!(
            "the period is empty: `from` {from} is not before `to` {to}"
        ));
    }
    let steps = (to.as_millis() - from.as_millis()) / step.as_millis();
    if steps > 100_000 {
        return Err(format!(
            "{steps} steps of {step} from {from} to {to}: at most 100,000 (take a longer step)"
        ));
    }
    Ok(())
}

/// The campaigns of `campaigns` with a rest policy of their own (when no one campaign is
/// named): code → plugin name and parameters.
pub fn own_policies(
    campaigns: &crate::pipeline::campaign::Campaigns,
    code: Option<&str>,
) -> BTreeMap<String, (String, String)> {
    if code.is_some() {
        return BTreeMap::new();
    }
    campaigns
        .campaigns
        .iter()
        .filter_map(|c| {
            let r = c.def.rest.as_ref()?;
            Some((c.def.code.clone(), (r.plugin.clone(), r.params.to_string())))
        })
        .collect()
}

/// The rest policy a campaign runs under: its own, or the company's.
pub fn campaign_policy<'a>(
    campaigns: &'a crate::pipeline::campaign::Campaigns,
    code: Option<&str>,
) -> Result<&'a crate::pipeline::campaign::definition::PluginRef, String> {
    let company = campaigns.company.rest.as_ref();
    match code {
        Some(code) => {
            let c = campaigns
                .get(code)
                .ok_or_else(|| format!("no campaign `{code}` in the campaigns"))?;
            c.def.rest.as_ref().or(company).ok_or_else(|| {
                format!("campaign `{code}` has no rest policy, and the company names none")
            })
        }
        None => company.ok_or_else(|| {
            "the company settings (company.toml) name no rest policy: name a campaign, or the \
             policy itself"
                .to_owned()
        }),
    }
}
