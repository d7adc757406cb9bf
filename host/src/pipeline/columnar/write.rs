//! Writing customers as columns: a Parquet or Arrow IPC file, a row group at a time.

use super::*;

/// The columns of customers, in the schema of [`schema`].
pub fn to_batch(customers: &[Record]) -> RecordBatch {
    let text = |v: Vec<Option<&str>>| Arc::new(StringArray::from(v)) as ArrayRef;
    let mut columns: Vec<ArrayRef> = vec![
        text(customers.iter().map(|c| Some(c.id.as_str())).collect()),
        text(customers.iter().map(|c| c.tz.as_deref()).collect()),
    ];
    let profiles: Vec<&Profile> = customers.iter().map(|c| &c.profile).collect();
    columns.push(Arc::new(profile_struct(&profiles)));
    columns.push(list(
        customers,
        PARTS[1].3,
        |c| {
            c.consents
                .iter()
                .flat_map(|(ch, by)| by.iter().map(move |(p, consent)| (*ch, *p, consent)))
                .collect::<Vec<_>>()
        },
        |items| {
            vec![
                text(items.iter().map(|i| Some(i.0.name())).collect()),
                text(items.iter().map(|i| Some(i.1.name())).collect()),
                text(items.iter().map(|i| Some(i.2.status.name())).collect()),
                instants(items.iter().map(|i| Some(i.2.at))),
            ]
        },
    ));
    columns.push(list(
        customers,
        TRANSACTIONS,
        |c| c.transactions.iter().collect(),
        |t| {
            vec![
                text(t.iter().map(|t| Some(t.id.as_str())).collect()),
                instants(t.iter().map(|t| Some(t.at))),
                text(t.iter().map(|t| Some(t.kind.as_str())).collect()),
                Arc::new(Float64Array::from(
                    t.iter().map(|t| t.amount).collect::<Vec<_>>(),
                )),
                text(
                    t.iter()
                        .map(|t| Some(t.currency.as_str()).filter(|c| !c.is_empty()))
                        .collect(),
                ),
                text(t.iter().map(|t| t.business_unit.as_deref()).collect()),
                text(t.iter().map(|t| t.category.as_deref()).collect()),
            ]
        },
    ));
    columns.push(list(
        customers,
        EVENTS,
        |c| c.events.iter().collect(),
        |e| {
            let props: Vec<Option<String>> = e
                .iter()
                .map(|e| {
                    (!e.props.is_null()).then(|| serde_json::to_string(&e.props).expect("JSON"))
                })
                .collect();
            vec![
                text(e.iter().map(|e| Some(e.name.as_str())).collect()),
                instants(e.iter().map(|e| Some(e.at))),
                text(props.iter().map(Option::as_deref).collect()),
            ]
        },
    ));
    columns.push(list(
        customers,
        INBOUND,
        |c| c.inbound.iter().collect(),
        |m| {
            vec![
                text(m.iter().map(|m| Some(m.channel.name())).collect()),
                instants(m.iter().map(|m| Some(m.at))),
            ]
        },
    ));
    columns.push(list(
        customers,
        CONTACTS,
        |c| c.contacts.iter().collect(),
        |m| {
            vec![
                text(m.iter().map(|m| Some(m.channel.name())).collect()),
                instants(m.iter().map(|m| Some(m.at))),
                text(m.iter().map(|m| m.campaign.as_deref()).collect()),
                text(m.iter().map(|m| Some(m.category.name())).collect()),
                text_lists(m.iter().map(|m| &m.tags[..])),
                Arc::new(BooleanArray::from(
                    m.iter().map(|m| m.counts_toward_caps).collect::<Vec<_>>(),
                )),
                text(m.iter().map(|m| m.template.as_deref()).collect()),
            ]
        },
    ));
    columns.push(list(
        customers,
        JOURNEYS,
        |c| c.journeys.iter().collect(),
        |j| {
            vec![
                text(j.iter().map(|j| Some(j.journey.as_str())).collect()),
                Arc::new(Int64Array::from(
                    j.iter().map(|j| j.instance as i64).collect::<Vec<_>>(),
                )),
                text(j.iter().map(|j| Some(j.status.name())).collect()),
                instants(j.iter().map(|j| Some(j.entered_at))),
                text(j.iter().map(|j| Some(j.step.as_str())).collect()),
                instants(j.iter().map(|j| Some(j.step_entered_at))),
                text(j.iter().map(|j| j.variant.as_deref()).collect()),
                text(j.iter().map(|j| j.exit_reason.as_deref()).collect()),
            ]
        },
    ));
    RecordBatch::try_new(schema(), columns).expect("columns match the schema")
}

fn instants(values: impl Iterator<Item = Option<Timestamp>>) -> ArrayRef {
    let v: Vec<Option<i64>> = values.map(|t| t.map(Timestamp::as_millis)).collect();
    Arc::new(TimestampMillisecondArray::from(v).with_timezone("UTC"))
}

fn text_lists<'a>(lists: impl Iterator<Item = &'a [String]>) -> ArrayRef {
    let mut offsets = vec![0i32];
    let mut values: Vec<&str> = Vec::new();
    for l in lists {
        values.extend(l.iter().map(String::as_str));
        offsets.push(values.len() as i32);
    }
    let item = Arc::new(ArrowField::new("item", DataType::Utf8, true));
    Arc::new(ListArray::new(
        item,
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Arc::new(StringArray::from(values)),
        None,
    ))
}

/// A list-of-structs column: the items of each customer (`items`), turned into member columns
/// (`columns`) in the order of `members`.
fn list<'c, T>(
    customers: &'c [Record],
    members: &[Member],
    items: impl Fn(&'c Record) -> Vec<T>,
    columns: impl FnOnce(&[T]) -> Vec<ArrayRef>,
) -> ArrayRef {
    let mut offsets = vec![0i32];
    let mut all = Vec::new();
    for c in customers {
        all.extend(items(c));
        offsets.push(all.len() as i32);
    }
    let arrays = columns(&all);
    let fields: ArrowFields = members
        .iter()
        .zip(&arrays)
        .map(|(m, a)| ArrowField::new(m.name, a.data_type().clone(), !m.required))
        .collect();
    let values = StructArray::new(fields.clone(), arrays, None);
    let item = Arc::new(ArrowField::new("item", DataType::Struct(fields), false));
    Arc::new(ListArray::new(
        item,
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Arc::new(values),
        None,
    ))
}

fn profile_struct(profiles: &[&Profile]) -> StructArray {
    let text = |f: &dyn Fn(&Profile) -> Option<&str>| -> ArrayRef {
        Arc::new(StringArray::from(
            profiles.iter().map(|p| f(p)).collect::<Vec<_>>(),
        ))
    };
    let attributes: Vec<Option<String>> = profiles
        .iter()
        .map(|p| {
            (!p.attributes.is_empty()).then(|| serde_json::to_string(&p.attributes).expect("JSON"))
        })
        .collect();
    let arrays: Vec<ArrayRef> = vec![
        text(&|p| p.first_name.as_deref()),
        text(&|p| p.email.as_deref()),
        text(&|p| p.phone.as_deref()),
        Arc::new(Date32Array::from(
            profiles
                .iter()
                .map(|p| p.birthday.map(days_of_date))
                .collect::<Vec<_>>(),
        )),
        instants(profiles.iter().map(|p| p.created_at)),
        text_lists(profiles.iter().map(|p| &p.business_units[..])),
        text(&|p| p.funnel_stage.as_deref()),
        Arc::new(StringArray::from(
            attributes.iter().map(Option::as_deref).collect::<Vec<_>>(),
        )),
    ];
    StructArray::new(struct_fields(PROFILE), arrays, None)
}

/// The columnar formats Régua writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Columnar {
    /// Apache Parquet, snappy-compressed, in row groups of 8,192 customers.
    Parquet,
    /// An Arrow IPC file, in record batches of 8,192 customers.
    Arrow,
}

/// Writes customers to a Parquet or Arrow IPC file, a row group (or batch) at a time.
pub struct ColumnarWriter {
    inner: Inner,
    pending: Vec<Record>,
    rows: u64,
}

enum Inner {
    Parquet(parquet::arrow::ArrowWriter<Box<dyn Write + Send>>),
    Arrow(arrow_ipc::writer::FileWriter<Box<dyn Write + Send>>),
}

impl ColumnarWriter {
    /// A writer of `format` into `out`.
    pub fn new(format: Columnar, out: Box<dyn Write + Send>) -> anyhow::Result<Self> {
        let schema = schema();
        let inner = match format {
            Columnar::Parquet => {
                let props = parquet::file::properties::WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
                    .build();
                Inner::Parquet(parquet::arrow::ArrowWriter::try_new(
                    out,
                    schema,
                    Some(props),
                )?)
            }
            Columnar::Arrow => Inner::Arrow(arrow_ipc::writer::FileWriter::try_new(out, &schema)?),
        };
        Ok(ColumnarWriter {
            inner,
            pending: Vec::with_capacity(ROWS_PER_GROUP),
            rows: 0,
        })
    }

    /// Adds one customer.
    pub fn push(&mut self, customer: Record) -> anyhow::Result<()> {
        self.pending.push(customer);
        if self.pending.len() == ROWS_PER_GROUP {
            self.flush_group()?;
        }
        Ok(())
    }

    fn flush_group(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = to_batch(&self.pending);
        match &mut self.inner {
            Inner::Parquet(w) => {
                w.write(&batch)?;
                w.flush()?;
            }
            Inner::Arrow(w) => w.write(&batch)?,
        }
        self.rows += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Writes what is left and the file's footer; returns the number of customers written.
    pub fn finish(mut self) -> anyhow::Result<u64> {
        self.flush_group()?;
        match self.inner {
            Inner::Parquet(w) => {
                w.close()?;
            }
            Inner::Arrow(mut w) => w.finish()?,
        }
        Ok(self.rows)
    }
}
