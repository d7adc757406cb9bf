//! The other forms a campaign run's output takes, read as its NDJSON: the readout reads the
//! answers and send lists `regua campaign run` writes as Parquet (`--format parquet`,
//! `--send-list-format parquet`) or CSV (`--send-list-format csv`) line by line, as the same JSON
//! objects its NDJSON form has, so one reader (and one definition of the conversion window)
//! serves every form.

use std::io::{BufRead, Read};
use std::path::Path;

use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use crate::pipeline::campaign::SEND_LIST_COLUMNS;

/// The first bytes of a Parquet file.
const PARQUET_MAGIC: &[u8] = b"PAR1";

/// The file at `path` (`-`: standard input) as NDJSON: itself when it is, its rows as JSON
/// objects when it is a Parquet file or a CSV send list. `what` names it in errors.
pub fn open(path: &Path, what: &str) -> Result<Box<dyn BufRead>, String> {
    let cannot = |e: std::io::Error| format!("cannot read {what} `{}`: {e}", path.display());
    let mut input: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(path).map_err(cannot)?,
        ))
    };
    let head = input.fill_buf().map_err(cannot)?;
    if head.starts_with(PARQUET_MAGIC) {
        let bad = |e: parquet::errors::ParquetError| {
            format!(
                "{what} `{}` is not a readable Parquet file: {e}",
                path.display()
            )
        };
        // A file is read where it lies; standard input, which cannot seek, is read whole.
        let batches = if path.as_os_str() == "-" {
            let mut bytes = Vec::new();
            input.read_to_end(&mut bytes).map_err(cannot)?;
            ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                .and_then(|b| b.with_batch_size(ROWS).build())
        } else {
            let file = std::fs::File::open(path).map_err(cannot)?;
            ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.with_batch_size(ROWS).build())
        }
        .map_err(bad)?;
        return Ok(lines(Rows::Parquet(batches)));
    }
    // A CSV send list, from before `decided_at` too: its header starts with the same columns.
    let csv_header = SEND_LIST_COLUMNS[..7].join(",");
    if head.starts_with(csv_header.as_bytes()) {
        return Ok(lines(Rows::Csv(Box::new(
            csv::ReaderBuilder::new().from_reader(input),
        ))));
    }
    Ok(input)
}

/// Rows turned into NDJSON at a time.
const ROWS: usize = 8192;

fn lines(rows: Rows) -> Box<dyn BufRead> {
    Box::new(std::io::BufReader::new(Lines {
        rows,
        pending: Vec::new(),
        at: 0,
    }))
}

enum Rows {
    Parquet(ParquetRecordBatchReader),
    Csv(Box<csv::Reader<Box<dyn BufRead>>>),
}

/// Rows turned into NDJSON a group at a time, so memory holds one row group, not the file.
struct Lines {
    rows: Rows,
    pending: Vec<u8>,
    at: usize,
}

impl Lines {
    /// The next rows as NDJSON into `pending`; false at the end.
    fn refill(&mut self) -> std::io::Result<bool> {
        self.pending.clear();
        self.at = 0;
        match &mut self.rows {
            Rows::Parquet(batches) => {
                let Some(batch) = batches.next() else {
                    return Ok(false);
                };
                let batch = utc_as_offset(batch.map_err(std::io::Error::other)?)?;
                // Nulls left out, as the NDJSON answers leave out what is absent; timestamps
                // as RFC 3339 text, which the NDJSON reader parses.
                let mut w = arrow_json::LineDelimitedWriter::new(&mut self.pending);
                w.write(&batch).map_err(std::io::Error::other)?;
                w.finish().map_err(std::io::Error::other)?;
                Ok(true)
            }
            Rows::Csv(reader) => {
                let headers = reader.headers().map_err(std::io::Error::other)?.clone();
                let mut record = csv::StringRecord::new();
                for _ in 0..ROWS {
                    if !reader
                        .read_record(&mut record)
                        .map_err(std::io::Error::other)?
                    {
                        break;
                    }
                    // An empty cell is an absent value (a message without a variant).
                    let row: serde_json::Map<String, serde_json::Value> = headers
                        .iter()
                        .zip(record.iter())
                        .filter(|(_, v)| !v.is_empty())
                        .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v.to_owned())))
                        .collect();
                    serde_json::to_writer(&mut self.pending, &row)?;
                    self.pending.push(b'\n');
                }
                Ok(!self.pending.is_empty())
            }
        }
    }
}

impl Read for Lines {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.pending.len() {
            if !self.refill()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The batch with its `UTC` timestamp columns (a send list's) relabelled `+00:00`, the same
/// instants: the JSON writer formats offsets, not zone names.
fn utc_as_offset(batch: arrow_array::RecordBatch) -> std::io::Result<arrow_array::RecordBatch> {
    use arrow_schema::DataType;
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        match field.data_type() {
            DataType::Timestamp(unit, Some(tz)) if tz.as_ref() != "+00:00" => {
                let to = DataType::Timestamp(*unit, Some("+00:00".into()));
                columns.push(arrow_cast::cast(column, &to).map_err(std::io::Error::other)?);
                fields.push(field.as_ref().clone().with_data_type(to));
            }
            _ => {
                columns.push(column.clone());
                fields.push(field.as_ref().clone());
            }
        }
    }
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(fields));
    arrow_array::RecordBatch::try_new(schema, columns).map_err(std::io::Error::other)
}
