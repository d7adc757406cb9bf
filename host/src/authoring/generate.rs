//! A deterministic generator of realistic synthetic customers, for examples, benchmarks and load
//! tests: the same seed always gives the same records.
//!
//! Customers are drawn from archetypes seen in the cases behind Régua (champions, lapsed buyers,
//! prospects, new app users who never activated, benefits-card holders who loaded money but
//! never cashed out, cart abandoners, …), with Brazilian names, BRL amounts, several time zones
//! and 0–60 transactions (about 4 KB per customer on average).

use std::collections::BTreeMap;

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use regua_sdk::record::Consents;
use regua_sdk::{
    Category, Channel, Consent, ConsentStatus, Contact, Date, Duration, Event, Inbound,
    JourneyState, JourneyStatus, Profile, Record, Timestamp, Transaction, Value,
};

const FIRST: &[&str] = &[
    "Ana",
    "Bruno",
    "Camila",
    "Diego",
    "Eduarda",
    "Felipe",
    "Gabriela",
    "Henrique",
    "Isabela",
    "João",
    "Larissa",
    "Lucas",
    "Mariana",
    "Matheus",
    "Natália",
    "Otávio",
    "Patrícia",
    "Rafael",
    "Sabrina",
    "Thiago",
    "Vitória",
    "Wesley",
    "Yasmin",
    "Maria",
    "José",
    "Francisca",
    "Antônio",
];
const LAST: &[&str] = &[
    "Silva",
    "Santos",
    "Oliveira",
    "Souza",
    "Rodrigues",
    "Ferreira",
    "Alves",
    "Pereira",
    "Lima",
    "Gomes",
    "Costa",
    "Ribeiro",
    "Martins",
    "Carvalho",
    "Almeida",
    "Lopes",
    "Soares",
    "Araújo",
];
const ZONES: &[(&str, u32)] = &[
    ("America/Sao_Paulo", 60),
    ("America/Manaus", 8),
    ("America/Recife", 8),
    ("America/Bahia", 6),
    ("America/Cuiaba", 4),
    ("America/Rio_Branco", 3),
    ("America/Noronha", 1),
    ("Europe/Lisbon", 2),
    ("America/New_York", 2),
];
const UNITS: &[&str] = &["card", "benefits", "insurance", "travel"];
const CATEGORIES: &[&str] = &[
    "supermercado",
    "restaurante",
    "farmacia",
    "combustivel",
    "vestuario",
    "eletronicos",
    "viagem",
    "servicos",
];
const STAGES: &[&str] = &[
    "lead",
    "onboarding",
    "active",
    "engaged",
    "at_risk",
    "churned",
];
const CAMPAIGNS: &[&str] = &[
    "BRF-2025-014",
    "BRF-2025-022",
    "BRF-2025-031",
    "BRF-2025-040",
    "BEN-2025-007",
    "BEN-2025-012",
];

#[derive(Clone, Copy, Debug)]
enum Archetype {
    Champion,
    Loyal,
    Lapsed,
    Lost,
    Prospect,
    NewAppUser,
    BenefitsHolder,
    CartAbandoner,
    Occasional,
}

const ARCHETYPES: &[(Archetype, u32)] = &[
    (Archetype::Champion, 8),
    (Archetype::Loyal, 14),
    (Archetype::Lapsed, 14),
    (Archetype::Lost, 6),
    (Archetype::Prospect, 10),
    (Archetype::NewAppUser, 14),
    (Archetype::BenefitsHolder, 14),
    (Archetype::CartAbandoner, 8),
    (Archetype::Occasional, 12),
];

fn weighted<'a, T>(rng: &mut ChaCha8Rng, items: &'a [(T, u32)]) -> &'a T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut pick = rng.random_range(0..total);
    for (item, w) in items {
        if pick < *w {
            return item;
        }
        pick -= w;
    }
    &items[0].0
}

/// Generates customers deterministically from `seed`, their histories ending before `now`.
#[derive(Debug)]
pub struct Generator {
    rng: ChaCha8Rng,
    seed: u64,
    now: Timestamp,
    next_id: u64,
    /// Records as of this later instant: what each customer did after `now` added.
    until: Option<Timestamp>,
}

/// The chance, per day after `now`, that a customer of an archetype buys: champions most days,
/// lapsed and lost customers rarely (a win-back campaign has something to measure).
fn daily_purchase(archetype: Archetype) -> f64 {
    match archetype {
        Archetype::Champion => 0.25,
        Archetype::Loyal => 0.08,
        Archetype::Lapsed => 0.015,
        Archetype::Lost => 0.003,
        Archetype::Prospect => 0.004,
        Archetype::NewAppUser => 0.01,
        Archetype::BenefitsHolder => 0.03,
        Archetype::CartAbandoner => 0.03,
        Archetype::Occasional => 0.01,
    }
}

impl Generator {
    /// A generator for histories up to `now`.
    pub fn new(seed: u64, now: Timestamp) -> Self {
        Generator {
            rng: ChaCha8Rng::seed_from_u64(seed),
            seed,
            now,
            next_id: 1,
            until: None,
        }
    }

    /// The same customers as of `until` (after `now`): each history up to `now` is exactly what
    /// [`Generator::new`] gives, and what the customer did in `(now, until]` is added —
    /// purchases at their archetype's pace, a first cash-out, an app activation, logins. This
    /// is "the customers after a campaign" for a readout. The additions come from a stream of
    /// their own per customer, so the histories before `now` do not move.
    pub fn followed_until(mut self, until: Timestamp) -> Self {
        self.until = Some(until);
        self
    }

    /// Adds what customer `n` did in `(now, until]`.
    fn follow_up(&self, c: &mut Record, n: u64, archetype: Archetype, until: Timestamp) {
        let mut rng =
            ChaCha8Rng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xf011);
        let day = Duration::days(1).as_millis();
        let days = (until.as_millis() - self.now.as_millis() + day - 1) / day;
        let when = |rng: &mut ChaCha8Rng, d: i64| {
            let at = self.now.as_millis() + d * day + rng.random_range(1..day);
            (at <= until.as_millis()).then(|| Timestamp::from_seconds(at / 1000))
        };
        let mut cashed_out = c.transactions.iter().any(|t| t.kind == "cashout");
        let benefits = c.transactions.iter().any(|t| t.kind == "cashin");
        let mut activated = c.events.iter().any(|e| e.name == "app_activated");
        let installed = c.events.iter().any(|e| e.name == "app_download");
        for d in 0..days {
            if rng.random_bool(daily_purchase(archetype))
                && let Some(at) = when(&mut rng, d)
            {
                let amount = cents(&mut rng, 15.0, 450.0);
                let category = *CATEGORIES.choose(&mut rng).expect("non-empty");
                let id = format!("{}-f{}", c.id, c.transactions.len());
                c.transactions
                    .push(brl(id, at, "purchase", amount, "card", Some(category)));
            }
            if benefits
                && !cashed_out
                && rng.random_bool(0.04)
                && let Some(at) = when(&mut rng, d)
            {
                let amount = cents(&mut rng, 20.0, 300.0);
                let id = format!("{}-fcout", c.id);
                c.transactions
                    .push(brl(id, at, "cashout", amount, "benefits", None));
                cashed_out = true;
            }
            if installed
                && !activated
                && rng.random_bool(0.05)
                && let Some(at) = when(&mut rng, d)
            {
                c.events.push(event("app_activated", at, Value::Null));
                activated = true;
            }
            if rng.random_bool(0.1)
                && let Some(at) = when(&mut rng, d)
            {
                c.events.push(event("login", at, Value::Null));
            }
        }
        c.transactions.sort_by_key(|t| t.at);
        c.events.sort_by_key(|e| e.at);
    }

    fn ago(&mut self, min: Duration, max: Duration) -> Timestamp {
        let ms = self
            .rng
            .random_range(min.as_millis()..max.as_millis().max(min.as_millis() + 1));
        // Whole seconds, as most source systems write them.
        Timestamp::from_seconds((self.now.as_millis() - ms) / 1000)
    }

    fn amount(&mut self, low: f64, high: f64) -> f64 {
        cents(&mut self.rng, low, high)
    }

    /// The next customer.
    pub fn customer(&mut self) -> Record {
        let n = self.next_id;
        self.next_id += 1;
        let archetype = *weighted(&mut self.rng, ARCHETYPES);
        let first = *FIRST.choose(&mut self.rng).expect("non-empty");
        let last = *LAST.choose(&mut self.rng).expect("non-empty");
        let tz = if self.rng.random_bool(0.08) {
            None
        } else {
            Some((*weighted(&mut self.rng, ZONES)).to_owned())
        };
        let created = self.ago(Duration::days(3), Duration::days(900));
        let birthday = self.birthday();

        let mut units = vec!["card".to_owned()];
        if matches!(archetype, Archetype::BenefitsHolder) || self.rng.random_bool(0.25) {
            units.push("benefits".into());
        }
        if self.rng.random_bool(0.15) {
            units.push((*UNITS.choose(&mut self.rng).expect("non-empty")).to_owned());
            units.dedup();
        }

        let mut c = Record {
            id: format!("cus-{n:07}"),
            tz,
            profile: Profile {
                first_name: Some(first.to_owned()),
                email: Some(format!(
                    "{}.{}{}@exemplo.com.br",
                    ascii(first),
                    ascii(last),
                    n
                )),
                phone: Some(format!(
                    "+55119{:08}",
                    self.rng.random_range(0..100_000_000)
                )),
                birthday: Some(birthday),
                created_at: Some(created),
                business_units: units,
                funnel_stage: Some((*STAGES.choose(&mut self.rng).expect("non-empty")).into()),
                attributes: BTreeMap::from([
                    ("last_name".to_owned(), Value::String(last.to_owned())),
                    (
                        "city".to_owned(),
                        Value::String(
                            (*[
                                "São Paulo",
                                "Recife",
                                "Manaus",
                                "Salvador",
                                "Curitiba",
                                "Belém",
                            ]
                            .choose(&mut self.rng)
                            .expect("non-empty"))
                            .to_owned(),
                        ),
                    ),
                    (
                        "credit_limit".to_owned(),
                        Value::Float(self.amount(500.0, 25_000.0)),
                    ),
                ]),
            },
            consents: self.consents(),
            ..Record::default()
        };
        self.transactions(&mut c, archetype);
        self.events(&mut c, archetype, created);
        self.contacts(&mut c);
        self.journeys(&mut c, created);
        if let Some(until) = self.until {
            self.follow_up(&mut c, n, archetype, until);
        }
        c
    }

    fn birthday(&mut self) -> Date {
        let year = self.rng.random_range(1950..2006);
        // Some leap-day birthdays, to exercise the 28 February rule.
        if self.rng.random_bool(0.01) {
            return Date::parse(&format!(
                "{}-02-29",
                1952 + 4 * self.rng.random_range(0..13)
            ))
            .expect("a leap year");
        }
        // A few birthdays today in the customer's calendar, so the example segment has members.
        let (m, d) = if self.rng.random_bool(0.03) {
            let today = self.now.local_date(&regua_sdk::Zone::utc());
            (today.month(), today.day())
        } else {
            (self.rng.random_range(1..=12), self.rng.random_range(1..=28))
        };
        Date::parse(&format!("{year}-{m:02}-{d:02}")).expect("a valid date")
    }

    fn consents(&mut self) -> Consents {
        let mut out = Consents::new();
        for channel in Channel::ALL {
            if self.rng.random_bool(0.1) {
                continue;
            }
            let status = *[
                ConsentStatus::Granted,
                ConsentStatus::Granted,
                ConsentStatus::Granted,
                ConsentStatus::Granted,
                ConsentStatus::Denied,
                ConsentStatus::Revoked,
            ]
            .choose(&mut self.rng)
            .expect("non-empty");
            let at = self.ago(Duration::days(1), Duration::days(800));
            let mut by_purpose = BTreeMap::new();
            by_purpose.insert(Category::Marketing, Consent { status, at });
            by_purpose.insert(
                Category::Transactional,
                Consent {
                    status: ConsentStatus::Granted,
                    at,
                },
            );
            out.insert(channel, by_purpose);
        }
        out
    }

    fn transactions(&mut self, c: &mut Record, archetype: Archetype) {
        let (count, newest, oldest) = match archetype {
            Archetype::Champion => (self.rng.random_range(12..60), 0, 25),
            Archetype::Loyal => (self.rng.random_range(4..30), 5, 120),
            Archetype::Lapsed => (self.rng.random_range(1..20), 31, 150),
            Archetype::Lost => (self.rng.random_range(1..6), 370, 900),
            Archetype::Prospect | Archetype::NewAppUser => (0, 0, 0),
            Archetype::BenefitsHolder => (self.rng.random_range(0..12), 1, 90),
            Archetype::CartAbandoner => (self.rng.random_range(0..8), 10, 200),
            Archetype::Occasional => (self.rng.random_range(1..6), 20, 400),
        };
        for i in 0..count {
            // The newest purchase sits at `newest` days; the rest spread back to `oldest`.
            let at = if i == 0 {
                self.ago(Duration::days(newest), Duration::days(newest + 3))
            } else {
                self.ago(
                    Duration::days(newest),
                    Duration::days(oldest.max(newest + 1) + 200),
                )
            };
            let refund = self.rng.random_bool(0.04);
            let (low, high) = match archetype {
                Archetype::Champion => (80.0, 900.0),
                _ => (15.0, 450.0),
            };
            let amount = self.amount(low, high);
            let category = *CATEGORIES.choose(&mut self.rng).expect("non-empty");
            let kind = if refund { "refund" } else { "purchase" };
            let id = format!("{}-t{i:02}", c.id);
            c.transactions
                .push(brl(id, at, kind, amount, "card", Some(category)));
        }
        if matches!(archetype, Archetype::BenefitsHolder) {
            for i in 0..self.rng.random_range(1..4) {
                let at = self.ago(Duration::days(2), Duration::days(120));
                let amount = self.amount(200.0, 1200.0);
                let id = format!("{}-cin{i}", c.id);
                let cashin = brl(id, at, "cashin", amount, "benefits", Some("vale-refeicao"));
                c.transactions.push(cashin);
            }
            if self.rng.random_bool(0.4) {
                let at = self.ago(Duration::days(1), Duration::days(30));
                let amount = self.amount(20.0, 300.0);
                let id = format!("{}-cout", c.id);
                c.transactions
                    .push(brl(id, at, "cashout", amount, "benefits", None));
            }
        }
        c.transactions.sort_by_key(|t| t.at);
    }

    fn events(&mut self, c: &mut Record, archetype: Archetype, created: Timestamp) {
        let mut events = vec![event("account_created", created, Value::Null)];
        let installs = !matches!(archetype, Archetype::Prospect) && self.rng.random_bool(0.8);
        if installs {
            let download = created + Duration::hours(self.rng.random_range(1..72));
            if download < self.now {
                let platform = if self.rng.random_bool(0.7) {
                    "android"
                } else {
                    "ios"
                };
                let props = Value::Object(BTreeMap::from([("platform".into(), platform.into())]));
                events.push(event("app_download", download, props));
                let activates =
                    !matches!(archetype, Archetype::NewAppUser) && self.rng.random_bool(0.75);
                if activates {
                    let act = download + Duration::hours(self.rng.random_range(1..60));
                    if act < self.now {
                        events.push(event("app_activated", act, Value::Null));
                    }
                }
            }
        }
        for _ in 0..self.rng.random_range(0..12) {
            let at = self.ago(Duration::hours(1), Duration::days(120));
            if at > created {
                events.push(event("login", at, Value::Null));
            }
        }
        if matches!(archetype, Archetype::CartAbandoner) {
            let at = self.ago(Duration::hours(1), Duration::days(3));
            let value = self.amount(60.0, 1500.0);
            let props = Value::Object(BTreeMap::from([
                ("cart_id".into(), Value::String(format!("cart-{}", c.id))),
                ("value".into(), Value::Float(value)),
            ]));
            events.push(event("cart_abandoned", at, props));
        }
        events.sort_by_key(|e| e.at);
        c.events = events;
        if self.rng.random_bool(0.2) {
            let at = self.ago(Duration::minutes(5), Duration::days(3));
            c.inbound.push(Inbound {
                channel: Channel::Whatsapp,
                at,
            });
        }
    }

    fn contacts(&mut self, c: &mut Record) {
        let mut contacts = Vec::new();
        for _ in 0..self.rng.random_range(0..14) {
            let channel = *Channel::ALL.choose(&mut self.rng).expect("non-empty");
            let at = self.ago(Duration::hours(1), Duration::days(20));
            let transactional = self.rng.random_bool(0.15);
            let unit = *UNITS.choose(&mut self.rng).expect("non-empty");
            let campaign = *CAMPAIGNS.choose(&mut self.rng).expect("non-empty");
            contacts.push(Contact {
                channel,
                at,
                campaign: Some(campaign.into()),
                // Campaigns send approved templates, WhatsApp ones included.
                template: Some(format!("{}-{}", campaign.to_lowercase(), channel.name())),
                category: if transactional {
                    Category::Transactional
                } else {
                    Category::Marketing
                },
                tags: vec![format!("bu:{unit}")],
                counts_toward_caps: !transactional,
            });
        }
        contacts.sort_by_key(|c| c.at);
        c.contacts = contacts;
    }

    fn journeys(&mut self, c: &mut Record, created: Timestamp) {
        if self.rng.random_bool(0.3) && created < self.now - Duration::days(2) {
            let entered = created + Duration::hours(1);
            let done = self.rng.random_bool(0.6);
            c.journeys.push(JourneyState {
                journey: "welcome".into(),
                instance: 1,
                status: if done {
                    JourneyStatus::Completed
                } else {
                    JourneyStatus::Active
                },
                entered_at: entered,
                // The welcome plugin's step ids.
                step: if done { "done" } else { "app" }.into(),
                step_entered_at: entered + Duration::days(1),
                variant: None,
                exit_reason: None,
            });
        }
    }
}

impl Iterator for Generator {
    type Item = Record;
    fn next(&mut self) -> Option<Record> {
        Some(self.customer())
    }
}

fn ascii(name: &str) -> String {
    name.chars()
        .map(|ch| match ch {
            'á' | 'â' | 'ã' | 'à' => 'a',
            'é' | 'ê' => 'e',
            'í' => 'i',
            'ó' | 'ô' | 'õ' => 'o',
            'ú' => 'u',
            'ç' => 'c',
            other => other.to_ascii_lowercase(),
        })
        .collect()
}

/// An amount in `[low, high)`, in whole cents.
fn cents(rng: &mut ChaCha8Rng, low: f64, high: f64) -> f64 {
    (rng.random_range(low..high) * 100.0).round() / 100.0
}

fn event(name: &str, at: Timestamp, props: Value) -> Event {
    Event {
        name: name.into(),
        at,
        props,
    }
}

/// A transaction in reais.
fn brl(
    id: String,
    at: Timestamp,
    kind: &str,
    amount: f64,
    unit: &str,
    category: Option<&str>,
) -> Transaction {
    Transaction {
        id,
        at,
        kind: kind.into(),
        amount,
        currency: "BRL".into(),
        business_unit: Some(unit.into()),
        category: category.map(Into::into),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_customers() {
        let now = Timestamp::parse("2025-03-11T12:00:00Z").unwrap();
        let a: Vec<_> = Generator::new(7, now).take(20).collect();
        let b: Vec<_> = Generator::new(7, now).take(20).collect();
        assert_eq!(a, b);
        let c: Vec<_> = Generator::new(8, now).take(20).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn followed_customers_keep_their_history_and_add_only_later_activity() {
        let now = Timestamp::parse("2025-03-11T12:00:00Z").unwrap();
        let until = Timestamp::parse("2025-03-25T12:00:00Z").unwrap();
        let before: Vec<_> = Generator::new(3, now).take(300).collect();
        let after: Vec<_> = Generator::new(3, now)
            .followed_until(until)
            .take(300)
            .collect();
        let mut added = 0;
        for (b, a) in before.iter().zip(&after) {
            let old_t: Vec<_> = a
                .transactions
                .iter()
                .filter(|t| t.at <= now)
                .cloned()
                .collect();
            let old_e: Vec<_> = a.events.iter().filter(|e| e.at <= now).cloned().collect();
            assert_eq!((&old_t, &old_e), (&b.transactions, &b.events), "{}", b.id);
            assert_eq!((&a.profile, &a.contacts), (&b.profile, &b.contacts));
            let new_t = a.transactions.iter().filter(|t| t.at > now);
            assert!(new_t.clone().all(|t| t.at <= until));
            added += new_t.filter(|t| t.kind == "purchase").count();
        }
        // Some, not everyone: a readout has conversions to count.
        assert!(added > 30 && added < 3000, "{added}");
    }

    #[test]
    fn generated_records_read_back_and_average_a_few_kilobytes() {
        let now = Timestamp::parse("2025-03-11T12:00:00Z").unwrap();
        let mut total = 0;
        for c in Generator::new(1, now).take(500) {
            let line = serde_json::to_string(&c).unwrap();
            total += line.len();
            assert_eq!(crate::pipeline::record::parse_customer(&line).unwrap(), c);
        }
        let avg = total / 500;
        assert!((2000..8000).contains(&avg), "average record is {avg} bytes");
    }
}
