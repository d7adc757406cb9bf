//! Reading a columnar file a unit (row group, record batch) at a time, into records.

use super::*;

/// A columnar input file, checked and ready to be read a unit at a time.
#[derive(Debug)]
pub struct ColumnarInput {
    path: PathBuf,
    format: ColumnarFormat,
    units: Vec<Unit>,
    reads: Fields,
}

/// One piece of a file read at once: a Parquet row group or an Arrow IPC record batch.
#[derive(Clone, Copy, Debug)]
pub struct Unit {
    /// Its index in the file.
    pub index: usize,
    /// The number of its first row in the file (1-based).
    pub first_row: u64,
    /// How many rows it has.
    pub rows: u64,
    /// Its size in the file, for progress.
    pub bytes: u64,
}

#[derive(Debug)]
enum ColumnarFormat {
    Parquet(ArrowReaderMetadata),
    ArrowIpc,
}

/// What a file's first bytes say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// Parquet (`PAR1`).
    Parquet,
    /// An Arrow IPC file (`ARROW1`).
    ArrowIpc,
    /// Anything else: read as NDJSON.
    Lines,
}

/// Tells a Parquet or Arrow IPC file from NDJSON by its magic bytes.
pub fn sniff(path: &Path) -> std::io::Result<FileKind> {
    let mut head = [0u8; 6];
    let mut file = File::open(path)?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(match &head[..n] {
        [b'P', b'A', b'R', b'1', ..] => FileKind::Parquet,
        b"ARROW1" => FileKind::ArrowIpc,
        _ => FileKind::Lines,
    })
}

impl ColumnarInput {
    /// Opens `path` (Parquet or Arrow IPC, by `kind`) for rules that read `reads`: reads its
    /// footer and checks its schema.
    pub fn open(path: &Path, kind: FileKind, reads: Fields) -> anyhow::Result<ColumnarInput> {
        let what = || format!("`{}`", path.display());
        let file = File::open(path).with_context(|| format!("cannot open input {}", what()))?;
        let (format, schema, units) = match kind {
            FileKind::Parquet => {
                let meta = ArrowReaderMetadata::load(&file, Default::default())
                    .with_context(|| format!("{} is not a readable Parquet file", what()))?;
                let mut first_row = 1;
                let units = meta
                    .metadata()
                    .row_groups()
                    .iter()
                    .enumerate()
                    .map(|(index, g)| {
                        let unit = Unit {
                            index,
                            first_row,
                            rows: g.num_rows().max(0) as u64,
                            bytes: g.compressed_size().max(0) as u64,
                        };
                        first_row += unit.rows;
                        unit
                    })
                    .collect();
                let schema = meta.schema().clone();
                (ColumnarFormat::Parquet(meta), schema, units)
            }
            FileKind::ArrowIpc => {
                let reader = arrow_ipc::reader::FileReader::try_new(file, None)
                    .with_context(|| format!("{} is not a readable Arrow IPC file", what()))?;
                let schema = reader.schema();
                let blocks = reader.num_batches();
                // Batch sizes are known only once read; each batch is a unit.
                let units = (0..blocks)
                    .map(|index| Unit {
                        index,
                        first_row: 0,
                        rows: 0,
                        bytes: 0,
                    })
                    .collect();
                (ColumnarFormat::ArrowIpc, schema, units)
            }
            FileKind::Lines => bail!("{} is not a columnar file", what()),
        };
        check_schema(&schema, reads).with_context(|| {
            format!(
                "{} does not have the customer schema (docs/COLUMNAR.md)",
                what()
            )
        })?;
        let mut input = ColumnarInput {
            path: path.to_owned(),
            format,
            units,
            reads,
        };
        if matches!(input.format, ColumnarFormat::ArrowIpc) {
            input.count_ipc_rows()?;
        }
        Ok(input)
    }

    /// Arrow IPC keeps no row counts in its footer: read each batch's header for it.
    fn count_ipc_rows(&mut self) -> anyhow::Result<()> {
        let mut first_row = 1;
        let mut reader = self.ipc_reader(Fields::default())?;
        for unit in &mut self.units {
            reader.set_index(unit.index)?;
            let rows = match reader.next() {
                Some(Ok(batch)) => batch.num_rows() as u64,
                _ => 0,
            };
            unit.first_row = first_row;
            unit.rows = rows;
            first_row += rows;
        }
        Ok(())
    }

    fn ipc_reader(&self, reads: Fields) -> anyhow::Result<arrow_ipc::reader::FileReader<File>> {
        let file = File::open(&self.path)
            .with_context(|| format!("cannot open input `{}`", self.path.display()))?;
        let projection = {
            let schema =
                arrow_ipc::reader::FileReader::try_new(File::open(&self.path)?, None)?.schema();
            projected_columns(&schema, reads)
        };
        Ok(arrow_ipc::reader::FileReader::try_new(
            file,
            Some(projection),
        )?)
    }

    /// The units of the file, in order.
    pub fn units(&self) -> &[Unit] {
        &self.units
    }

    /// The file's size, for progress.
    pub fn total_bytes(&self) -> Option<u64> {
        std::fs::metadata(&self.path).ok().map(|m| m.len())
    }

    /// Reads one unit, for the columns the rules read: its records, and for each row its record
    /// or why it has none.
    pub fn read(&self, unit: &Unit) -> (Vec<Record>, Vec<LineRead>) {
        let mut records = Vec::new();
        let lines = self.each_row(unit, &mut |cols, r| {
            records.push(read_row(r, cols)?);
            Ok(records.len() - 1)
        });
        (records, lines)
    }

    /// Reads one unit straight into the columns of `batch` (no record is built): for each row,
    /// its index in `batch` or why it has none. `batch` holds at most what the file was opened
    /// to read.
    pub fn fill(&self, unit: &Unit, batch: &mut EncodedBatch) -> Vec<LineRead> {
        self.each_row(unit, &mut |cols, r| {
            write_row(r, cols, batch)?;
            Ok(batch.len() - 1)
        })
    }

    fn each_row(&self, unit: &Unit, add: &mut AddRow<'_>) -> Vec<LineRead> {
        let mut lines = Vec::new();
        let mut row = unit.first_row;
        let failed = match self.batches(unit) {
            Ok(batches) => batches.into_iter().find_map(|batch| match batch {
                Ok(batch) => {
                    read_batch(&batch, Some(row), self.reads, add, &mut lines);
                    row += batch.num_rows() as u64;
                    None
                }
                Err(e) => Some(e),
            }),
            Err(e) => Some(e),
        };
        if let Some(e) = failed {
            let end = unit.first_row + unit.rows.max(1);
            let what = match self.format {
                ColumnarFormat::Parquet(_) => "row group",
                ColumnarFormat::ArrowIpc => "record batch",
            };
            for r in row..end {
                let error = format!(
                    "row {r}: {what} {} (rows {}–{}) cannot be read: {e}",
                    unit.index,
                    unit.first_row,
                    end - 1
                );
                lines.push(LineRead::Bad(None, error));
            }
        }
        lines
    }

    fn batches(&self, unit: &Unit) -> Result<Vec<Result<RecordBatch, String>>, String> {
        match &self.format {
            ColumnarFormat::Parquet(meta) => {
                let mask =
                    parquet_projection(meta.metadata().file_metadata().schema_descr(), self.reads);
                let chunks = RowGroupBytes::read(&self.path, meta, unit.index, &mask)
                    .map_err(|e| format!("{e:#}"))?;
                let builder =
                    ParquetRecordBatchReaderBuilder::new_with_metadata(chunks, meta.clone());
                let reader = builder
                    .with_row_groups(vec![unit.index])
                    .with_projection(mask)
                    .with_batch_size(1024)
                    .build()
                    .map_err(|e| short(&e))?;
                // A reader that failed may go on failing for ever: stop at its first error.
                let mut batches = Vec::new();
                for batch in reader {
                    let failed = batch.is_err();
                    batches.push(batch.map_err(|e| short(&e)));
                    if failed {
                        break;
                    }
                }
                Ok(batches)
            }
            ColumnarFormat::ArrowIpc => {
                let mut reader = self.ipc_reader(self.reads).map_err(|e| format!("{e:#}"))?;
                reader.set_index(unit.index).map_err(|e| short(&e))?;
                Ok(reader
                    .next()
                    .into_iter()
                    .map(|b| b.map_err(|e| short(&e)))
                    .collect())
            }
        }
    }
}

/// An error's message, cut at 300 bytes: a decoder's error over damaged bytes can quote them
/// at length, and the message goes on every row of its unit.
fn short(e: &dyn std::fmt::Display) -> String {
    struct Capped(String);
    impl std::fmt::Write for Capped {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = 300usize.saturating_sub(self.0.len());
            let mut take = s.len().min(room);
            while !s.is_char_boundary(take) {
                take -= 1;
            }
            self.0.push_str(&s[..take]);
            if take < s.len() {
                Err(std::fmt::Error)
            } else {
                Ok(())
            }
        }
    }
    let mut out = Capped(String::new());
    if std::fmt::write(&mut out, format_args!("{e}")).is_err() {
        out.0.push('…');
    }
    out.0
}

/// The column chunks of one row group that a read needs, in memory: one read of the file each,
/// and a damaged page header then fails at its chunk's end instead of reading on through the
/// file.
struct RowGroupBytes {
    len: u64,
    chunks: Vec<(u64, bytes::Bytes)>,
}

impl RowGroupBytes {
    fn read(
        path: &Path,
        meta: &ArrowReaderMetadata,
        group: usize,
        mask: &ProjectionMask,
    ) -> anyhow::Result<RowGroupBytes> {
        use std::io::{Seek, SeekFrom};
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut chunks = Vec::new();
        for (i, column) in meta
            .metadata()
            .row_group(group)
            .columns()
            .iter()
            .enumerate()
        {
            if !mask.leaf_included(i) {
                continue;
            }
            let (start, size) = column.byte_range();
            if start.checked_add(size).is_none_or(|end| end > len) {
                bail!("column chunk {i} lies outside the file ({start}+{size} of {len} bytes)");
            }
            let mut buf = vec![0; size as usize];
            file.seek(SeekFrom::Start(start))?;
            file.read_exact(&mut buf)?;
            chunks.push((start, bytes::Bytes::from(buf)));
        }
        Ok(RowGroupBytes { len, chunks })
    }

    fn at(&self, start: u64) -> parquet::errors::Result<(usize, &bytes::Bytes)> {
        self.chunks
            .iter()
            .find(|(at, b)| (*at..*at + b.len() as u64).contains(&start))
            .map(|(at, b)| ((start - at) as usize, b))
            .ok_or_else(|| {
                parquet::errors::ParquetError::General(format!(
                    "offset {start} is outside the column chunks read"
                ))
            })
    }
}

impl parquet::file::reader::Length for RowGroupBytes {
    fn len(&self) -> u64 {
        self.len
    }
}

impl parquet::file::reader::ChunkReader for RowGroupBytes {
    type T = bytes::buf::Reader<bytes::Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf as _;
        let (offset, chunk) = self.at(start)?;
        Ok(chunk.slice(offset..).reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        let (offset, chunk) = self.at(start)?;
        match offset.checked_add(length) {
            Some(end) if end <= chunk.len() => Ok(chunk.slice(offset..end)),
            _ => Err(parquet::errors::ParquetError::EOF(format!(
                "{length} bytes at offset {start} run past the end of their column chunk"
            ))),
        }
    }
}

/// The top-level columns rules that read `reads` need (Arrow IPC projects whole columns).
fn projected_columns(schema: &Schema, reads: Fields) -> Vec<usize> {
    schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| wanted(f.name(), reads))
        .map(|(i, _)| i)
        .collect()
}

fn wanted(column: &str, reads: Fields) -> bool {
    column == "id"
        || column == "tz"
        || PARTS
            .iter()
            .any(|(part, name, _, _)| *name == column && reads.contains(*part))
}

/// The Parquet leaves rules that read `reads` need: whole parts, and for transactions and events
/// read member by member only those members.
fn parquet_projection(
    schema: &parquet::schema::types::SchemaDescriptor,
    reads: Fields,
) -> ProjectionMask {
    let leaves = (0..schema.num_columns()).filter(|&i| {
        let parts = schema.column(i).path().parts().to_vec();
        let top = parts[0].as_str();
        if !wanted(top, reads) {
            return false;
        }
        let Some((part, _, _, members)) = PARTS.iter().find(|(_, name, _, _)| *name == top) else {
            return true;
        };
        // A member is the first path element below the list's item that names one.
        match parts
            .iter()
            .skip(1)
            .find_map(|p| members.iter().find(|m| m.name == p))
        {
            Some(member) => reads_member(reads, *part, member),
            None => true,
        }
    });
    ProjectionMask::leaves(schema, leaves.collect::<Vec<_>>())
}

// ---------------------------------------------------------------------------------------------
// Reading rows

/// A column cast to its canonical type, or nothing when the file does not have it (or the rules
/// do not read it).
struct Column {
    array: Typed,
    /// The file's own column, kept when the cast lost values (a value that does not fit the
    /// canonical type reads as null after a safe cast), so that row is an error, never absent.
    lossy: Option<ArrayRef>,
}

/// A column's array as its canonical type, downcast once for the whole batch: a cell is then
/// read by an index into the array's buffers, not through a virtual call and a downcast each.
enum Typed {
    Missing,
    Text(StringArray),
    Instant(TimestampMillisecondArray),
    Day(Date32Array),
    Number(Float64Array),
    Integer(Int64Array),
    Flag(BooleanArray),
    Texts(ListArray),
}

impl Typed {
    fn of(a: &ArrayRef) -> Typed {
        match a.data_type() {
            DataType::Utf8 => Typed::Text(a.as_string::<i32>().clone()),
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                Typed::Instant(a.as_primitive::<TimestampMillisecondType>().clone())
            }
            DataType::Date32 => Typed::Day(a.as_primitive::<Date32Type>().clone()),
            DataType::Float64 => Typed::Number(a.as_primitive::<Float64Type>().clone()),
            DataType::Int64 => Typed::Integer(a.as_primitive::<Int64Type>().clone()),
            DataType::Boolean => Typed::Flag(a.as_boolean().clone()),
            DataType::List(_) => Typed::Texts(a.as_list::<i32>().clone()),
            _ => Typed::Missing,
        }
    }

    fn is_null(&self, i: usize) -> bool {
        match self {
            Typed::Missing => true,
            Typed::Text(a) => a.is_null(i),
            Typed::Instant(a) => a.is_null(i),
            Typed::Day(a) => a.is_null(i),
            Typed::Number(a) => a.is_null(i),
            Typed::Integer(a) => a.is_null(i),
            Typed::Flag(a) => a.is_null(i),
            Typed::Texts(a) => a.is_null(i),
        }
    }
}

/// The value `i` of a primitive column, when it has one.
fn value<T: ArrowPrimitiveType>(a: &PrimitiveArray<T>, i: usize) -> Option<T::Native> {
    a.is_valid(i).then(|| a.value(i))
}

impl Column {
    fn cast(source: Option<&ArrayRef>, to: &DataType) -> Column {
        let Some(source) = source else {
            return Column {
                array: Typed::Missing,
                lossy: None,
            };
        };
        match arrow_cast::cast(source, to) {
            Ok(array) => Column {
                lossy: (array.logical_null_count() != source.logical_null_count())
                    .then(|| source.clone()),
                array: Typed::of(&array),
            },
            Err(_) => Column {
                array: Typed::Missing,
                lossy: Some(source.clone()),
            },
        }
    }

    fn of(parent: Option<&StructArray>, member: &Member) -> Column {
        let source = parent.and_then(|s| s.column_by_name(member.name));
        Column::cast(source, &member.leaf.canonical())
    }

    fn top(batch: &RecordBatch, name: &str, leaf: Leaf) -> Column {
        Column::cast(batch.column_by_name(name), &leaf.canonical())
    }

    /// Why value `i` could not be read, when the file has a value there that does not convert.
    fn lost(&self, i: usize) -> Option<String> {
        let source = self.lossy.as_ref()?;
        let gone = source.is_valid(i) && self.array.is_null(i);
        gone.then(|| {
            let value = arrow_cast::display::array_value_to_string(source, i)
                .unwrap_or_else(|_| "the value".into());
            format!(
                "`{value}` ({}) does not convert to what the column holds",
                source.data_type()
            )
        })
    }

    fn text(&self, i: usize) -> Option<&str> {
        match &self.array {
            Typed::Text(a) => a.is_valid(i).then(|| a.value(i)),
            _ => None,
        }
    }

    fn instant(&self, i: usize) -> Option<Timestamp> {
        match &self.array {
            Typed::Instant(a) => value(a, i).map(Timestamp::from_millis),
            _ => None,
        }
    }

    fn day(&self, i: usize) -> Option<i32> {
        match &self.array {
            Typed::Day(a) => value(a, i),
            _ => None,
        }
    }

    fn number(&self, i: usize) -> Option<f64> {
        match &self.array {
            Typed::Number(a) => value(a, i),
            _ => None,
        }
    }

    fn integer(&self, i: usize) -> Option<i64> {
        match &self.array {
            Typed::Integer(a) => value(a, i),
            _ => None,
        }
    }

    fn flag(&self, i: usize) -> Option<bool> {
        match &self.array {
            Typed::Flag(a) => a.is_valid(i).then(|| a.value(i)),
            _ => None,
        }
    }

    fn texts(&self, i: usize) -> Vec<String> {
        let Typed::Texts(a) = &self.array else {
            return Vec::new();
        };
        if a.is_null(i) {
            return Vec::new();
        }
        let list = a.value(i);
        let strings = list.as_string::<i32>();
        (0..strings.len())
            .filter(|&k| !strings.is_null(k))
            .map(|k| strings.value(k).to_owned())
            .collect()
    }
}

/// One part's column in a batch: per row, the range of its items, and its members' columns.
struct PartColumns {
    name: &'static str,
    /// Item ranges per row (lists); `None` when the file has no such column.
    offsets: Option<(OffsetBuffer<i32>, Option<NullBuffer>)>,
    /// The struct's own nulls (an item that is null).
    items: Option<StructArray>,
    columns: Vec<Column>,
}

impl PartColumns {
    fn of(batch: &RecordBatch, name: &'static str, list: bool, members: &[Member]) -> PartColumns {
        let mut part = PartColumns {
            name,
            offsets: None,
            items: None,
            columns: Vec::new(),
        };
        if let Some(column) = batch.column_by_name(name) {
            let column = match column.data_type() {
                DataType::LargeList(f) => arrow_cast::cast(column, &DataType::List(f.clone())).ok(),
                _ => Some(column.clone()),
            };
            if let Some(column) = column {
                if list {
                    let l = column.as_list::<i32>();
                    part.offsets = Some((l.offsets().clone(), l.nulls().cloned()));
                    part.items = Some(l.values().as_struct().clone());
                } else {
                    part.items = Some(column.as_struct().clone());
                }
            }
        }
        part.columns = members
            .iter()
            .map(|m| Column::of(part.items.as_ref(), m))
            .collect();
        part
    }

    /// The item indices of row `r`.
    fn range(&self, r: usize) -> std::ops::Range<usize> {
        match &self.offsets {
            Some((o, nulls)) if nulls.as_ref().is_none_or(|n| n.is_valid(r)) => {
                o[r] as usize..o[r + 1] as usize
            }
            _ => 0..0,
        }
    }

    /// An error for the first member of item `i` whose value did not convert.
    fn check(&self, i: usize) -> CellResult<()> {
        match self
            .columns
            .iter()
            .enumerate()
            .find_map(|(k, c)| Some((k, c.lost(i)?)))
        {
            Some((k, why)) => Err(member_cell(self, k, i, why)),
            None => Ok(()),
        }
    }

    fn item_is_null(&self, i: usize) -> bool {
        self.items.as_ref().is_some_and(|s| s.is_null(i))
    }
}

/// Reads the rows of a record batch handed over in memory (by Spark's `mapInArrow`, say)
/// straight into the columns of `into`, for what it holds: for each row its index in `into` or
/// why it has none. A row's error is numbered from `first_row`, or names only the column without
/// one (a piece of a Spark partition has no row numbers). Fails, naming the column, when the
/// batch does not have the customer schema.
pub fn fill_record_batch(
    batch: &RecordBatch,
    first_row: Option<u64>,
    into: &mut EncodedBatch,
) -> anyhow::Result<Vec<LineRead>> {
    let reads = into.fields();
    check_schema(&batch.schema(), reads)
        .context("the batch does not have the customer schema (docs/COLUMNAR.md)")?;
    let mut lines = Vec::new();
    let mut add = |cols: &Columns, r| {
        write_row(r, cols, into)?;
        Ok(into.len() - 1)
    };
    read_batch(batch, first_row, reads, &mut add, &mut lines);
    Ok(lines)
}

/// An error in one cell: the column's path and what is wrong.
struct Cell(String, String);

type CellResult<T> = Result<T, Cell>;

/// A batch's columns, as a row reader needs them.
struct Columns {
    id: Column,
    tz: Column,
    /// Per part of [`PARTS`], its columns when the rules read it.
    parts: Vec<Option<PartColumns>>,
    reads: Fields,
}

impl Columns {
    fn part(&self, f: Field) -> Option<&PartColumns> {
        self.parts[PARTS.iter().position(|p| p.0 == f).expect("a part")].as_ref()
    }
}

/// Adds row `r` wherever rows go (records, a chunk's columns): its index there, or the cell
/// that is wrong (and then nothing is added).
type AddRow<'a> = dyn FnMut(&Columns, usize) -> CellResult<usize> + 'a;

/// Reads a batch's rows (the first of which is row `first_row` of the file, when it is known)
/// with `add`, and for each row where it went or why it has none into `lines`.
fn read_batch(
    batch: &RecordBatch,
    first_row: Option<u64>,
    reads: Fields,
    add: &mut AddRow<'_>,
    lines: &mut Vec<LineRead>,
) {
    let cols = Columns {
        id: Column::top(batch, "id", Text),
        tz: Column::top(batch, "tz", Text),
        parts: PARTS
            .iter()
            .map(|(part, name, list, members)| {
                reads
                    .contains(*part)
                    .then(|| PartColumns::of(batch, name, *list, members))
            })
            .collect(),
        reads,
    };
    for r in 0..batch.num_rows() {
        match add(&cols, r) {
            Ok(i) => lines.push(LineRead::Record(i)),
            Err(Cell(column, e)) => {
                let error = match first_row {
                    Some(first) => format!("row {}, column `{column}`: {e}", first + r as u64),
                    None => format!("column `{column}`: {e}"),
                };
                let salvaged = cols.id.text(r).map(str::to_owned);
                lines.push(LineRead::Bad(
                    salvaged.filter(|s| regua_sdk::record::id_problem(s).is_none()),
                    error,
                ));
            }
        }
    }
}

/// Row `r`'s id and zone, checked as the JSON reader checks them.
fn id_and_zone(r: usize, cols: &Columns) -> CellResult<(&str, Option<&str>)> {
    let cell = |column: &str, e: String| Cell(column.to_owned(), e);
    for (name, column) in [("id", &cols.id), ("tz", &cols.tz)] {
        if let Some(why) = column.lost(r) {
            return Err(cell(name, why));
        }
    }
    let id = match cols.id.text(r) {
        None => return Err(cell("id", "is null (every record needs an id)".into())),
        Some(t) => match regua_sdk::record::id_problem(t) {
            Some(problem) => return Err(cell("id", problem)),
            None => t,
        },
    };
    let tz = cols.tz.text(r);
    if let Some(name) = tz {
        check_zone_name(name).map_err(|e| cell("tz", e))?;
    }
    Ok((id, tz))
}

/// Row `r` as a record.
fn read_row(r: usize, cols: &Columns) -> CellResult<Record> {
    let (id, tz) = id_and_zone(r, cols)?;
    let mut c = Record {
        id: id.to_owned(),
        tz: tz.map(str::to_owned),
        ..Record::default()
    };
    if let Some(p) = cols.part(Field::Profile) {
        c.profile = read_profile(p, r)?;
    }
    if let Some(p) = cols.part(Field::Consents) {
        c.consents = read_consents(p, r)?;
    }
    if let Some(p) = cols.part(Field::Transactions) {
        c.transactions = items(p, r, |i, col| {
            read_transaction(col, i, cols.reads).map(Transaction::from)
        })?;
    }
    if let Some(p) = cols.part(Field::Events) {
        c.events = items(p, r, |i, col| {
            let (at, name, props) = read_event(col, i, cols.reads)?;
            Ok(Event {
                name: name.to_owned(),
                at,
                props,
            })
        })?;
    }
    if let Some(p) = cols.part(Field::Inbound) {
        c.inbound = items(p, r, read_inbound)?;
    }
    if let Some(p) = cols.part(Field::Contacts) {
        c.contacts = items(p, r, read_contact)?;
    }
    if let Some(p) = cols.part(Field::Journeys) {
        c.journeys = items(p, r, read_journey)?;
    }
    Ok(c)
}

/// Row `r` written straight into the columns of `batch`, or nothing when a cell is wrong.
fn write_row(r: usize, cols: &Columns, batch: &mut EncodedBatch) -> CellResult<()> {
    let (id, tz) = id_and_zone(r, cols)?;
    batch.push_with(id, tz, |row| {
        if let Some(p) = cols.part(Field::Profile) {
            row.profile(&read_profile(p, r)?);
        }
        if let Some(p) = cols.part(Field::Consents) {
            row.consents(&read_consents(p, r)?);
        }
        if let Some(p) = cols.part(Field::Transactions) {
            each_item(p, r, |i, col| {
                row.transaction(read_transaction(col, i, cols.reads)?);
                Ok(())
            })?;
        }
        if let Some(p) = cols.part(Field::Events) {
            each_item(p, r, |i, col| {
                let (at, name, props) = read_event(col, i, cols.reads)?;
                row.event(at, name, &props);
                Ok(())
            })?;
        }
        if let Some(p) = cols.part(Field::Inbound) {
            row.inbound(&items(p, r, read_inbound)?);
        }
        if let Some(p) = cols.part(Field::Contacts) {
            row.contacts(&items(p, r, read_contact)?);
        }
        if let Some(p) = cols.part(Field::Journeys) {
            row.journeys(&items(p, r, read_journey)?);
        }
        Ok(())
    })
}

/// Transaction `i`, for the members the rules read (a member read is required as in JSON).
fn read_transaction(col: &PartColumns, i: usize, reads: Fields) -> CellResult<TransactionRef<'_>> {
    let want = |f| reads.reads(f);
    Ok(TransactionRef {
        id: if want(Field::TransactionId) {
            req(col, 0, i, |c| c.text(i))?
        } else {
            ""
        },
        at: if want(Field::TransactionAt) {
            req(col, 1, i, |c| c.instant(i))?
        } else {
            Timestamp::default()
        },
        kind: if want(Field::TransactionKind) {
            req(col, 2, i, |c| c.text(i))?
        } else {
            ""
        },
        amount: if want(Field::TransactionAmount) {
            req(col, 3, i, |c| c.number(i))?
        } else {
            0.0
        },
        currency: col.columns[4].text(i).unwrap_or_default(),
        business_unit: col.columns[5].text(i),
        category: col.columns[6].text(i),
    })
}

/// Event `i`'s instant, name and properties, for the members the rules read.
fn read_event(col: &PartColumns, i: usize, reads: Fields) -> CellResult<(Timestamp, &str, Value)> {
    let want = |f| reads.reads(f);
    let name = if want(Field::EventName) {
        req(col, 0, i, |c| c.text(i))?
    } else {
        ""
    };
    let at = if want(Field::EventAt) {
        req(col, 1, i, |c| c.instant(i))?
    } else {
        Timestamp::default()
    };
    let props = match col.columns[2].text(i) {
        Some(text) => json_value(text).map_err(|e| member_cell(col, 2, i, e))?,
        None => Value::Null,
    };
    Ok((at, name, props))
}

fn read_inbound(i: usize, col: &PartColumns) -> CellResult<Inbound> {
    Ok(Inbound {
        channel: named(col, 0, i, Channel::from_name)?,
        at: req(col, 1, i, |c| c.instant(i))?,
    })
}

fn read_contact(i: usize, col: &PartColumns) -> CellResult<Contact> {
    Ok(Contact {
        channel: named(col, 0, i, Channel::from_name)?,
        at: req(col, 1, i, |c| c.instant(i))?,
        campaign: col.columns[2].text(i).map(str::to_owned),
        category: named(col, 3, i, Category::from_name)?,
        tags: col.columns[4].texts(i),
        counts_toward_caps: col.columns[5].flag(i).unwrap_or(true),
        template: col.columns[6].text(i).map(str::to_owned),
    })
}

fn read_journey(i: usize, col: &PartColumns) -> CellResult<JourneyState> {
    let instance = match col.columns[1].integer(i) {
        None => 1,
        Some(n) => u32::try_from(n).map_err(|_| {
            member_cell(
                col,
                1,
                i,
                format!("{n} is not an instance number (0 to {})", u32::MAX),
            )
        })?,
    };
    Ok(JourneyState {
        journey: req(col, 0, i, |c| c.text(i))?.to_owned(),
        instance,
        status: named(col, 2, i, JourneyStatus::from_name)?,
        entered_at: req(col, 3, i, |c| c.instant(i))?,
        step: req(col, 4, i, |c| c.text(i))?.to_owned(),
        step_entered_at: req(col, 5, i, |c| c.instant(i))?,
        variant: col.columns[6].text(i).map(str::to_owned),
        exit_reason: col.columns[7].text(i).map(str::to_owned),
    })
}

/// The path of member `k` of item `i` of a part, in the JSON reader's notation
/// (`transactions[2].at`): the item's index within its row.
fn member_path(part: &PartColumns, k: usize, i: usize, row_start: usize) -> String {
    let members = PARTS
        .iter()
        .find(|p| p.1 == part.name)
        .map(|p| p.3)
        .unwrap_or_default();
    let member = members.get(k).map_or("?", |m| m.name);
    if part.offsets.is_some() {
        format!("{}[{}].{member}", part.name, i - row_start)
    } else {
        format!("{}.{member}", part.name)
    }
}

thread_local! {
    /// The first item of the row being read, so a member's error names the item's index.
    static ROW_START: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn member_cell(part: &PartColumns, k: usize, i: usize, e: String) -> Cell {
    Cell(member_path(part, k, i, ROW_START.get()), e)
}

fn req<'a, T>(
    part: &'a PartColumns,
    k: usize,
    i: usize,
    get: impl FnOnce(&'a Column) -> Option<T>,
) -> CellResult<T> {
    get(&part.columns[k]).ok_or_else(|| {
        let e = if matches!(part.columns[k].array, Typed::Missing) {
            "is missing"
        } else {
            "is null"
        };
        member_cell(part, k, i, format!("{e} (required)"))
    })
}

fn named<T>(
    part: &PartColumns,
    k: usize,
    i: usize,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> CellResult<T> {
    let text = req(part, k, i, |c| c.text(i))?;
    parse(text).map_err(|e| member_cell(part, k, i, e))
}

/// Reads each item of row `r` of a list part with `read`, after checking it is not null and
/// its members converted.
fn each_item(
    part: &PartColumns,
    r: usize,
    mut read: impl FnMut(usize, &PartColumns) -> CellResult<()>,
) -> CellResult<()> {
    let range = part.range(r);
    ROW_START.set(range.start);
    for i in range {
        if part.item_is_null(i) {
            let index = i - ROW_START.get();
            return Err(Cell(format!("{}[{index}]", part.name), "is null".into()));
        }
        part.check(i)?;
        read(i, part)?;
    }
    Ok(())
}

/// [`each_item`], collected.
fn items<T>(
    part: &PartColumns,
    r: usize,
    mut read: impl FnMut(usize, &PartColumns) -> CellResult<T>,
) -> CellResult<Vec<T>> {
    let mut out = Vec::with_capacity(part.range(r).len());
    each_item(part, r, |i, p| {
        out.push(read(i, p)?);
        Ok(())
    })?;
    Ok(out)
}

fn json_value(text: &str) -> Result<Value, String> {
    regua_sdk::json::from_str(text, None).map_err(|e| format!("is not JSON text: {e}"))
}

fn read_profile(p: &PartColumns, r: usize) -> CellResult<Profile> {
    if p.items.is_none() || p.item_is_null(r) {
        return Ok(Profile::default());
    }
    ROW_START.set(r);
    p.check(r)?;
    let text = |k: usize| p.columns[k].text(r).map(str::to_owned);
    let attributes = match p.columns[7].text(r) {
        None => Default::default(),
        Some(t) => match json_value(t).map_err(|e| member_cell(p, 7, r, e))? {
            Value::Object(map) => map,
            Value::Null => Default::default(),
            _ => return Err(member_cell(p, 7, r, "is not a JSON object".into())),
        },
    };
    let birthday = match p.columns[3].day(r) {
        None => None,
        Some(days) => Some(date_of_days(days).map_err(|e| member_cell(p, 3, r, e))?),
    };
    Ok(Profile {
        first_name: text(0),
        email: text(1),
        phone: text(2),
        birthday,
        created_at: p.columns[4].instant(r),
        business_units: p.columns[5].texts(r),
        funnel_stage: text(6),
        attributes,
    })
}

fn read_consents(p: &PartColumns, r: usize) -> CellResult<Consents> {
    let mut consents = Consents::new();
    let range = p.range(r);
    ROW_START.set(range.start);
    for i in range {
        if p.item_is_null(i) {
            return Err(Cell(
                format!("consents[{}]", i - ROW_START.get()),
                "is null".into(),
            ));
        }
        let channel = named(p, 0, i, Channel::from_name)?;
        let purpose = named(p, 1, i, Category::from_name)?;
        let consent = Consent {
            status: named(p, 2, i, ConsentStatus::from_name)?,
            at: req(p, 3, i, |c| c.instant(i))?,
        };
        if consents
            .entry(channel)
            .or_default()
            .insert(purpose, consent)
            .is_some()
        {
            return Err(Cell(
                format!("consents[{}]", i - ROW_START.get()),
                format!("a second consent for {channel} {}", purpose.name()),
            ));
        }
    }
    Ok(consents)
}

/// Reads every row of a columnar file as a whole record (for `regua convert`).
pub fn read_all(
    path: &Path,
    kind: FileKind,
    mut each: impl FnMut(u64, Result<Record, String>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let input = ColumnarInput::open(path, kind, Fields::all())?;
    for unit in input.units() {
        let (customers, reads) = input.read(unit);
        let mut customers = customers.into_iter().map(Some).collect::<Vec<_>>();
        for (k, read) in reads.into_iter().enumerate() {
            let row = unit.first_row + k as u64;
            match read {
                LineRead::Record(i) => each(row, Ok(customers[i].take().expect("once")))?,
                LineRead::Bad(_, e) => each(row, Err(e))?,
            }
        }
    }
    Ok(())
}
