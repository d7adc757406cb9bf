#![doc = include_str!("../README.md")]
//!
//! # A tour
//!
//! - [`record`]: the customer record, typed ([`Record`]), as the host reads it.
//! - [`view`]: the customer as a rule reads it ([`Customer`]), with the questions rules ask of it
//!   (last purchase, consent at a time, first contact on a channel, the customer's zone); every
//!   read is checked against the parts the rule declares in `READS`.
//! - [`time`]: instants, durations, half-open windows, calendar windows and quiet hours in the
//!   customer's zone, correct across daylight saving.
//! - [`rfm`] and [`ab`]: RFM scoring and deterministic A/B buckets, exactly as the domain
//!   reference defines them.
//! - [`Segment`], [`JourneyRule`], [`RestPolicy`]: the three kinds of rule; [`Match`],
//!   [`JourneyOutcome`] and [`Decision`] their answers.
//! - [`export_segment!`], [`export_journey!`], [`export_rest!`]: turn a rule into a plugin.
//! - [`wire`]: the bytes between host and plugin (see `docs/ABI.md`).

pub mod ab;
#[doc(hidden)]
pub mod guest;
pub mod journey;
pub mod json;
pub mod outcome;
pub mod params;
pub mod plugin;
pub mod record;
pub mod rfm;
mod text;
pub mod time;
pub mod value;
pub mod view;
pub mod wire;

pub use outcome::{Action, Decision, JourneyOutcome, Match, Message, Verdict};
pub use plugin::{
    Context, Error, JourneyRule, Kind, Metadata, NoParams, Params, RestPolicy, Result, Segment,
};
pub use record::{
    Category, Channel, Consent, ConsentStatus, Contact, Event, Field, Fields, Inbound,
    JourneyState, JourneyStatus, Profile, Record, Transaction, ZoneSource,
};
pub use time::{Date, Duration, QuietHours, Timestamp, Window, Zone};
pub use value::Value;
pub use view::{Customer, EventView, TransactionView};

/// Plumbing for the export macros.
#[doc(hidden)]
pub mod __private {
    pub use crate::guest::*;
    pub use serde_json;
}

/// Everything a rule usually needs, and serde's derives.
pub mod prelude {
    pub use crate::ab;
    pub use crate::journey::{self, EntryPolicy, Reentry, Wait};
    pub use crate::record::kind;
    pub use crate::rfm::{Cuts, Rfm, RfmSegment};
    pub use crate::{
        Action, Category, Channel, ConsentStatus, Context, Customer, Date, Decision, Duration,
        Error, Event, EventView, Field, JourneyOutcome, JourneyRule, JourneyState, JourneyStatus,
        Match, Message, NoParams, QuietHours, Record, RestPolicy, Result, Segment, Timestamp,
        TransactionView, Value, Verdict, Window, Zone, ZoneSource, because, explaining,
        export_journey, export_rest, export_segment,
    };
    pub use serde::{Deserialize, Serialize};
}

pub use outcome::explaining;

/// Sends a log line to the host, which records it under the plugin's name.
pub fn log(message: &str) {
    guest::log(3, message);
}

/// Exports a [`Segment`] as the plugin's rule. Use once per plugin crate, whose `crate-type`
/// includes `"cdylib"`.
#[macro_export]
macro_rules! export_segment {
    ($rule:ty) => {
        $crate::__export_plugin!(
            $crate::Kind::Segment,
            <$rule as $crate::Segment>::Params,
            <$rule as $crate::Segment>::READS,
            $crate::__private::evaluate_segment::<$rule>
        );
    };
}

/// Exports a [`JourneyRule`] as the plugin's rule. Use once per plugin crate.
#[macro_export]
macro_rules! export_journey {
    ($rule:ty) => {
        $crate::__export_plugin!(
            $crate::Kind::Journey,
            <$rule as $crate::JourneyRule>::Params,
            <$rule as $crate::JourneyRule>::READS,
            $crate::__private::evaluate_journey::<$rule>
        );
    };
}

/// Exports a [`RestPolicy`] as the plugin's rule. Use once per plugin crate.
#[macro_export]
macro_rules! export_rest {
    ($rule:ty) => {
        $crate::__export_plugin!(
            $crate::Kind::Rest,
            <$rule as $crate::RestPolicy>::Params,
            <$rule as $crate::RestPolicy>::READS,
            $crate::__private::evaluate_rest::<$rule>
        );
    };
}

// The export macro below writes these names as identifiers; they must be the ABI's.
const _: () = assert!(wire::same_name(wire::ALLOC.name, "regua_alloc"));
const _: () = assert!(wire::same_name(wire::METADATA.name, "regua_metadata"));
const _: () = assert!(wire::same_name(wire::EVALUATE.name, "regua_evaluate"));
const _: () = assert!(wire::same_name(wire::ABI_SECTION, "regua-abi"));

#[doc(hidden)]
#[macro_export]
macro_rules! __export_plugin {
    ($kind:expr, $params:ty, $reads:expr, $evaluate:expr) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[unsafe(link_section = "regua-abi")]
            #[used]
            static REGUA_ABI: [u8; 5] = $crate::wire::abi_section($kind);

            #[unsafe(no_mangle)]
            extern "C" fn regua_alloc(len: u32) -> u32 {
                $crate::__private::alloc(len)
            }

            #[unsafe(no_mangle)]
            extern "C" fn regua_metadata() -> u64 {
                $crate::__private::metadata::<$params>(
                    $kind,
                    $reads,
                    env!("CARGO_PKG_NAME"),
                    env!("CARGO_PKG_VERSION"),
                    env!("CARGO_PKG_DESCRIPTION"),
                )
            }

            #[unsafe(no_mangle)]
            extern "C" fn regua_evaluate(
                ctx_ptr: u32,
                ctx_len: u32,
                batch_ptr: u32,
                batch_len: u32,
            ) -> u64 {
                // SAFETY: the host passes buffers it obtained from `regua_alloc` (docs/ABI.md).
                unsafe {
                    $evaluate(
                        env!("CARGO_PKG_NAME"),
                        ctx_ptr,
                        ctx_len,
                        batch_ptr,
                        batch_len,
                    )
                }
            }
        };
    };
}

/// Helpers for testing rules natively with `cargo test`.
pub mod testing {
    use crate::Timestamp;

    /// A timestamp from RFC 3339 text; panics on bad input (tests only).
    pub fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A customer record from JSON text; panics on bad input (tests only). Hand it to a rule
    /// with [`evaluate_segment`], [`evaluate_journey`] or [`evaluate_rest`], which check the rule's reads.
    pub fn customer(json: &str) -> crate::Record {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("bad test customer: {e}"))
    }

    /// The rule's name for messages: its type's name without the path.
    fn rule_name<R: ?Sized>() -> &'static str {
        let full = std::any::type_name::<R>();
        full.rsplit("::").next().unwrap_or(full)
    }

    /// Runs `f` on `record` as the rule named `rule`, declaring `reads`, sees it in the host:
    /// the record is written as the host writes it (the parts the rule does not declare left
    /// empty) and read in place, so a read of an undeclared part panics, naming the part (tests
    /// only).
    pub fn with_view<T>(
        record: &crate::Record,
        reads: &[crate::Field],
        rule: &'static str,
        f: impl FnOnce(&crate::Customer<'_>) -> T,
    ) -> T {
        let reads = crate::Fields::of(reads);
        let mut bytes = Vec::new();
        crate::wire::encode_customer_reading(record, reads, &mut bytes);
        let view = crate::wire::RecordView::read(&bytes)
            .unwrap_or_else(|e| panic!("the record does not read back: {e}"));
        f(&crate::Customer::reading(&view, reads, rule))
    }

    /// Evaluates segment `S` on `record` as the host does: a read of a part `S` does not declare
    /// in `READS` panics, naming the part (tests only).
    pub fn evaluate_segment<S: crate::Segment>(
        record: &crate::Record,
        ctx: &crate::Context<'_, S::Params>,
    ) -> crate::Result<crate::Match> {
        with_view(record, S::READS, rule_name::<S>(), |c| S::evaluate(c, ctx))
    }

    /// [`evaluate_segment`] for a journey rule, with the triggering event.
    pub fn evaluate_journey<J: crate::JourneyRule>(
        record: &crate::Record,
        event: Option<&crate::Event>,
        ctx: &crate::Context<'_, J::Params>,
    ) -> crate::Result<crate::JourneyOutcome> {
        with_view(record, J::READS, rule_name::<J>(), |c| {
            J::evaluate(c, event, ctx)
        })
    }

    /// [`evaluate_segment`] for a rest policy, with the proposed message.
    pub fn evaluate_rest<R: crate::RestPolicy>(
        record: &crate::Record,
        message: &crate::Message,
        ctx: &crate::Context<'_, R::Params>,
    ) -> crate::Result<crate::Decision> {
        with_view(record, R::READS, rule_name::<R>(), |c| {
            R::evaluate(c, message, ctx)
        })
    }

    /// A proposed message from JSON text; panics on bad input (tests only).
    pub fn message(json: &str) -> crate::Message {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("bad test message: {e}"))
    }

    /// An event from JSON text; panics on bad input (tests only).
    pub fn event(json: &str) -> crate::Event {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("bad test event: {e}"))
    }

    /// The channels of the messages a journey's answer proposes, in order.
    pub fn sends(out: &crate::JourneyOutcome) -> Vec<crate::Channel> {
        out.actions
            .iter()
            .filter_map(|a| match a {
                crate::Action::Send { channel, .. } => Some(*channel),
                _ => None,
            })
            .collect()
    }

    /// Whether a journey's answer only waits: no entry, message, move or exit, at most the
    /// wait it is in (said again so a runtime knows when to come back).
    pub fn waits_only(out: &crate::JourneyOutcome) -> bool {
        out.actions.iter().all(|a| {
            matches!(
                a,
                crate::Action::WaitUntil { .. } | crate::Action::WaitForEvent { .. }
            )
        })
    }

    /// The [`crate::journey::MESSAGE_DENIED`] event a host feeds back when the rest policy
    /// denies, at `at` (RFC 3339), the message `out` proposes; panics when `out` proposes none
    /// (tests only).
    pub fn denial_of(out: &crate::JourneyOutcome, at_: &str) -> crate::Event {
        out.actions
            .iter()
            .find_map(|a| match a {
                crate::Action::Send {
                    journey: Some(j),
                    instance: Some(n),
                    step: Some(s),
                    ..
                } => Some(crate::journey::denied_event(j, *n, s, at(at_))),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no journey message to deny in {out:?}"))
    }

    /// A context at `now` (RFC 3339) in the São Paulo company zone (tests only).
    pub fn context<'a, P>(now: &str, params: &'a P) -> crate::Context<'a, P> {
        crate::Context {
            now: at(now),
            params,
            default_tz: "America/Sao_Paulo",
        }
    }

    /// Where `got` differs from `expected`, which may leave things out: an object matches when
    /// every key it has matches, a list when it has as many entries and each matches, anything
    /// else when equal. `None` when it matches; else the path and both values.
    pub fn mismatch(expected: &serde_json::Value, got: &serde_json::Value) -> Option<String> {
        fn at(path: &str, e: &serde_json::Value, g: &serde_json::Value) -> Option<String> {
            use serde_json::Value::{Array, Object};
            match (e, g) {
                (Object(e), Object(g)) => e.iter().find_map(|(k, v)| {
                    at(
                        &format!("{path}.{k}"),
                        v,
                        g.get(k).unwrap_or(&serde_json::Value::Null),
                    )
                }),
                (Array(e), Array(g)) if e.len() == g.len() => e
                    .iter()
                    .zip(g)
                    .enumerate()
                    .find_map(|(i, (e, g))| at(&format!("{path}[{i}]"), e, g)),
                _ if e == g => None,
                _ => Some(format!("`{path}`: expected {e}, got {g}")),
            }
        }
        at("", expected, got)
    }

    /// Checks a journey rule's answer (as JSON) against a case's expectation: `actions`, the
    /// list of action names in order (`enter`, `send`, `wait_until`, …); `states`, the instances
    /// after the answer, each with the fields that matter; `reason`, text one of the reasons
    /// contains; `send_templates`, the templates of the messages in order. `None` when it holds.
    pub fn journey_mismatch(
        expect: &serde_json::Value,
        outcome: &serde_json::Value,
    ) -> Option<String> {
        let actions = outcome["actions"].as_array().cloned().unwrap_or_default();
        let name = |a: &serde_json::Value| match a {
            serde_json::Value::Object(m) => m.keys().next().cloned().unwrap_or_default(),
            other => other.as_str().unwrap_or_default().to_owned(),
        };
        let summary = serde_json::json!({
            "actions": actions.iter().map(name).collect::<Vec<_>>(),
            "states": outcome["states"],
            "send_templates": actions.iter().filter_map(|a| a.get("send")).map(|s| s["template"].clone()).collect::<Vec<_>>(),
        });
        let mut wanted = expect.clone();
        let reason = wanted.as_object_mut().and_then(|m| m.remove("reason"));
        if let Some(text) = reason.as_ref().and_then(|r| r.as_str()) {
            let reasons = outcome["reasons"].to_string();
            if !reasons.contains(text) {
                return Some(format!("no reason contains {text:?}: {reasons}"));
            }
        }
        mismatch(&wanted, &summary).map(|m| format!("{m} in {outcome}"))
    }

    /// Parameters from JSON text over the rule's defaults; panics on bad input (tests only).
    pub fn params<P: crate::Params>(json: &str) -> P {
        crate::guest::parse_params(json).unwrap_or_else(|e| panic!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{context, customer, evaluate_segment};
    use crate::{Context, Customer, Field, Match, NoParams, Result, Segment};

    struct Spent;
    impl Segment for Spent {
        type Params = NoParams;
        const READS: &'static [Field] = &[Field::TransactionAmount];
        fn evaluate(c: &Customer, _: &Context<'_, NoParams>) -> Result<Match> {
            let spent: f64 = c.transactions().map(|t| t.amount()).sum();
            let named = c.profile().first_name.is_some();
            Ok(Match::when(spent > 5.0 && named, "spent"))
        }
    }

    const RICH: &str = r#"{"id":"c","profile":{"first_name":"Ana"},"transactions":[
        {"id":"t","at":"2025-01-01T00:00:00Z","kind":"purchase","amount":10}]}"#;

    #[test]
    #[should_panic(expected = "rule `Spent` read `profile`, which it does not declare")]
    fn testing_a_rule_that_reads_more_than_it_declares_fails_at_the_read() {
        let _ = evaluate_segment::<Spent>(
            &customer(RICH),
            &context("2025-03-01T00:00:00Z", &NoParams {}),
        );
    }
}
