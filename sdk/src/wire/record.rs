//! A chunk of customers as it crosses the ABI (version 3), and its reading in place.
//!
//! The host fills one [`ChunkWriter`] per chunk of customers with what its plugins read
//! between them, and writes from it, for each plugin, the chunk of only what that plugin
//! declares; plugins declaring the same get the same bytes in their memory, and read them where
//! they lie through a [`ChunkView`]: every part is a column
//! over the chunk's customers (Arrow's physical layout: fixed-width values back to back,
//! strings as offsets into one buffer, lists as offsets into child columns), so a rule that
//! reads `t.amount()` loads eight bytes, and nothing is allocated per transaction or event.
//! The small parts (profile, consents, inbound, contacts, journeys) are a binary column of
//! postcard values, decoded once per customer when the rule declares them (an undeclared part
//! arrives as an empty value).
//!
//! Layout (all integers little-endian; docs/ABI.md §8.1 has the same for authors in other
//! languages):
//!
//! ```text
//! Chunk        = n: u32, id: Str(n), tz: OptStr(n), profile: Bin(n), consents: Bin(n),
//!                transactions: List(n), then at: m × i64 (ms), amount: m × f64, id: Str(m),
//!                  kind: Str(m), currency: Str(m), business_unit: OptStr(m), category: OptStr(m)
//!                events: List(n), then at: m × i64 (ms), name: Str(m), props: Bin(m)
//!                inbound: Bin(n), contacts: Bin(n), journeys: Bin(n)
//! List(n)      = (n + 1) × u32 row offsets (the first 0, never decreasing); m = offsets[n] rows;
//!                customer i's rows are offsets[i] .. offsets[i + 1]
//! Str(n)       = (n + 1) × u32 offsets (the first 0, never decreasing), then offsets[n] bytes
//!                of UTF-8; value i is bytes[offsets[i] .. offsets[i + 1]]
//! OptStr(n)    = n × u8 (1 present, 0 absent), then Str(n) (an absent value is empty)
//! Bin(n)       = as Str(n), of any bytes; a small part's value is empty when the customer has
//!                none of it or the plugin does not read it
//! ```

use std::borrow::Cow;
use std::ops::Range;

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

/// A contact as the ABI lays it out (docs/ABI.md §8): the record's [`Contact`] with every field
/// written (the record's JSON leaves out a missing `template`, which postcard cannot).
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
    #[serde(borrow)]
    template: Option<Cow<'a, str>>,
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
            template: c.template.as_deref().map(Cow::Borrowed),
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
            template: c.template.map(Cow::into_owned),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writing (the host).

fn put_u32(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("a chunk column over 4 GiB");
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_postcard<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let taken = std::mem::take(out);
    *out = postcard::to_extend(value, taken).expect("encoding into a Vec cannot fail");
}

/// The end offset of each row of a list (customer `i`'s rows, or value `i`'s bytes, end at
/// `ends[i]`; the first starts at 0).
#[derive(Clone, Debug, Default)]
struct Ends(Vec<u32>);

impl Ends {
    fn push(&mut self, end: usize) {
        self.0
            .push(u32::try_from(end).expect("a chunk column over 4 GiB"));
    }
    fn start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.0[i - 1] as usize }
    }
    /// The rows of `range`, as a range of the child's rows.
    fn rows(&self, range: &Range<usize>) -> Range<usize> {
        self.start(range.start)..self.start(range.end)
    }
    /// Writes the offsets of `range`, rebased to start at 0.
    fn write(&self, range: &Range<usize>, out: &mut Vec<u8>) {
        let base = self.start(range.start);
        put_u32(out, 0);
        for &end in &self.0[range.clone()] {
            put_u32(out, end as usize - base);
        }
    }
}

/// A column of byte strings being built (`Str` or `Bin`).
#[derive(Clone, Debug, Default)]
struct BinColumn {
    ends: Ends,
    bytes: Vec<u8>,
}

impl BinColumn {
    fn push(&mut self, value: &[u8]) {
        self.bytes.extend_from_slice(value);
        self.ends.push(self.bytes.len());
    }
    /// Appends the postcard encoding of `value`, or nothing when `empty`.
    fn push_postcard<T: serde::Serialize>(&mut self, empty: bool, value: &T) {
        if !empty {
            put_postcard(&mut self.bytes, value);
        }
        self.ends.push(self.bytes.len());
    }
    /// Ends a value with whatever bytes were appended since the last one.
    fn close(&mut self) {
        self.ends.push(self.bytes.len());
    }
    /// Keeps the first `rows` values.
    fn truncate(&mut self, rows: usize) {
        self.ends.0.truncate(rows);
        self.bytes.truncate(self.ends.start(rows));
    }
    fn write(&self, range: &Range<usize>, out: &mut Vec<u8>) {
        self.ends.write(range, out);
        out.extend_from_slice(&self.bytes[self.ends.rows(range)]);
    }
}

/// A column of optional strings being built (`OptStr`).
#[derive(Clone, Debug, Default)]
struct OptColumn {
    present: Vec<u8>,
    values: BinColumn,
}

impl OptColumn {
    fn push(&mut self, value: Option<&str>) {
        self.present.push(u8::from(value.is_some()));
        self.values.push(value.unwrap_or("").as_bytes());
    }
    fn truncate(&mut self, rows: usize) {
        self.present.truncate(rows);
        self.values.truncate(rows);
    }
    fn write(&self, range: &Range<usize>, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.present[range.clone()]);
        self.values.write(range, out);
    }
}

/// Writes `values[range]`, or as many zeros when the member is not read.
fn put_fixed<T: Copy, const N: usize>(
    out: &mut Vec<u8>,
    values: &[T],
    range: Range<usize>,
    on: bool,
    le: fn(T) -> [u8; N],
) {
    if !on {
        out.resize(out.len() + range.len() * N, 0);
        return;
    }
    for &v in &values[range] {
        out.extend_from_slice(&le(v));
    }
}

/// Writes `n` empty values of a `Str`/`Bin` column.
fn put_empty(out: &mut Vec<u8>, n: usize) {
    out.resize(out.len() + 4 * (n + 1), 0);
}

/// One transaction as a reader holds it, borrowed: what [`Row::transaction`] takes, so a reader
/// of columns or text writes a chunk without building a [`Transaction`] first.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TransactionRef<'a> {
    /// See [`Transaction::id`].
    pub id: &'a str,
    /// See [`Transaction::at`].
    pub at: Timestamp,
    /// See [`Transaction::kind`].
    pub kind: &'a str,
    /// See [`Transaction::amount`].
    pub amount: f64,
    /// See [`Transaction::currency`].
    pub currency: &'a str,
    /// See [`Transaction::business_unit`].
    pub business_unit: Option<&'a str>,
    /// See [`Transaction::category`].
    pub category: Option<&'a str>,
}

impl<'a> From<&'a Transaction> for TransactionRef<'a> {
    fn from(t: &'a Transaction) -> Self {
        TransactionRef {
            id: &t.id,
            at: t.at,
            kind: &t.kind,
            amount: t.amount,
            currency: &t.currency,
            business_unit: t.business_unit.as_deref(),
            category: t.category.as_deref(),
        }
    }
}

impl From<TransactionRef<'_>> for Transaction {
    fn from(t: TransactionRef<'_>) -> Self {
        Transaction {
            id: t.id.to_owned(),
            at: t.at,
            kind: t.kind.to_owned(),
            amount: t.amount,
            currency: t.currency.to_owned(),
            business_unit: t.business_unit.map(str::to_owned),
            category: t.category.map(str::to_owned),
        }
    }
}

/// Customers written as the columns of a chunk (docs/ABI.md §8.1). The writer holds the parts
/// and members of `fields` (what every plugin of a pass reads, between them) and writes, for each
/// plugin, a chunk with only what that plugin declares: the parts it does not read are written
/// empty, and so are the members of transactions and events it does not read. This is the one
/// place a record is cut to what its rules read; the rules' reads are checked against the same
/// declaration by [`crate::Customer`]. Any range of the customers pushed is written as a chunk
/// of its own.
#[derive(Clone, Debug)]
pub struct ChunkWriter {
    fields: Fields,
    len: usize,
    id: BinColumn,
    tz: OptColumn,
    profile: BinColumn,
    consents: BinColumn,
    transactions: Ends,
    t_at: Vec<i64>,
    t_amount: Vec<f64>,
    t_id: BinColumn,
    t_kind: BinColumn,
    t_currency: BinColumn,
    t_business_unit: OptColumn,
    t_category: OptColumn,
    events: Ends,
    e_at: Vec<i64>,
    e_name: BinColumn,
    e_props: BinColumn,
    inbound: BinColumn,
    contacts: BinColumn,
    journeys: BinColumn,
}

/// A customer being added to a [`ChunkWriter`] part by part ([`ChunkWriter::push_with`]), for
/// readers that hold columns or text rather than records. A part or member the writer does not
/// hold is skipped; a part left out is empty. Each part other than transactions and events is
/// given at most once (a second is ignored).
pub struct Row<'w> {
    w: &'w mut ChunkWriter,
    /// Bits of the small parts given so far.
    given: u8,
}

const PROFILE: u8 = 1;
const CONSENTS: u8 = 2;
const INBOUND: u8 = 4;
const CONTACTS: u8 = 8;
const JOURNEYS: u8 = 16;

impl Row<'_> {
    /// Appends a small part's postcard value (nothing when `empty`) unless the writer does not
    /// hold `part` or it was given already.
    fn small<T: Serialize + ?Sized>(&mut self, bit: u8, part: Field, empty: bool, value: &T) {
        if self.given & bit != 0 || !self.w.fields.contains(part) {
            return;
        }
        self.given |= bit;
        if !empty {
            let column = match bit {
                PROFILE => &mut self.w.profile,
                CONSENTS => &mut self.w.consents,
                INBOUND => &mut self.w.inbound,
                CONTACTS => &mut self.w.contacts,
                _ => &mut self.w.journeys,
            };
            put_postcard(&mut column.bytes, value);
        }
    }

    /// The customer's profile.
    pub fn profile(&mut self, p: &Profile) {
        self.small(PROFILE, Field::Profile, *p == Profile::default(), p);
    }

    /// The customer's consents.
    pub fn consents(&mut self, c: &Consents) {
        self.small(CONSENTS, Field::Consents, c.is_empty(), c);
    }

    /// The customer's inbound messages.
    pub fn inbound(&mut self, inbound: &[Inbound]) {
        self.small(INBOUND, Field::Inbound, inbound.is_empty(), inbound);
    }

    /// The contacts made with the customer.
    pub fn contacts(&mut self, contacts: &[Contact]) {
        if self.w.fields.contains(Field::Contacts) {
            let wire: Vec<WireContact> = contacts.iter().map(WireContact::from).collect();
            self.small(CONTACTS, Field::Contacts, wire.is_empty(), &wire);
        }
    }

    /// The customer's journeys.
    pub fn journeys(&mut self, journeys: &[JourneyState]) {
        self.small(JOURNEYS, Field::Journeys, journeys.is_empty(), journeys);
    }

    /// The customer's next transaction.
    pub fn transaction(&mut self, t: TransactionRef<'_>) {
        let w = &mut *self.w;
        let fields = w.fields;
        if !fields.contains(Field::Transactions) {
            return;
        }
        let r = |m| fields.reads(m);
        fn text(on: bool, s: &str) -> &[u8] {
            if on { s.as_bytes() } else { &[] }
        }
        w.t_at.push(if r(Field::TransactionAt) {
            t.at.as_millis()
        } else {
            0
        });
        w.t_amount.push(if r(Field::TransactionAmount) {
            t.amount
        } else {
            0.0
        });
        w.t_id.push(text(r(Field::TransactionId), t.id));
        w.t_kind.push(text(r(Field::TransactionKind), t.kind));
        w.t_currency
            .push(text(r(Field::TransactionCurrency), t.currency));
        w.t_business_unit.push(
            t.business_unit
                .filter(|_| r(Field::TransactionBusinessUnit)),
        );
        w.t_category
            .push(t.category.filter(|_| r(Field::TransactionCategory)));
    }

    /// The customer's next event.
    pub fn event(&mut self, at: Timestamp, name: &str, props: &Value) {
        let w = &mut *self.w;
        let fields = w.fields;
        if !fields.contains(Field::Events) {
            return;
        }
        let r = |m| fields.reads(m);
        w.e_at
            .push(if r(Field::EventAt) { at.as_millis() } else { 0 });
        w.e_name.push(if r(Field::EventName) {
            name.as_bytes()
        } else {
            &[]
        });
        let null = Value::Null;
        w.e_props
            .push_postcard(false, if r(Field::EventProps) { props } else { &null });
    }
}

impl ChunkWriter {
    /// No customers yet, holding what plugins that read `fields` between them read.
    pub fn new(fields: Fields) -> Self {
        ChunkWriter {
            fields,
            len: 0,
            id: BinColumn::default(),
            tz: OptColumn::default(),
            profile: BinColumn::default(),
            consents: BinColumn::default(),
            transactions: Ends::default(),
            t_at: Vec::new(),
            t_amount: Vec::new(),
            t_id: BinColumn::default(),
            t_kind: BinColumn::default(),
            t_currency: BinColumn::default(),
            t_business_unit: OptColumn::default(),
            t_category: OptColumn::default(),
            events: Ends::default(),
            e_at: Vec::new(),
            e_name: BinColumn::default(),
            e_props: BinColumn::default(),
            inbound: BinColumn::default(),
            contacts: BinColumn::default(),
            journeys: BinColumn::default(),
        }
    }

    /// No customers again, now holding `fields`; the memory already taken is kept for the next
    /// chunk.
    pub fn clear(&mut self, fields: Fields) {
        self.fields = fields;
        self.len = 0;
        for column in [
            &mut self.id,
            &mut self.profile,
            &mut self.consents,
            &mut self.inbound,
            &mut self.contacts,
            &mut self.journeys,
            &mut self.t_id,
            &mut self.t_kind,
            &mut self.t_currency,
            &mut self.e_name,
            &mut self.e_props,
        ] {
            column.truncate(0);
        }
        for column in [
            &mut self.tz,
            &mut self.t_business_unit,
            &mut self.t_category,
        ] {
            column.truncate(0);
        }
        self.transactions.0.clear();
        self.events.0.clear();
        self.t_at.clear();
        self.t_amount.clear();
        self.e_at.clear();
    }

    /// What the writer holds of each customer.
    pub fn fields(&self) -> Fields {
        self.fields
    }

    /// The customers pushed so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none was pushed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The id of customer `i`.
    pub fn id(&self, i: usize) -> &str {
        let bytes = &self.id.bytes[self.id.ends.start(i)..self.id.ends.start(i + 1)];
        std::str::from_utf8(bytes).expect("ids are pushed as text")
    }

    /// Adds a customer.
    pub fn push(&mut self, c: &Record) {
        let filled: Result<(), std::convert::Infallible> =
            self.push_with(&c.id, c.tz.as_deref(), |row| {
                row.profile(&c.profile);
                row.consents(&c.consents);
                for t in &c.transactions {
                    row.transaction(t.into());
                }
                for e in &c.events {
                    row.event(e.at, &e.name, &e.props);
                }
                row.inbound(&c.inbound);
                row.contacts(&c.contacts);
                row.journeys(&c.journeys);
                Ok(())
            });
        let Ok(()) = filled;
    }

    /// Adds the customer `id` (zone `tz`) whose parts `fill` gives, or, when `fill` fails,
    /// nothing at all: whatever it gave is taken back.
    pub fn push_with<E>(
        &mut self,
        id: &str,
        tz: Option<&str>,
        fill: impl FnOnce(&mut Row<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.push_filled(|row| fill(row).map(|()| (id, tz)))
    }

    /// [`ChunkWriter::push_with`] for a reader that learns the customer's id and zone only as it
    /// goes (a JSON object's keys come in any order): `fill` gives the parts, then says whose
    /// they were.
    pub fn push_filled<I: AsRef<str>, Z: AsRef<str>, E>(
        &mut self,
        fill: impl FnOnce(&mut Row<'_>) -> Result<(I, Option<Z>), E>,
    ) -> Result<(), E> {
        let mut row = Row { w: self, given: 0 };
        let (id, tz) = match fill(&mut row) {
            Ok(whose) => whose,
            Err(e) => {
                self.take_back();
                return Err(e);
            }
        };
        self.len += 1;
        self.id.push(id.as_ref().as_bytes());
        self.tz.push(tz.as_ref().map(AsRef::as_ref));
        for column in [
            &mut self.profile,
            &mut self.consents,
            &mut self.inbound,
            &mut self.contacts,
            &mut self.journeys,
        ] {
            column.close();
        }
        self.transactions.push(self.t_at.len());
        self.events.push(self.e_at.len());
        Ok(())
    }

    /// Drops what a failed [`ChunkWriter::push_with`] appended after the last customer.
    fn take_back(&mut self) {
        let len = self.len;
        for column in [
            &mut self.profile,
            &mut self.consents,
            &mut self.inbound,
            &mut self.contacts,
            &mut self.journeys,
        ] {
            column.truncate(len);
        }
        let rows = self.transactions.start(len);
        self.t_at.truncate(rows);
        self.t_amount.truncate(rows);
        for column in [&mut self.t_id, &mut self.t_kind, &mut self.t_currency] {
            column.truncate(rows);
        }
        self.t_business_unit.truncate(rows);
        self.t_category.truncate(rows);
        let rows = self.events.start(len);
        self.e_at.truncate(rows);
        self.e_name.truncate(rows);
        self.e_props.truncate(rows);
    }

    /// Appends the chunk of the customers `range` (indices of [`ChunkWriter::push`] order) for
    /// plugins that read `fields`, which the writer must hold.
    pub fn write(&self, range: Range<usize>, fields: Fields, out: &mut Vec<u8>) {
        assert!(range.end <= self.len, "a range of the customers pushed");
        assert!(
            self.fields.covers(fields),
            "a chunk of fields the writer holds"
        );
        let range = &range;
        let n = range.len();
        let part = |f| fields.contains(f);
        let member = |m| fields.reads(m);
        let bin = |column: &BinColumn, on: bool, rows: &Range<usize>, out: &mut Vec<u8>| {
            if on {
                column.write(rows, out)
            } else {
                put_empty(out, rows.len())
            }
        };
        let opt = |column: &OptColumn, on: bool, rows: &Range<usize>, out: &mut Vec<u8>| {
            if on {
                column.write(rows, out)
            } else {
                out.resize(out.len() + rows.len(), 0);
                put_empty(out, rows.len());
            }
        };
        // A list part's ends, answering the rows of its members (none when it is not written).
        let list = |ends: &Ends, on: bool, out: &mut Vec<u8>| {
            if on {
                ends.write(range, out);
                ends.rows(range)
            } else {
                put_empty(out, n);
                0..0
            }
        };
        put_u32(out, n);
        self.id.write(range, out);
        self.tz.write(range, out);
        bin(&self.profile, part(Field::Profile), range, out);
        bin(&self.consents, part(Field::Consents), range, out);

        let rows = list(&self.transactions, part(Field::Transactions), out);
        put_fixed(
            out,
            &self.t_at,
            rows.clone(),
            member(Field::TransactionAt),
            i64::to_le_bytes,
        );
        let amount = member(Field::TransactionAmount);
        put_fixed(out, &self.t_amount, rows.clone(), amount, f64::to_le_bytes);
        let rows = &rows;
        bin(&self.t_id, member(Field::TransactionId), rows, out);
        bin(&self.t_kind, member(Field::TransactionKind), rows, out);
        bin(
            &self.t_currency,
            member(Field::TransactionCurrency),
            rows,
            out,
        );
        let unit = member(Field::TransactionBusinessUnit);
        opt(&self.t_business_unit, unit, rows, out);
        opt(
            &self.t_category,
            member(Field::TransactionCategory),
            rows,
            out,
        );

        let rows = list(&self.events, part(Field::Events), out);
        put_fixed(
            out,
            &self.e_at,
            rows.clone(),
            member(Field::EventAt),
            i64::to_le_bytes,
        );
        let rows = &rows;
        bin(&self.e_name, member(Field::EventName), rows, out);
        if member(Field::EventProps) {
            self.e_props.write(rows, out);
        } else {
            // Each event's props, unread, is the value null.
            let mut null = Vec::new();
            put_postcard(&mut null, &Value::Null);
            (0..=rows.len()).for_each(|k| put_u32(out, k * null.len()));
            (0..rows.len()).for_each(|_| out.extend_from_slice(&null));
        }

        bin(&self.inbound, part(Field::Inbound), range, out);
        bin(&self.contacts, part(Field::Contacts), range, out);
        bin(&self.journeys, part(Field::Journeys), range, out);
    }
}

/// The chunk of one customer, every part as the record has it (tests and tools).
pub fn encode_customer(customer: &Record, out: &mut Vec<u8>) {
    encode_customer_reading(customer, Fields::all(), out)
}

/// The chunk of one customer for rules that read only `fields` (tests and tools).
pub fn encode_customer_reading(customer: &Record, fields: Fields, out: &mut Vec<u8>) {
    let mut w = ChunkWriter::new(fields);
    w.push(customer);
    w.write(0..1, fields, out);
}

// ---------------------------------------------------------------------------------------------
// Reading (the plugin).

/// A cursor over the bytes of a chunk, naming the column in its errors.
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

    /// `n` fixed-width values of `width` bytes.
    fn fixed(&mut self, n: usize, width: usize, what: &str) -> Result<&'a [u8], LayoutError> {
        let len = n
            .checked_mul(width)
            .ok_or_else(|| bad(what, "too many values"))?;
        self.take(len, what)
    }

    /// `n + 1` offsets: the first 0, none going back. Answers them and the last.
    fn offsets(&mut self, n: usize, what: &str) -> Result<(&'a [u8], usize), LayoutError> {
        let count = n
            .checked_add(1)
            .ok_or_else(|| bad(what, "too many values"))?;
        let offsets = self.fixed(count, 4, what)?;
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
        Ok((offsets, last))
    }

    /// A column of `n` byte strings (`Bin(n)`).
    fn bins(&mut self, n: usize, what: &str) -> Result<Bins<'a>, LayoutError> {
        let (offsets, last) = self.offsets(n, what)?;
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

/// A column of strings, read in place (checked when the chunk was read).
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

/// Transactions as columns over the host's bytes: the chunk's, or one customer's rows of them
/// (from `base`, `len` rows).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Transactions<'a> {
    base: usize,
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
    fn read(b: &mut Bytes<'a>, n: usize) -> Result<Self, LayoutError> {
        Ok(Transactions {
            base: 0,
            len: n,
            at: b.fixed(n, 8, "transactions.at")?,
            amount: b.fixed(n, 8, "transactions.amount")?,
            id: b.strs(n, "transactions.id")?,
            kind: b.strs(n, "transactions.kind")?,
            currency: b.strs(n, "transactions.currency")?,
            business_unit: b.opt_strs(n, "transactions.business_unit")?,
            category: b.opt_strs(n, "transactions.category")?,
        })
    }

    fn rows(&self, rows: Range<usize>) -> Self {
        Transactions {
            base: rows.start,
            len: rows.len(),
            ..*self
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
    pub(crate) fn at(&self, i: usize) -> Timestamp {
        Timestamp::from_millis(i64::from_le_bytes(read_8(self.at, self.base + i)))
    }
    pub(crate) fn amount(&self, i: usize) -> f64 {
        f64::from_le_bytes(read_8(self.amount, self.base + i))
    }
    pub(crate) fn id(&self, i: usize) -> &'a str {
        self.id.get(self.base + i)
    }
    pub(crate) fn kind(&self, i: usize) -> &'a str {
        self.kind.get(self.base + i)
    }
    pub(crate) fn currency(&self, i: usize) -> &'a str {
        self.currency.get(self.base + i)
    }
    pub(crate) fn business_unit(&self, i: usize) -> Option<&'a str> {
        self.business_unit.get(self.base + i)
    }
    pub(crate) fn category(&self, i: usize) -> Option<&'a str> {
        self.category.get(self.base + i)
    }
}

/// Events as columns over the host's bytes: the chunk's, or one customer's rows of them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Events<'a> {
    base: usize,
    len: usize,
    at: &'a [u8],
    name: Strs<'a>,
    props: Bins<'a>,
}

impl<'a> Events<'a> {
    fn read(b: &mut Bytes<'a>, n: usize) -> Result<Self, LayoutError> {
        Ok(Events {
            base: 0,
            len: n,
            at: b.fixed(n, 8, "events.at")?,
            name: b.strs(n, "events.name")?,
            props: b.bins(n, "events.props")?,
        })
    }

    fn rows(&self, rows: Range<usize>) -> Self {
        Events {
            base: rows.start,
            len: rows.len(),
            ..*self
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
    pub(crate) fn at(&self, i: usize) -> Timestamp {
        Timestamp::from_millis(i64::from_le_bytes(read_8(self.at, self.base + i)))
    }
    pub(crate) fn name(&self, i: usize) -> &'a str {
        self.name.get(self.base + i)
    }
    /// Event `i`'s props, decoded now (they are the one member read by decoding).
    pub(crate) fn props(&self, i: usize) -> Result<Value, LayoutError> {
        match postcard::take_from_bytes::<Value>(self.props.get(self.base + i)) {
            Ok((v, [])) => Ok(v),
            Ok((_, rest)) => Err(bad("events.props", format!("{} byte(s) left", rest.len()))),
            Err(e) => Err(bad("events.props", e)),
        }
    }
}

/// One customer's record read in place from a chunk: the columns of transactions and events
/// over the bytes, and the small parts decoded. A rule reads it through [`crate::Customer`].
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

/// A chunk's columns, checked once and read in place: every length in bounds, offsets in order
/// and on character boundaries, presence bytes 0 or 1, nothing left over.
#[derive(Clone, Copy, Debug)]
pub struct ChunkView<'a> {
    len: usize,
    id: Strs<'a>,
    tz: OptStrs<'a>,
    profile: Bins<'a>,
    consents: Bins<'a>,
    transaction_rows: &'a [u8],
    transactions: Transactions<'a>,
    event_rows: &'a [u8],
    events: Events<'a>,
    inbound: Bins<'a>,
    contacts: Bins<'a>,
    journeys: Bins<'a>,
}

impl<'a> ChunkView<'a> {
    /// Reads the chunk that `bytes` holds, whole.
    pub fn read(bytes: &'a [u8]) -> Result<Self, LayoutError> {
        let mut b = Bytes {
            rest: bytes,
            what: "chunk",
        };
        let n = b.u32("count")?;
        let id = b.strs(n, "id")?;
        let tz = b.opt_strs(n, "tz")?;
        let profile = b.bins(n, "profile")?;
        let consents = b.bins(n, "consents")?;
        let (transaction_rows, rows) = b.offsets(n, "transactions")?;
        let transactions = Transactions::read(&mut b, rows)?;
        let (event_rows, rows) = b.offsets(n, "events")?;
        let events = Events::read(&mut b, rows)?;
        let view = ChunkView {
            len: n,
            id,
            tz,
            profile,
            consents,
            transaction_rows,
            transactions,
            event_rows,
            events,
            inbound: b.bins(n, "inbound")?,
            contacts: b.bins(n, "contacts")?,
            journeys: b.bins(n, "journeys")?,
        };
        b.done()?;
        Ok(view)
    }

    /// The number of customers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the chunk has no customers.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Customer `i`'s id.
    pub fn id(&self, i: usize) -> &'a str {
        self.id.get(i)
    }

    /// Customer `i`'s record: its rows of the columns, its small parts decoded. A small part
    /// that does not decode is that customer's error.
    pub fn record(&self, i: usize) -> Result<RecordView<'a>, LayoutError> {
        self.record_reading(i, Fields::all())
    }

    /// Customer `i` for a rule that reads `reads`: the small parts it does not read are left
    /// empty, not decoded (the host writes them empty anyway). Given a constant `reads`, as the
    /// guest loop does, a plugin carries no decoder for a part it does not read.
    #[inline(always)]
    pub fn record_reading(&self, i: usize, reads: Fields) -> Result<RecordView<'a>, LayoutError> {
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
        let rows = |ends: &[u8]| read_u32(ends, i)..read_u32(ends, i + 1);
        let mut record = RecordView {
            id: self.id.get(i),
            tz: self.tz.get(i),
            ..RecordView::default()
        };
        if reads.contains(Field::Profile) {
            record.profile = small(self.profile.get(i), "profile")?;
        }
        if reads.contains(Field::Consents) {
            record.consents = small(self.consents.get(i), "consents")?;
        }
        if reads.contains(Field::Transactions) {
            record.transactions = self.transactions.rows(rows(self.transaction_rows));
        }
        if reads.contains(Field::Events) {
            record.events = self.events.rows(rows(self.event_rows));
        }
        if reads.contains(Field::Inbound) {
            record.inbound = small(self.inbound.get(i), "inbound")?;
        }
        if reads.contains(Field::Contacts) {
            record.contacts = small::<Vec<WireContact>>(self.contacts.get(i), "contacts")?
                .into_iter()
                .map(Contact::from)
                .collect();
        }
        if reads.contains(Field::Journeys) {
            record.journeys = small(self.journeys.get(i), "journeys")?;
        }
        Ok(record)
    }
}

impl<'a> RecordView<'a> {
    /// The one customer of a one-customer chunk (tests and tools).
    pub fn read(bytes: &'a [u8]) -> Result<Self, LayoutError> {
        let chunk = ChunkView::read(bytes)?;
        if chunk.len() != 1 {
            return Err(bad("count", format!("{} customers, not one", chunk.len())));
        }
        chunk.record(0)
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
        RecordView::read(&bytes).unwrap().to_record().unwrap()
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
        odd.contacts[0].template = Some("boas-vindas-1".into());
        assert_eq!(round_trip(&odd, Fields::all()), odd);
        let empty = Record {
            id: "x".into(),
            ..Record::default()
        };
        assert_eq!(round_trip(&empty, Fields::all()), empty);
    }

    /// Customers with and without transactions and events, in one chunk and in every sub-range
    /// written as a chunk of its own: each reads back as itself.
    #[test]
    fn every_range_of_a_chunk_reads_back_customer_by_customer() {
        let c = example();
        let mut customers = Vec::new();
        for i in 0..6 {
            let mut r = c.clone();
            r.id = format!("c{i}");
            r.transactions.truncate(i % 3);
            r.events.truncate((i + 1) % 3);
            if i == 4 {
                r = Record {
                    id: "é4".into(),
                    ..Record::default()
                };
            }
            customers.push(r);
        }
        let mut w = ChunkWriter::new(Fields::all());
        customers.iter().for_each(|r| w.push(r));
        for lo in 0..=customers.len() {
            for hi in lo..=customers.len() {
                let mut bytes = Vec::new();
                w.write(lo..hi, Fields::all(), &mut bytes);
                let chunk = ChunkView::read(&bytes).unwrap();
                assert_eq!(chunk.len(), hi - lo);
                for (i, want) in customers[lo..hi].iter().enumerate() {
                    assert_eq!(chunk.id(i), want.id);
                    assert_eq!(&chunk.record(i).unwrap().to_record().unwrap(), want);
                }
            }
        }
    }

    /// A writer holding every part writes, for plugins that read less, the same bytes as a
    /// writer holding only what they read: one writer serves every plugin of a pass.
    #[test]
    fn a_chunk_for_some_fields_is_the_same_from_a_writer_holding_more() {
        let c = example();
        let mut plain = c.clone();
        plain.id = "p".into();
        plain.transactions.truncate(1);
        plain.events.clear();
        let customers = [c, Record::default(), plain];
        let mut all = ChunkWriter::new(Fields::all());
        customers.iter().for_each(|r| all.push(r));
        let sets = [
            Fields::default(),
            Fields::of(&[Field::TransactionAt, Field::TransactionAmount]),
            Fields::of(&[Field::TransactionKind, Field::EventName, Field::Profile]),
            Fields::of(&[Field::Events, Field::TransactionBusinessUnit]),
            Fields::of(&[
                Field::Consents,
                Field::Inbound,
                Field::Contacts,
                Field::Journeys,
            ]),
            Fields::all(),
        ];
        for fields in sets {
            let mut own = ChunkWriter::new(fields);
            customers.iter().for_each(|r| own.push(r));
            for range in [0..3, 1..3, 0..1, 2..2] {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                all.write(range.clone(), fields, &mut a);
                own.write(range.clone(), fields, &mut b);
                assert_eq!(a, b, "{fields:?} {range:?}");
            }
        }
    }

    /// A customer whose parts fail half-way leaves nothing behind: the chunk is as if it had
    /// never been pushed.
    #[test]
    fn a_customer_that_fails_half_way_is_taken_back_whole() {
        let c = example();
        let mut w = ChunkWriter::new(Fields::all());
        w.push(&c);
        let failed = w.push_with("half", Some("UTC"), |row| {
            row.profile(&c.profile);
            row.contacts(&c.contacts);
            row.transaction((&c.transactions[0]).into());
            row.event(c.events[0].at, "x", &Value::Null);
            Err("a bad cell")
        });
        assert_eq!(failed, Err("a bad cell"));
        let mut other = c.clone();
        other.id = "after".into();
        w.push(&other);
        let mut want = ChunkWriter::new(Fields::all());
        want.push(&c);
        want.push(&other);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        w.write(0..2, Fields::all(), &mut a);
        want.write(0..2, Fields::all(), &mut b);
        assert_eq!(a, b);
        assert_eq!((w.len(), w.id(1)), (2, "after"));
        // Cleared for the next chunk, it writes as a new writer does.
        let fields = Fields::of(&[Field::Transactions, Field::EventName]);
        w.clear(fields);
        w.push(&other);
        let mut fresh = ChunkWriter::new(fields);
        fresh.push(&other);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        w.write(0..1, fields, &mut a);
        fresh.write(0..1, fields, &mut b);
        assert_eq!((w.len(), a), (1, b));
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
            assert!(ChunkView::read(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(ChunkView::read(&longer).is_err());
        // Every single-byte change reads or fails cleanly.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xa5;
            if let Ok(chunk) = ChunkView::read(&b) {
                for k in 0..chunk.len() {
                    if let Ok(v) = chunk.record(k) {
                        let _ = v.to_record();
                    }
                }
            }
        }
        // A string offset past the column's bytes is named. A customer `x` without zone whose
        // only part is transactions: `kind`'s offsets start after the count (4), `id` (8 + 1),
        // `tz` (1 + 8), the empty profile and consents (8 each), the transaction rows (8),
        // `at` and `amount` (16 a row) and the `id` column.
        let only = Record {
            id: "x".into(),
            tz: None,
            transactions: c.transactions.clone(),
            ..Record::default()
        };
        let mut t = Vec::new();
        encode_customer_reading(&only, Fields::of(&[Field::Transactions]), &mut t);
        let n = only.transactions.len();
        let ids: usize = only.transactions.iter().map(|t| t.id.len()).sum();
        let kind = 4 + 9 + 9 + 8 + 8 + 8 + 16 * n + 4 * (n + 1) + ids;
        t[kind + 4..kind + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = ChunkView::read(&t).unwrap_err();
        assert!(err.to_string().starts_with("`transactions.kind`"), "{err}");
        // A small part that does not decode is its customer's error, not the chunk's.
        let mut w = ChunkWriter::new(Fields::all());
        w.push(&c);
        let mut bad_journeys = c.clone();
        bad_journeys.id = "y".into();
        w.push(&bad_journeys);
        let mut b = Vec::new();
        w.write(0..2, Fields::all(), &mut b);
        let last = b.len() - 1;
        b[last] = 0xff;
        let chunk = ChunkView::read(&b).unwrap();
        assert!(chunk.record(0).is_ok());
        let err = chunk.record(1).unwrap_err();
        assert!(err.to_string().starts_with("`journeys`"), "{err}");
    }

    #[test]
    fn a_count_at_the_top_of_u32_is_an_error_not_an_overflow() {
        let mut b = u32::MAX.to_le_bytes().to_vec();
        b.extend_from_slice(&[0; 16]);
        assert!(ChunkView::read(&b).is_err());
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
        super::encode_customer_reading(
            &c,
            crate::Fields::of(&[crate::Field::Transactions]),
            &mut bytes,
        );
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
