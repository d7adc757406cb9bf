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
    JourneyState, Profile, ZoneSource, format_money, kind,
};
use crate::time::{Timestamp, Zone};
use crate::value::Value;
use crate::wire::{self, RecordView};

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
        // Reads made for the rule by the SDK's journey mechanics, named so the rule's author
        // knows where the read comes from and can declare them all at once.
        let sequence = if crate::journey::READS.contains(&field) {
            "; a journey built on `journey::Sequence` reads every field of \
             `regua_sdk::journey::READS` (journeys, events' names and times, transactions' times \
             and kinds): declare them all"
        } else {
            ""
        };
        panic!(
            "rule `{}` read `{}`, which it does not declare: add `Field::{field:?}` to its READS \
             (a batch hands a rule only the parts it declares){sequence}",
            self.rule,
            field.name()
        )
    }
}

/// One customer, as a rule sees it: the record's parts through accessors that check the rule
/// declared them (see the [module](self) documentation), read in place from the bytes the host
/// wrote.
#[derive(Clone, Copy, Debug)]
pub struct Customer<'a> {
    record: &'a RecordView<'a>,
    reads: Reads,
}

impl<'a> Customer<'a> {
    /// `record` as the rule `rule` (its name, for messages) that declares `reads` sees it. The
    /// export macros and [`crate::testing`] make this; a rule never needs to.
    pub fn reading(record: &'a RecordView<'a>, reads: Fields, rule: &'static str) -> Self {
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
        self.record.id
    }

    /// The customer's IANA time zone as the record gives it; see [`Customer::zone`].
    pub fn tz(&self) -> Option<&'a str> {
        self.record.tz
    }

    /// The customer's zone, falling back to `default_tz` when the record has none or an unknown
    /// one; the second value says which.
    pub fn zone(&self, default_tz: &str) -> Result<(Zone, ZoneSource), crate::Error> {
        crate::record::zone_of(self.record.tz, default_tz)
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
    pub fn transactions(&self) -> Transactions<'a> {
        self.reads.check(Field::Transactions);
        Transactions::new(&self.record.transactions, self.reads)
    }

    /// Behaviour (needs some of [`Field::Events`]; each member read is checked).
    #[track_caller]
    pub fn events(&self) -> Events<'a> {
        self.reads.check(Field::Events);
        Events::new(&self.record.events, self.reads)
    }

    /// The record's transactions after checking that `members` are declared: for the questions
    /// below, which read those members and nothing else.
    #[track_caller]
    fn transactions_reading(&self, members: &[Field]) -> Transactions<'a> {
        members.iter().for_each(|m| self.reads.check(*m));
        Transactions::new(&self.record.transactions, self.reads)
    }

    /// [`Customer::transactions_reading`] for events.
    #[track_caller]
    pub(crate) fn events_reading(&self, members: &[Field]) -> Events<'a> {
        members.iter().for_each(|m| self.reads.check(*m));
        Events::new(&self.record.events, self.reads)
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
        self.transactions_reading(&[Field::TransactionKind, Field::TransactionAt])
            .filter(move |t| t.kind() == kind && t.at() <= now)
    }

    /// The latest purchase up to `now`.
    #[track_caller]
    pub fn last_purchase(&self, now: Timestamp) -> Option<TransactionView<'a>> {
        self.purchases(now).max_by_key(|t| t.at())
    }

    /// Events named `name` up to and including `now`.
    #[track_caller]
    pub fn events_named(
        &self,
        name: &'a str,
        now: Timestamp,
    ) -> impl Iterator<Item = EventView<'a>> + 'a {
        self.events_reading(&[Field::EventName, Field::EventAt])
            .filter(move |e| e.name() == name && e.at() <= now)
    }

    /// The earliest event named `name` up to `now`.
    #[track_caller]
    pub fn first_event(&self, name: &str, now: Timestamp) -> Option<EventView<'a>> {
        self.events_reading(&[Field::EventName, Field::EventAt])
            .filter(|e| e.name() == name && e.at() <= now)
            .min_by_key(|e| e.at())
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

/// A customer's transactions, each as a view that checks its members are read.
#[derive(Clone, Debug)]
pub struct Transactions<'a> {
    cols: &'a wire::Transactions<'a>,
    range: std::ops::Range<usize>,
    reads: Reads,
}

/// A customer's events, each as a view that checks its members are read.
#[derive(Clone, Debug)]
pub struct Events<'a> {
    cols: &'a wire::Events<'a>,
    range: std::ops::Range<usize>,
    reads: Reads,
}

macro_rules! items_of {
    ($items:ident, $view:ident, $make:expr) => {
        impl<'a> $items<'a> {
            fn new(cols: &'a wire::$items<'a>, reads: Reads) -> Self {
                $items {
                    cols,
                    range: 0..cols.len(),
                    reads,
                }
            }
        }

        impl<'a> Iterator for $items<'a> {
            type Item = $view<'a>;
            fn next(&mut self) -> Option<$view<'a>> {
                let i = self.range.next()?;
                Some(($make)(self.cols, i, self.reads))
            }
            fn size_hint(&self) -> (usize, Option<usize>) {
                self.range.size_hint()
            }
        }

        impl<'a> DoubleEndedIterator for $items<'a> {
            fn next_back(&mut self) -> Option<$view<'a>> {
                let i = self.range.next_back()?;
                Some(($make)(self.cols, i, self.reads))
            }
        }

        impl ExactSizeIterator for $items<'_> {}
    };
}
items_of!(Transactions, TransactionView, |cols, i, reads| {
    TransactionView { cols, i, reads }
});
items_of!(Events, EventView, |cols, i, reads| EventView {
    of: Of::Column(cols, i),
    reads
});

/// A money movement, as a rule reads it (each member checked against `READS`), read in place.
#[derive(Clone, Copy, Debug)]
pub struct TransactionView<'a> {
    cols: &'a wire::Transactions<'a>,
    i: usize,
    reads: Reads,
}

impl<'a> TransactionView<'a> {
    /// The transaction's id.
    #[track_caller]
    pub fn id(&self) -> &'a str {
        self.reads.check(Field::TransactionId);
        self.cols.id(self.i)
    }
    /// When it happened.
    #[track_caller]
    pub fn at(&self) -> Timestamp {
        self.reads.check(Field::TransactionAt);
        self.cols.at(self.i)
    }
    /// What it was (see [`kind`]).
    #[track_caller]
    pub fn kind(&self) -> &'a str {
        self.reads.check(Field::TransactionKind);
        self.cols.kind(self.i)
    }
    /// The amount, in the currency's unit.
    #[track_caller]
    pub fn amount(&self) -> f64 {
        self.reads.check(Field::TransactionAmount);
        self.cols.amount(self.i)
    }
    /// ISO 4217 code, e.g. `BRL`; empty when the record gives none.
    #[track_caller]
    pub fn currency(&self) -> &'a str {
        self.reads.check(Field::TransactionCurrency);
        self.cols.currency(self.i)
    }
    /// The business unit that booked it.
    #[track_caller]
    pub fn business_unit(&self) -> Option<&'a str> {
        self.reads.check(Field::TransactionBusinessUnit);
        self.cols.business_unit(self.i)
    }
    /// The merchant or product category.
    #[track_caller]
    pub fn category(&self) -> Option<&'a str> {
        self.reads.check(Field::TransactionCategory);
        self.cols.category(self.i)
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

/// Where an event view reads from: a column of the record, or an event given whole.
#[derive(Clone, Copy, Debug)]
enum Of<'a> {
    Column(&'a wire::Events<'a>, usize),
    Whole(&'a Event),
}

/// Something the customer did, as a rule reads it (each member checked against `READS`).
#[derive(Clone, Copy, Debug)]
pub struct EventView<'a> {
    of: Of<'a>,
    reads: Reads,
}

impl<'a> EventView<'a> {
    /// An event given whole, such as the one that triggered a journey evaluation: every member
    /// reads.
    pub fn whole(e: &'a Event) -> Self {
        EventView {
            of: Of::Whole(e),
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
        match self.of {
            Of::Column(cols, i) => cols.name(i),
            Of::Whole(e) => &e.name,
        }
    }
    /// When.
    #[track_caller]
    pub fn at(&self) -> Timestamp {
        self.reads.check(Field::EventAt);
        match self.of {
            Of::Column(cols, i) => cols.at(i),
            Of::Whole(e) => e.at,
        }
    }
    /// Free-form properties (decoded when read: the one member that is not read in place).
    #[track_caller]
    pub fn props(&self) -> Value {
        self.reads.check(Field::EventProps);
        match self.of {
            Of::Column(cols, i) => cols
                .props(i)
                .unwrap_or_else(|e| panic!("the customer's record does not decode: {e}")),
            Of::Whole(e) => e.props.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::customer;

    const RICH: &str = r#"{"id":"c","profile":{"first_name":"Ana"},"transactions":[
        {"id":"t","at":"2025-01-01T00:00:00Z","kind":"purchase","amount":10}]}"#;

    fn view<T>(record: &crate::Record, reads: &[Field], f: impl FnOnce(&Customer) -> T) -> T {
        crate::testing::with_view(record, reads, "spent", f)
    }

    fn panic_text(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
        let err = std::panic::catch_unwind(f).expect_err("it should panic");
        err.downcast_ref::<String>().cloned().unwrap_or_default()
    }

    #[test]
    fn a_declared_member_reads_and_an_undeclared_one_names_itself_and_the_rule() {
        let r = customer(RICH);
        view(&r, &[Field::TransactionAmount], |c| {
            assert_eq!(c.transactions().map(|t| t.amount()).sum::<f64>(), 10.0);
            assert_eq!(c.id(), "c");
        });
        let text = panic_text(|| {
            view(&r, &[Field::TransactionAmount], |c| {
                c.transactions().for_each(|t| {
                    t.at();
                })
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
        view(&r, &[Field::Transactions], |c| {
            let t = c.transactions().next().unwrap();
            assert_eq!((t.id(), t.kind(), t.currency()), ("t", "purchase", ""));
        });
        use std::hint::black_box;
        let zero = crate::Timestamp::from_millis(0);
        type Read<'r> = &'r dyn Fn(&Customer<'_>);
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
            let text = panic_text(std::panic::AssertUnwindSafe(|| view(&r, declared, read)));
            assert!(text.contains(&format!("read `{part}`")), "{part}: {text}");
        }
    }
}
