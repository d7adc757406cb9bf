//! The inputs of the journey runtime: what happened to a customer, with an id and an instant,
//! and how each one changes the customer's record (docs/RUNTIME.md).

use regua_sdk::{
    Category, Channel, Consent, ConsentStatus, Event, Inbound, Profile, Record, Timestamp,
    Transaction, Value,
};
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

/// What an input says happened, read and checked once when the input is parsed.
#[derive(Clone, Debug, PartialEq)]
pub enum What {
    /// A behaviour event, added to `events`.
    Event {
        /// Its name.
        name: String,
        /// Its properties.
        props: Value,
    },
    /// A transaction, added to `transactions` (replacing one with the same id); its `at` is
    /// the input's.
    Transaction(Transaction),
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
    at: Option<Timestamp>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    props: Option<Value>,
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

impl Input {
    /// Parses one input (a JSON object); the error names the field and what is wrong.
    pub fn parse(text: &str) -> Result<Input, String> {
        let raw: Raw = regua_sdk::json::from_str(text, None)?;
        for (field, id) in [("id", &raw.id), ("customer", &raw.customer)] {
            if let Some(p) = regua_sdk::record::id_problem(id) {
                return Err(format!("field `{field}` {p}"));
            }
        }
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
            let props = raw.props.unwrap_or(Value::Object(Default::default()));
            if !matches!(props, Value::Object(_)) {
                return Err("field `props`: expected an object".into());
            }
            What::Event { name, props }
        } else if let Some(mut t) = raw.transaction {
            if t.contains_key("at") {
                return Err("field `transaction.at`: the input's `at` is the transaction's".into());
            }
            // Read with a stand-in instant, replaced by the input's when it is applied.
            t.insert("at".into(), "1970-01-01T00:00:00Z".into());
            let text = serde_json::Value::Object(t).to_string();
            What::Transaction(regua_sdk::json::from_str(&text, Some("transaction"))?)
        } else if let Some(i) = raw.inbound {
            What::Inbound(i.channel)
        } else if let Some(c) = raw.consent {
            What::Consent {
                channel: c.channel,
                purpose: c.purpose,
                status: c.status,
            }
        } else {
            let attrs = raw.profile.expect("one of them is given");
            // Checked now, so a bad attribute is refused rather than stored.
            set_profile(&Profile::default(), &attrs)?;
            What::Profile(attrs)
        };
        Ok(Input {
            id: raw.id,
            customer: raw.customer,
            at: raw.at,
            what,
        })
    }

    /// The name campaigns' `delivery.events` match: an event's name, a transaction's kind, or
    /// `inbound`, `consent`, `profile`.
    pub fn name(&self) -> &str {
        match &self.what {
            What::Event { name, .. } => name,
            What::Transaction(t) => &t.kind,
            What::Inbound(_) => "inbound",
            What::Consent { .. } => "consent",
            What::Profile(_) => "profile",
        }
    }

    /// Applies the input to `record` at `at`, and answers the event the journeys are given:
    /// the event itself, or one named as [`Input::name`] whose props are what the input says.
    pub fn apply(&self, record: &mut Record, at: Timestamp) -> Event {
        let props = match &self.what {
            What::Event { name, props } => {
                let event = Event {
                    name: name.clone(),
                    at,
                    props: props.clone(),
                };
                record.events.push(event.clone());
                return event;
            }
            What::Transaction(t) => {
                let t = Transaction { at, ..t.clone() };
                let props = to_value(&t);
                match record.transactions.iter_mut().find(|x| x.id == t.id) {
                    Some(x) => *x = t,
                    None => record.transactions.push(t),
                }
                props
            }
            What::Inbound(channel) => {
                record.inbound.push(Inbound {
                    channel: *channel,
                    at,
                });
                to_value(&serde_json::json!({ "channel": channel }))
            }
            What::Consent {
                channel,
                purpose,
                status,
            } => {
                let consent = Consent {
                    status: *status,
                    at,
                };
                record
                    .consents
                    .entry(*channel)
                    .or_default()
                    .insert(*purpose, consent);
                to_value(&serde_json::json!({"channel": channel, "purpose": purpose,
                    "status": status}))
            }
            What::Profile(attrs) => {
                record.profile =
                    set_profile(&record.profile, attrs).expect("checked when the input was read");
                to_value(attrs)
            }
        };
        Event {
            name: self.name().to_owned(),
            at,
            props,
        }
    }
}

/// `profile` with `attrs` set over it, key by key (a conventional key must have its type).
pub fn set_profile(
    profile: &Profile,
    attrs: &serde_json::Map<String, serde_json::Value>,
) -> Result<Profile, String> {
    let mut merged = serde_json::to_value(profile).expect("a profile is JSON");
    let obj = merged.as_object_mut().expect("a profile is an object");
    for (k, v) in attrs {
        obj.insert(k.clone(), v.clone());
    }
    regua_sdk::json::from_str(&merged.to_string(), Some("profile"))
}

fn to_value(v: &impl serde::Serialize) -> Value {
    serde_json::from_value(serde_json::to_value(v).expect("JSON")).expect("JSON is a value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        Input::parse(text).unwrap_err()
    }

    #[test]
    fn errors_name_the_field() {
        let e = error(r#"{"id":"i","customer":"c","nam":"login"}"#);
        assert!(e.contains("`nam`"), "{e}");
        let e = error(
            r#"{"id":"i","customer":"c","transaction":{"id":"t","kind":"purchase","amount":"ten"}}"#,
        );
        assert!(e.contains("`transaction.amount`"), "{e}");
        let e = error(r#"{"id":"i","customer":"c","at":"yesterday","name":"login"}"#);
        assert!(e.contains("`at`"), "{e}");
        let e = error(r#"{"id":"i","customer":"c","profile":{"birthday":"31/02"}}"#);
        assert!(e.contains("`profile.birthday`"), "{e}");
        let e = error(r#"{"id":"","customer":"c","name":"login"}"#);
        assert!(e.contains("`id`"), "{e}");
        let e = error(r#"{"id":"i","customer":"c","name":"login","inbound":{"channel":"sms"}}"#);
        assert!(e.contains("exactly one of"), "{e}");
    }

    #[test]
    fn a_transaction_takes_the_input_instant_and_replaces_its_id() {
        let at = Timestamp::parse("2025-03-12T10:00:00Z").unwrap();
        let text =
            r#"{"id":"i","customer":"c","transaction":{"id":"t","kind":"purchase","amount":10}}"#;
        let input = Input::parse(text).unwrap();
        let mut record = Record::default();
        let event = input.apply(&mut record, at);
        input.apply(&mut record, at);
        assert_eq!(record.transactions.len(), 1, "one transaction per id");
        assert_eq!(record.transactions[0].at, at);
        assert_eq!((event.name.as_str(), event.at), ("purchase", at));
        assert_eq!(
            event.props.get("amount").and_then(Value::as_f64),
            Some(10.0)
        );
    }
}
