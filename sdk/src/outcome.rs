//! What each kind of rule answers, and the message a rest policy is asked about.

use serde::{Deserialize, Serialize};

use crate::record::{Category, Channel, JourneyState};
use crate::time::Timestamp;

thread_local! {
    static EXPLAINING: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Whether the answers being worked out show their reasons: `false` when the call's output has
/// no room for them (CSV or Parquet answers, a send list; docs/ABI.md §5 `reasons`), and the SDK
/// leaves them out of the answers anyway. Always `true` outside a plugin call (a rule's tests).
/// [`because!`](crate::because) asks it, so a rule need not.
pub fn explaining() -> bool {
    EXPLAINING.with(|e| e.get())
}

/// Sets [`explaining`] for one call; the previous value comes back when this goes.
pub(crate) struct Explaining(bool);

impl Explaining {
    pub(crate) fn set(on: bool) -> Explaining {
        Explaining(EXPLAINING.with(|e| e.replace(on)))
    }
}

impl Drop for Explaining {
    fn drop(&mut self) {
        EXPLAINING.with(|e| e.set(self.0));
    }
}

/// A reason, as `format!` writes it, formatted only when the answer shows reasons
/// ([`explaining`](crate::explaining)); otherwise an empty text that the answer leaves out.
/// Write it wherever a reason or a note would be `format!`ted, so an answer without reasons
/// costs no formatting and gives the same reasons when they are shown:
///
/// ```
/// # use regua_sdk::{Match, because};
/// let days = 42;
/// let m = Match::when(days > 30, because!("last purchase {days} days ago"));
/// assert_eq!(m.reasons, ["last purchase 42 days ago"]);
/// ```
#[macro_export]
macro_rules! because {
    ($($arg:tt)*) => {
        if $crate::explaining() {
            ::std::format!($($arg)*)
        } else {
            ::std::string::String::new()
        }
    };
}

/// A segment's answer: in or out, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Match {
    /// Whether the customer belongs to the audience.
    #[serde(rename = "match")]
    pub matched: bool,
    /// What decided it, for people reading the result.
    pub reasons: Vec<String>,
}

impl Match {
    /// In the segment, because `reason`.
    pub fn yes(reason: impl Into<String>) -> Self {
        Match {
            matched: true,
            reasons: vec![reason.into()],
        }
    }

    /// Not in the segment, because `reason`.
    pub fn no(reason: impl Into<String>) -> Self {
        Match {
            matched: false,
            reasons: vec![reason.into()],
        }
    }

    /// `matched`, because `reason`.
    pub fn when(matched: bool, reason: impl Into<String>) -> Self {
        Match {
            matched,
            reasons: vec![reason.into()],
        }
    }

    /// Adds a reason.
    pub fn and(mut self, reason: impl Into<String>) -> Self {
        self.reasons.push(reason.into());
        self
    }
}

/// A message a sender proposes to send, for a rest policy to judge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The channel it would go out on.
    pub channel: Channel,
    /// The campaign's code.
    #[serde(default)]
    pub campaign: Option<String>,
    /// Marketing or transactional.
    pub category: Category,
    /// Free tags (business unit, theme, …).
    #[serde(default)]
    pub tags: Vec<String>,
    /// The approved template's id; `None` for a free-form message.
    #[serde(default)]
    pub template: Option<String>,
}

/// The three answers of a rest policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Send it now.
    Allow,
    /// Not now; ask again at `until`.
    Defer,
    /// Do not send.
    Deny,
}

impl Verdict {
    /// `allow`, `defer` or `deny`, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Defer => "defer",
            Verdict::Deny => "deny",
        }
    }
}

/// A rest policy's answer. Combining answers: deny beats defer beats allow; of two defers the
/// later `until` wins ([`Decision::combine`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Allow, deny or defer.
    pub decision: Verdict,
    /// The rule that decided (none for allow).
    pub rule: Option<String>,
    /// A reason code, e.g. `CAP_REACHED`, `NO_CONSENT`, `QUIET_HOURS`.
    pub reason: Option<String>,
    /// For defer: the earliest time the message may go.
    pub until: Option<Timestamp>,
    /// For deny: when asking again could give another answer, if known.
    pub retry_after: Option<Timestamp>,
    /// Anything the caller should know, e.g. that the company default zone was used.
    pub notes: Vec<String>,
}

impl Decision {
    /// Send it.
    pub fn allow() -> Self {
        Decision {
            decision: Verdict::Allow,
            rule: None,
            reason: None,
            until: None,
            retry_after: None,
            notes: Vec::new(),
        }
    }

    /// Do not send, by `rule`, for `reason`; `retry_after` when the answer may change.
    pub fn deny(
        rule: impl Into<String>,
        reason: impl Into<String>,
        retry_after: Option<Timestamp>,
    ) -> Self {
        Decision {
            decision: Verdict::Deny,
            rule: Some(rule.into()),
            reason: Some(reason.into()),
            until: None,
            retry_after,
            notes: Vec::new(),
        }
    }

    /// Not before `until`, by `rule`, for `reason`.
    pub fn defer(rule: impl Into<String>, reason: impl Into<String>, until: Timestamp) -> Self {
        Decision {
            decision: Verdict::Defer,
            rule: Some(rule.into()),
            reason: Some(reason.into()),
            until: Some(until),
            retry_after: None,
            notes: Vec::new(),
        }
    }

    /// Adds a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// The stronger of two answers: deny beats defer beats allow; of two defers the later
    /// `until` wins; of two denies the first stands. Notes are kept from both.
    pub fn combine(self, other: Decision) -> Decision {
        let (mut winner, loser) = match (self.decision, other.decision) {
            (a, b) if a > b => (self, other),
            (a, b) if a < b => (other, self),
            (Verdict::Defer, _) if other.until > self.until => (other, self),
            _ => (self, other),
        };
        for n in loser.notes {
            if !winner.notes.contains(&n) {
                winner.notes.push(n);
            }
        }
        winner
    }
}

/// One step a journey rule asks the platform to take.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Enter the customer in the journey (a new instance).
    Enter {
        /// The journey.
        journey: String,
        /// The instance number (1 for the first entry).
        instance: u32,
        /// The assigned A/B variant, if the journey has variants.
        variant: Option<String>,
    },
    /// Send a message.
    Send {
        /// Channel to send on.
        channel: Channel,
        /// Template id.
        template: String,
        /// Campaign code, from the briefing.
        campaign: String,
        /// The journey sending it, if a journey does.
        #[serde(default)]
        journey: Option<String>,
        /// The journey's instance.
        #[serde(default)]
        instance: Option<u32>,
        /// The step whose message it is.
        #[serde(default)]
        step: Option<String>,
    },
    /// Wait until a time, then evaluate again.
    WaitUntil {
        /// When to evaluate again.
        until: Timestamp,
    },
    /// Wait for an event, at most until `timeout_at`.
    WaitForEvent {
        /// The event's name.
        event: String,
        /// Give up at this instant (exclusive: an event at exactly this time is too late).
        timeout_at: Timestamp,
    },
    /// Move to another step of the journey.
    MoveTo {
        /// The step.
        step: String,
    },
    /// Set the customer's funnel stage.
    SetFunnelStage {
        /// The stage.
        stage: String,
    },
    /// Leave the journey early.
    Exit {
        /// Why (`converted`, `expired`, …).
        reason: String,
    },
    /// Reach the end of the journey.
    Complete,
}

/// A journey rule's answer: what to do now, and the customer's new place in the journey
/// (`None` when the customer is not, and does not become, part of it).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct JourneyOutcome {
    /// What to do, in order.
    pub actions: Vec<Action>,
    /// The customer's instances of the journey after this answer, oldest first: they replace
    /// the record's entries for the journeys they name (empty when the customer is not, and does
    /// not become, part of the journey).
    #[serde(default)]
    pub states: Vec<JourneyState>,
    /// Why, for people reading the result.
    pub reasons: Vec<String>,
}

impl JourneyOutcome {
    /// The newest instance after this answer, if any.
    pub fn state(&self) -> Option<&JourneyState> {
        self.states.last()
    }

    /// Nothing to do; the customer is not in the journey.
    pub fn none() -> Self {
        JourneyOutcome::default()
    }

    /// This answer, telling a runtime when to ask again if the customer is in no active
    /// instance and could enter at `at` (after `now`) with nothing else happening: a
    /// [`Action::WaitUntil`] with no state. For journeys whose entry waits on time rather than
    /// an event ("24 h after the first contact", "30 days without a purchase"), so a runtime
    /// that decides only on inputs and timers comes back then. Batch runs ignore it.
    pub fn entry_not_before(mut self, at: Option<Timestamp>, now: Timestamp) -> Self {
        let waiting = self.states.iter().any(|s| s.is_active())
            || self
                .actions
                .iter()
                .any(|a| matches!(a, Action::Enter { .. }));
        if let Some(at) = at
            && at > now
            && !waiting
        {
            self.actions.push(Action::WaitUntil { until: at });
        }
        self
    }

    /// Nothing to do, because `reason`.
    pub fn because(reason: impl Into<String>) -> Self {
        JourneyOutcome {
            reasons: vec![reason.into()],
            ..JourneyOutcome::default()
        }
    }
}
