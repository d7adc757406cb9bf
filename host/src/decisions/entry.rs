//! One line of the decision log, how it is made from a campaign's decision, and how it reads in
//! words.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::InputOf;
use crate::pipeline::campaign::{Campaign, Decision};
use crate::runtime::plugin::Plugin;
use crate::runtime::worker::{Outcome, RecordResult};

/// One decision: for a customer and a campaign, or for a plugin call outside campaigns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The decision's id: unique, and in the order decisions were made within one process.
    pub decision: String,
    /// When it was made, by the host's clock.
    pub time: String,
    /// The instant it was made for (the `now` the rules saw).
    pub now: String,
    /// `campaign` or `plugin`.
    pub source: String,
    /// The customer's id.
    pub customer: String,
    /// `sha256:` and the hex SHA-256 of the record as the rules saw it (the parts they read, as
    /// JSON): the same record gives the same hash, whatever file format it came in.
    pub input: String,
    /// The campaign's code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// Who asked for the campaign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    /// The variant, for a campaign with variants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The version of every plugin that decided it, by name.
    pub plugins: BTreeMap<String, String>,
    /// The outcome: a campaign's (`planned`, `denied`, `held_out`, …), or a plugin's answer in a
    /// word (`match`, `no_match`, `allow`, `deny`, `defer`, `actions`, `error`).
    pub outcome: String,
    /// Why, for people.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// The messages planned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<serde_json::Value>,
    /// The messages denied, with rule and reason code.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<serde_json::Value>,
    /// The error, for an outcome of `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Fields of the record named to be kept (none by default: no personal data in the log).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, serde_json::Value>,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A new decision id: the host's clock in milliseconds, the process id and a sequence number,
/// in hex (`0193a1b2c3d4-1f2e-2a`). Unique without coordination: two processes that share a
/// millisecond do not share a process id.
pub fn new_id() -> String {
    let ms = jiff::Timestamp::now().as_millisecond();
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!("{ms:012x}-{:x}-{seq:x}", std::process::id())
}

/// The host's clock, RFC 3339 to the millisecond.
pub fn clock() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Millisecond)
        .map_or_else(|_| jiff::Timestamp::now().to_string(), |t| t.to_string())
}

/// The `input` hash of a record.
pub fn input_hash(record: &regua_sdk::Record) -> String {
    let json = serde_json::to_vec(record).expect("a record is JSON");
    format!("sha256:{}", hex::encode(Sha256::digest(&json)))
}

/// The fields of `record` named in `names` (`id`, `tz`, `profile.email`, …); a name the record
/// does not have is kept as `null`, so the line says it was asked for.
pub fn pick_fields(
    record: &regua_sdk::Record,
    names: &[String],
) -> BTreeMap<String, serde_json::Value> {
    if names.is_empty() {
        return BTreeMap::new();
    }
    let value = serde_json::to_value(record).expect("a record is JSON");
    names
        .iter()
        .map(|name| {
            let mut at = &value;
            for part in name.split('.') {
                at = at.get(part).unwrap_or(&serde_json::Value::Null);
            }
            (name.clone(), at.clone())
        })
        .collect()
}

impl Entry {
    /// The log line of `decision`, made by `campaign` for the customer whose record (as read,
    /// before the run) hashed to `input`.
    pub fn campaign(
        id: String,
        now: regua_sdk::Timestamp,
        customer: &str,
        input: String,
        campaign: &Campaign,
        decision: &Decision,
        fields: BTreeMap<String, serde_json::Value>,
    ) -> Entry {
        Entry {
            decision: id,
            time: clock(),
            now: now.to_string(),
            source: "campaign".into(),
            customer: customer.to_owned(),
            input,
            campaign: Some(decision.campaign.clone()),
            requester: Some(campaign.def.requester.clone()),
            variant: decision.variant.clone(),
            plugins: decision.versions.clone(),
            outcome: decision.outcome.as_str().to_owned(),
            reasons: decision.reasons.clone(),
            messages: values(&decision.messages),
            denied: values(&decision.denied),
            error: decision.error.clone(),
            fields,
        }
    }

    /// The log line of one plugin's answer for the customer whose record hashed to `input`,
    /// outside campaigns (`POST /v1/plugins/{name}/evaluate`, `POST /v1/evaluate`).
    pub fn plugin(
        id: String,
        now: regua_sdk::Timestamp,
        customer: &str,
        input: &InputOf,
        plugin: &Plugin,
        result: &RecordResult,
    ) -> Entry {
        let (outcome, reasons, error) = match result {
            Ok(Outcome::Segment(m)) => (
                if m.matched { "match" } else { "no_match" },
                m.reasons.clone(),
                None,
            ),
            Ok(Outcome::Rest(d)) => {
                let mut reasons = Vec::new();
                if let Some(rule) = &d.rule {
                    reasons.push(format!(
                        "rule `{rule}`{}",
                        d.reason
                            .as_ref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    ));
                }
                if let Some(until) = d.until {
                    reasons.push(format!("may go from {until}"));
                }
                reasons.extend(d.notes.iter().cloned());
                (d.decision.as_str(), reasons, None)
            }
            Ok(Outcome::Journey(j)) => (
                if j.actions.is_empty() {
                    "no_actions"
                } else {
                    "actions"
                },
                j.reasons.clone(),
                None,
            ),
            Err(e) => ("error", Vec::new(), Some(e.clone())),
        };
        Entry {
            decision: id,
            time: clock(),
            now: now.to_string(),
            source: "plugin".into(),
            customer: customer.to_owned(),
            input: input.hash.clone(),
            campaign: None,
            requester: None,
            variant: None,
            plugins: [(plugin.name().to_owned(), plugin.version.clone())].into(),
            outcome: outcome.to_owned(),
            reasons,
            messages: Vec::new(),
            denied: Vec::new(),
            error,
            fields: input.fields.clone(),
        }
    }

    /// The line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("an entry is JSON");
        line.push(b'\n');
        line
    }

    /// The decision in words, for `regua decisions show` and `GET /v1/decisions/{id}`.
    pub fn explain(&self) -> String {
        let mut s = format!(
            "Decision {} made at {} for now = {}.\n",
            self.decision, self.time, self.now
        );
        match &self.campaign {
            Some(code) => s.push_str(&format!(
                "Campaign {code}{} for customer {}: {}.\n",
                self.requester
                    .as_ref()
                    .map(|r| format!(" (requested by {r})"))
                    .unwrap_or_default(),
                self.customer,
                outcome_words(&self.outcome)
            )),
            None => s.push_str(&format!(
                "Plugin call for customer {}: {}.\n",
                self.customer,
                outcome_words(&self.outcome)
            )),
        }
        if let Some(v) = &self.variant {
            s.push_str(&format!("Variant: {v}.\n"));
        }
        for m in &self.messages {
            s.push_str(&format!(
                "Sends {} `{}` ({}) at {}{}.\n",
                text(m, "channel"),
                text(m, "template"),
                text(m, "category"),
                text(m, "send_at"),
                m.get("deferred_by")
                    .and_then(|r| r.as_str())
                    .map(|r| format!(", deferred by rule `{r}`"))
                    .unwrap_or_default()
            ));
        }
        for d in &self.denied {
            s.push_str(&format!(
                "Does not send {} `{}`: denied by rule `{}` ({}).\n",
                text(d, "channel"),
                text(d, "template"),
                text(d, "rule"),
                text(d, "reason")
            ));
        }
        if let Some(e) = &self.error {
            s.push_str(&format!("Error: {e}\n"));
        }
        for r in &self.reasons {
            s.push_str(&format!("Because: {r}\n"));
        }
        if !self.plugins.is_empty() {
            let p: Vec<String> = self
                .plugins
                .iter()
                .map(|(n, v)| format!("{n} {v}"))
                .collect();
            s.push_str(&format!("Plugins: {}.\n", p.join(", ")));
        }
        s.push_str(&format!("Input record: {}.\n", self.input));
        s
    }
}

fn values<T: Serialize>(v: &[T]) -> Vec<serde_json::Value> {
    v.iter()
        .map(|m| serde_json::to_value(m).expect("JSON"))
        .collect()
}

fn text<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v.get(key).and_then(|x| x.as_str()).unwrap_or("?")
}

fn outcome_words(outcome: &str) -> &str {
    match outcome {
        "planned" => "messages planned",
        "denied" => "every message denied by the rest policy",
        "held_out" => "held out (holdout or control variant): nothing sent, counted for uplift",
        "nothing_to_do" => "nothing to do now (the journey waits, has ended or was not entered)",
        "not_in_audience" => "not in the audience",
        "inactive" => "the campaign was not active at that instant",
        "error" => "a plugin failed, so nothing was decided",
        "match" => "in the segment",
        "no_match" => "not in the segment",
        "allow" => "allowed",
        "deny" => "denied",
        "defer" => "deferred",
        "actions" => "the journey rule answered actions",
        "no_actions" => "the journey rule answered no action",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_an_entry_reads_back_and_explains_itself() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        let e = Entry {
            decision: a.clone(),
            time: "2026-12-03T10:00:00.000Z".into(),
            now: "2025-03-11T12:00:00Z".into(),
            source: "campaign".into(),
            customer: "cus-1".into(),
            input: "sha256:00".into(),
            campaign: Some("RET-2025-030".into()),
            requester: Some("julia.prado".into()),
            variant: Some("B".into()),
            plugins: [("lapsed".to_string(), "ab12".to_string())].into(),
            outcome: "denied".into(),
            reasons: vec!["in the audience".into()],
            messages: vec![],
            denied: vec![
                serde_json::json!({"rule":"consent","reason":"NO_CONSENT","channel":"sms","template":"t"}),
            ],
            error: None,
            fields: BTreeMap::new(),
        };
        let back: Entry = serde_json::from_slice(&e.to_line()).unwrap();
        assert_eq!(back, e);
        let words = e.explain();
        for part in [
            "Campaign RET-2025-030 (requested by julia.prado) for customer cus-1",
            "every message denied",
            "Does not send sms `t`: denied by rule `consent` (NO_CONSENT)",
            "Variant: B.",
            "lapsed ab12",
        ] {
            assert!(words.contains(part), "{part:?} not in:\n{words}");
        }
    }

    #[test]
    fn the_input_hash_depends_on_the_record_and_fields_are_picked_by_path() {
        let mut r = regua_sdk::Record {
            id: "cus-1".into(),
            ..Default::default()
        };
        let h = input_hash(&r);
        assert!(h.starts_with("sha256:") && h.len() == 7 + 64);
        r.id = "cus-2".into();
        assert_ne!(input_hash(&r), h);
        let f = pick_fields(&r, &["id".into(), "profile.email".into()]);
        assert_eq!(f["id"], "cus-2");
        assert_eq!(f["profile.email"], serde_json::Value::Null);
    }
}
