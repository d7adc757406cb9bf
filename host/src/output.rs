//! The JSON shapes of answers: every result names the plugin and its version.

use regua_sdk::Verdict;
use serde::Serialize;

use crate::evaluate::{Outcome, RecordResult};
use crate::plugin::Plugin;

#[derive(Serialize)]
struct Tagged<'a> {
    plugin: &'a str,
    version: &'a str,
    #[serde(flatten)]
    body: Body<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Body<'a> {
    Ok(&'a Outcome),
    Err { error: &'a str },
}

fn tagged<'a>(plugin: &'a Plugin, result: &'a RecordResult) -> Tagged<'a> {
    Tagged {
        plugin: plugin.name(),
        version: &plugin.version,
        body: match result {
            Ok(o) => Body::Ok(o),
            Err(e) => Body::Err { error: e },
        },
    }
}

/// One plugin's answer as a JSON value: the kind's result (or `error`) with `plugin` and
/// `version`.
pub fn result_value(plugin: &Plugin, result: &RecordResult) -> serde_json::Value {
    serde_json::to_value(tagged(plugin, result)).expect("results serialize")
}

/// Appends one output line for a record all plugins answered:
/// `{"id":…,"results":{"<plugin>":{…},…}}`.
pub fn write_results_line<'a>(
    out: &mut Vec<u8>,
    id: &str,
    results: impl Iterator<Item = (&'a Plugin, &'a RecordResult)>,
) {
    out.extend_from_slice(b"{\"id\":");
    serde_json::to_writer(&mut *out, id).expect("writing to a Vec");
    out.extend_from_slice(b",\"results\":{");
    for (i, (plugin, result)) in results.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, plugin.name()).expect("writing to a Vec");
        out.push(b':');
        serde_json::to_writer(&mut *out, &tagged(plugin, result)).expect("writing to a Vec");
    }
    out.extend_from_slice(b"}}\n");
}

/// Appends one output line for a record that could not be read:
/// `{"line":N,"id":…,"error":"…"}`.
pub fn write_error_line(out: &mut Vec<u8>, line: u64, id: Option<&str>, error: &str) {
    #[derive(Serialize)]
    struct ErrorLine<'a> {
        line: u64,
        id: Option<&'a str>,
        error: &'a str,
    }
    serde_json::to_writer(&mut *out, &ErrorLine { line, id, error }).expect("writing to a Vec");
    out.push(b'\n');
}

/// Counts of answers of one plugin over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Segment: customers in the segment.
    pub matched: u64,
    /// Segment: customers not in it.
    pub unmatched: u64,
    /// Rest: allowed.
    pub allow: u64,
    /// Rest: deferred.
    pub defer: u64,
    /// Rest: denied.
    pub deny: u64,
    /// Journey: customers with at least one action.
    pub with_actions: u64,
    /// Journey: customers with nothing to do.
    pub idle: u64,
    /// Customers the plugin failed on.
    pub failed: u64,
}

/// What kind of answer a plugin gave one customer, as a [`Tally`] counts it: a byte, so a chunk's
/// answers can be counted (or left out) after they are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// In the segment.
    Matched,
    /// Not in the segment.
    Unmatched,
    /// Rest: allow.
    Allow,
    /// Rest: defer.
    Defer,
    /// Rest: deny.
    Deny,
    /// Journey: something to do.
    WithActions,
    /// Journey: nothing to do.
    Idle,
    /// The plugin failed.
    Failed,
}

impl Class {
    /// The class of `result`.
    pub fn of(result: &RecordResult) -> Class {
        match result {
            Ok(Outcome::Segment(m)) if m.matched => Class::Matched,
            Ok(Outcome::Segment(_)) => Class::Unmatched,
            Ok(Outcome::Rest(d)) => match d.decision {
                Verdict::Allow => Class::Allow,
                Verdict::Defer => Class::Defer,
                Verdict::Deny => Class::Deny,
            },
            Ok(Outcome::Journey(j)) if j.actions.is_empty() => Class::Idle,
            Ok(Outcome::Journey(_)) => Class::WithActions,
            Err(_) => Class::Failed,
        }
    }
}

impl Tally {
    /// Counts one answer of `class`.
    pub fn count(&mut self, class: Class) {
        let n = match class {
            Class::Matched => &mut self.matched,
            Class::Unmatched => &mut self.unmatched,
            Class::Allow => &mut self.allow,
            Class::Defer => &mut self.defer,
            Class::Deny => &mut self.deny,
            Class::WithActions => &mut self.with_actions,
            Class::Idle => &mut self.idle,
            Class::Failed => &mut self.failed,
        };
        *n += 1;
    }

    /// Adds another tally.
    pub fn merge(&mut self, other: &Tally) {
        self.matched += other.matched;
        self.unmatched += other.unmatched;
        self.allow += other.allow;
        self.defer += other.defer;
        self.deny += other.deny;
        self.with_actions += other.with_actions;
        self.idle += other.idle;
        self.failed += other.failed;
    }

    /// A one-line summary for `kind`.
    pub fn describe(&self, kind: regua_sdk::Kind) -> String {
        let body = match kind {
            regua_sdk::Kind::Segment => {
                format!("{} in segment, {} not", self.matched, self.unmatched)
            }
            regua_sdk::Kind::Rest => {
                format!(
                    "{} allow, {} defer, {} deny",
                    self.allow, self.defer, self.deny
                )
            }
            regua_sdk::Kind::Journey => {
                format!(
                    "{} with actions, {} with nothing to do",
                    self.with_actions, self.idle
                )
            }
        };
        if self.failed > 0 {
            format!("{body}, {} FAILED", self.failed)
        } else {
            body
        }
    }
}
