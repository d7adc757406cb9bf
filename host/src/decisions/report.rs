//! `regua report`: what the decision log says does nothing. Campaigns past their end date,
//! campaigns whose audience was empty in every run of the last N days, campaigns the rest policy
//! always denied, plugins no campaign uses and plugins never called.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use regua_sdk::{Duration, Timestamp};
use serde::Serialize;

use crate::pipeline::campaign::Campaigns;

/// A campaign past its end date.
#[derive(Clone, Debug, Serialize)]
pub struct PastEnd {
    /// Its code.
    pub campaign: String,
    /// Who asked for it.
    pub requester: String,
    /// Its end.
    pub end: String,
}

/// A campaign that decided nothing useful in the period.
#[derive(Clone, Debug, Serialize)]
pub struct Idle {
    /// Its code.
    pub campaign: String,
    /// Who asked for it (empty for a campaign no longer in the folder).
    pub requester: String,
    /// Its runs in the period (distinct `now`s it decided for, among decisions made in it).
    pub runs: u64,
    /// Its decisions in the period.
    pub decisions: u64,
}

/// What the report found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The end of the period.
    pub now: String,
    /// Its length in days.
    pub days: u32,
    /// Decisions read in the period (of all in the log).
    pub decisions_in_period: u64,
    /// Decisions in the log.
    pub decisions: u64,
    /// Campaigns whose end date is at or before `now`.
    pub past_end: Vec<PastEnd>,
    /// Active campaigns with runs in the period, no customer of which was in the audience.
    pub empty_audience: Vec<Idle>,
    /// Campaigns with messages to send in the period, every one denied by the rest policy.
    pub always_denied: Vec<Idle>,
    /// Campaigns of the folder that are active at `now` and made no decision in the period.
    pub not_run: Vec<String>,
    /// Plugins of the plugins folder no campaign (nor the company's settings) names.
    pub unused_plugins: Vec<String>,
    /// Plugins of the plugins folder that no decision of the log names.
    pub never_called: Vec<String>,
}

#[derive(Default)]
struct Tally {
    runs: BTreeSet<i64>,
    decisions: u64,
    in_audience: u64,
    active: u64,
    to_send: u64,
    denied: u64,
}

/// Reads the log folder `log` and compares it with `campaigns` and the plugins of
/// `plugins_dir`, over the `days` up to `now`.
pub fn report(
    log: &Path,
    campaigns: &Campaigns,
    plugins_dir: &Path,
    now: Timestamp,
    days: u32,
) -> Result<Report, String> {
    let since = now - Duration::days(i64::from(days));
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let mut called: BTreeSet<String> = BTreeSet::new();
    let (mut total, mut in_period) = (0, 0);
    super::each_entry(log, |e, at| {
        total += 1;
        called.extend(e.plugins.keys().cloned());
        // The period is half-open, as every window: (now − days, now], by when each decision
        // was made (a run of the last 30 days is one that ran in them, whatever `now` it
        // decided for).
        let made = Timestamp::parse(&e.time).map_err(|err| format!("{at}: `time`: {err}"))?;
        if made <= since || made > now {
            return Ok(());
        }
        let decided = Timestamp::parse(&e.now).map_err(|err| format!("{at}: `now`: {err}"))?;
        in_period += 1;
        let Some(code) = e.campaign else {
            return Ok(());
        };
        let t = tallies.entry(code).or_default();
        t.runs.insert(decided.as_millis());
        t.decisions += 1;
        match e.outcome.as_str() {
            "inactive" => {}
            "not_in_audience" | "error" => t.active += 1,
            "denied" => {
                t.active += 1;
                t.in_audience += 1;
                t.to_send += 1;
                t.denied += 1;
            }
            "planned" => {
                t.active += 1;
                t.in_audience += 1;
                t.to_send += 1;
            }
            _ => {
                t.active += 1;
                t.in_audience += 1;
            }
        }
        Ok(())
    })?;
    let requester = |code: &str| {
        campaigns
            .get(code)
            .map(|c| c.def.requester.clone())
            .unwrap_or_default()
    };
    let idle = |(code, t): (&String, &Tally)| Idle {
        campaign: code.clone(),
        requester: requester(code),
        runs: t.runs.len() as u64,
        decisions: t.decisions,
    };
    let plugins = plugin_files(plugins_dir)?;
    let named = campaigns.plugin_names();
    Ok(Report {
        now: now.to_string(),
        days,
        decisions_in_period: in_period,
        decisions: total,
        past_end: campaigns
            .campaigns
            .iter()
            .filter_map(|c| {
                let end = c.def.end?;
                (end <= now).then(|| PastEnd {
                    campaign: c.def.code.clone(),
                    requester: c.def.requester.clone(),
                    end: end.to_string(),
                })
            })
            .collect(),
        empty_audience: tallies
            .iter()
            .filter(|(_, t)| t.active > 0 && t.in_audience == 0)
            .map(idle)
            .collect(),
        always_denied: tallies
            .iter()
            .filter(|(_, t)| t.to_send > 0 && t.denied == t.to_send)
            .map(idle)
            .collect(),
        not_run: campaigns
            .campaigns
            .iter()
            .filter(|c| c.active_at(now) && !tallies.contains_key(&c.def.code))
            .map(|c| c.def.code.clone())
            .collect(),
        unused_plugins: plugins
            .iter()
            .filter(|p| !named.contains(*p))
            .cloned()
            .collect(),
        never_called: plugins
            .iter()
            .filter(|p| !called.contains(*p))
            .cloned()
            .collect(),
    })
}

/// The names of the `.wasm` plugins of `dir`.
fn plugin_files(dir: &Path) -> Result<BTreeSet<String>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read the plugins folder `{}`: {e}", dir.display()))?;
    Ok(entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| crate::service::registry::is_wasm(p))
        .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(str::to_owned))
        .collect())
}

impl Report {
    /// The report as tables, for people.
    pub fn table(&self) -> String {
        let mut s = format!(
            "Dead campaigns and plugins, over the {} days up to {} ({} of the log's {} decisions).\n",
            self.days, self.now, self.decisions_in_period, self.decisions
        );
        let none = |s: &mut String, list_empty: bool| {
            if list_empty {
                s.push_str("  (none)\n");
            }
        };
        s.push_str("\nCampaigns past their end date:\n");
        for p in &self.past_end {
            s.push_str(&format!(
                "  {:<16} ended {}  requested by {}\n",
                p.campaign, p.end, p.requester
            ));
        }
        none(&mut s, self.past_end.is_empty());
        for (title, list) in [
            (
                "Campaigns whose audience was empty in every run:",
                &self.empty_audience,
            ),
            (
                "Campaigns the rest policy always denied:",
                &self.always_denied,
            ),
        ] {
            s.push_str(&format!("\n{title}\n"));
            for i in list {
                s.push_str(&format!(
                    "  {:<16} {} runs, {} decisions  requested by {}\n",
                    i.campaign,
                    i.runs,
                    i.decisions,
                    if i.requester.is_empty() {
                        "? (no longer in the folder)"
                    } else {
                        &i.requester
                    }
                ));
            }
            none(&mut s, list.is_empty());
        }
        for (title, list) in [
            (
                "Active campaigns that made no decision in the period:",
                &self.not_run,
            ),
            ("Plugins no campaign uses:", &self.unused_plugins),
            ("Plugins never called:", &self.never_called),
        ] {
            s.push_str(&format!("\n{title}\n"));
            for name in list {
                s.push_str(&format!("  {name}\n"));
            }
            none(&mut s, list.is_empty());
        }
        s
    }
}
