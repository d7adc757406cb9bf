//! Campaign definitions: one TOML file per campaign in a campaigns folder, plus `company.toml`
//! for what every campaign shares (the default rest policy, the global holdout). TOML because
//! people write these by hand and keep the briefing's context beside each field in comments.
//!
//! Checked at load, not at the first customer: the shape of every field, codes unique, bucket
//! ranges inside the non-held-out buckets, neither overlapping nor leaving gaps, and (with
//! [`Campaigns::check_plugins`]) every plugin present, of the right kind, and accepting its
//! parameters. Every error names the file, the field and the problem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use regua_sdk::ab::BUCKETS;
use regua_sdk::{Category, Channel, Kind, Message, Timestamp};
use serde::{Deserialize, Serialize};

use crate::runtime::plugin::Plugin;
use crate::runtime::worker::{Evaluation, Inputs, Worker};

/// The file in a campaigns folder that holds the company-wide settings.
pub const COMPANY_FILE: &str = "company.toml";

/// A plugin and its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginRef {
    /// The plugin's name.
    pub plugin: String,
    /// Its parameters over its defaults.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// Who the campaign is for: customers in every `all_of` segment, in at least one `any_of`
/// segment (when there are any), and in no `none_of` segment. Empty: every customer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Audience {
    /// Segments the customer must all be in.
    #[serde(default)]
    pub all_of: Vec<PluginRef>,
    /// Segments the customer must be in at least one of.
    #[serde(default)]
    pub any_of: Vec<PluginRef>,
    /// Segments that exclude the customer.
    #[serde(default)]
    pub none_of: Vec<PluginRef>,
}

impl Audience {
    /// Every segment, in the order all-of, any-of, none-of.
    pub fn segments(&self) -> impl Iterator<Item = &PluginRef> {
        self.all_of.iter().chain(&self.any_of).chain(&self.none_of)
    }
}

/// Whose buckets a holdout takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The campaign's own control group: buckets of `"<code>:<customer id>"`.
    #[default]
    Campaign,
    /// The company's global control group (`company.toml`): buckets of `"global:<id>"`.
    Global,
}

/// The control group held out of the campaign, to measure its uplift.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Holdout {
    /// The share held out, in percent (0–100, in steps of 0.01): the top `percent × 100`
    /// buckets. Not given with the global scope, whose share is the company's.
    #[serde(default)]
    pub percent: Option<f64>,
    /// `campaign` (default) or `global`.
    #[serde(default)]
    pub scope: Scope,
}

/// An A/B variant: the buckets it owns and what it changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantDef {
    /// The variant's name (`A`, `B`, `control`, …).
    pub name: String,
    /// `[from, to)` of the campaign's buckets.
    pub buckets: [u16; 2],
    /// A control variant receives nothing and is counted, like a holdout.
    #[serde(default)]
    pub control: bool,
    /// The template this variant sends instead.
    #[serde(default)]
    pub template: Option<String>,
    /// The channel this variant sends on instead.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub channel: Option<Channel>,
}

/// A single message the campaign sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageDef {
    /// The channel.
    #[schema(value_type = String)]
    pub channel: Channel,
    /// The template id.
    pub template: String,
    /// `marketing` (default) or `transactional`.
    #[serde(default = "marketing")]
    #[schema(value_type = String)]
    pub category: Category,
    /// Tags (business unit, theme, …), for caps by tag.
    #[serde(default)]
    pub tags: Vec<String>,
}

fn marketing() -> Category {
    Category::Marketing
}

/// A journey the campaign runs: its plugin, and the category and tags of what it sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JourneyDef {
    /// The journey plugin.
    pub plugin: String,
    /// Its parameters over its defaults.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// The category of its messages: `marketing` (default) or `transactional`.
    #[serde(default = "marketing")]
    #[schema(value_type = String)]
    pub category: Category,
    /// Tags of its messages.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// One campaign, as its file says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// The briefing's code: unique, it follows the campaign from briefing to send to measure.
    pub code: String,
    /// A name for people.
    pub name: String,
    /// Who asked for it.
    pub requester: String,
    /// Who runs it.
    pub owner: String,
    /// 1 is the most important; equal priorities run in order of code.
    pub priority: u32,
    /// Active from (inclusive).
    #[serde(deserialize_with = "instant")]
    #[schema(value_type = String)]
    pub start: Timestamp,
    /// Active until (exclusive); none: no end.
    #[serde(default, deserialize_with = "maybe_instant")]
    #[schema(value_type = Option<String>)]
    pub end: Option<Timestamp>,
    /// Who it is for.
    #[serde(default)]
    pub audience: Audience,
    /// The control group.
    #[serde(default)]
    pub holdout: Option<Holdout>,
    /// A/B variants over the buckets left after the holdout.
    #[serde(default)]
    pub variants: Vec<VariantDef>,
    /// The journey it runs (or `message`).
    #[serde(default)]
    pub journey: Option<JourneyDef>,
    /// The single message it sends (or `journey`).
    #[serde(default)]
    pub message: Option<MessageDef>,
    /// Its rest policy; none: the company's default.
    #[serde(default)]
    pub rest: Option<PluginRef>,
    /// When the journey runtime (`regua serve --state`, `regua replay`) runs it: see
    /// [`Delivery`]. Batch runs (`regua campaign run`, `/v1/decide`) do not read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
}

/// How the journey runtime triggers a campaign (docs/RUNTIME.md): on events (`events`), or on
/// a schedule (`daily` or `once`), one of the three.
///
/// A message campaign is action-based (`events`: decided on each input they name, never on any
/// other) or scheduled (decided for every customer the store keeps at each occurrence, in the
/// customer's time zone); one without a `delivery` is for batch runs only. A journey campaign's
/// `events` are the inputs that may enter it (without a `delivery` every input may); an active
/// instance sees every input of its customer, and its own timers. Journeys are not scheduled.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// Input names: an event's `name`, a transaction's `kind`, or `inbound`, `consent`,
    /// `profile`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Every day at this local time (`HH:MM`) in the customer's time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<String>,
    /// Once: at a local date and time in each customer's zone (`2025-03-10T09:00`), or at one
    /// instant for everyone (RFC 3339 with an offset: `2025-03-10T12:00:00Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub once: Option<String>,
}

/// When a scheduled campaign runs (`delivery.daily` or `delivery.once`).
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// Every day at a local time.
    Daily(regua_sdk::time::CivilTime),
    /// Once, at a local date and time.
    OnceLocal(regua_sdk::time::CivilDate, regua_sdk::time::CivilTime),
    /// Once, at one instant.
    OnceAt(Timestamp),
}

impl Delivery {
    /// Its schedule, if it is scheduled; an error names the field that does not read.
    pub fn schedule(&self) -> Result<Option<Schedule>, String> {
        if let Some(daily) = &self.daily {
            let time = parse_hh_mm(daily).ok_or_else(|| {
                format!(
                    "field `delivery.daily`: `{daily}` is not a local time `HH:MM` (00:00 to 23:59)"
                )
            })?;
            return Ok(Some(Schedule::Daily(time)));
        }
        let Some(once) = &self.once else {
            return Ok(None);
        };
        if let Ok(at) = once.parse::<Timestamp>() {
            return Ok(Some(Schedule::OnceAt(at)));
        }
        let bad = || {
            format!(
                "field `delivery.once`: `{once}` is neither a local date and time \
                 (`2025-03-10T09:00`, in each customer's zone) nor an instant with an offset \
                 (`2025-03-10T12:00:00Z`)"
            )
        };
        let (date, time) = once.split_once('T').ok_or_else(bad)?;
        let date = date
            .parse::<regua_sdk::time::CivilDate>()
            .map_err(|_| bad())?;
        let time = parse_hh_mm(time).ok_or_else(bad)?;
        Ok(Some(Schedule::OnceLocal(date, time)))
    }
}

/// The first instant of the local day of `t` at which the clock of `zone` reads `time` (or
/// jumps over it).
fn first_on_its_day(
    t: Timestamp,
    time: regua_sdk::time::CivilTime,
    zone: &regua_sdk::time::Zone,
) -> Timestamp {
    let midnight = zone.start_of_day(t.local_date(zone));
    zone.next_wall_time(midnight - regua_sdk::Duration::millis(1), time)
}

/// `HH:MM`, strictly.
fn parse_hh_mm(text: &str) -> Option<regua_sdk::time::CivilTime> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    regua_sdk::time::CivilTime::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

impl Schedule {
    /// The first occurrence strictly after `after` for a customer in `zone`. A daily local
    /// time is taken once a day: on a day a daylight-saving gap skips it, at the instant the
    /// clock jumps; on a day a fold repeats it, at its first occurrence only.
    pub fn next_after(&self, after: Timestamp, zone: &regua_sdk::time::Zone) -> Option<Timestamp> {
        match self {
            Schedule::Daily(time) => {
                let mut t = after;
                // A fold repeats a time on one day: its second occurrence is skipped (a zone
                // never folds on many days in a row).
                for _ in 0..4 {
                    let next = zone.next_wall_time(t, *time);
                    if first_on_its_day(next, *time, zone) == next {
                        return Some(next);
                    }
                    t = next;
                }
                None
            }
            Schedule::OnceLocal(date, time) => {
                let at = zone.next_wall_time(
                    zone.start_of_day(*date) - regua_sdk::Duration::millis(1),
                    *time,
                );
                Some(at).filter(|at| *at > after)
            }
            Schedule::OnceAt(at) => Some(*at).filter(|at| *at > after),
        }
    }
}

/// The global control group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GlobalHoldout {
    /// The share, in percent, of every customer that no marketing campaign reaches.
    pub percent: f64,
}

/// What every campaign shares (`company.toml`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Company {
    /// The rest policy of every campaign that names none.
    #[serde(default)]
    pub rest: Option<PluginRef>,
    /// The global control group.
    #[serde(default)]
    pub global_holdout: Option<GlobalHoldout>,
}

/// A TOML datetime or RFC 3339 text.
#[derive(Deserialize)]
#[serde(untagged)]
enum InstantText {
    Text(String),
    Toml(toml::value::Datetime),
}

fn instant<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    let text = match InstantText::deserialize(d)? {
        InstantText::Text(t) => t,
        InstantText::Toml(t) => t.to_string(),
    };
    Timestamp::parse(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "{e} (an instant with its offset, e.g. 2025-03-01T00:00:00Z)"
        ))
    })
}

fn maybe_instant<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    instant(d).map(Some)
}

/// A problem in one file of the campaigns folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FileError {
    /// The file.
    pub file: String,
    /// The campaign's code, when the file got that far.
    pub code: Option<String>,
    /// What is wrong, naming the field.
    pub error: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.error)
    }
}

/// A campaign that passed its checks, with the file it came from.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Campaign {
    /// The definition.
    #[serde(flatten)]
    pub def: Definition,
    /// The file it was read from.
    pub file: String,
}

impl Campaign {
    /// Whether the campaign is active at `now`: in `[start, end)`.
    pub fn active_at(&self, now: Timestamp) -> bool {
        now >= self.def.start && self.def.end.is_none_or(|end| now < end)
    }

    /// The category of what it sends.
    pub fn category(&self) -> Category {
        match (&self.def.message, &self.def.journey) {
            (Some(m), _) => m.category,
            (_, Some(j)) => j.category,
            _ => Category::Marketing,
        }
    }

    /// Buckets the campaign's own holdout takes (the top ones).
    pub fn holdout_buckets(&self) -> u16 {
        match &self.def.holdout {
            Some(Holdout {
                percent: Some(p),
                scope: Scope::Campaign,
            }) => buckets_of(*p),
            _ => 0,
        }
    }

    /// The plugins it calls, with their kinds, as `(field, plugin, params)`.
    pub fn plugin_refs<'a>(
        &'a self,
        company: &'a Company,
    ) -> Vec<(String, Kind, &'a str, &'a serde_json::Value)> {
        let mut refs = Vec::new();
        let audience = &self.def.audience;
        for (list, field) in [
            (&audience.all_of, "all_of"),
            (&audience.any_of, "any_of"),
            (&audience.none_of, "none_of"),
        ] {
            for (i, r) in list.iter().enumerate() {
                refs.push((
                    format!("audience.{field}[{i}]"),
                    Kind::Segment,
                    r.plugin.as_str(),
                    &r.params,
                ));
            }
        }
        if let Some(j) = &self.def.journey {
            refs.push(("journey".into(), Kind::Journey, &j.plugin, &j.params));
        }
        match (&self.def.rest, &company.rest) {
            (Some(r), _) => refs.push(("rest".into(), Kind::Rest, &r.plugin, &r.params)),
            (None, Some(r)) => refs.push((
                format!("rest (the default in {COMPANY_FILE})"),
                Kind::Rest,
                &r.plugin,
                &r.params,
            )),
            (None, None) => {}
        }
        refs
    }

    /// A message like the ones the campaign sends, to check a rest policy's parameters with.
    pub fn sample_message(&self) -> Message {
        let (channel, template, category, tags) = match (&self.def.message, &self.def.journey) {
            (Some(m), _) => (
                m.channel,
                Some(m.template.clone()),
                m.category,
                m.tags.clone(),
            ),
            (_, Some(j)) => (Channel::Email, None, j.category, j.tags.clone()),
            _ => (Channel::Email, None, Category::Marketing, Vec::new()),
        };
        Message {
            channel,
            campaign: Some(self.def.code.clone()),
            category,
            tags,
            template,
        }
    }
}

/// Buckets of a share in percent.
pub fn buckets_of(percent: f64) -> u16 {
    (percent * 100.0).round() as u16
}

fn check_percent(percent: f64, field: &str) -> Result<(), String> {
    let hundredths = percent * 100.0;
    if !(0.0..=100.0).contains(&percent) || (hundredths - hundredths.round()).abs() > 1e-6 {
        return Err(format!(
            "field `{field}`: {percent} is not a share in percent from 0 to 100 in steps of 0.01"
        ));
    }
    Ok(())
}

fn check_code(code: &str) -> Result<(), String> {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "field `code`: {code:?} is not a briefing code (1 to 64 letters, digits, `-`, `_` or `.`)"
        ))
    }
}

impl Definition {
    /// Checks what the file alone can tell; `company` for the global holdout.
    pub fn check(&self, company: &Company) -> Result<(), String> {
        check_code(&self.code)?;
        for (field, text) in [
            ("name", &self.name),
            ("requester", &self.requester),
            ("owner", &self.owner),
        ] {
            if text.trim().is_empty() {
                return Err(format!("field `{field}` is empty"));
            }
        }
        if let Some(end) = self.end
            && end <= self.start
        {
            return Err(format!(
                "field `end`: {end} is not after `start` ({})",
                self.start
            ));
        }
        if let Some(d) = &self.delivery {
            let given = [!d.events.is_empty(), d.daily.is_some(), d.once.is_some()];
            match given.iter().filter(|g| **g).count() {
                0 => {
                    return Err(
                        "field `delivery`: give `events` (the inputs that trigger the \
                                campaign: an event's name, a transaction's kind, …), `daily` or \
                                `once`"
                            .into(),
                    );
                }
                1 => {}
                _ => {
                    return Err(
                        "field `delivery`: give one of `events`, `daily` and `once`, \
                                not several"
                            .into(),
                    );
                }
            }
            if let Some(i) = d.events.iter().position(|e| e.trim().is_empty()) {
                return Err(format!("field `delivery.events[{i}]` is empty"));
            }
            if d.schedule()?.is_some() && self.journey.is_some() {
                return Err(
                    "field `delivery`: a journey campaign is entered by `events` (or by \
                            any input), not on a schedule; `daily` and `once` are for message \
                            campaigns"
                        .into(),
                );
            }
        }
        match (&self.message, &self.journey) {
            (Some(_), Some(_)) => {
                return Err("fields `message` and `journey`: give one of them, not both".into());
            }
            (None, None) => {
                return Err(
                    "what the campaign sends is missing: give `message` (one message) or \
                     `journey` (a journey plugin)"
                        .into(),
                );
            }
            _ => {}
        }
        if let Some(m) = &self.message
            && m.template.trim().is_empty()
        {
            return Err("field `message.template` is empty".into());
        }
        let held = match &self.holdout {
            Some(Holdout {
                percent: Some(p),
                scope: Scope::Campaign,
            }) => {
                check_percent(*p, "holdout.percent")?;
                buckets_of(*p)
            }
            Some(Holdout {
                percent: None,
                scope: Scope::Campaign,
            }) => return Err("field `holdout.percent` is missing".into()),
            Some(Holdout {
                percent: Some(_),
                scope: Scope::Global,
            }) => {
                return Err(format!(
                    "field `holdout.percent`: a global holdout's share is the company's \
                     (`global_holdout.percent` in {COMPANY_FILE}); leave it out here"
                ));
            }
            Some(Holdout {
                percent: None,
                scope: Scope::Global,
            }) => {
                if company.global_holdout.is_none() {
                    return Err(format!(
                        "field `holdout.scope`: `global` needs `global_holdout` in {COMPANY_FILE}"
                    ));
                }
                0
            }
            None => 0,
        };
        self.check_variants(BUCKETS - held)
    }

    /// Variants must own `[0, open)` between them: no overlap, no gap.
    fn check_variants(&self, open: u16) -> Result<(), String> {
        if self.variants.is_empty() {
            return Ok(());
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, v) in self.variants.iter().enumerate() {
            let [from, to] = v.buckets;
            if v.name.trim().is_empty() {
                return Err(format!("field `variants[{i}].name` is empty"));
            }
            if !names.insert(v.name.as_str()) {
                return Err(format!(
                    "field `variants[{i}].name`: `{}` names two variants",
                    v.name
                ));
            }
            if from >= to || to > open {
                return Err(format!(
                    "field `variants[{i}].buckets`: [{from}, {to}) is not a range within the \
                     buckets left after the holdout, [0, {open})"
                ));
            }
            if v.control && (v.template.is_some() || v.channel.is_some()) {
                return Err(format!(
                    "field `variants[{i}]`: a control variant sends nothing, so it has no \
                     `template` or `channel`"
                ));
            }
        }
        let mut ranges: Vec<(u16, u16, &str)> = self
            .variants
            .iter()
            .map(|v| (v.buckets[0], v.buckets[1], v.name.as_str()))
            .collect();
        ranges.sort();
        let mut covered = 0;
        for (from, to, name) in ranges {
            if from < covered {
                return Err(format!(
                    "field `variants`: `{name}` [{from}, {to}) overlaps the buckets before {covered}"
                ));
            }
            if from > covered {
                return Err(format!(
                    "field `variants`: no variant owns buckets [{covered}, {from}); the variants \
                     must own [0, {open}) between them"
                ));
            }
            covered = to;
        }
        if covered < open {
            return Err(format!(
                "field `variants`: no variant owns buckets [{covered}, {open}); the variants must \
                 own [0, {open}) between them"
            ));
        }
        Ok(())
    }
}

/// The campaigns of a folder: the good ones in the order they run, and the problems.
#[derive(Clone, Debug, Default)]
pub struct Campaigns {
    /// The company settings.
    pub company: Company,
    /// Campaigns in run order: priority, then code.
    pub campaigns: Vec<Campaign>,
    /// Files that did not load, or campaigns that failed a check.
    pub errors: Vec<FileError>,
    /// Whether `company.toml` failed: the company settings are then the defaults (no default
    /// rest policy, no global holdout), which no run should silently use.
    pub company_failed: bool,
}

fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().to_owned();
        match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!("line {line}: {message}")
            }
            None => message,
        }
    })
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

impl Campaigns {
    /// Reads every `*.toml` of `dir` (and `company.toml`), checking each campaign by itself and
    /// codes across files. A campaign that fails is left out with its error; the others load.
    pub fn load_dir(dir: &Path) -> Result<Campaigns, String> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot read campaigns folder `{}`: {e}", dir.display()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_campaign_file(p) || is_company_file(p))
            .collect();
        files.sort();
        let mut sources = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string());
            sources.push((display(&path), text));
        }
        Ok(Campaigns::from_sources(sources))
    }

    /// [`Campaigns::load_dir`] over file names and their text (or why they could not be read).
    pub fn from_sources(sources: Vec<(String, Result<String, String>)>) -> Campaigns {
        let mut out = Campaigns::default();
        let is_company = |f: &str| Path::new(f).file_name().is_some_and(|n| n == COMPANY_FILE);
        let mut company_file = COMPANY_FILE.to_owned();
        for (file, text) in sources.iter().filter(|(f, _)| is_company(f)) {
            company_file.clone_from(file);
            match text.as_deref().map_err(Clone::clone).and_then(parse_toml) {
                Ok(company) => out.company = company,
                Err(error) => {
                    out.company_failed = true;
                    out.errors.push(FileError {
                        file: file.clone(),
                        code: None,
                        error,
                    });
                }
            }
        }
        if let Some(g) = &out.company.global_holdout
            && let Err(error) = check_percent(g.percent, "global_holdout.percent")
        {
            out.errors.push(FileError {
                file: company_file,
                code: None,
                error,
            });
            out.company_failed = true;
            out.company.global_holdout = None;
        }
        let mut by_code: BTreeMap<String, String> = BTreeMap::new();
        for (file, text) in sources.iter().filter(|(f, _)| !is_company(f)) {
            let parsed = text
                .as_deref()
                .map_err(Clone::clone)
                .and_then(parse_toml::<Definition>);
            let def = match parsed {
                Ok(def) => def,
                Err(error) => {
                    out.errors.push(FileError {
                        file: file.clone(),
                        code: None,
                        error,
                    });
                    continue;
                }
            };
            let fail = |error: String| FileError {
                file: file.clone(),
                code: Some(def.code.clone()),
                error,
            };
            if let Err(e) = def.check(&out.company) {
                out.errors.push(fail(e));
                continue;
            }
            if let Some(first) = by_code.get(&def.code) {
                out.errors.push(fail(format!(
                    "field `code`: `{}` is already the code of the campaign in {first}; codes \
                     are unique",
                    def.code
                )));
                continue;
            }
            by_code.insert(def.code.clone(), file.clone());
            out.campaigns.push(Campaign {
                def,
                file: file.clone(),
            });
        }
        out.campaigns
            .sort_by(|a, b| (a.def.priority, &a.def.code).cmp(&(b.def.priority, &b.def.code)));
        out
    }

    /// Checks every campaign's plugins: present (`lookup`, or why not), of the right kind, and
    /// accepting their parameters (a check call on `worker`). A campaign that fails moves to
    /// `errors`.
    pub fn check_plugins(
        &mut self,
        lookup: &dyn Fn(&str) -> Result<Arc<Plugin>, String>,
        worker: &mut Worker,
        now: Timestamp,
        default_tz: &str,
    ) {
        let company = self.company.clone();
        let mut failed = Vec::new();
        self.campaigns.retain(|c| {
            match check_campaign_plugins(c, &company, lookup, worker, now, default_tz) {
                Ok(()) => true,
                Err(error) => {
                    failed.push(FileError {
                        file: c.file.clone(),
                        code: Some(c.def.code.clone()),
                        error,
                    });
                    false
                }
            }
        });
        self.errors.extend(failed);
    }

    /// Every plugin name the campaigns and the company settings use.
    pub fn plugin_names(&self) -> std::collections::BTreeSet<String> {
        let mut names: std::collections::BTreeSet<String> = self
            .campaigns
            .iter()
            .flat_map(|c| c.plugin_refs(&self.company))
            .map(|(_, _, name, _)| name.to_owned())
            .collect();
        if let Some(r) = &self.company.rest {
            names.insert(r.plugin.clone());
        }
        names
    }

    /// The campaign with `code`.
    pub fn get(&self, code: &str) -> Option<&Campaign> {
        self.campaigns.iter().find(|c| c.def.code == code)
    }
}

fn check_campaign_plugins(
    c: &Campaign,
    company: &Company,
    lookup: &dyn Fn(&str) -> Result<Arc<Plugin>, String>,
    worker: &mut Worker,
    now: Timestamp,
    default_tz: &str,
) -> Result<(), String> {
    for (field, kind, name, params) in c.plugin_refs(company) {
        let plugin = lookup(name).map_err(|e| format!("field `{field}`: {e}"))?;
        if plugin.kind() != kind {
            return Err(format!(
                "field `{field}`: plugin `{name}` is a {} plugin; a {kind} plugin goes here",
                plugin.kind()
            ));
        }
        if !params.is_object() {
            return Err(format!(
                "field `{field}.params`: parameters are a table of names and values"
            ));
        }
        let inputs = Inputs {
            now,
            default_tz: default_tz.to_owned(),
            params: params.to_string(),
            message: (kind == Kind::Rest).then(|| c.sample_message()),
            event: None,
        };
        let eval = Evaluation::new(plugin, &inputs).map_err(|e| format!("field `{field}`: {e}"))?;
        worker
            .check(&eval)
            .map_err(|e| format!("field `{field}.params`: {e}"))?;
    }
    Ok(())
}

/// Whether `path` is a campaign file (`*.toml`, not `company.toml`, not hidden).
pub fn is_campaign_file(path: &Path) -> bool {
    path.extension().is_some_and(|x| x == "toml")
        && !is_company_file(path)
        && !path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'))
}

/// Whether `path` is the company settings file.
pub fn is_company_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == COMPANY_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
code = "BRF-1"
name = "Lapsed offer"
requester = "ana"
owner = "crm"
priority = 2
start = "2025-01-01T00:00:00Z"
end = 2026-01-01T00:00:00Z
holdout = { percent = 10 }
variants = [
  { name = "A", buckets = [0, 4500] },
  { name = "B", buckets = [4500, 9000], template = "lapsed-b" },
]
message = { channel = "email", template = "lapsed-a" }
[audience]
all_of = [{ plugin = "lapsed", params = { days = 30 } }]
"#;

    fn load(files: &[(&str, &str)]) -> Campaigns {
        Campaigns::from_sources(
            files
                .iter()
                .map(|(f, t)| (f.to_string(), Ok(t.to_string())))
                .collect(),
        )
    }

    #[test]
    fn a_good_campaign_loads_with_toml_or_quoted_dates() {
        let c = load(&[("a.toml", GOOD)]);
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        let c = &c.campaigns[0];
        assert_eq!(c.def.code, "BRF-1");
        assert_eq!(c.holdout_buckets(), 1000);
        assert!(c.active_at(c.def.start));
        assert!(!c.active_at(c.def.end.unwrap()));
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let bad = |from: &str, to: &str| load(&[("x.toml", &GOOD.replace(from, to))]).errors;
        let e = bad("[4500, 9000]", "[4000, 9000]");
        assert!(e[0].error.contains("`B` [4000, 9000) overlaps"), "{e:?}");
        let e = bad("[4500, 9000]", "[4600, 9000]");
        assert!(
            e[0].error.contains("no variant owns buckets [4500, 4600)"),
            "{e:?}"
        );
        let e = bad("[4500, 9000]", "[4500, 9500]");
        assert!(e[0].error.contains("[0, 9000)"), "{e:?}");
        let e = bad("priority = 2", "priority = \"high\"");
        assert!(
            e[0].error.contains("line ") && e[0].file == "x.toml",
            "{e:?}"
        );
        let e = bad("percent = 10", "percent = 10.005");
        assert!(e[0].error.contains("holdout.percent"), "{e:?}");
        let e = bad("owner = \"crm\"", "owner = \"crm\"\nowners = 1");
        assert!(e[0].error.contains("owners"), "{e:?}");
        let e = bad(
            "message = {",
            "journey = { plugin = \"welcome\" }\nmessage = {",
        );
        assert!(e[0].error.contains("not both"), "{e:?}");
        let e = bad("end = 2026", "end = 2024");
        assert!(e[0].error.contains("field `end`"), "{e:?}");
    }

    #[test]
    fn codes_are_unique_and_order_is_priority_then_code() {
        let second = GOOD.replace("priority = 2", "priority = 1");
        let c = load(&[("a.toml", GOOD), ("b.toml", &second)]);
        assert_eq!(c.campaigns.len(), 1);
        assert!(
            c.errors[0].error.contains("already the code"),
            "{:?}",
            c.errors
        );
        let c = load(&[
            ("a.toml", &GOOD.replace("BRF-1", "Z")),
            ("b.toml", &GOOD.replace("BRF-1", "A")),
            ("c.toml", &second.replace("BRF-1", "M")),
        ]);
        let order: Vec<_> = c.campaigns.iter().map(|c| c.def.code.as_str()).collect();
        assert_eq!(order, ["M", "A", "Z"]);
    }

    #[test]
    fn a_delivery_is_events_or_one_schedule_and_its_errors_name_the_field() {
        let with =
            |delivery: &str| load(&[("x.toml", &format!("{GOOD}\n[delivery]\n{delivery}\n"))]);
        let ok = with("daily = \"09:00\"");
        assert!(ok.errors.is_empty(), "{:?}", ok.errors);
        let ok = with("once = \"2025-03-10T09:30\"");
        assert!(ok.errors.is_empty(), "{:?}", ok.errors);
        let error = |delivery: &str| with(delivery).errors[0].error.clone();
        assert!(error("daily = \"9:00\"").contains("`delivery.daily`: `9:00`"));
        assert!(error("daily = \"24:00\"").contains("`delivery.daily`"));
        assert!(error("once = \"2025-03-10\"").contains("`delivery.once`: `2025-03-10`"));
        assert!(error("once = \"2025-02-30T09:00\"").contains("`delivery.once`"));
        assert!(error("events = []").contains("give `events`"));
        assert!(error("events = [\"x\"]\ndaily = \"09:00\"").contains("not several"));
        let journey = GOOD.replace("message = {", "journey = { plugin = \"welcome\" }\n#");
        let c = load(&[(
            "x.toml",
            &format!("{journey}\n[delivery]\ndaily = \"09:00\"\n"),
        )]);
        assert!(
            c.errors[0].error.contains("not on a schedule"),
            "{:?}",
            c.errors
        );
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(schedule: &Schedule, after: &str, zone: &str) -> Option<String> {
        let zone = regua_sdk::time::Zone::get(zone).unwrap();
        schedule.next_after(at(after), &zone).map(|t| t.to_string())
    }

    fn delivery(daily: Option<&str>, once: Option<&str>) -> Schedule {
        Delivery {
            daily: daily.map(str::to_owned),
            once: once.map(str::to_owned),
            ..Delivery::default()
        }
        .schedule()
        .unwrap()
        .unwrap()
    }

    #[test]
    fn a_daily_time_is_the_customers_local_time_once_a_day_across_daylight_saving() {
        let nine = delivery(Some("09:00"), None);
        // São Paulo is UTC−3 all year: 09:00 there is 12:00Z, strictly after `after`.
        let sp = "America/Sao_Paulo";
        assert_eq!(
            next(&nine, "2025-03-10T11:59:59Z", sp).unwrap(),
            "2025-03-10T12:00:00Z"
        );
        assert_eq!(
            next(&nine, "2025-03-10T12:00:00Z", sp).unwrap(),
            "2025-03-11T12:00:00Z"
        );
        // Tokyo, UTC+9: 09:00 on the 11th is 00:00Z on the 11th.
        assert_eq!(
            next(&nine, "2025-03-10T12:00:00Z", "Asia/Tokyo").unwrap(),
            "2025-03-11T00:00:00Z"
        );
        // New York springs forward on 2025-03-09 at 02:00 EST (07:00Z) to 03:00 EDT: 02:30 does
        // not exist that day and is taken at the jump, 07:00Z; the next day at 02:30 EDT.
        let ny = "America/New_York";
        let half_past_two = delivery(Some("02:30"), None);
        assert_eq!(
            next(&half_past_two, "2025-03-08T08:00:00Z", ny).unwrap(),
            "2025-03-09T07:00:00Z"
        );
        assert_eq!(
            next(&half_past_two, "2025-03-09T07:00:00Z", ny).unwrap(),
            "2025-03-10T06:30:00Z"
        );
        // It falls back on 2025-11-02 at 02:00 EDT (06:00Z) to 01:00 EST: 01:30 happens at
        // 05:30Z and again at 06:30Z; a daily campaign takes the first only, then the 3rd's.
        let half_past_one = delivery(Some("01:30"), None);
        assert_eq!(
            next(&half_past_one, "2025-11-01T06:00:00Z", ny).unwrap(),
            "2025-11-02T05:30:00Z"
        );
        assert_eq!(
            next(&half_past_one, "2025-11-02T05:30:00Z", ny).unwrap(),
            "2025-11-03T06:30:00Z"
        );
    }

    #[test]
    fn once_is_a_local_date_and_time_in_each_zone_or_one_instant_for_all() {
        let local = delivery(None, Some("2025-03-10T09:00"));
        assert_eq!(
            next(&local, "2025-03-01T00:00:00Z", "America/Sao_Paulo").unwrap(),
            "2025-03-10T12:00:00Z"
        );
        assert_eq!(
            next(&local, "2025-03-01T00:00:00Z", "Asia/Tokyo").unwrap(),
            "2025-03-10T00:00:00Z"
        );
        assert_eq!(
            next(&local, "2025-03-10T12:00:00Z", "America/Sao_Paulo"),
            None
        );
        // A local time a daylight-saving gap skips: at the jump, as a daily one.
        let skipped = delivery(None, Some("2025-03-09T02:30"));
        assert_eq!(
            next(&skipped, "2025-03-01T00:00:00Z", "America/New_York").unwrap(),
            "2025-03-09T07:00:00Z"
        );
        let instant = delivery(None, Some("2025-03-10T09:00:00-03:00"));
        assert_eq!(
            next(&instant, "2025-03-01T00:00:00Z", "Asia/Tokyo").unwrap(),
            "2025-03-10T12:00:00Z"
        );
        assert_eq!(
            next(&instant, "2025-03-10T11:59:59.999Z", "UTC").unwrap(),
            "2025-03-10T12:00:00Z"
        );
        assert_eq!(next(&instant, "2025-03-10T12:00:00Z", "UTC"), None);
    }
}
