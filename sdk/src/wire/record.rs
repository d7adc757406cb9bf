//! A customer record as it crosses the ABI (version 2), and its reading in place.
//!
//! The host writes each record once per evaluation ([`encode_customer_reading`]); every plugin
//! of the pass gets the same bytes in its memory, and reads them where they lie through a
//! [`RecordView`]: transactions and events are columns (Arrow-like: fixed-width values
//! back to back, strings as offsets into one UTF-8 buffer), so a rule that reads `t.amount()`
//! loads eight bytes, and nothing is allocated per transaction or event. The small parts
//! (profile, consents, inbound, contacts, journeys) are postcard inside their part and decoded
//! once per customer, when the rule declares them (an undeclared part arrives empty, four bytes).
//!
//! Layout (all integers of the envelope and columns are little-endian; docs/ABI.md §8 has the
//! same for authors in other languages):
//!
//! ```text
//! Record       = id: Utf8, tz: u8 (0 none, 1 some) [Utf8 if 1],
//!                7 × Part, in the order profile, consents, transactions, events, inbound,
//!                contacts, journeys
//! Utf8         = u32 byte length, then UTF-8
//! Part         = u32 byte length, then the part (length 0: the part is empty)
//! profile, consents, inbound, contacts, journeys: the postcard encoding of §8
//! transactions = n: u32, at: n × i64 (ms), amount: n × f64, id: Str(n), kind: Str(n),
//!                currency: Str(n), business_unit: OptStr(n), category: OptStr(n)
//! events       = n: u32, at: n × i64 (ms), name: Str(n), props: Bin(n) (each a postcard Value)
//! Str(n)       = (n + 1) × u32 offsets (the first 0, never decreasing), then offsets[n] bytes
//!                of UTF-8; value i is bytes[offsets[i] .. offsets[i + 1]]
//! OptStr(n)    = n × u8 (1 present, 0 absent), then Str(n) (an absent value is empty)
//! Bin(n)       = as Str(n), of any bytes
//! ```

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::record::{
    Category, Channel, Consents, Contact, Event, Field, Fields, Inbound, JourneyState, Profile,
};
use crate::record::{Record, Transaction};
use crate::time::Timestamp;
use crate::value::Value;

/// Why bytes are not a record of this layout: what, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutError(String);

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LayoutError {}

fn bad(what: &str, why: impl std::fmt::Display) -> LayoutError {
    LayoutError(format!("`{what}`: {why}"))
}

/// A contact as ABI 2 lays it out (docs/ABI.md §8): the record's [`Contact`] without its
/// `template`, which the layout predates.
#[derive(Serialize, Deserialize)]
struct WireContact<'a> {
    channel: Channel,
    at: Timestamp,
    #[serde(borrow)]
    campaign: Option<Cow<'a, str>>,
    category: Category,
    #[serde(borrow)]
    tags: Vec<Cow<'a, str>>,
    counts_toward_caps: bool,
}

impl<'a> From<&'a Contact> for WireContact<'a> {
    fn from(c: &'a Contact) -> Self {
        WireContact {
            channel: c.channel,
            at: c.at,
            campaign: c.campaign.as_deref().map(Cow::Borrowed),
            category: c.category,
            tags: c.tags.iter().map(|t| Cow::Borrowed(t.as_str())).collect(),
            counts_toward_caps: c.counts_toward_caps,
        }
    }
}

impl From<WireContact<'_>> for Contact {
    fn from(c: WireContact<'_>) -> Self {
        Contact {
            channel: c.channel,
            at: c.at,
            campaign: c.campaign.map(Cow::into_owned),
            category: c.category,
            tags: c.tags.into_iter().map(Cow::into_owned).collect(),
            counts_toward_caps: c.counts_toward_caps,
            template: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writing (the host).

fn put_u32(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("a record part over 4 GiB");
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_utf8(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// Writes a part: its length, then what `write` appends.
fn put_part(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    write(out);
    let len = u32::try_from(out.len() - at - 4).expect("a record part over 4 GiB");
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

fn put_postcard<T: serde::Serialize>(out: &mut Vec<u8>, value: &T) {
    let taken = std::mem::take(out);
    *out = postcard::to_extend(value, taken).expect("encoding into a Vec cannot fail");
}

/// Writes a string column of `n` values.
fn put_strs<'s>(out: &mut Vec<u8>, values: impl Iterator<Item = &'s [u8]> + Clone) {
    let mut end = 0;
    put_u32(out, 0);
    for v in values.clone() {
        end += v.len();
        put_u32(out, end);
    }
    values.for_each(|v| out.extend_from_slice(v));
}

fn put_opt_strs<'s>(out: &mut Vec<u8>, values: impl Iterator<Item = Option<&'s str>> + Clone) {
    out.extend(values.clone().map(|v| u8::from(v.is_some())));
    put_strs(out, values.map(|v| v.unwrap_or("").as_bytes()));
}

/// A transaction's members as columns; a member `fields` does not read is written empty (`""`,
/// `0`, the epoch, `None`), so a rule gets only what it declared.
fn put_transactions(out: &mut Vec<u8>, ts: &[Transaction], fields: Fields) {
    if ts.is_empty() {
        return;
    }
    let r = |m| fields.reads(m);
    put_u32(out, ts.len());
    let at = r(Field::TransactionAt);
    ts.iter().for_each(|t| {
        let v = if at { t.at.as_millis() } else { 0 };
        out.extend_from_slice(&v.to_le_bytes())
    });
    let amount = r(Field::TransactionAmount);
    ts.iter().for_each(|t| {
        let v = if amount { t.amount } else { 0.0 };
        out.extend_from_slice(&v.to_le_bytes())
    });
    fn text(on: bool, s: &str) -> &[u8] {
        if on { s.as_bytes() } else { &[] }
    }
    let (id, kind, currency) = (
        r(Field::TransactionId),
        r(Field::TransactionKind),
        r(Field::TransactionCurrency),
    );
    put_strs(out, ts.iter().map(|t| text(id, &t.id)));
    put_strs(out, ts.iter().map(|t| text(kind, &t.kind)));
    put_strs(out, ts.iter().map(|t| text(currency, &t.currency)));
    let (unit, category) = (
        r(Field::TransactionBusinessUnit),
        r(Field::TransactionCategory),
    );
    put_opt_strs(
        out,
        ts.iter()
            .map(|t| t.business_unit.as_deref().filter(|_| unit)),
    );
    put_opt_strs(
        out,
        ts.iter()
            .map(|t| t.category.as_deref().filter(|_| category)),
    );
}

/// An event's members as columns, a member `fields` does not read written empty.
fn put_events(out: &mut Vec<u8>, es: &[Event], fields: Fields) {
    if es.is_empty() {
        return;
    }
    let r = |m| fields.reads(m);
    put_u32(out, es.len());
    let at = r(Field::EventAt);
    es.iter().for_each(|e| {
        let v = if at { e.at.as_millis() } else { 0 };
        out.extend_from_slice(&v.to_le_bytes())
    });
    let name = r(Field::EventName);
    put_strs(
        out,
        es.iter()
            .map(|e| if name { e.name.as_bytes() } else { &[][..] }),
    );
    // The props column: offsets first, so each value is encoded into a scratch buffer once.
    let read_props = r(Field::EventProps);
    let props: Vec<Vec<u8>> = es
        .iter()
        .map(|e| {
            let empty = Value::Null;
            let v = if read_props { &e.props } else { &empty };
            postcard::to_allocvec(v).expect("encoding into a Vec cannot fail")
        })
        .collect();
    put_strs(out, props.iter().map(Vec::as_slice));
}

/// Appends one customer's encoding to `out`, every part as the record has it.
pub fn encode_customer(customer: &Record, out: &mut Vec<u8>) {
    encode_customer_reading(customer, Fields::all(), out)
}

/// Appends one customer's encoding to `out` for rules that read only `fields`: the parts they do
/// not read are written empty, and so are the members of transactions and events they do not
/// read. This is the one place a record is cut to what its rules read; the rules' reads are
/// checked against the same declaration by [`crate::Customer`].
pub fn encode_customer_reading(customer: &Record, fields: Fields, out: &mut Vec<u8>) {
    let c = customer;
    let keep = |f| fields.contains(f);
    put_utf8(out, &c.id);
    match &c.tz {
        None => out.push(0),
        Some(tz) => {
            out.push(1);
            put_utf8(out, tz);
        }
    }
    fn small<T: serde::Serialize>(out: &mut Vec<u8>, keep: bool, empty: bool, value: &T) {
        put_part(out, |o| {
            if keep && !empty {
                put_postcard(o, value)
            }
        });
    }
    let p = &c.profile;
    small(out, keep(Field::Profile), *p == Profile::default(), p);
    small(
        out,
        keep(Field::Consents),
        c.consents.is_empty(),
        &c.consents,
    );
    put_part(out, |o| {
        if keep(Field::Transactions) {
            put_transactions(o, &c.transactions, fields)
        }
    });
    put_part(out, |o| {
        if keep(Field::Events) {
            put_events(o, &c.events, fields)
        }
    });
    small(out, keep(Field::Inbound), c.inbound.is_empty(), &c.inbound);
    let contacts: Vec<WireContact> = c.contacts.iter().map(WireContact::from).collect();
    small(out, keep(Field::Contacts), contacts.is_empty(), &contacts);
    small(
        out,
        keep(Field::Journeys),
        c.journeys.is_empty(),
        &c.journeys,
    );
}

// ---------------------------------------------------------------------------------------------
// Reading (the plugin).

/// A cursor over the bytes of one part, naming the part in its errors.
struct Bytes<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Bytes<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], LayoutError> {
        if self.rest.len() < len {
            return Err(bad(
                what,
                format!("{len} bytes needed, {} left", self.rest.len()),
            ));
        }
        let (head, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(head)
    }

    fn u32(&mut self, what: &str) -> Result<usize, LayoutError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn u8(&mut self, what: &str) -> Result<u8, LayoutError> {
        Ok(self.take(1, what)?[0])
    }

    fn utf8(&mut self, what: &str) -> Result<&'a str, LayoutError> {
        let len = self.u32(what)?;
        std::str::from_utf8(self.take(len, what)?).map_err(|e| bad(what, e))
    }

    /// `n` fixed-width values of `width` bytes.
    fn fixed(&mut self, n: usize, width: usize, what: &str) -> Result<&'a [u8], LayoutError> {
        let len = n
            .checked_mul(width)
            .ok_or_else(|| bad(what, "too many values"))?;
        self.take(len, what)
    }

    /// A column of `n` byte strings (`Str(n)` or `Bin(n)`).
    fn bins(&mut self, n: usize, what: &str) -> Result<Bins<'a>, LayoutError> {
        let offsets = self.fixed(n + 1, 4, what)?;
        let at = |i: usize| read_u32(offsets, i);
        if at(0) != 0 {
            return Err(bad(what, "the first offset is not 0"));
        }
        let mut last = 0;
        for i in 1..=n {
            let next = at(i);
            if next < last {
                return Err(bad(what, format!("offset {i} goes back")));
            }
            last = next;
        }
        let data = self.take(last, what)?;
        Ok(Bins { offsets, data })
    }

    /// A column of `n` strings (`Str(n)`): valid UTF-8, each value on character boundaries.
    fn strs(&mut self, n: usize, what: &str) -> Result<Strs<'a>, LayoutError> {
        let bins = self.bins(n, what)?;
        let text = std::str::from_utf8(bins.data).map_err(|e| bad(what, e))?;
        if let Some(i) = (0..=n).find(|&i| !text.is_char_boundary(read_u32(bins.offsets, i))) {
            return Err(bad(what, format!("offset {i} splits a character")));
        }
        Ok(Strs {
            offsets: bins.offsets,
            text,
        })
    }

    /// A column of `n` optional strings (`OptStr(n)`).
    fn opt_strs(&mut self, n: usize, what: &str) -> Result<OptStrs<'a>, LayoutError> {
        let present = self.fixed(n, 1, what)?;
        if let Some(i) = present.iter().position(|&p| p > 1) {
            return Err(bad(what, format!("presence {i} is neither 0 nor 1")));
        }
        Ok(OptStrs {
            present,
            values: self.strs(n, what)?,
        })
    }

    fn done(&self) -> Result<(), LayoutError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(bad(self.what, format!("{n} byte(s) left over"))),
        }
    }
}

fn read_u32(bytes: &[u8], i: usize) -> usize {
    let b = &bytes[i * 4..i * 4 + 4];
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
}

fn read_8(bytes: &[u8], i: usize) -> [u8; 8] {
    let mut b = [0; 8];
    b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
    b
}

/// A column of byte strings, read in place.
#[derive(Clone, Copy, Debug, Default)]
struct Bins<'a> {
    offsets: &'a [u8],
    data: &'a [u8],
}

impl<'a> Bins<'a> {
    fn get(&self, i: usize) -> &'a [u8] {
        &self.data[read_u32(self.offsets, i)..read_u32(self.offsets, i + 1)]
    }
}

/// A column of strings, read in place (checked when the record was read).
#[derive(Clone, Copy, Debug, Default)]
struct Strs<'a> {
    offsets: &'a [u8],
    text: &'a str,
}

impl<'a> Strs<'a> {
    fn get(&self, i: usize) -> &'a str {
        let (from, to) = (read_u32(self.offsets, i), read_u32(self.offsets, i + 1));
        self.text.get(from..to).unwrap_or_default()
    }
}

/// A column of optional strings, read in place.
#[derive(Clone, Copy, Debug, Default)]
struct OptStrs<'a> {
    present: &'a [u8],
    values: Strs<'a>,
}

impl<'a> OptStrs<'a> {
    fn get(&self, i: usize) -> Option<&'a str> {
        (self.present[i] == 1).then(|| self.values.get(i))
    }
}

/// A customer's transactions as columns over the host's bytes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Transactions<'a> {
    len: usize,
    at: &'a [u8],
    amount: &'a [u8],
    id: Strs<'a>,
    kind: Strs<'a>,
    currency: Strs<'a>,
    business_unit: OptStrs<'a>,
    category: OptStrs<'a>,
}

impl<'a> Transactions<'a> {
    fn read(part: &'a [u8]) -> Result<Self, LayoutError> {
        if part.is_empty() {
            return Ok(Self::default());
        }
        let mut b = Bytes {
            rest: part,
            what: "transactions",
        };
        let n = b.u32("transactions")?;
        let t = Transactions {
            len: n,
            at: b.fixed(n, 8, "transactions.at")?,
            amount: b.fixed(n, 8, "transactions.amount")?,
            id: b.strs(n, "transactions.id")?,
            kind: b.strs(n, "transactions.kind")?,
            currency: b.strs(n, "transactions.currency")?,
            business_unit: b.opt_strs(n, "transactions.business_unit")?,
            category: b.opt_strs(n, "transactions.category")?,
        };
        b.done()?;
        Ok(t)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
    pub(crate) fn at(&self, i: usize) -> Timestamp {
        Timestamp::from_millis(i64::from_le_bytes(read_8(self.at, i)))
    }
    pub(crate) fn amount(&self, i: usize) -> f64 {
        f64::from_le_bytes(read_8(self.amount, i))
    }
    pub(crate) fn id(&self, i: usize) -> &'a str {
        self.id.get(i)
    }
    pub(crate) fn kind(&self, i: usize) -> &'a str {
        self.kind.get(i)
    }
    pub(crate) fn currency(&self, i: usize) -> &'a str {
        self.currency.get(i)
    }
    pub(crate) fn business_unit(&self, i: usize) -> Option<&'a str> {
        self.business_unit.get(i)
    }
    pub(crate) fn category(&self, i: usize) -> Option<&'a str> {
        self.category.get(i)
    }
}

/// A customer's events as columns over the host's bytes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Events<'a> {
    len: usize,
    at: &'a [u8],
    name: Strs<'a>,
    props: Bins<'a>,
}

impl<'a> Events<'a> {
    fn read(part: &'a [u8]) -> Result<Self, LayoutError> {
        if part.is_empty() {
            return Ok(Self::default());
        }
        let mut b = Bytes {
            rest: part,
            what: "events",
        };
        let n = b.u32("events")?;
        let e = Events {
            len: n,
            at: b.fixed(n, 8, "events.at")?,
            name: b.strs(n, "events.name")?,
            props: b.bins(n, "events.props")?,
        };
        b.done()?;
        Ok(e)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
    pub(crate) fn at(&self, i: usize) -> Timestamp {
        Timestamp::from_millis(i64::from_le_bytes(read_8(self.at, i)))
    }
    pub(crate) fn name(&self, i: usize) -> &'a str {
        self.name.get(i)
    }
    /// Event `i`'s props, decoded now (they are the one member read by decoding).
    pub(crate) fn props(&self, i: usize) -> Result<Value, LayoutError> {
        match postcard::take_from_bytes::<Value>(self.props.get(i)) {
            Ok((v, [])) => Ok(v),
            Ok((_, rest)) => Err(bad("events.props", format!("{} byte(s) left", rest.len()))),
            Err(e) => Err(bad("events.props", e)),
        }
    }
}

/// One customer's record read in place from its encoding: the columns of transactions and
/// events over the bytes, and the small parts decoded. A rule reads it through
/// [`crate::Customer`].
#[derive(Clone, Debug, Default)]
pub struct RecordView<'a> {
    pub(crate) id: &'a str,
    pub(crate) tz: Option<&'a str>,
    pub(crate) profile: Profile,
    pub(crate) consents: Consents,
    pub(crate) transactions: Transactions<'a>,
    pub(crate) events: Events<'a>,
    pub(crate) inbound: Vec<Inbound>,
    pub(crate) contacts: Vec<Contact>,
    pub(crate) journeys: Vec<JourneyState>,
}

/// One record's bytes, split into its id, zone and parts, not yet read.
#[derive(Clone, Copy, Debug)]
pub struct Envelope<'a> {
    id: &'a str,
    tz: Option<&'a str>,
    parts: [&'a [u8]; 7],
}

const PARTS: [&str; 7] = [
    "profile",
    "consents",
    "transactions",
    "events",
    "inbound",
    "contacts",
    "journeys",
];

impl<'a> Envelope<'a> {
    /// Splits the record at the start of `bytes`; returns it and the bytes after it. An error
    /// here means the next record cannot be found either.
    pub fn split(bytes: &'a [u8]) -> Result<(Self, &'a [u8]), LayoutError> {
        let mut b = Bytes {
            rest: bytes,
            what: "record",
        };
        let id = b.utf8("id")?;
        let tz = match b.u8("tz")? {
            0 => None,
            1 => Some(b.utf8("tz")?),
            n => return Err(bad("tz", format!("option tag {n}"))),
        };
        let mut parts = [&[][..]; 7];
        for (part, name) in parts.iter_mut().zip(PARTS) {
            let len = b.u32(name)?;
            *part = b.take(len, name)?;
        }
        Ok((Envelope { id, tz, parts }, b.rest))
    }

    /// The customer's id (readable even when a part is not).
    pub fn id(&self) -> &'a str {
        self.id
    }

    /// Reads the parts: the columns in place, the small parts decoded.
    pub fn read(&self) -> Result<RecordView<'a>, LayoutError> {
        fn small<'de, T: Deserialize<'de> + Default>(
            part: &'de [u8],
            what: &str,
        ) -> Result<T, LayoutError> {
            if part.is_empty() {
                return Ok(T::default());
            }
            match postcard::take_from_bytes(part) {
                Ok((v, [])) => Ok(v),
                Ok((_, rest)) => Err(bad(what, format!("{} byte(s) left over", rest.len()))),
                Err(e) => Err(bad(what, e)),
            }
        }
        let [
            profile,
            consents,
            transactions,
            events,
            inbound,
            contacts,
            journeys,
        ] = self.parts;
        Ok(RecordView {
            id: self.id,
            tz: self.tz,
            profile: small(profile, "profile")?,
            consents: small(consents, "consents")?,
            transactions: Transactions::read(transactions)?,
            events: Events::read(events)?,
            inbound: small(inbound, "inbound")?,
            contacts: small::<Vec<WireContact>>(contacts, "contacts")?
                .into_iter()
                .map(Contact::from)
                .collect(),
            journeys: small(journeys, "journeys")?,
        })
    }
}

impl<'a> RecordView<'a> {
    /// Reads the record at the start of `bytes` whole; returns it and the bytes after it.
    pub fn read(bytes: &'a [u8]) -> Result<(Self, &'a [u8]), LayoutError> {
        let (envelope, rest) = Envelope::split(bytes)?;
        Ok((envelope.read()?, rest))
    }

    /// The record as owned values (for tests and tools; rules read the view).
    pub fn to_record(&self) -> Result<Record, LayoutError> {
        let t = &self.transactions;
        let e = &self.events;
        Ok(Record {
            id: self.id.to_owned(),
            tz: self.tz.map(str::to_owned),
            profile: self.profile.clone(),
            consents: self.consents.clone(),
            transactions: (0..t.len())
                .map(|i| Transaction {
                    id: t.id(i).to_owned(),
                    at: t.at(i),
                    kind: t.kind(i).to_owned(),
                    amount: t.amount(i),
                    currency: t.currency(i).to_owned(),
                    business_unit: t.business_unit(i).map(str::to_owned),
                    category: t.category(i).map(str::to_owned),
                })
                .collect(),
            events: (0..e.len())
                .map(|i| {
                    Ok(Event {
                        name: e.name(i).to_owned(),
                        at: e.at(i),
                        props: e.props(i)?,
                    })
                })
                .collect::<Result<_, LayoutError>>()?,
            inbound: self.inbound.clone(),
            contacts: self.contacts.clone(),
            journeys: self.journeys.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Record {
        serde_json::from_str(include_str!("../../../examples/customer.json")).unwrap()
    }

    fn round_trip(c: &Record, fields: Fields) -> Record {
        let mut bytes = Vec::new();
        encode_customer_reading(c, fields, &mut bytes);
        bytes.extend_from_slice(b"next");
        let (view, rest) = RecordView::read(&bytes).unwrap();
        assert_eq!(rest, b"next");
        view.to_record().unwrap()
    }

    #[test]
    fn a_record_reads_back_as_it_was_written() {
        let c = example();
        assert!(!c.transactions.is_empty() && !c.events.is_empty());
        assert_eq!(round_trip(&c, Fields::all()), c);
        let mut odd = c.clone();
        odd.tz = None;
        odd.transactions[0].business_unit = Some("çà".into());
        odd.transactions[0].category = None;
        odd.events[0].props = Value::Array(vec![Value::Float(1.5), Value::Null]);
        assert_eq!(round_trip(&odd, Fields::all()), odd);
        let empty = Record {
            id: "x".into(),
            ..Record::default()
        };
        assert_eq!(round_trip(&empty, Fields::all()), empty);
    }

    #[test]
    fn a_member_not_declared_arrives_empty() {
        let c = example();
        let got = round_trip(&c, Fields::of(&[Field::TransactionAt, Field::EventName]));
        assert_eq!(got.transactions.len(), c.transactions.len());
        for (g, t) in got.transactions.iter().zip(&c.transactions) {
            assert_eq!(g.at, t.at);
            assert_eq!((g.amount, g.id.as_str(), g.kind.as_str()), (0.0, "", ""));
            assert_eq!((&g.business_unit, &g.category), (&None, &None));
        }
        for (g, e) in got.events.iter().zip(&c.events) {
            assert_eq!(g.name, e.name);
            assert_eq!((g.at.as_millis(), &g.props), (0, &Value::Null));
        }
        // A part read whole keeps every member.
        let whole = round_trip(&c, Fields::of(&[Field::Transactions, Field::TransactionAt]));
        assert_eq!(whole.transactions, c.transactions);
    }

    #[test]
    fn a_record_encoded_for_some_fields_reads_with_only_those_parts() {
        let c = example();
        for fields in [
            Fields::of(&[Field::Transactions]),
            Fields::of(&[Field::Profile, Field::Consents]),
            Fields::of(&[
                Field::Events,
                Field::Contacts,
                Field::Journeys,
                Field::Inbound,
            ]),
            Fields::default(),
        ] {
            let got = round_trip(&c, fields);
            let part = |f| fields.contains(f);
            assert_eq!((&got.id, &got.tz), (&c.id, &c.tz));
            assert_eq!(part(Field::Profile), got.profile == c.profile, "{fields:?}");
            assert_eq!(part(Field::Consents), got.consents == c.consents);
            assert_eq!(
                part(Field::Transactions),
                got.transactions == c.transactions
            );
            assert_eq!(part(Field::Events), got.events == c.events);
            assert_eq!(part(Field::Inbound), got.inbound == c.inbound);
            assert_eq!(part(Field::Contacts), got.contacts == c.contacts);
            assert_eq!(part(Field::Journeys), got.journeys == c.journeys);
        }
    }

    #[test]
    fn damaged_bytes_are_an_error_naming_the_column_never_a_panic() {
        let c = example();
        let mut bytes = Vec::new();
        encode_customer(&c, &mut bytes);
        for cut in 0..bytes.len() {
            assert!(RecordView::read(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // Every single-byte change reads or fails cleanly.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xa5;
            if let Ok((v, _)) = RecordView::read(&b) {
                let _ = v.to_record();
            }
        }
        // A string offset past the column's bytes is named: `kind`'s offsets start after the
        // count, `at`, `amount` and the `id` column.
        let mut t = Vec::new();
        put_transactions(&mut t, &c.transactions, Fields::all());
        let n = c.transactions.len();
        let ids: usize = c.transactions.iter().map(|t| t.id.len()).sum();
        let kind = 4 + 16 * n + 4 * (n + 1) + ids;
        t[kind + 4..kind + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = Transactions::read(&t).unwrap_err();
        assert!(err.to_string().starts_with("`transactions.kind`"), "{err}");
    }
}

#[cfg(test)]
mod documented {
    /// The worked example of docs/ABI.md §8.1, byte for byte.
    #[test]
    fn the_worked_example_of_the_abi_page_is_what_the_writer_writes() {
        let c = crate::testing::customer(
            r#"{"id":"c1","transactions":[{"id":"t","at":"1970-01-01T00:00:01Z","kind":"purchase","amount":2.5}]}"#,
        );
        let mut bytes = Vec::new();
        super::encode_customer(&c, &mut bytes);
        let page = include_str!("../../../docs/ABI.md");
        let example = page
            .split("**Worked example.**")
            .nth(1)
            .and_then(|s| s.split("```text").nth(1))
            .and_then(|s| s.split("```").next())
            .expect("the ABI page has its worked example");
        let documented: Vec<u8> = example
            .lines()
            .flat_map(|line| {
                line.split_whitespace()
                    .take_while(|w| w.len() == 2 && w.bytes().all(|b| b.is_ascii_hexdigit()))
                    .map(|w| u8::from_str_radix(w, 16).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(documented, bytes);
    }
}
