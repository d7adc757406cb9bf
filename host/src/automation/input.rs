//! The inputs of the journey runtime: what happened to a customer, with an id and an instant,
//! and how each one changes the customer's record (docs/RUNTIME.md).

use regua_sdk::{Category, Channel, ConsentStatus, Event, Record, Timestamp};
use serde::Deserialize;

/// One input: a behaviour event, a transaction, a message the customer sent, a consent change
/// or profile attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    /// The caller's id for it: an id seen before is a duplicate and is not applied again.
    pub id: String,
    /// The customer.
    pub customer: String,
    /// When it happened; `None`: when it arrives (the service's clock).
    pub at: Option<Timestamp>,
    /// What happened.
    pub what: What,
}

/// What an input says happened.
#[derive(Clone, Debug, PartialEq)]
pub enum What {
    /// A behaviour event (`name`, `props`), added to `events`.
    Event {
        /// Its name.
        name: String,
        /// Its properties.
        props: serde_json::Value,
    },
    /// A transaction, added to `transactions` (replacing one with the same id).
    Transaction(serde_json::Value),
    /// A message from the customer, added to `inbound`.
    Inbound(Channel),
    /// A consent decision for a channel and purpose.
    Consent {
        /// The channel.
        channel: Channel,
        /// `marketing` or `transactional`.
        purpose: Category,
        /// The decision.
        status: ConsentStatus,
    },
    /// Profile attributes, set key by key.
    Profile(serde_json::Map<String, serde_json::Value>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    id: String,
    customer: String,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    props: Option<serde_json::Value>,
    #[serde(default)]
    transaction: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    inbound: Option<RawInbound>,
    #[serde(default)]
    consent: Option<RawConsent>,
    #[serde(default)]
    profile: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInbound {
    channel: Channel,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsent {
    channel: Channel,
    purpose: Category,
    status: ConsentStatus,
}

/// The longest input id, in bytes, as for customer ids.
pub const MAX_INPUT_ID_BYTES: usize = regua_sdk::record::MAX_ID_BYTES;

impl Input {
    /// Parses one input (a JSON object); the error names the field and what is wrong.
    pub fn parse(text: &str) -> Result<Input, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let raw: Raw = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                e.into_inner().to_string()
            } else {
                format!("field `{path}`: {}", e.into_inner())
            }
        })?;
        if let Some(p) = input_id_problem(&raw.id) {
            return Err(format!("field `id` {p}"));
        }
        if let Some(p) = regua_sdk::record::id_problem(&raw.customer) {
            return Err(format!("field `customer` {p}"));
        }
        let at = raw
            .at
            .as_deref()
            .map(|t| Timestamp::parse(t).map_err(|e| format!("field `at`: {e}")))
            .transpose()?;
        let given = [
            raw.name.is_some(),
            raw.transaction.is_some(),
            raw.inbound.is_some(),
            raw.consent.is_some(),
            raw.profile.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err("say what happened with exactly one of `name` (an event), \
                        `transaction`, `inbound`, `consent` and `profile`"
                .into());
        }
        if raw.props.is_some() && raw.name.is_none() {
            return Err("field `props`: only an event (`name`) has props".into());
        }
        let what = if let Some(name) = raw.name {
            if name.trim().is_empty() {
                return Err("field `name` is empty".into());
            }
            let props = raw.props.unwrap_or_else(|| serde_json::json!({}));
            if !props.is_object() {
                return Err("field `props`: expected an object".into());
            }
            What::Event { name, props }
        } else if let Some(mut t) = raw.transaction {
            if t.contains_key("at") {
                return Err("field `transaction.at`: the input's `at` is the transaction's".into());
            }
            // Checked now, so a bad transaction is refused rather than stored.
            t.insert(
                "at".into(),
                serde_json::Value::String("1970-01-01T00:00:00Z".into()),
            );
            let value = serde_json::Value::Object(t);
            regua_sdk::json::from_str::<regua_sdk::Transaction>(&value.to_string(), None)
                .map_err(|e| format!("field `transaction`: {e}"))?;
            What::Transaction(value)
        } else if let Some(i) = raw.inbound {
            What::Inbound(i.channel)
        } else if let Some(c) = raw.consent {
            What::Consent {
                channel: c.channel,
                purpose: c.purpose,
                status: c.status,
            }
        } else {
            let profile = raw.profile.expect("one of them is given");
            for key in profile.keys() {
                if key == "attributes" {
                    return Err("field `profile.attributes`: give attributes as keys of \
                                `profile`"
                        .into());
                }
            }
            What::Profile(profile)
        };
        Ok(Input {
            id: raw.id,
            customer: raw.customer,
            at,
            what,
        })
    }

    /// The name campaigns' `delivery.events` match: an event's name, a transaction's kind, or
    /// `inbound`, `consent`, `profile`.
    pub fn name(&self) -> String {
        match &self.what {
            What::Event { name, .. } => name.clone(),
            What::Transaction(t) => t
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or("transaction")
                .to_owned(),
            What::Inbound(_) => "inbound".into(),
            What::Consent { .. } => "consent".into(),
            What::Profile(_) => "profile".into(),
        }
    }

    /// Applies the input to `record` at `at`, and answers the event the journeys are given.
    pub fn apply(&self, record: &mut Record, at: Timestamp) -> Result<Event, String> {
        let props = match &self.what {
            What::Event { name, props } => {
                let event: Event = regua_sdk::json::from_str(
                    &serde_json::json!({"name": name, "at": at.to_string(), "props": props})
                        .to_string(),
                    None,
                )?;
                record.events.push(event.clone());
                return Ok(event);
            }
            What::Transaction(t) => {
                let mut t = t.clone();
                t["at"] = serde_json::Value::String(at.to_string());
                let tx: regua_sdk::Transaction = regua_sdk::json::from_str(&t.to_string(), None)?;
                match record.transactions.iter_mut().find(|x| x.id == tx.id) {
                    Some(x) => *x = tx,
                    None => record.transactions.push(tx),
                }
                t
            }
            What::Inbound(channel) => {
                record.inbound.push(regua_sdk::Inbound {
                    channel: *channel,
                    at,
                });
                serde_json::json!({ "channel": channel.as_str() })
            }
            What::Consent {
                channel,
                purpose,
                status,
            } => {
                record.consents.entry(*channel).or_default().insert(
                    *purpose,
                    regua_sdk::Consent {
                        status: *status,
                        at,
                    },
                );
                serde_json::json!({
                    "channel": channel.as_str(), "purpose": purpose.as_str(),
                    "status": serde_json::to_value(status).expect("a status is JSON"),
                })
            }
            What::Profile(attrs) => {
                let mut profile = serde_json::to_value(&record.profile).expect("JSON");
                let obj = profile.as_object_mut().expect("a profile is an object");
                for (k, v) in attrs {
                    obj.insert(k.clone(), v.clone());
                }
                record.profile = regua_sdk::json::from_str(&profile.to_string(), None)
                    .map_err(|e| format!("field `profile`: {e}"))?;
                serde_json::Value::Object(attrs.clone())
            }
        };
        regua_sdk::json::from_str(
            &serde_json::json!({"name": self.name(), "at": at.to_string(), "props": props})
                .to_string(),
            None,
        )
    }
}

fn input_id_problem(id: &str) -> Option<String> {
    regua_sdk::record::id_problem(id)
}
