//! First contacted on one of `channels` (WhatsApp or e-mail) at least `hours` (24) ago, and the
//! app is still not activated at `now`. A customer who activated late, after the 24 h, is
//! activated now and so out of the audience: the segment feeds activation nudges.

use regua_sdk::prelude::*;

/// The segment.
pub struct AppNotActivated;

/// Parameters.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Channels whose first message starts the clock.
    pub channels: Vec<Channel>,
    /// Hours the customer has to activate.
    pub hours: i64,
    /// The activation event.
    pub event: String,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            channels: vec![Channel::Whatsapp, Channel::Email],
            hours: 24,
            event: "app_activated".into(),
        }
    }
}

impl Segment for AppNotActivated {
    type Params = Params;
    const READS: &'static [Field] = &[Field::EventName, Field::EventAt, Field::Contacts];

    fn evaluate(c: &Customer, ctx: &Context<'_, Params>) -> Result<Match> {
        let p = ctx.params;
        if let Some(e) = c.first_event(&p.event, ctx.now) {
            return Ok(Match::no(because!("app activated at {}", e.at())));
        }
        let Some(first) = c.first_contact(&p.channels, ctx.now) else {
            return Ok(Match::no("never contacted on those channels"));
        };
        let deadline = first.at + Duration::hours(p.hours);
        Ok(Match::when(
            ctx.now >= deadline,
            because!(
                "first contact by {} at {}; not activated{}",
                first.channel,
                first.at,
                if ctx.now >= deadline {
                    format!(" {} h later", p.hours)
                } else {
                    format!(", {} h not yet passed", p.hours)
                }
            ),
        ))
    }
}

export_segment!(AppNotActivated);

#[cfg(test)]
mod tests {
    use super::*;
    use regua_sdk::testing::{context, customer, evaluate_segment};

    const FIRST_WA: &str = r#"{"id":"c","contacts":[
        {"channel":"push","at":"2025-03-09T10:00:00Z","category":"marketing"},
        {"channel":"whatsapp","at":"2025-03-10T12:00:00Z","category":"marketing"}]}"#;

    fn eval(json: &str, now: &str) -> Match {
        evaluate_segment::<AppNotActivated>(&customer(json), &context(now, &Params::default()))
            .unwrap()
    }

    #[test]
    fn the_24_hours_count_from_the_first_whatsapp_or_email() {
        assert!(!eval(FIRST_WA, "2025-03-11T11:59:59Z").matched);
        assert!(eval(FIRST_WA, "2025-03-11T12:00:00Z").matched);
    }

    #[test]
    fn activation_takes_the_customer_out() {
        let activated = FIRST_WA.replace(
            r#""contacts""#,
            r#""events":[{"name":"app_activated","at":"2025-03-10T20:00:00Z"}],"contacts""#,
        );
        assert!(!eval(&activated, "2025-03-12T12:00:00Z").matched);
        // An activation after `now` has not happened yet at `now`.
        assert!(
            eval(
                &activated.replace("2025-03-10T20", "2025-03-13T20"),
                "2025-03-12T12:00:00Z"
            )
            .matched
        );
    }

    #[test]
    fn customers_never_contacted_are_out() {
        assert!(!eval(r#"{"id":"c"}"#, "2025-03-12T12:00:00Z").matched);
    }
}
