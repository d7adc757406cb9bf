//! A rest policy written in code: at most `max` promotional (marketing) messages per business
//! unit per rolling `window`. A message's business unit is its `bu:<unit>` tag, as the contacts
//! of the record carry it. Transactional messages are not concerned.

use regua_sdk::prelude::*;

/// The policy.
pub struct PromoPerUnit;

/// Parameters.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Promotions allowed per unit in the window.
    pub max: usize,
    /// The rolling window.
    pub window: Duration,
    /// The tag prefix that names the unit.
    pub tag_prefix: String,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            max: 1,
            window: Duration::days(7),
            tag_prefix: "bu:".into(),
        }
    }
}

impl RestPolicy for PromoPerUnit {
    type Params = Params;

    fn evaluate(c: &Customer, m: &Message, ctx: &Context<'_, Params>) -> Result<Decision> {
        let p = ctx.params;
        if m.category != Category::Marketing {
            return Ok(Decision::allow());
        }
        let Some(unit) = m.tags.iter().find(|t| t.starts_with(&p.tag_prefix)) else {
            return Ok(
                Decision::allow().note(because!("message has no `{}<unit>` tag", p.tag_prefix))
            );
        };
        let mut sent: Vec<Timestamp> = c
            .contacts()
            .iter()
            .filter(|x| {
                x.category == Category::Marketing && x.counts_toward_caps && x.tags.contains(unit)
            })
            .filter(|x| x.at.within_last(p.window, ctx.now))
            .map(|x| x.at)
            .collect();
        if sent.len() < p.max {
            return Ok(Decision::allow());
        }
        sent.sort();
        let retry = (p.max > 0).then(|| sent[sent.len() - p.max] + p.window);
        Ok(
            Decision::deny("promo-per-unit", "UNIT_PROMO_CAP", retry).note(because!(
                "{} promotion(s) from `{unit}` in the last {}",
                sent.len(),
                p.window
            )),
        )
    }
}

export_rest!(PromoPerUnit);

#[cfg(test)]
mod tests {
    use super::*;
    use regua_sdk::testing::{at, context, customer, evaluate_rest};

    const SENT: &str = r#"{"id":"c","contacts":[
        {"channel":"email","at":"2025-03-08T12:00:00Z","category":"marketing","tags":["bu:benefits"]},
        {"channel":"push","at":"2025-03-10T12:00:00Z","category":"transactional","tags":["bu:card"]}]}"#;

    fn decide(message: &str, now: &str) -> Decision {
        let m: Message = serde_json::from_str(message).unwrap();
        evaluate_rest::<PromoPerUnit>(&customer(SENT), &m, &context(now, &Params::default()))
            .unwrap()
    }

    #[test]
    fn one_promotion_per_unit_per_week() {
        let benefits = r#"{"channel":"push","category":"marketing","tags":["bu:benefits"]}"#;
        let d = decide(benefits, "2025-03-11T12:00:00Z");
        assert_eq!(d.decision, Verdict::Deny);
        assert_eq!(d.retry_after, Some(at("2025-03-15T12:00:00Z")));
        assert_eq!(
            decide(benefits, "2025-03-15T12:00:00Z").decision,
            Verdict::Allow
        );
        // Another unit is free; the transactional card message does not count.
        let card = r#"{"channel":"push","category":"marketing","tags":["bu:card"]}"#;
        assert_eq!(
            decide(card, "2025-03-11T12:00:00Z").decision,
            Verdict::Allow
        );
    }

    #[test]
    fn untagged_and_transactional_messages_pass() {
        let d = decide(
            r#"{"channel":"push","category":"marketing"}"#,
            "2025-03-11T12:00:00Z",
        );
        assert_eq!(d.decision, Verdict::Allow);
        assert_eq!(d.notes.len(), 1);
        let t = r#"{"channel":"push","category":"transactional","tags":["bu:benefits"]}"#;
        assert_eq!(decide(t, "2025-03-11T12:00:00Z").decision, Verdict::Allow);
    }
}
