//! The A/B readout: who was in which group of a campaign (from the decision log or a run's
//! answers), joined with the customers' later records, gives the conversion of each group and
//! the uplift of each variant over the holdout, with 95 % confidence intervals.
//!
//! The method (docs/DECISIONS.md says the same for people):
//! - A customer belongs to a group from the first decision the campaign made for them in which
//!   they were in the audience (intent to treat: a customer whose message the rest policy denied
//!   stays in their variant, as the holdout is drawn from the whole audience). Everyone held out
//!   (the campaign's holdout, the global holdout, a control variant) is the `holdout`; a campaign
//!   without variants puts everyone else in `treatment`.
//! - Converted: the later record has the named event (or a transaction of the named kind) at a
//!   time in `(exposed, exposed + window]`, exposed being the decision's `now` whatever the input
//!   (the log's `now`, the answers' `--at`, a send-list row's `decided_at`), never a deferred
//!   message's later `send_at`.
//! - A group's rate has a Wilson score interval. The uplift of a variant over the holdout is the
//!   difference of the rates with the unpooled (Wald) 95 % interval
//!   `d ± z·√(p₁(1−p₁)/n₁ + p₀(1−p₀)/n₀)`, z = 1.959964; its p-value is the two-sided
//!   two-proportion z-test with the pooled rate.
//! - Too small to tell: either group has fewer than 10 conversions or 10 non-conversions (the
//!   success–failure condition under which the normal approximation holds).

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;

use regua_sdk::{Duration, Record, Timestamp};
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};

/// The 97.5th percentile of the standard normal distribution.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The group every held-out customer is counted in.
pub const HOLDOUT: &str = "holdout";

/// What counts as a conversion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum Conversion {
    /// An event of this name (`app_activated`).
    Event(String),
    /// A transaction of this kind (`purchase`, `cashout`).
    Transaction(String),
}

impl std::str::FromStr for Conversion {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            Some(("event", name)) if !name.is_empty() => Ok(Conversion::Event(name.to_owned())),
            Some(("transaction", kind)) if !kind.is_empty() => {
                Ok(Conversion::Transaction(kind.to_owned()))
            }
            _ => Err(format!(
                "`{text}` is not a conversion: write `event:NAME` (event:app_activated) or \
                 `transaction:KIND` (transaction:purchase)"
            )),
        }
    }
}

impl std::fmt::Display for Conversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conversion::Event(n) => write!(f, "event:{n}"),
            Conversion::Transaction(k) => write!(f, "transaction:{k}"),
        }
    }
}

impl Conversion {
    /// Whether `record` converted in `(from, from + window]`.
    pub fn converted(&self, record: &Record, from: Timestamp, window: Duration) -> bool {
        let within = |at: Timestamp| at > from && at <= from + window;
        match self {
            Conversion::Event(name) => record
                .events
                .iter()
                .any(|e| &e.name == name && within(e.at)),
            Conversion::Transaction(kind) => record
                .transactions
                .iter()
                .any(|t| &t.kind == kind && within(t.at)),
        }
    }
}

/// One customer's group in one campaign, and when they were exposed.
#[derive(Clone, Debug)]
struct Exposure {
    campaign: String,
    group: String,
    at: Timestamp,
}

/// Who was in which group of which campaign.
#[derive(Debug, Default)]
pub struct Assignments {
    by_customer: HashMap<String, Vec<Exposure>>,
    /// Decisions read.
    pub decisions: u64,
}

/// The group of a decision, when the customer was in the audience.
fn group_of(outcome: &str, variant: Option<&str>) -> Option<String> {
    match outcome {
        // Held out by the campaign's holdout, the global holdout or a control variant: nothing
        // was sent because of the campaign's design, so all of them are the base.
        "held_out" => Some(HOLDOUT.to_owned()),
        "planned" | "denied" | "nothing_to_do" => {
            Some(variant.map_or_else(|| "treatment".to_owned(), str::to_owned))
        }
        _ => None,
    }
}

impl Assignments {
    /// Counts one decision: the first that puts a customer in a campaign's audience sets the
    /// group and the exposure time.
    pub fn add(
        &mut self,
        customer: &str,
        campaign: &str,
        outcome: &str,
        variant: Option<&str>,
        at: Timestamp,
    ) {
        self.decisions += 1;
        let Some(group) = group_of(outcome, variant) else {
            return;
        };
        let list = self.by_customer.entry(customer.to_owned()).or_default();
        match list.iter_mut().find(|e| e.campaign == campaign) {
            Some(e) if e.at <= at => {}
            Some(e) => {
                e.at = at;
                e.group = group;
            }
            None => list.push(Exposure {
                campaign: campaign.to_owned(),
                group,
                at,
            }),
        }
    }

    /// The campaign decisions of a decision log folder (of campaign `only`, if given).
    pub fn from_log(dir: &std::path::Path, only: Option<&str>) -> Result<Assignments, String> {
        let mut a = Assignments::default();
        let files = super::each_entry(dir, |e, at| {
            let Some(campaign) = &e.campaign else {
                return Ok(());
            };
            if only.is_none_or(|o| o == campaign) {
                let now = Timestamp::parse(&e.now).map_err(|err| format!("{at}: `now`: {err}"))?;
                a.add(&e.customer, campaign, &e.outcome, e.variant.as_deref(), now);
            }
            Ok(())
        })?;
        if files == 0 {
            return Err(format!("the decision log `{}` has no files", dir.display()));
        }
        Ok(a)
    }

    /// The decisions of `regua campaign run`'s answers (one line per customer, made at `at`),
    /// or the rows of its NDJSON send list (each decided at its `decided_at`, else at `at`; a
    /// send list has no holdout, only the customers something was sent to).
    pub fn from_answers(
        reader: impl BufRead,
        at: Option<Timestamp>,
        only: Option<&str>,
        what: &str,
    ) -> Result<Assignments, String> {
        let mut a = Assignments::default();
        for (n, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| format!("cannot read {what}: {e}"))?;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |why: &str| format!("{what} line {}: {why}", n + 1);
            let v: serde_json::Value = serde_json::from_str(&line)
                .map_err(|e| bad(&format!("not JSON ({e}): expected the NDJSON answers or send list of `regua campaign run`")))?;
            if let (Some(customer), Some(campaign)) =
                (v["customer"].as_str(), v["campaign"].as_str())
            {
                // A send-list row.
                if only.is_some_and(|o| o != campaign) {
                    continue;
                }
                // Exposed when decided, as from the log and the answers: a deferred message's
                // `send_at` is later, and the window does not move with it.
                let decided = match (v["decided_at"].as_str(), at) {
                    (Some(d), _) => {
                        Timestamp::parse(d).map_err(|e| bad(&format!("`decided_at`: {e}")))?
                    }
                    (None, Some(at)) => at,
                    (None, None) => {
                        return Err(bad(
                            "a send-list row without `decided_at` (written before it was \
                             recorded): give --at, the run's --now",
                        ));
                    }
                };
                a.add(
                    customer,
                    campaign,
                    "planned",
                    v["variant"].as_str(),
                    decided,
                );
                continue;
            }
            let Some(decisions) = v["decisions"].as_array() else {
                continue; // an error line of the run: no decision for that customer
            };
            let id = v["id"].as_str().ok_or_else(|| bad("no `id`"))?;
            let at = at.ok_or_else(|| {
                bad("the run's answers do not say when they were made: give --at, the run's --now")
            })?;
            for d in decisions {
                let (Some(campaign), Some(outcome)) =
                    (d["campaign"].as_str(), d["outcome"].as_str())
                else {
                    return Err(bad("a decision without `campaign` and `outcome`"));
                };
                if only.is_some_and(|o| o != campaign) {
                    continue;
                }
                a.add(id, campaign, outcome, d["variant"].as_str(), at);
            }
        }
        Ok(a)
    }
}

/// A group's conversion.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Group {
    /// `holdout` (everyone held out), a variant's name, or `treatment`.
    pub group: String,
    /// Customers in the group found in the later records.
    pub customers: u64,
    /// Of them, converted within the window.
    pub converted: u64,
    /// converted / customers.
    pub rate: f64,
    /// The Wilson 95 % interval of the rate.
    pub low: f64,
    /// Its upper end.
    pub high: f64,
}

/// A variant against the holdout.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Uplift {
    /// The variant.
    pub variant: String,
    /// Its rate minus the holdout's, in rate points (0.02 = 2 points).
    pub difference: f64,
    /// The 95 % interval of the difference.
    pub low: f64,
    /// Its upper end.
    pub high: f64,
    /// The difference over the holdout's rate (none when the holdout never converted).
    pub relative: Option<f64>,
    /// The two-proportion z statistic (pooled).
    pub z: f64,
    /// Its two-sided p-value.
    pub p_value: f64,
    /// `better`, `worse`, `no difference shown` or `too small to tell`.
    pub verdict: String,
}

/// The readout of one campaign.
#[derive(Clone, Debug, Serialize)]
pub struct CampaignReadout {
    /// The campaign's code.
    pub campaign: String,
    /// Its groups, holdout first.
    pub groups: Vec<Group>,
    /// Each variant against the holdout.
    pub uplifts: Vec<Uplift>,
    /// Customers in a group who are not in the later records (not counted).
    pub missing: u64,
    /// Plain warnings.
    pub warnings: Vec<String>,
}

/// The readout.
#[derive(Clone, Debug, Serialize)]
pub struct Readout {
    /// What counted as a conversion.
    pub conversion: String,
    /// The attribution window.
    pub window: String,
    /// Decisions read.
    pub decisions: u64,
    /// Later records read.
    pub records: u64,
    /// One readout per campaign, by code.
    pub campaigns: Vec<CampaignReadout>,
}

/// The Wilson score interval of `x` successes in `n`.
pub fn wilson(x: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p, z2) = (n as f64, x as f64 / n as f64, Z95 * Z95);
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The difference of `x1/n1` over `x0/n0`: (difference, low, high, z, two-sided p).
pub fn two_proportions(x1: u64, n1: u64, x0: u64, n0: u64) -> (f64, f64, f64, f64, f64) {
    let (p1, p0) = (x1 as f64 / n1 as f64, x0 as f64 / n0 as f64);
    let d = p1 - p0;
    let se = (p1 * (1.0 - p1) / n1 as f64 + p0 * (1.0 - p0) / n0 as f64).sqrt();
    let pooled = (x1 + x0) as f64 / (n1 + n0) as f64;
    let se0 = (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n0 as f64)).sqrt();
    // Both groups at 0 % or both at 100 %: no variation, so the statistic is 0 / 0, undefined
    // (statsmodels answers NaN). The rates are identical, so the readout reports z = 0, p = 1
    // ("no evidence of a difference"), which JSON can carry; such groups are always too small
    // to tell (fewer than 10 conversions or non-conversions), and a warning says so.
    let (z, p) = if se0 > 0.0 {
        let z = d / se0;
        let normal = Normal::standard();
        (z, 2.0 * (1.0 - normal.cdf(z.abs())))
    } else {
        (0.0, 1.0)
    };
    (d, d - Z95 * se, d + Z95 * se, z, p)
}

fn small(g: &Group) -> bool {
    g.converted < 10 || g.customers - g.converted < 10
}

/// The customers of one group missing from the later records: how many, and the first few ids.
#[derive(Debug, Default)]
struct Missing {
    count: u64,
    first: Vec<String>,
}

/// Ids named in a warning.
const NAMED: usize = 5;

impl Missing {
    fn add(&mut self, id: &str) {
        self.count += 1;
        if self.first.len() < NAMED {
            self.first.push(id.to_owned());
        }
    }

    /// "3 customers (c-1, c-2, c-3)", or "… and 12 more".
    fn named(&self) -> String {
        let more = self.count - self.first.len() as u64;
        format!(
            "{} customer{} ({}{})",
            self.count,
            if self.count == 1 { "" } else { "s" },
            self.first.join(", "),
            if more > 0 {
                format!(", and {more} more")
            } else {
                String::new()
            }
        )
    }
}

/// The name of a group in words.
fn group_words(group: &str) -> String {
    if group == HOLDOUT {
        "the holdout".to_owned()
    } else {
        format!("`{group}`")
    }
}

impl CampaignReadout {
    fn new(
        campaign: String,
        counts: BTreeMap<String, (u64, u64)>,
        missing: BTreeMap<String, Missing>,
    ) -> Self {
        let mut groups: Vec<Group> = counts
            .into_iter()
            .map(|(group, (n, x))| {
                let (low, high) = wilson(x, n);
                Group {
                    group,
                    customers: n,
                    converted: x,
                    rate: if n > 0 { x as f64 / n as f64 } else { 0.0 },
                    low,
                    high,
                }
            })
            .collect();
        groups.sort_by_key(|g| (g.group != HOLDOUT, g.group.clone()));
        let mut warnings = Vec::new();
        let mut uplifts = Vec::new();
        // A group the decisions name whose customers are all missing from the later records.
        for g in groups.iter().filter(|g| g.customers == 0) {
            let who = missing
                .get(&g.group)
                .map(Missing::named)
                .unwrap_or_default();
            warnings.push(format!(
                "{} is empty: the decisions put {who} in it, and none of them is in the later \
                 records, so it has no rate{}",
                group_words(&g.group),
                if g.group == HOLDOUT {
                    " and no uplift can be measured"
                } else {
                    ""
                }
            ));
        }
        match groups.iter().find(|g| g.group == HOLDOUT) {
            None => warnings.push(
                "no holdout group: the campaign holds nobody out, so no uplift can be measured"
                    .to_owned(),
            ),
            Some(h) if h.customers == 0 => {}
            Some(h) => {
                for g in groups
                    .iter()
                    .filter(|g| g.group != HOLDOUT && g.customers > 0)
                {
                    let (difference, low, high, z, p_value) =
                        two_proportions(g.converted, g.customers, h.converted, h.customers);
                    let too_small = small(g) || small(h);
                    if g.rate == h.rate && (h.rate == 0.0 || h.rate == 1.0) {
                        warnings.push(format!(
                            "`{}` and the holdout both converted at {} %: the z-test is \
                             undefined without variation, so z = 0 and p = 1 are reported \
                             (identical rates, no evidence of a difference)",
                            g.group,
                            h.rate * 100.0
                        ));
                    }
                    if too_small {
                        warnings.push(format!(
                            "too small to tell `{}` from the holdout: each group needs at least 10 \
                             customers who converted and 10 who did not ({}: {} of {}, holdout: \
                             {} of {})",
                            g.group, g.group, g.converted, g.customers, h.converted, h.customers
                        ));
                    }
                    let verdict = if too_small {
                        "too small to tell"
                    } else if low > 0.0 {
                        "better"
                    } else if high < 0.0 {
                        "worse"
                    } else {
                        "no difference shown"
                    };
                    uplifts.push(Uplift {
                        variant: g.group.clone(),
                        difference,
                        low,
                        high,
                        relative: (h.rate > 0.0).then(|| difference / h.rate),
                        z,
                        p_value,
                        verdict: verdict.to_owned(),
                    });
                }
            }
        }
        let all_missing: u64 = missing.values().map(|m| m.count).sum();
        if all_missing > 0 {
            let each: Vec<String> = missing
                .iter()
                .map(|(group, m)| format!("{}: {}", group_words(group), m.named()))
                .collect();
            warnings.push(format!(
                "{all_missing} customers of the campaign are not in the later records and are not \
                 counted ({})",
                each.join("; ")
            ));
        }
        CampaignReadout {
            campaign,
            groups,
            uplifts,
            missing: all_missing,
            warnings,
        }
    }
}

/// Joins `assignments` with the later records of `customers` (NDJSON), streaming: only the
/// assignments are held in memory.
pub fn read_out(
    assignments: &Assignments,
    customers: impl BufRead,
    what: &str,
    conversion: &Conversion,
    window: Duration,
) -> Result<Readout, String> {
    let mut join = Join::new(assignments, conversion, window);
    for (n, line) in customers.lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read {what}: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = regua_sdk::json::from_str(&line, None)
            .map_err(|e| format!("{what} line {}: {e}", n + 1))?;
        join.add(&record)
            .map_err(|e| format!("{what} line {}: {e}", n + 1))?;
    }
    Ok(join.finish())
}

/// The join of the assignments with later records, one record at a time from any source (an
/// NDJSON file, the rows of a Parquet or Arrow file).
pub struct Join<'a> {
    assignments: &'a Assignments,
    conversion: &'a Conversion,
    window: Duration,
    counts: BTreeMap<String, BTreeMap<String, (u64, u64)>>,
    seen: std::collections::HashSet<String>,
    records: u64,
}

impl<'a> Join<'a> {
    /// An empty join.
    pub fn new(assignments: &'a Assignments, conversion: &'a Conversion, window: Duration) -> Self {
        Join {
            assignments,
            conversion,
            window,
            counts: BTreeMap::new(),
            seen: Default::default(),
            records: 0,
        }
    }

    /// Counts one later record; a customer given twice is an error.
    pub fn add(&mut self, record: &Record) -> Result<(), String> {
        self.records += 1;
        let Some(exposures) = self.assignments.by_customer.get(&record.id) else {
            return Ok(());
        };
        if !self.seen.insert(record.id.clone()) {
            return Err(format!(
                "customer `{}` is on an earlier line too",
                record.id
            ));
        }
        for e in exposures {
            let c = self
                .counts
                .entry(e.campaign.clone())
                .or_default()
                .entry(e.group.clone())
                .or_default();
            c.0 += 1;
            c.1 += u64::from(self.conversion.converted(record, e.at, self.window));
        }
        Ok(())
    }

    /// The readout, with the customers no record was given for counted as missing.
    pub fn finish(self) -> Readout {
        let Join {
            assignments,
            conversion,
            window,
            mut counts,
            seen,
            records,
        } = self;
        // By campaign and group; sorted ids, so the customers named are the same every run.
        let mut missing: BTreeMap<String, BTreeMap<String, Missing>> = BTreeMap::new();
        let mut absent: Vec<&String> = assignments
            .by_customer
            .keys()
            .filter(|id| !seen.contains(*id))
            .collect();
        absent.sort();
        for id in absent {
            for e in &assignments.by_customer[id] {
                missing
                    .entry(e.campaign.clone())
                    .or_default()
                    .entry(e.group.clone())
                    .or_default()
                    .add(id);
                // The group exists, even when nobody of it is in the later records.
                counts
                    .entry(e.campaign.clone())
                    .or_default()
                    .entry(e.group.clone())
                    .or_default();
            }
        }
        Readout {
            conversion: conversion.to_string(),
            window: window.to_string(),
            decisions: assignments.decisions,
            records,
            campaigns: counts
                .into_iter()
                .map(|(c, groups)| {
                    let m = missing.remove(&c).unwrap_or_default();
                    CampaignReadout::new(c, groups, m)
                })
                .collect(),
        }
    }
}

impl Readout {
    /// The readout as a table, for people.
    pub fn table(&self) -> String {
        let mut s = format!(
            "Conversion: {} within {} of the decision ({} decisions, {} later records).\n",
            self.conversion, self.window, self.decisions, self.records
        );
        for c in &self.campaigns {
            s.push_str(&format!(
                "\nCampaign {}\n  {:<14} {:>9} {:>9} {:>8}  {:<17}\n",
                c.campaign, "group", "customers", "converted", "rate", "95 % interval"
            ));
            for g in &c.groups {
                s.push_str(&format!(
                    "  {:<14} {:>9} {:>9} {:>7.2}%  [{:.2}%, {:.2}%]\n",
                    g.group,
                    g.customers,
                    g.converted,
                    100.0 * g.rate,
                    100.0 * g.low,
                    100.0 * g.high
                ));
            }
            for u in &c.uplifts {
                s.push_str(&format!(
                    "  uplift of {} over the holdout: {:+.2} points [{:+.2}, {:+.2}], p = {:.4}: {}\n",
                    u.variant,
                    100.0 * u.difference,
                    100.0 * u.low,
                    100.0 * u.high,
                    u.p_value,
                    u.verdict
                ));
            }
            for w in &c.warnings {
                s.push_str(&format!("  warning: {w}\n"));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uplift_interval_is_the_textbook_one() {
        // 120 of 1000 against 100 of 1000, by hand:
        // d = 0.12 − 0.10 = 0.02; SE = √(0.12·0.88/1000 + 0.10·0.90/1000) = √0.0001956
        // = 0.013986; 1.96 · SE = 0.027412 → [−0.007412, 0.047412].
        // Pooled: p = 0.11, SE₀ = √(0.11·0.89·0.002) = 0.013993, z = 1.4293, p = 0.1529.
        let (d, low, high, z, p) = two_proportions(120, 1000, 100, 1000);
        assert!((d - 0.02).abs() < 1e-12);
        assert!((low + 0.007412).abs() < 1e-5, "{low}");
        assert!((high - 0.047412).abs() < 1e-5, "{high}");
        assert!((z - 1.4293).abs() < 1e-3, "{z}");
        assert!((p - 0.1529).abs() < 1e-3, "{p}");
        // Wilson for 120 of 1000: [0.1011, 0.1417].
        let (lo, hi) = wilson(120, 1000);
        assert!(
            (lo - 0.1011).abs() < 1e-3 && (hi - 0.1417).abs() < 1e-3,
            "{lo} {hi}"
        );
    }

    #[test]
    fn conversions_count_in_the_half_open_window_after_the_decision() {
        let r: Record = regua_sdk::json::from_str(
            r#"{"id":"c","events":[{"name":"app_activated","at":"2025-03-12T12:00:00Z"}]}"#,
            None,
        )
        .unwrap();
        let c: Conversion = "event:app_activated".parse().unwrap();
        let at = |t| Timestamp::parse(t).unwrap();
        assert!(c.converted(&r, at("2025-03-11T12:00:00Z"), Duration::days(1)));
        assert!(!c.converted(&r, at("2025-03-11T11:59:59Z"), Duration::days(1)));
        assert!(!c.converted(&r, at("2025-03-12T12:00:00Z"), Duration::days(1)));
        assert!("purchase".parse::<Conversion>().is_err());
    }
}
