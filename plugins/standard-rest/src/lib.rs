//! The standard channel-rest policy, configured entirely by parameters. It expresses every rule
//! type of the domain reference: frequency caps (rolling or calendar-day windows, scoped to
//! channels, tags or a category), minimum gaps between channels, quiet hours in the customer's
//! zone, consent, the WhatsApp 24-hour session and the control group.
//!
//! Combining: all rules apply; deny beats defer beats allow; of several defers the latest `until`
//! wins, and the rules are evaluated again at that time until the answer stops changing, up to
//! `horizon`, past which the answer is deny. Transactional messages are exempt from caps, gaps
//! and quiet hours, never from consent.

use regua_sdk::prelude::*;

/// The policy.
pub struct StandardRest;

/// Channels a rule applies to: `"any"` or a list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged, expecting = "\"any\" or a list of channels")]
pub enum Scope {
    /// Every channel.
    Any(AnyChannel),
    /// These channels.
    Only(Vec<Channel>),
}

/// The word `any`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnyChannel {
    /// Every channel.
    Any,
}

impl Scope {
    fn has(&self, channel: Channel) -> bool {
        match self {
            Scope::Any(_) => true,
            Scope::Only(list) => list.contains(&channel),
        }
    }
}

fn any_channel() -> Scope {
    Scope::Any(AnyChannel::Any)
}

/// One rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// At most `max` counted messages in `window`, among messages in scope.
    Cap {
        /// Rule id, reported in decisions.
        id: String,
        /// Channels in scope.
        #[serde(default = "any_channel")]
        channels: Scope,
        /// Only messages with one of these tags are in scope.
        #[serde(default)]
        tags: Option<Vec<String>>,
        /// Only messages of this category are in scope.
        #[serde(default)]
        category: Option<Category>,
        /// Messages allowed in the window.
        max: u32,
        /// `{"rolling":"24h"}` or `{"calendar_days":1}`.
        window: Window,
    },
    /// No message on `target` channels until `gap` after the last message on `after` channels.
    MinGap {
        /// Rule id.
        id: String,
        /// Source channels.
        after: Vec<Channel>,
        /// Target channels.
        target: Vec<Channel>,
        /// The gap.
        gap: Duration,
    },
    /// No message in the local-time window `[start, end)`.
    QuietHours {
        /// Rule id.
        id: String,
        /// `HH:MM` local.
        start: String,
        /// `HH:MM` local.
        end: String,
        /// Channels in scope.
        #[serde(default = "any_channel")]
        channels: Scope,
    },
    /// Deny unless the channel's consent for the message's purpose is granted.
    Consent {
        /// Rule id.
        id: String,
    },
    /// Free-form WhatsApp messages only within 24 h of the customer's last inbound message.
    WhatsappSession {
        /// Rule id.
        id: String,
    },
    /// Customers whose bucket is in `[from, to)` get no marketing message.
    ControlGroup {
        /// Rule id.
        id: String,
        /// `[from, to)` within 0–10000.
        buckets: [u16; 2],
        /// The bucket key (default: `global-control`).
        #[serde(default = "control_key")]
        key: String,
    },
}

fn control_key() -> String {
    "global-control".into()
}

/// Parameters.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The zone for customers without a usable one (default: the company default of the call).
    pub default_tz: Option<String>,
    /// How far ahead a deferral may go before the answer becomes deny.
    pub horizon: Duration,
    /// The rules.
    pub rules: Vec<Rule>,
}

impl Default for Params {
    /// The policy of the briefing: 3 pushes a rolling day, 1 message a calendar day, 48 h between
    /// an e-mail and an SMS, quiet 22:00–08:00, consent, WhatsApp session, a 5 % control group.
    fn default() -> Self {
        // Written out in Rust, not read from JSON: a plugin carries no JSON parser
        // (`the_defaults_are_the_briefings_policy` holds it to the policy's JSON).
        let id = |s: &str| s.to_owned();
        Params {
            default_tz: Some(id("America/Sao_Paulo")),
            horizon: Duration::days(7),
            rules: vec![
                Rule::Cap {
                    id: id("push-3-24h"),
                    channels: Scope::Only(vec![Channel::Push]),
                    tags: None,
                    category: None,
                    max: 3,
                    window: Window::Rolling(Duration::hours(24)),
                },
                Rule::Cap {
                    id: id("one-a-day"),
                    channels: any_channel(),
                    tags: None,
                    category: None,
                    max: 1,
                    window: Window::CalendarDays(1),
                },
                Rule::MinGap {
                    id: id("email-sms-48h"),
                    after: vec![Channel::Email],
                    target: vec![Channel::Sms],
                    gap: Duration::hours(48),
                },
                Rule::QuietHours {
                    id: id("night"),
                    start: id("22:00"),
                    end: id("08:00"),
                    channels: any_channel(),
                },
                Rule::Consent { id: id("consent") },
                Rule::WhatsappSession { id: id("wa") },
                Rule::ControlGroup {
                    id: id("holdout"),
                    buckets: [9500, 10000],
                    key: control_key(),
                },
            ],
        }
    }
}

struct Env<'a> {
    c: &'a Customer<'a>,
    m: &'a Message,
    zone: Zone,
}

impl Env<'_> {
    fn counted(&self) -> impl Iterator<Item = &regua_sdk::Contact> {
        self.c.contacts().iter().filter(|x| x.counts_toward_caps)
    }
}

impl Rule {
    fn id(&self) -> &str {
        match self {
            Rule::Cap { id, .. }
            | Rule::MinGap { id, .. }
            | Rule::QuietHours { id, .. }
            | Rule::Consent { id }
            | Rule::WhatsappSession { id }
            | Rule::ControlGroup { id, .. } => id,
        }
    }

    /// This rule's answer at instant `t`.
    fn check(&self, env: &Env<'_>, t: Timestamp) -> Result<Decision> {
        let (c, m) = (env.c, env.m);
        let transactional = m.category == Category::Transactional;
        Ok(match self {
            Rule::Consent { id } => {
                if c.consent_granted(m.channel, m.category, t) {
                    Decision::allow()
                } else {
                    Decision::deny(id, "NO_CONSENT", None)
                }
            }
            Rule::WhatsappSession { id } => {
                if m.channel != Channel::Whatsapp || m.template.is_some() {
                    return Ok(Decision::allow());
                }
                match c.last_inbound(Channel::Whatsapp, t) {
                    Some(i) if t < i.at + Duration::hours(24) => Decision::allow(),
                    _ => Decision::deny(id, "NO_WHATSAPP_SESSION", None),
                }
            }
            Rule::ControlGroup { id, buckets, key } => {
                let b = ab::bucket(key, c.id());
                if !transactional && buckets[0] <= b && b < buckets[1] {
                    Decision::deny(id, "CONTROL_GROUP", None)
                } else {
                    Decision::allow()
                }
            }
            _ if transactional => Decision::allow(),
            Rule::Cap {
                id,
                channels,
                tags,
                category,
                max,
                window,
            } => {
                let tagged = |ts: &[String]| {
                    tags.as_ref()
                        .is_none_or(|want| want.iter().any(|w| ts.contains(w)))
                };
                let in_scope = channels.has(m.channel)
                    && tagged(&m.tags)
                    && category.is_none_or(|k| k == m.category);
                if !in_scope {
                    return Ok(Decision::allow());
                }
                let mut times: Vec<Timestamp> = env
                    .counted()
                    .filter(|x| {
                        channels.has(x.channel)
                            && tagged(&x.tags)
                            && category.is_none_or(|k| k == x.category)
                    })
                    .filter(|x| window.contains(x.at, t, &env.zone))
                    .map(|x| x.at)
                    .collect();
                if times.len() < *max as usize {
                    return Ok(Decision::allow());
                }
                times.sort();
                Decision::deny(
                    id,
                    "CAP_REACHED",
                    retry_after(&times, *max, *window, t, &env.zone),
                )
            }
            Rule::MinGap {
                id,
                after,
                target,
                gap,
            } => {
                if !target.contains(&m.channel) {
                    return Ok(Decision::allow());
                }
                let last = env
                    .counted()
                    .filter(|x| x.at <= t && after.contains(&x.channel))
                    .map(|x| x.at)
                    .max();
                match last {
                    Some(last) if t < last + *gap => Decision::defer(id, "MIN_GAP", last + *gap),
                    _ => Decision::allow(),
                }
            }
            Rule::QuietHours {
                id,
                start,
                end,
                channels,
            } => {
                if !channels.has(m.channel) {
                    return Ok(Decision::allow());
                }
                let quiet = QuietHours::parse(start, end)
                    .map_err(|e| Error::new(format!("rule `{id}`: {e}")))?;
                match quiet.until(t, &env.zone) {
                    Some(until) => Decision::defer(id, "QUIET_HOURS", until),
                    None => Decision::allow(),
                }
            }
        })
    }
}

/// When enough counted messages will have left the window for one more to fit.
fn retry_after(
    sorted: &[Timestamp],
    max: u32,
    window: Window,
    now: Timestamp,
    zone: &Zone,
) -> Option<Timestamp> {
    if max == 0 {
        return None;
    }
    let excess = sorted.len() + 1 - max as usize; // messages that must leave
    match window {
        Window::Rolling(d) => Some(sorted[excess - 1] + d),
        Window::CalendarDays(n) => {
            let today = now.local_date(zone);
            (1..=i64::from(n) + 1).find_map(|j| {
                let day = today
                    .checked_add(regua_sdk::time::Span::new().days(j))
                    .ok()?;
                let boundary = zone.start_of_day(day);
                let left = sorted
                    .iter()
                    .filter(|x| window.contains(**x, boundary, zone))
                    .count();
                (left < max as usize).then_some(boundary)
            })
        }
    }
}

fn decide_at(rules: &[Rule], env: &Env<'_>, t: Timestamp) -> Result<Decision> {
    let mut d = Decision::allow();
    for rule in rules {
        d = d.combine(rule.check(env, t)?);
    }
    Ok(d)
}

impl RestPolicy for StandardRest {
    type Params = Params;

    fn evaluate(c: &Customer, m: &Message, ctx: &Context<'_, Params>) -> Result<Decision> {
        let p = ctx.params;
        let mut ids = std::collections::BTreeSet::new();
        if let Some(dup) = p.rules.iter().find(|r| !ids.insert(r.id())) {
            return Err(Error::new(format!("two rules have the id `{}`", dup.id())));
        }
        let default_tz = p.default_tz.as_deref().unwrap_or(ctx.default_tz);
        let (zone, source) = c.zone(default_tz)?;
        let env = Env { c, m, zone };
        let mut decision = decide_at(&p.rules, &env, ctx.now)?;
        // A deferral is checked again at its `until`, until the answer stops changing.
        for _ in 0..32 {
            let Some(until) = decision
                .until
                .filter(|_| decision.decision == Verdict::Defer)
            else {
                break;
            };
            if until > ctx.now + p.horizon {
                decision = Decision::deny("horizon", "NO_SLOT_WITHIN_HORIZON", None).note(
                    because!("deferred past the {} horizon, to {until}", p.horizon),
                );
                break;
            }
            let again = decide_at(&p.rules, &env, until)?;
            match again.decision {
                Verdict::Allow => break,
                Verdict::Defer => decision = again,
                Verdict::Deny => {
                    decision = again;
                    break;
                }
            }
        }
        match source {
            ZoneSource::Customer => {}
            ZoneSource::DefaultMissing => {
                decision = decision.note(because!("customer has no time zone: used {default_tz}"))
            }
            ZoneSource::DefaultUnknown => {
                decision = decision.note(because!(
                    "customer time zone `{}` is unknown: used {default_tz}",
                    c.tz().unwrap_or_default()
                ))
            }
        }
        Ok(decision)
    }
}

export_rest!(StandardRest);

#[cfg(test)]
mod tests {
    use super::*;
    use regua_sdk::testing::evaluate_rest;

    #[test]
    fn the_default_policy_is_the_briefing_example() {
        let p = Params::default();
        assert_eq!(p.rules.len(), 7);
        assert_eq!(p.horizon, Duration::days(7));
    }

    #[test]
    fn duplicate_rule_ids_are_errors() {
        let p: Params = regua_sdk::testing::params(
            r#"{"rules":[{"id":"x","type":"consent"},{"id":"x","type":"whatsapp_session"}]}"#,
        );
        let c = regua_sdk::testing::customer(r#"{"id":"c"}"#);
        let m: Message =
            serde_json::from_str(r#"{"channel":"sms","category":"marketing"}"#).unwrap();
        let err = evaluate_rest::<StandardRest>(
            &c,
            &m,
            &regua_sdk::testing::context("2025-03-11T12:00:00Z", &p),
        )
        .unwrap_err();
        assert!(err.message().contains("`x`"), "{err}");
    }

    #[test]
    fn the_defaults_are_the_briefings_policy() {
        let briefing: Params = regua_sdk::guest::parse_params(
            r#"{"default_tz":"America/Sao_Paulo","horizon":"7d","rules":[
            {"id":"push-3-24h","type":"cap","channels":["push"],"max":3,"window":{"rolling":"24h"}},
            {"id":"one-a-day","type":"cap","channels":"any","max":1,"window":{"calendar_days":1}},
            {"id":"email-sms-48h","type":"min_gap","after":["email"],"target":["sms"],"gap":"48h"},
            {"id":"night","type":"quiet_hours","start":"22:00","end":"08:00"},
            {"id":"consent","type":"consent"},
            {"id":"wa","type":"whatsapp_session"},
            {"id":"holdout","type":"control_group","buckets":[9500,10000]}]}"#,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(Params::default()).unwrap(),
            serde_json::to_value(briefing).unwrap()
        );
    }

    #[test]
    fn unknown_rule_types_and_fields_are_errors() {
        let e = regua_sdk::guest::parse_params::<Params>(r#"{"rules":[{"id":"x","type":"cap","channels":"any","max":1,"window":{"rolling":"1d"},"maxx":2}]}"#).unwrap_err();
        assert!(e.message().contains("maxx"), "{e}");
        let e = regua_sdk::guest::parse_params::<Params>(
            r#"{"rules":[{"id":"x","type":"frequency"}]}"#,
        )
        .unwrap_err();
        assert!(e.message().contains("frequency"), "{e}");
    }
}

#[cfg(test)]
mod control_group {
    use super::*;
    use regua_sdk::testing::{context, customer, evaluate_rest, params};

    #[test]
    fn holdout_customers_get_no_marketing_but_do_get_transactional() {
        let p: Params =
            params(r#"{"rules":[{"id":"holdout","type":"control_group","buckets":[9500,10000]}]}"#);
        let held = (0..10_000)
            .map(|i| format!("cus-{i}"))
            .find(|id| ab::bucket("global-control", id) >= 9500)
            .expect("some customer falls in the control group");
        let free = (0..10_000)
            .map(|i| format!("cus-{i}"))
            .find(|id| ab::bucket("global-control", id) < 9500)
            .expect("some customer does not");
        let ctx = context("2025-03-11T15:00:00Z", &p);
        let marketing: Message =
            serde_json::from_str(r#"{"channel":"email","category":"marketing"}"#).unwrap();
        let receipt: Message =
            serde_json::from_str(r#"{"channel":"email","category":"transactional"}"#).unwrap();
        let c = |id: &str| customer(&format!(r#"{{"id":"{id}"}}"#));
        let d = evaluate_rest::<StandardRest>(&c(&held), &marketing, &ctx).unwrap();
        assert_eq!(
            (d.decision, d.reason.as_deref()),
            (Verdict::Deny, Some("CONTROL_GROUP"))
        );
        assert_eq!(
            evaluate_rest::<StandardRest>(&c(&held), &receipt, &ctx)
                .unwrap()
                .decision,
            Verdict::Allow
        );
        assert_eq!(
            evaluate_rest::<StandardRest>(&c(&free), &marketing, &ctx)
                .unwrap()
                .decision,
            Verdict::Allow
        );
    }
}
