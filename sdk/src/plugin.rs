//! The three kinds of rule, their context and their error type.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::outcome::{Decision, JourneyOutcome, Match, Message};
use crate::record::{Event, Field};
use crate::time::{TimeError, Timestamp};
use crate::view::Customer;

/// What a rule could not do, in words for the person who runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Error(message.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }

    /// The message, owned.
    pub fn into_message(self) -> String {
        self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<TimeError> for Error {
    fn from(e: TimeError) -> Self {
        Error(e.0)
    }
}

impl From<String> for Error {
    fn from(s: String) -> Self {
        Error(s)
    }
}

impl From<&str> for Error {
    fn from(s: &str) -> Self {
        Error(s.to_owned())
    }
}

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// The kind of a plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Does this customer belong to the audience?
    Segment,
    /// Where does this customer stand in a journey, and what is next?
    Journey,
    /// May we contact this customer on this channel now?
    Rest,
}

impl Kind {
    /// The kind's name (`segment`, `journey`, `rest`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Segment => "segment",
            Kind::Journey => "journey",
            Kind::Rest => "rest",
        }
    }

    /// The byte that stands for this kind in the `regua-abi` custom section.
    pub const fn code(self) -> u8 {
        match self {
            Kind::Segment => 1,
            Kind::Journey => 2,
            Kind::Rest => 3,
        }
    }

    /// The kind a `regua-abi` byte stands for.
    pub fn from_code(code: u8) -> Option<Kind> {
        match code {
            1 => Some(Kind::Segment),
            2 => Some(Kind::Journey),
            3 => Some(Kind::Rest),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's parameters: read from the JSON given at evaluation time, with the defaults the rule
/// declares (`Default`) filling what is missing, so one build serves many campaigns. Use
/// `#[serde(default, deny_unknown_fields)]` so a typo is an error, not a silent default.
pub trait Params: Serialize + DeserializeOwned + Default {}

impl<T: Serialize + DeserializeOwned + Default> Params for T {}

/// Parameters of a rule that takes none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// What every evaluation knows besides the customer.
#[derive(Clone, Debug)]
pub struct Context<'a, P> {
    /// The instant of the evaluation. Rules never read a clock.
    pub now: Timestamp,
    /// The rule's parameters.
    pub params: &'a P,
    /// The company's default IANA time zone, for customers without one.
    pub default_tz: &'a str,
}

/// A segment: does this customer belong to the audience?
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a segment",
    label = "export_segment! needs a type that implements regua_sdk::Segment",
    note = "implement `Segment` for `{Self}`, or export a journey rule with export_journey! and a rest policy with export_rest!"
)]
pub trait Segment {
    /// The parameters, with their defaults.
    type Params: Params;

    /// The parts of the record the rule reads (`id` and `tz` always are). A batch reads and
    /// hands over only what its rules declare between them; reading a part or member not
    /// declared here panics at that read, naming it (natively through [`crate::testing`], and
    /// in the host, where it is that customer's error).
    const READS: &'static [Field] = Field::ALL;

    /// In or out, with the reasons.
    fn evaluate(customer: &Customer, ctx: &Context<'_, Self::Params>) -> Result<Match>;
}

/// A journey rule: where does the customer stand, and what is the next step?
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a journey rule",
    label = "export_journey! needs a type that implements regua_sdk::JourneyRule",
    note = "implement `JourneyRule` for `{Self}`, or export a segment with export_segment! and a rest policy with export_rest!"
)]
pub trait JourneyRule {
    /// The parameters, with their defaults.
    type Params: Params;

    /// The parts of the record the rule reads (`id` and `tz` always are). A batch reads and
    /// hands over only what its rules declare between them; reading a part or member not
    /// declared here panics at that read, naming it (natively through [`crate::testing`], and
    /// in the host, where it is that customer's error).
    const READS: &'static [Field] = Field::ALL;

    /// The actions to take and the customer's new journey state. `event` is the event that
    /// triggered this evaluation, if any.
    fn evaluate(
        customer: &Customer,
        event: Option<&Event>,
        ctx: &Context<'_, Self::Params>,
    ) -> Result<JourneyOutcome>;
}

/// A channel-rest policy: may we contact this customer with this message now?
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a rest policy",
    label = "export_rest! needs a type that implements regua_sdk::RestPolicy",
    note = "implement `RestPolicy` for `{Self}`, or export a segment with export_segment! and a journey rule with export_journey!"
)]
pub trait RestPolicy {
    /// The parameters, with their defaults.
    type Params: Params;

    /// The parts of the record the rule reads (`id` and `tz` always are). A batch reads and
    /// hands over only what its rules declare between them; reading a part or member not
    /// declared here panics at that read, naming it (natively through [`crate::testing`], and
    /// in the host, where it is that customer's error).
    const READS: &'static [Field] = Field::ALL;

    /// Allow, deny or defer.
    fn evaluate(
        customer: &Customer,
        message: &Message,
        ctx: &Context<'_, Self::Params>,
    ) -> Result<Decision>;
}

/// What a plugin says about itself (the `regua_metadata` export).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metadata {
    /// The plugin's name (its crate name).
    pub name: String,
    /// Segment, journey or rest.
    pub kind: Kind,
    /// The author's version (the crate version).
    pub version: String,
    /// What business question it answers.
    pub description: String,
    /// The ABI version it was built for.
    pub abi: u32,
    /// The parameters' defaults.
    pub params: serde_json::Value,
    /// The parts of the record the rule reads; all of them when a plugin does not say.
    #[serde(default = "all_fields")]
    pub reads: Vec<Field>,
}

fn all_fields() -> Vec<Field> {
    Field::ALL.to_vec()
}
