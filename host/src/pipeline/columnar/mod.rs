//! Customer records in columns: Parquet and Arrow IPC files with the schema of
//! `docs/COLUMNAR.md`, read for only the columns the plugins read, and written by
//! `regua convert` and `regua generate --format parquet`.
//!
//! A file is checked once when it is opened (the format, and each known column's type); its row
//! groups (Parquet) or record batches (Arrow IPC) are then read on the evaluation threads, one
//! unit a thread, so decoding is spread over the cores as evaluation is. A row that breaks a
//! rule the JSON reader also enforces (a blank id, an unknown channel, a required member that is
//! null) gets an error naming the row and the column, and the other rows go on; so does every
//! row of a unit that cannot be decoded at all.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    ArrowPrimitiveType, Date32Type, Float64Type, Int64Type, TimestampMillisecondType,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, ListArray,
    PrimitiveArray, RecordBatch, StringArray, StructArray, TimestampMillisecondArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{
    DataType, Field as ArrowField, Fields as ArrowFields, Schema, SchemaRef, TimeUnit,
};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use regua_sdk::record::{Consents, check_zone_name};
use regua_sdk::{
    Category, Channel, Consent, ConsentStatus, Contact, Date, Event, Field, Fields, Inbound,
    JourneyState, JourneyStatus, Profile, Record, Timestamp, Transaction, Value,
};

use crate::pipeline::record::LineRead;
use crate::runtime::chunk::EncodedBatch;
use regua_sdk::wire::TransactionRef;

/// Rows a Parquet row group holds when Régua writes one; also the Arrow IPC batch size.
pub const ROWS_PER_GROUP: usize = 8192;

/// The kind of a leaf column, as Régua reads it; several Arrow types are accepted for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leaf {
    /// Text: Utf8, LargeUtf8, Utf8View or a dictionary of them.
    Text,
    /// An instant: Timestamp of any unit, read as UTC (a zone on the type is only a display hint).
    Instant,
    /// A calendar date: Date32 or Date64.
    Day,
    /// A number: any integer, float or decimal type, read as a 64-bit float.
    Number,
    /// An integer: any integer type.
    Integer,
    /// True or false: Boolean.
    Flag,
    /// A list of text.
    Texts,
}

impl Leaf {
    fn accepts(self, t: &DataType) -> bool {
        self.is_kind_of(t) && arrow_cast::can_cast_types(t, &self.canonical())
    }

    fn is_kind_of(self, t: &DataType) -> bool {
        use DataType::*;
        match self {
            Leaf::Text => match t {
                Utf8 | LargeUtf8 | Utf8View => true,
                Dictionary(_, v) => matches!(**v, Utf8 | LargeUtf8 | Utf8View),
                _ => false,
            },
            Leaf::Instant => matches!(t, Timestamp(_, _)),
            Leaf::Day => matches!(t, Date32 | Date64),
            Leaf::Number => t.is_numeric(),
            Leaf::Integer => t.is_integer(),
            Leaf::Flag => matches!(t, Boolean),
            Leaf::Texts => match t {
                List(f) | LargeList(f) => Leaf::Text.is_kind_of(f.data_type()),
                _ => false,
            },
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Leaf::Text => "text (Utf8)",
            Leaf::Instant => "a timestamp",
            Leaf::Day => "a date (Date32)",
            Leaf::Number => "a number",
            Leaf::Integer => "an integer",
            Leaf::Flag => "a boolean",
            Leaf::Texts => "a list of text",
        }
    }

    /// The type a column of this kind is written with, and cast to when read.
    fn canonical(self) -> DataType {
        match self {
            Leaf::Text => DataType::Utf8,
            Leaf::Instant => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            Leaf::Day => DataType::Date32,
            Leaf::Number => DataType::Float64,
            Leaf::Integer => DataType::Int64,
            Leaf::Flag => DataType::Boolean,
            Leaf::Texts => DataType::List(Arc::new(ArrowField::new("item", DataType::Utf8, true))),
        }
    }
}

/// One member of a part: its name, kind, whether a record must have it, and (for transactions
/// and events) the [`Field`] that reads it.
struct Member {
    name: &'static str,
    leaf: Leaf,
    required: bool,
    field: Option<Field>,
}

const fn m(name: &'static str, leaf: Leaf, required: bool, field: Option<Field>) -> Member {
    Member {
        name,
        leaf,
        required,
        field,
    }
}

use Leaf::*;

const PROFILE: &[Member] = &[
    m("first_name", Text, false, None),
    m("email", Text, false, None),
    m("phone", Text, false, None),
    m("birthday", Day, false, None),
    m("created_at", Instant, false, None),
    m("business_units", Texts, false, None),
    m("funnel_stage", Text, false, None),
    m("attributes", Text, false, None),
];
const CONSENTS: &[Member] = &[
    m("channel", Text, true, None),
    m("purpose", Text, true, None),
    m("status", Text, true, None),
    m("at", Instant, true, None),
];
const TRANSACTIONS: &[Member] = &[
    m("id", Text, true, Some(Field::TransactionId)),
    m("at", Instant, true, Some(Field::TransactionAt)),
    m("kind", Text, true, Some(Field::TransactionKind)),
    m("amount", Number, true, Some(Field::TransactionAmount)),
    m("currency", Text, false, Some(Field::TransactionCurrency)),
    m(
        "business_unit",
        Text,
        false,
        Some(Field::TransactionBusinessUnit),
    ),
    m("category", Text, false, Some(Field::TransactionCategory)),
];
const EVENTS: &[Member] = &[
    m("name", Text, true, Some(Field::EventName)),
    m("at", Instant, true, Some(Field::EventAt)),
    m("props", Text, false, Some(Field::EventProps)),
];
const INBOUND: &[Member] = &[m("channel", Text, true, None), m("at", Instant, true, None)];
const CONTACTS: &[Member] = &[
    m("channel", Text, true, None),
    m("at", Instant, true, None),
    m("campaign", Text, false, None),
    m("category", Text, true, None),
    m("tags", Texts, false, None),
    m("counts_toward_caps", Flag, false, None),
    m("template", Text, false, None),
];
const JOURNEYS: &[Member] = &[
    m("journey", Text, true, None),
    m("instance", Integer, false, None),
    m("status", Text, true, None),
    m("entered_at", Instant, true, None),
    m("step", Text, true, None),
    m("step_entered_at", Instant, true, None),
    m("variant", Text, false, None),
    m("exit_reason", Text, false, None),
];

/// The record's parts as columns: the part, its column name, whether it is a list of structs
/// (all but `profile`), and its members.
const PARTS: &[(Field, &str, bool, &[Member])] = &[
    (Field::Profile, "profile", false, PROFILE),
    (Field::Consents, "consents", true, CONSENTS),
    (Field::Transactions, "transactions", true, TRANSACTIONS),
    (Field::Events, "events", true, EVENTS),
    (Field::Inbound, "inbound", true, INBOUND),
    (Field::Contacts, "contacts", true, CONTACTS),
    (Field::Journeys, "journeys", true, JOURNEYS),
];

fn struct_fields(members: &[Member]) -> ArrowFields {
    members
        .iter()
        .map(|m| ArrowField::new(m.name, m.leaf.canonical(), !m.required))
        .collect()
}

fn list_of(members: &[Member]) -> DataType {
    let item = ArrowField::new("item", DataType::Struct(struct_fields(members)), false);
    DataType::List(Arc::new(item))
}

/// The schema Régua writes (`docs/COLUMNAR.md`).
pub fn schema() -> SchemaRef {
    let mut fields = vec![
        ArrowField::new("id", DataType::Utf8, false),
        ArrowField::new("tz", DataType::Utf8, true),
    ];
    for (_, name, list, members) in PARTS {
        let t = if *list {
            list_of(members)
        } else {
            DataType::Struct(struct_fields(members))
        };
        fields.push(ArrowField::new(*name, t, true));
    }
    Arc::new(Schema::new(fields))
}

/// The struct type inside a part's column, if the column has the expected shape.
fn part_struct(t: &DataType, list: bool) -> Option<&ArrowFields> {
    let inner = if list {
        match t {
            DataType::List(f) | DataType::LargeList(f) => f.data_type(),
            _ => return None,
        }
    } else {
        t
    };
    match inner {
        DataType::Struct(fields) => Some(fields),
        _ => None,
    }
}

/// Checks a file's schema against the documented one: `id` is there and is text, and every known
/// column present has an accepted type. Unknown columns are ignored, as unknown JSON keys are.
/// A required member missing from a part present is an error only for the rules that read it.
fn check_schema(schema: &Schema, reads: Fields) -> anyhow::Result<()> {
    let column = |name: &str| schema.field_with_name(name).ok();
    match column("id") {
        None => bail!("it has no `id` column (every record needs one)"),
        Some(f) if !Leaf::Text.accepts(f.data_type()) => {
            bail!("column `id` is {}, expected text (Utf8)", f.data_type())
        }
        _ => {}
    }
    if let Some(f) = column("tz").filter(|f| !Leaf::Text.accepts(f.data_type())) {
        bail!("column `tz` is {}, expected text (Utf8)", f.data_type());
    }
    for (part, name, list, members) in PARTS {
        let Some(f) = column(name) else { continue };
        let shape = if *list {
            "a list of structs"
        } else {
            "a struct"
        };
        let Some(fields) = part_struct(f.data_type(), *list) else {
            bail!("column `{name}` is {}, expected {shape}", f.data_type());
        };
        for member in *members {
            match fields.find(member.name) {
                Some((_, f)) if !member.leaf.accepts(f.data_type()) => bail!(
                    "column `{name}.{}` is {}, expected {}",
                    member.name,
                    f.data_type(),
                    member.leaf.expected()
                ),
                None if member.required
                    && reads.contains(*part)
                    && reads_member(reads, *part, member) =>
                {
                    bail!(
                        "column `{name}` has no member `{}`, which every {} needs",
                        member.name,
                        singular(name)
                    )
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn reads_member(reads: Fields, part: Field, member: &Member) -> bool {
    match member.field {
        Some(f) => reads.reads(f),
        None => reads.contains(part),
    }
}

fn singular(part: &str) -> &str {
    match part {
        "consents" => "consent",
        "transactions" => "transaction",
        "events" => "event",
        "contacts" => "contact",
        "journeys" => "journey state",
        other => other,
    }
}

const EPOCH: jiff::civil::Date = jiff::civil::date(1970, 1, 1);

fn date_of_days(days: i32) -> Result<Date, String> {
    EPOCH
        .checked_add(jiff::Span::new().days(days as i64))
        .map(Date)
        .map_err(|e| format!("{days} days from 1970-01-01 is not a date ({e})"))
}

fn days_of_date(date: Date) -> i32 {
    (date.0 - EPOCH).get_days()
}

// ---------------------------------------------------------------------------------------------
// Writing

mod read;
mod write;

pub use read::*;
pub use write::*;
