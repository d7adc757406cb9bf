//! Customers whose birthday is today in their own time zone. Someone born on 29 February
//! celebrates on 28 February in common years.

use regua_sdk::prelude::*;

/// The segment.
pub struct BirthdayToday;

impl Segment for BirthdayToday {
    type Params = NoParams;
    const READS: &'static [Field] = &[Field::Profile];

    fn evaluate(c: &Customer, ctx: &Context<'_, NoParams>) -> Result<Match> {
        let Some(birthday) = c.profile().birthday else {
            return Ok(Match::no("no birthday on record"));
        };
        let (zone, source) = c.zone(ctx.default_tz)?;
        let today = ctx.now.local_date(&zone);
        let zone_name = zone.name().unwrap_or("?");
        let mut m = Match::when(
            birthday.is_anniversary_on(today),
            because!("born {birthday}; today is {today} in {zone_name}"),
        );
        if source != ZoneSource::Customer {
            m = m.and(because!(
                "customer has no usable time zone: used the company default {zone_name}"
            ));
        }
        Ok(m)
    }
}

export_segment!(BirthdayToday);

#[cfg(test)]
mod tests {
    use super::*;
    use regua_sdk::testing::{context, customer, evaluate_segment};

    fn eval(json: &str, now: &str) -> Match {
        evaluate_segment::<BirthdayToday>(&customer(json), &context(now, &NoParams {})).unwrap()
    }

    #[test]
    fn today_is_the_customers_today() {
        let c = r#"{"id":"c","tz":"America/Sao_Paulo","profile":{"birthday":"1990-03-11"}}"#;
        // 01:00Z on the 12th is still 22:00 on the 11th in São Paulo.
        assert!(eval(c, "2025-03-12T01:00:00Z").matched);
        assert!(!eval(c, "2025-03-12T03:00:00Z").matched);
        // 02:00Z on the 11th is 23:00 on the 10th there.
        assert!(!eval(c, "2025-03-11T02:00:00Z").matched);
    }

    #[test]
    fn leap_day_birthdays_move_to_28_february_in_common_years() {
        let c = r#"{"id":"c","tz":"America/Recife","profile":{"birthday":"1992-02-29"}}"#;
        assert!(eval(c, "2025-02-28T15:00:00Z").matched);
        assert!(!eval(c, "2025-03-01T15:00:00Z").matched);
        assert!(eval(c, "2028-02-29T15:00:00Z").matched);
        assert!(!eval(c, "2028-02-28T15:00:00Z").matched);
    }

    #[test]
    fn customers_without_a_zone_use_the_company_default_and_say_so() {
        let m = eval(
            r#"{"id":"c","profile":{"birthday":"1990-03-11"}}"#,
            "2025-03-11T12:00:00Z",
        );
        assert!(m.matched);
        assert!(
            m.reasons[1].contains("company default America/Sao_Paulo"),
            "{m:?}"
        );
        assert!(!eval(r#"{"id":"c"}"#, "2025-03-11T12:00:00Z").matched);
    }
}
