use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};

/// Scaffold a plugin crate that builds and passes its own test.
///
/// Example: regua new segment vip-buyers   (then: cargo test -p vip-buyers; regua build plugins/vip-buyers)
#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// What kind of rule.
    kind: KindArg,
    /// The plugin's name: lowercase letters, digits and hyphens.
    name: String,
    /// Where to create the crate (default: plugins/NAME).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The regua-sdk crate to depend on. Default: inside a Régua checkout, its `sdk/` (by a
    /// relative path); anywhere else, the SDK this regua carries, written out once beside the
    /// new crate (`regua-sdk/` in the same folder) and shared by the crates made there.
    #[arg(long, value_name = "DIR")]
    sdk: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KindArg {
    /// Does this customer belong to the audience?
    Segment,
    /// Where does the customer stand in a journey, and what is next?
    Journey,
    /// May we contact this customer on this channel now?
    Rest,
}

fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `to` relative to `from` (both absolute).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    out
}

/// The SDK of the Régua checkout `dir` is in, if it is in one: an ancestor's `sdk/` crate named
/// `regua-sdk`.
fn checkout_sdk(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().skip(1).find_map(|a| {
        let sdk = a.join("sdk");
        let toml = std::fs::read_to_string(sdk.join("Cargo.toml")).ok()?;
        toml.lines()
            .any(|l| l.trim() == r#"name = "regua-sdk""#)
            .then_some(sdk)
    })
}

/// The SDK's sources this regua was built with, carried in the binary, by path in `sdk/`.
const SDK_FILES: &[(&str, &str)] = &[
    ("README.md", include_str!("../../../sdk/README.md")),
    ("src/ab.rs", include_str!("../../../sdk/src/ab.rs")),
    ("src/guest.rs", include_str!("../../../sdk/src/guest.rs")),
    (
        "src/journey.rs",
        include_str!("../../../sdk/src/journey.rs"),
    ),
    ("src/json.rs", include_str!("../../../sdk/src/json.rs")),
    ("src/lib.rs", include_str!("../../../sdk/src/lib.rs")),
    (
        "src/outcome.rs",
        include_str!("../../../sdk/src/outcome.rs"),
    ),
    ("src/params.rs", include_str!("../../../sdk/src/params.rs")),
    ("src/plugin.rs", include_str!("../../../sdk/src/plugin.rs")),
    ("src/record.rs", include_str!("../../../sdk/src/record.rs")),
    ("src/rfm.rs", include_str!("../../../sdk/src/rfm.rs")),
    ("src/text.rs", include_str!("../../../sdk/src/text.rs")),
    ("src/time.rs", include_str!("../../../sdk/src/time.rs")),
    ("src/value.rs", include_str!("../../../sdk/src/value.rs")),
    ("src/view.rs", include_str!("../../../sdk/src/view.rs")),
    (
        "src/wire/mod.rs",
        include_str!("../../../sdk/src/wire/mod.rs"),
    ),
    (
        "src/wire/record.rs",
        include_str!("../../../sdk/src/wire/record.rs"),
    ),
];

/// The SDK's manifest, and the workspace's it inherits from, as this regua was built with.
const SDK_MANIFEST: &str = include_str!("../../../sdk/Cargo.toml");
const WORKSPACE_MANIFEST: &str = include_str!("../../../Cargo.toml");

/// The SDK's manifest standing alone: what it inherits from the workspace written in.
fn standalone_sdk_manifest() -> anyhow::Result<String> {
    let workspace: toml::Table = toml::from_str(WORKSPACE_MANIFEST)?;
    let mut sdk: toml::Table = toml::from_str(SDK_MANIFEST)?;
    let inherited = |t: &toml::Value| {
        t.as_table()
            .and_then(|t| t.get("workspace"))
            .and_then(toml::Value::as_bool)
            == Some(true)
    };
    let ws = &workspace["workspace"];
    if let Some(package) = sdk.get_mut("package").and_then(toml::Value::as_table_mut) {
        for (key, value) in package.iter_mut() {
            if inherited(value) {
                *value = ws["package"][key.as_str()].clone();
            }
        }
    }
    if let Some(deps) = sdk
        .get_mut("dependencies")
        .and_then(toml::Value::as_table_mut)
    {
        for (name, value) in deps.iter_mut() {
            if inherited(value) {
                *value = ws["dependencies"][name.as_str()].clone();
            }
        }
    }
    sdk.remove("lints");
    Ok(format!(
        "# regua-sdk as `regua {}` carries it, written out by `regua new`.\n{}",
        env!("CARGO_PKG_VERSION"),
        toml::to_string(&sdk)?
    ))
}

/// Writes the SDK this regua carries to `folder`/regua-sdk, unless that already holds one;
/// returns its path.
fn write_sdk(folder: &Path) -> anyhow::Result<PathBuf> {
    let sdk = folder.join("regua-sdk");
    if sdk.join("Cargo.toml").is_file() {
        eprintln!("using the SDK in {}", sdk.display());
        return Ok(sdk);
    }
    for (path, text) in SDK_FILES {
        let file = sdk.join(path);
        std::fs::create_dir_all(file.parent().expect("a file in a folder"))?;
        std::fs::write(&file, text)
            .with_context(|| format!("cannot write `{}`", file.display()))?;
    }
    std::fs::write(sdk.join("Cargo.toml"), standalone_sdk_manifest()?)?;
    eprintln!("wrote the SDK this regua carries to {}", sdk.display());
    Ok(sdk)
}

impl NewArgs {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        if !valid_name(&self.name) {
            bail!(
                "`{}` is not a plugin name: use lowercase letters, digits and hyphens, starting with a letter",
                self.name
            );
        }
        let dir = self
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("plugins").join(&self.name));
        if dir.join("Cargo.toml").exists() {
            bail!("`{}` already holds a crate", dir.display());
        }
        std::fs::create_dir_all(dir.join("src"))
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
        let abs = dir.canonicalize()?;
        let sdk = match &self.sdk {
            Some(s) => s.clone(),
            None => match checkout_sdk(&abs) {
                Some(sdk) => sdk,
                None => write_sdk(abs.parent().unwrap_or(&abs))?,
            },
        };
        let sdk = sdk.canonicalize().with_context(|| {
            format!(
                "cannot find regua-sdk at `{}` (pass --sdk DIR)",
                sdk.display()
            )
        })?;
        let sdk_rel = relative(&abs, &sdk);
        let crate_name = self.name.replace('-', "_");
        let (description, source, case) = match self.kind {
            KindArg::Segment => (
                "Segment: customers with at least N purchases in the last D days",
                SEGMENT,
                SEGMENT_CASE,
            ),
            KindArg::Journey => (
                "Journey rule: a two-step welcome by e-mail then push",
                JOURNEY,
                JOURNEY_CASE,
            ),
            KindArg::Rest => (
                "Rest policy: at most N messages per channel per rolling day",
                REST,
                REST_CASE,
            ),
        };
        let toml = format!(
            r#"[package]
name = "{name}"
description = "{description}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
regua-sdk = {{ path = "{sdk}" }}
serde = {{ version = "1", features = ["derive"] }}
"#,
            name = self.name,
            sdk = sdk_rel.display().to_string().replace('\\', "/"),
        );
        std::fs::write(dir.join("Cargo.toml"), &toml)?;
        std::fs::write(
            dir.join("src/lib.rs"),
            source.replace("{crate}", &crate_name),
        )?;
        std::fs::write(
            dir.join("README.md"),
            format!("# {}\n\n{description}.\n", self.name),
        )?;
        // A fixture case for `regua test`: an input beside the answer expected.
        std::fs::create_dir_all(dir.join("tests/cases"))?;
        std::fs::write(dir.join("tests/cases/01-example.json"), case)?;
        // Inside a workspace that does not list it, the crate becomes a workspace of its own.
        let member = Command::new("cargo")
            .args([
                "metadata",
                "--no-deps",
                "--format-version",
                "1",
                "--offline",
            ])
            .arg("--manifest-path")
            .arg(dir.join("Cargo.toml"))
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !member {
            std::fs::write(dir.join("Cargo.toml"), format!("{toml}\n[workspace]\n"))?;
        }
        eprintln!(
            "created {kind} plugin `{name}` in {dir}\n  test it:  cargo test --manifest-path {dir}/Cargo.toml\n  build it: regua build {dir}\n  then run its fixture cases (tests/cases/*.json): regua test {dir}",
            kind = format!("{:?}", self.kind).to_lowercase(),
            name = self.name,
            dir = dir.display()
        );
        Ok(())
    }
}

const SEGMENT_CASE: &str = r#"{
  "about": "two purchases in the last 30 days: in the segment",
  "customer": {"id": "c-1", "transactions": [
    {"id": "t1", "at": "2025-03-01T12:00:00Z", "kind": "purchase", "amount": 10, "currency": "BRL"},
    {"id": "t2", "at": "2025-03-05T12:00:00Z", "kind": "purchase", "amount": 20, "currency": "BRL"}]},
  "now": "2025-03-11T12:00:00Z",
  "expected": {"match": true, "reasons": ["2 purchases in the last 30 days"]}
}
"#;

const JOURNEY_CASE: &str = r#"{
  "about": "a customer created yesterday enters and gets the welcome e-mail",
  "customer": {"id": "c-1", "profile": {"created_at": "2025-03-10T12:00:00Z"}},
  "now": "2025-03-11T12:00:00Z",
  "expected": {"actions": [{"enter": {"instance": 1}}, {"send": {"channel": "email", "template": "welcome-email"}}, {"wait_until": {"until": "2025-03-12T12:00:00Z"}}],
               "states": [{"step": "email", "status": "active"}]}
}
"#;

const REST_CASE: &str = r#"{
  "about": "a third push in a rolling day is denied",
  "customer": {"id": "c-1", "contacts": [
    {"channel": "push", "at": "2025-03-11T08:00:00Z", "category": "marketing"},
    {"channel": "push", "at": "2025-03-11T10:00:00Z", "category": "marketing"}]},
  "message": {"channel": "push", "category": "marketing"},
  "now": "2025-03-11T12:00:00Z",
  "expected": {"decision": "deny", "reason": "CAP_REACHED"}
}
"#;

const SEGMENT: &str = r##"//! Customers with at least `min_purchases` purchases in the last `days` days.

use regua_sdk::prelude::*;

/// The segment.
pub struct Rule;

/// Parameters, with their defaults.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Purchases needed.
    pub min_purchases: usize,
    /// Window length in days.
    pub days: i64,
}

impl Default for Params {
    fn default() -> Self {
        Params { min_purchases: 2, days: 30 }
    }
}

impl Segment for Rule {
    type Params = Params;
    // What the rule reads of a record: batches read and hand over only this. Leave it out to get
    // everything. Reading anything else panics at the read, naming it, in tests and in the host.
    const READS: &'static [Field] = &[Field::TransactionAt, Field::TransactionKind];

    fn evaluate(c: &Customer, ctx: &Context<'_, Params>) -> Result<Match> {
        let window = Duration::days(ctx.params.days);
        let n = c.purchases(ctx.now).filter(|t| t.at().within_last(window, ctx.now)).count();
        Ok(Match::when(
            n >= ctx.params.min_purchases,
            because!("{n} purchases in the last {} days", ctx.params.days),
        ))
    }
}

export_segment!(Rule);

#[cfg(test)]
mod tests {
    use super::*;
    use regua_sdk::testing::{at, customer, evaluate_segment};

    #[test]
    #[should_panic(expected = "read `profile`, which it does not declare")]
    fn a_read_it_does_not_declare_fails() {
        struct Greedy;
        impl Segment for Greedy {
            type Params = Params;
            const READS: &'static [Field] = Rule::READS;
            fn evaluate(c: &Customer, ctx: &Context<'_, Params>) -> Result<Match> {
                let named = c.profile().first_name.is_some();
                Ok(Rule::evaluate(c, ctx)?.and(format!("named: {named}")))
            }
        }
        let c = customer(r#"{"id":"c-1","profile":{"first_name":"Ana"}}"#);
        let ctx = Context { now: at("2025-03-11T12:00:00Z"), params: &Params::default(), default_tz: "UTC" };
        let _ = evaluate_segment::<Greedy>(&c, &ctx);
    }

    #[test]
    fn two_recent_purchases_match() {
        let c = customer(r#"{"id":"c-1","transactions":[
            {"id":"t1","at":"2025-03-01T10:00:00Z","kind":"purchase","amount":50},
            {"id":"t2","at":"2025-03-05T10:00:00Z","kind":"purchase","amount":70}]}"#);
        let ctx = Context { now: at("2025-03-11T12:00:00Z"), params: &Params::default(), default_tz: "UTC" };
        assert!(evaluate_segment::<Rule>(&c, &ctx).unwrap().matched);
        let later = Context { now: at("2025-04-20T12:00:00Z"), ..ctx };
        assert!(!evaluate_segment::<Rule>(&c, &later).unwrap().matched);
    }
}
"##;

const JOURNEY: &str = r##"//! A two-step welcome: an e-mail on entry, a push one day later, then done. Built on
//! `Sequence`, which does entry and re-entry, waits, exits and A/B variants as DOMAIN §4 says.

use regua_sdk::journey::{Sequence, Step};
use regua_sdk::prelude::*;

/// The journey rule.
pub struct Rule;

/// Parameters, with their defaults.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The journey's name in the customer's journey state.
    pub journey: String,
    /// The campaign code sent with each message.
    pub campaign: String,
    /// The steps: what each sends, and how long it waits.
    pub steps: Vec<Step>,
    /// Who may enter again, and how often.
    pub entry: EntryPolicy,
    /// Events that end the journey early (conversions).
    pub exit_events: Vec<String>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            journey: "{crate}".into(),
            campaign: "WELCOME".into(),
            steps: vec![
                Step::send("email", Channel::Email, "welcome-email", Wait::For(Duration::days(1))),
                Step::send("push", Channel::Push, "welcome-push", Wait::For(Duration::ZERO)),
            ],
            entry: EntryPolicy { reentry: Reentry::NoReentry, min_interval: Duration::ZERO },
            exit_events: vec!["app_activated".into()],
        }
    }
}

impl JourneyRule for Rule {
    type Params = Params;
    const READS: &'static [Field] = &[Field::Profile, Field::Events, Field::Journeys];

    fn evaluate(c: &Customer, event: Option<&Event>, ctx: &Context<'_, Params>) -> Result<JourneyOutcome> {
        let p = ctx.params;
        let sequence = Sequence {
            entry: p.entry,
            exit_events: &p.exit_events,
            ..Sequence::new(&p.journey, &p.campaign, &p.steps)
        };
        // Who may enter: customers created in the last week (the trigger event is given too).
        sequence.run(c, event, ctx, "", |_trigger| match c.profile().created_at {
            Some(at) if at > ctx.now - Duration::days(7) => Ok(()),
            _ => Err("not created in the last 7 days".into()),
        })
    }
}

export_journey!(Rule);

#[cfg(test)]
mod tests {
    use super::*;
    use regua_sdk::testing::{at, customer, evaluate_journey};

    #[test]
    fn a_new_customer_gets_the_welcome_email_then_the_push() {
        let params = Params::default();
        let ctx = Context { now: at("2025-03-11T12:00:00Z"), params: &params, default_tz: "UTC" };
        let mut c = customer(r#"{"id":"c-1","profile":{"created_at":"2025-03-10T12:00:00Z"}}"#);
        let out = evaluate_journey::<Rule>(&c, None, &ctx).unwrap();
        assert!(out.actions.iter().any(|a| matches!(a, Action::Send { channel: Channel::Email, .. })));
        c.journeys = out.states;
        let a_day_later = Context { now: at("2025-03-12T12:00:00Z"), ..ctx };
        let out = evaluate_journey::<Rule>(&c, None, &a_day_later).unwrap();
        assert!(out.actions.iter().any(|a| matches!(a, Action::Send { channel: Channel::Push, .. })));
        assert_eq!(out.state().unwrap().step, "push");
    }
}
"##;

const REST: &str = r##"//! At most `max` messages on the proposed channel in any rolling 24 hours.

use regua_sdk::prelude::*;

/// The policy.
pub struct Rule;

/// Parameters, with their defaults.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Messages allowed per channel per rolling day.
    pub max: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params { max: 2 }
    }
}

impl RestPolicy for Rule {
    type Params = Params;

    fn evaluate(c: &Customer, m: &Message, ctx: &Context<'_, Params>) -> Result<Decision> {
        if m.category == Category::Transactional {
            return Ok(Decision::allow());
        }
        let day = Duration::hours(24);
        let mut sent: Vec<Timestamp> = c
            .contacts()
            .iter()
            .filter(|x| x.channel == m.channel && x.counts_toward_caps && x.at.within_last(day, ctx.now))
            .map(|x| x.at)
            .collect();
        if sent.len() < ctx.params.max {
            return Ok(Decision::allow());
        }
        sent.sort();
        // Allowed again once enough of the counted messages have left the window.
        let retry = sent[sent.len() - ctx.params.max] + day;
        Ok(Decision::deny("daily-cap", "CAP_REACHED", Some(retry)))
    }
}

export_rest!(Rule);

#[cfg(test)]
mod tests {
    use super::*;
    use regua_sdk::testing::{at, customer, evaluate_rest, message};

    #[test]
    fn a_third_push_in_a_day_is_denied() {
        let c = customer(r#"{"id":"c-1","contacts":[
            {"channel":"push","at":"2025-03-11T08:00:00Z","category":"marketing"},
            {"channel":"push","at":"2025-03-11T10:00:00Z","category":"marketing"}]}"#);
        let m = message(r#"{"channel":"push","category":"marketing"}"#);
        let ctx = Context { now: at("2025-03-11T12:00:00Z"), params: &Params::default(), default_tz: "UTC" };
        let d = evaluate_rest::<Rule>(&c, &m, &ctx).unwrap();
        assert_eq!(d.decision, Verdict::Deny);
        assert_eq!(d.retry_after, Some(at("2025-03-12T08:00:00Z")));
    }
}
"##;

#[cfg(test)]
mod carried_sdk_tests {
    use super::*;

    /// The SDK the binary carries is the whole SDK: every file of sdk/ but its manifest, which
    /// is written standing alone.
    #[test]
    fn the_carried_sdk_has_every_file_of_the_sdk() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
        let mut found = Vec::new();
        let mut folders = vec![root.clone()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                if path.is_dir() {
                    if rel != "target" {
                        folders.push(path);
                    }
                } else if rel != "Cargo.toml" {
                    found.push(rel);
                }
            }
        }
        found.sort();
        let mut carried: Vec<String> = SDK_FILES.iter().map(|(p, _)| p.to_string()).collect();
        carried.sort();
        assert_eq!(
            carried, found,
            "add the SDK's new files to SDK_FILES in cli/new.rs"
        );
        let manifest = standalone_sdk_manifest().unwrap();
        assert!(!manifest.contains("workspace"), "{manifest}");
        assert!(manifest.contains("jiff"), "{manifest}");
    }
}
