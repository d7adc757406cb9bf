//! The customer as a rule reads it: a [`Customer`] is a view over a [`Record`] that knows which
//! parts the rule declared in `READS`, and refuses any other.
//!
//! A batch reads and hands over only the parts its rules read between them, so a part a rule
//! did not declare would be empty, and an empty list reads as "no purchase" or "no contact":
//! a wrong answer, not an error. Every read therefore goes through an accessor here that checks
//! the declaration first; reading an undeclared part or member panics, naming the part and the
//! rule, at the first such read, whether the rule runs natively in `cargo test` (through
//! [`crate::testing`]) or sandboxed in the host (where the panic is that customer's error).
//!
//! `id` and `tz` are always readable.

use crate::record::{
    Category, Channel, Consent, ConsentStatus, Consents, Contact, Event, Field, Fields, Inbound,
    JourneyState, Profile, Record, Transaction, ZoneSource, format_money, kind,
};
use crate::time::{Timestamp, Zone};
use crate::value::Value;

/// What a rule may read, and the rule's name for the message when it reads more.
#[derive(Clone, Copy, Debug)]
struct Reads {
    fields: Fields,
    rule: &'static str,
}

impl Reads {
    /// Panics unless `field` (a part, or a member of transactions or events) is declared.
    #[track_caller]
    #[inline]
    fn check(self, field: Field) {
        let declared = match field {
            Field::Transactions | Field::Events => self.fields.contains(field),
            other => self.fields.reads(other),
        };
        if !declared {
            self.undeclared(field)
        }
    }

    #[track_caller]
    #[cold]
    fn undeclared(self, field: Field) -> ! {
        panic!(
            "rule `{}` read `{}`, which it does not declare: add `Field::{field:?}` to its READS \
             (a batch hands a rule only the parts it declares)",
            self.rule,
            field.name()
        )
    }
}

/// One customer, as a rule sees it: the record's parts through accessors that check the rule
/// declared them (see the [module](self) documentation).
#[derive(Clone, Copy, Debug)]
pub struct Customer<'a> {
    record: &'a Record,
    reads: Reads,
}

impl<'a> Customer<'a> {
    /// `record` as the rule `rule` (its name, for messages) that declares `reads` sees it. The
    /// export macros and [`crate::testing`] make this; a rule never needs to.
    pub fn reading(record: &'a Record, reads: Fields, rule: &'static str) -> Self {
        Customer {
            record,
            reads: Reads {
                fields: reads,
                rule,
            },
        }
    }

    /// Stable customer id (never the e-mail).
    pub fn id(&self) -> &'a str {
        &self.record.id
    }

    /// The customer's IANA time zone as the record gives it; see [`Customer::zone`].
    pub fn tz(&self) -> Option<&'a str> {
        self.record.tz.as_deref()
    }

    /// The customer's zone, falling back to `default_tz` when the record has none or an unknown
    /// one; the second value says which.
    pub fn zone(&self, default_tz: &str) -> Result<(Zone, ZoneSource), crate::Error> {
        self.record.zone(default_tz)
    }

    /// Attributes (needs [`Field::Profile`]).
    #[track_caller]
    pub fn profile(&self) -> &'a Profile {
        self.reads.check(Field::Profile);
        &self.record.profile
    }

    /// Consents by channel and purpose (needs [`Field::Consents`]).
    #[track_caller]
    pub fn consents(&self) -> &'a Consents {
        self.reads.check(Field::Consents);
        &self.record.consents
    }

    /// Messages the customer sent us (needs [`Field::Inbound`]).
    #[track_caller]
    pub fn inbound(&self) -> &'a [Inbound] {
        self.reads.check(Field::Inbound);
        &self.record.inbound
    }

    /// Messages we sent (needs [`Field::Contacts`]).
    #[track_caller]
    pub fn contacts(&self) -> &'a [Contact] {
        self.reads.check(Field::Contacts);
        &self.record.contacts
    }

    /// Journey instances (needs [`Field::Journeys`]).
    #[track_caller]
    pub fn journeys(&self) -> &'a [JourneyState] {
        self.reads.check(Field::Journeys);
        &self.record.journeys
    }

    /// Money movements (needs some of [`Field::Transactions`]; each member read is checked).
    #[track_caller]
    pub fn transactions(&self) -> Items<'a, Transaction> {
        self.reads.check(Field::Transactions);
        Items::new(&self.record.transactions, self.reads)
    }

    /// Behaviour (needs some of [`Field::Events`]; each member read is checked).
    #[track_caller]
    pub fn events(&self) -> Items<'a, Event> {
        self.reads.check(Field::Events);
        Items::new(&self.record.events, self.reads)
    }

    /// The record's transactions after checking that `members` are declared: for the questions
    /// below, which read those members and nothing else.
    #[track_caller]
    fn transactions_reading(&self, members: &[Field]) -> &'a [Transaction] {
        members.iter().for_each(|m| self.reads.check(*m));
        &self.record.transactions
    }

    /// [`Customer::transactions_reading`] for events.
    #[track_caller]
    pub(crate) fn events_reading(&self, members: &[Field]) -> &'a [Event] {
        members.iter().for_each(|m| self.reads.check(*m));
        &self.record.events
    }

    /// Purchases up to and including `now` (later ones have not happened yet at `now`).
    #[track_caller]
    pub fn purchases(&self, now: Timestamp) -> impl Iterator<Item = TransactionView<'a>> + 'a {
        self.transactions_of(kind::PURCHASE, now)
    }

    /// Transactions of `kind` up to and including `now`.
    #[track_caller]
    pub fn transactions_of(
        &self,
        kind: &'a str,
        now: Timestamp,
    ) -> impl Iterator<Item = TransactionView<'a>> + 'a {
        let reads = self.reads;
        self.transactions_reading(&[Field::TransactionKind, Field::TransactionAt])
            .iter()
            .filter(move |t| t.kind == kind && t.at <= now)
            .map(move |t| TransactionView { t, reads })
    }

    /// The latest purchase up to `now`.
    #[track_caller]
    pub fn last_purchase(&self, now: Timestamp) -> Option<TransactionView<'a>> {
        self.purchases(now).max_by_key(|t| t.t.at)
    }

    /// Events named `name` up to and including `now`.
    #[track_caller]
    pub fn events_named(
        &self,
        name: &'a str,
        now: Timestamp,
    ) -> impl Iterator<Item = EventView<'a>> + 'a {
        let reads = self.reads;
        self.events_reading(&[Field::EventName, Field::EventAt])
            .iter()
            .filter(move |e| e.name == name && e.at <= now)
            .map(move |e| EventView { e, reads })
    }

    /// The earliest event named `name` up to `now`.
    #[track_caller]
    pub fn first_event(&self, name: &str, now: Timestamp) -> Option<EventView<'a>> {
        let reads = self.reads;
        self.events_reading(&[Field::EventName, Field::EventAt])
            .iter()
            .filter(|e| e.name == name && e.at <= now)
            .min_by_key(|e| e.at)
            .map(|e| EventView { e, reads })
    }

    /// The earliest message we sent on one of `channels` up to `now`.
    #[track_caller]
    pub fn first_contact(&self, channels: &[Channel], now: Timestamp) -> Option<&'a Contact> {
        self.contacts()
            .iter()
            .filter(|c| c.at <= now && channels.contains(&c.channel))
            .min_by_key(|c| c.at)
    }

    /// Whether the customer's consent for `purpose` on `channel` is granted at `now`. The record
    /// keeps only the latest decision, so a decision dated after `now` means the state at `now`
    /// is unknown, and unknown is not granted.
    #[track_caller]
    pub fn consent_granted(&self, channel: Channel, purpose: Category, now: Timestamp) -> bool {
        self.consent(channel, purpose)
            .is_some_and(|c| c.status == ConsentStatus::Granted && c.at <= now)
    }

    /// The latest consent decision for `purpose` on `channel`, if any.
    #[track_caller]
    pub fn consent(&self, channel: Channel, purpose: Category) -> Option<&'a Consent> {
        self.consents()
            .get(&channel)
            .and_then(|by_purpose| by_purpose.get(&purpose))
    }

    /// The latest instance of `journey`, if the customer ever entered it.
    #[track_caller]
    pub fn journey(&self, journey: &str) -> Option<&'a JourneyState> {
        self.journeys()
            .iter()
            .filter(|j| j.journey == journey)
            .max_by_key(|j| (j.instance, j.entered_at))
    }

    /// The latest inbound message on `channel` up to `now`.
    #[track_caller]
    pub fn last_inbound(&self, channel: Channel, now: Timestamp) -> Option<&'a Inbound> {
        self.inbound()
            .iter()
            .filter(|i| i.channel == channel && i.at <= now)
            .max_by_key(|i| i.at)
    }
}

/// The transactions or events of a customer, each as a view that checks its members are read.
#[derive(Clone, Debug)]
pub struct Items<'a, T> {
    items: std::slice::Iter<'a, T>,
    reads: Reads,
}

impl<'a, T> Items<'a, T> {
    fn new(items: &'a [T], reads: Reads) -> Self {
        Items {
            items: items.iter(),
            reads,
        }
    }
}

macro_rules! items_of {
    ($item:ty, $view:ident, $field:ident) => {
        impl<'a> Iterator for Items<'a, $item> {
            type Item = $view<'a>;
            fn next(&mut self) -> Option<$view<'a>> {
                let reads = self.reads;
                self.items.next().map(|$field| $view { $field, reads })
            }
            fn size_hint(&self) -> (usize, Option<usize>) {
                self.items.size_hint()
            }
        }

        impl<'a> DoubleEndedIterator for Items<'a, $item> {
            fn next_back(&mut self) -> Option<$view<'a>> {
                let reads = self.reads;
                self.items.next_back().map(|$field| $view { $field, reads })
            }
        }

        impl ExactSizeIterator for Items<'_, $item> {}
    };
}
items_of!(Transaction, TransactionView, t);
items_of!(Event, EventView, e);

/// A money movement, as a rule reads it (each member checked against `READS`).
#[derive(Clone, Copy, Debug)]
pub struct TransactionView<'a> {
    t: &'a Transaction,
    reads: Reads,
}

impl<'a> TransactionView<'a> {
    /// The transaction's id.
    #[track_caller]
    pub fn id(&self) -> &'a str {
        self.reads.check(Field::TransactionId);
        &self.t.id
    }
    /// When it happened.
    #[track_caller]
    pub fn at(&self) -> Timestamp {
        self.reads.check(Field::TransactionAt);
        self.t.at
    }
    /// What it was (see [`kind`]).
    #[track_caller]
    pub fn kind(&self) -> &'a str {
        self.reads.check(Field::TransactionKind);
        &self.t.kind
    }
    /// The amount, in the currency's unit.
    #[track_caller]
    pub fn amount(&self) -> f64 {
        self.reads.check(Field::TransactionAmount);
        self.t.amount
    }
    /// ISO 4217 code, e.g. `BRL`; empty when the record gives none.
    #[track_caller]
    pub fn currency(&self) -> &'a str {
        self.reads.check(Field::TransactionCurrency);
        &self.t.currency
    }
    /// The business unit that booked it.
    #[track_caller]
    pub fn business_unit(&self) -> Option<&'a str> {
        self.reads.check(Field::TransactionBusinessUnit);
        self.t.business_unit.as_deref()
    }
    /// The merchant or product category.
    #[track_caller]
    pub fn category(&self) -> Option<&'a str> {
        self.reads.check(Field::TransactionCategory);
        self.t.category.as_deref()
    }
    /// Whether the amount is in `currency`; a transaction without a currency is taken to be in
    /// the company's, so it counts for any `currency` asked.
    #[track_caller]
    pub fn in_currency(&self, currency: &str) -> bool {
        let own = self.currency();
        own.is_empty() || own == currency
    }
    /// The amount with its currency ([`format_money`]).
    #[track_caller]
    pub fn money(&self) -> String {
        format_money(self.amount(), self.currency())
    }
}

/// Something the customer did, as a rule reads it (each member checked against `READS`).
#[derive(Clone, Copy, Debug)]
pub struct EventView<'a> {
    e: &'a Event,
    reads: Reads,
}

impl<'a> EventView<'a> {
    /// An event given whole, such as the one that triggered a journey evaluation: every member
    /// reads.
    pub fn whole(e: &'a Event) -> Self {
        EventView {
            e,
            reads: Reads {
                fields: Fields::all(),
                rule: "",
            },
        }
    }

    /// The event's name.
    #[track_caller]
    pub fn name(&self) -> &'a str {
        self.reads.check(Field::EventName);
        &self.e.name
    }
    /// When.
    #[track_caller]
    pub fn at(&self) -> Timestamp {
        self.reads.check(Field::EventAt);
        self.e.at
    }
    /// Free-form properties.
    #[track_caller]
    pub fn props(&self) -> &'a Value {
        self.reads.check(Field::EventProps);
        &self.e.props
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::customer;

    const RICH: &str = r#"{"id":"c","profile":{"first_name":"Ana"},"transactions":[
        {"id":"t","at":"2025-01-01T00:00:00Z","kind":"purchase","amount":10}]}"#;

    fn view<'a>(record: &'a Record, reads: &[Field]) -> Customer<'a> {
        Customer::reading(record, Fields::of(reads), "spent")
    }

    fn panic_text(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
        let err = std::panic::catch_unwind(f).expect_err("it should panic");
        err.downcast_ref::<String>().cloned().unwrap_or_default()
    }

    #[test]
    fn a_declared_member_reads_and_an_undeclared_one_names_itself_and_the_rule() {
        let r = customer(RICH);
        let c = view(&r, &[Field::TransactionAmount]);
        assert_eq!(c.transactions().map(|t| t.amount()).sum::<f64>(), 10.0);
        assert_eq!(c.id(), "c");
        let text = panic_text(|| {
            view(&r, &[Field::TransactionAmount])
                .transactions()
                .for_each(|t| {
                    t.at();
                })
        });
        assert!(
            text.contains("rule `spent` read `transactions.at`, which it does not declare"),
            "{text}"
        );
        assert!(text.contains("add `Field::TransactionAt`"), "{text}");
    }

    #[test]
    fn a_whole_part_reads_every_member_and_other_parts_are_refused() {
        let r = customer(RICH);
        let c = view(&r, &[Field::Transactions]);
        let t = c.transactions().next().unwrap();
        assert_eq!((t.id(), t.kind(), t.currency()), ("t", "purchase", ""));
        use std::hint::black_box;
        let zero = crate::Timestamp::from_millis(0);
        type Read<'r> = &'r dyn Fn(Customer<'_>);
        let reads: [(&[Field], Read, &str); 5] = [
            (
                &[],
                &|c| {
                    black_box(c.profile().first_name.clone());
                },
                "profile",
            ),
            (
                &[],
                &|c| {
                    black_box(c.transactions().len());
                },
                "transactions",
            ),
            (
                &[],
                &|c| {
                    black_box(c.last_purchase(zero).is_some());
                },
                "transactions.kind",
            ),
            (
                &[Field::EventAt],
                &|c| {
                    black_box(c.first_event("x", zero).is_some());
                },
                "events.name",
            ),
            (
                &[Field::Profile],
                &|c| {
                    black_box(c.contacts().len());
                },
                "contacts",
            ),
        ];
        for (declared, read, part) in reads {
            let text = panic_text(std::panic::AssertUnwindSafe(|| read(view(&r, declared))));
            assert!(text.contains(&format!("read `{part}`")), "{part}: {text}");
        }
    }
}
