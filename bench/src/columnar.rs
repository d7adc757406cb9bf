//! The columnar half of the benchmark: the same customers written as Parquet (as `regua generate
//! --format parquet` writes them), the columnar limit (a native Rust program reading only the
//! Parquet leaves RFM needs, with the same rule) and Régua's batch over the same file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use arrow_array::StructArray;
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use regua_host::Evaluation;
use regua_host::authoring::generate::Generator;
use regua_host::pipeline::batch::{self, BatchOptions};
use regua_host::pipeline::columnar::{Columnar, ColumnarInput, ColumnarWriter, FileKind};
use regua_host::pipeline::evaluator::Input;
use regua_sdk::Timestamp;

/// Writes the benchmark's customers (the generator, seed 42) as Parquet under `dir`, once per
/// count: later runs reuse the file.
pub fn parquet_file(dir: &Path, count: usize, now: Timestamp) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("customers-{count}-seed42.parquet"));
    if path.exists() {
        return Ok(path);
    }
    let tmp = path.with_extension("tmp");
    let out = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut writer =
        ColumnarWriter::new(Columnar::Parquet, Box::new(std::io::BufWriter::new(out)))?;
    for c in Generator::new(42, now).take(count) {
        writer.push(c)?;
    }
    writer.finish()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The columnar limit: RFM Champions over the Parquet leaves `id`, `transactions.kind`,
/// `transactions.at` and `transactions.amount` only, one `{"id","match"}` line per row.
pub fn native_parquet(path: &Path, out: &mut Vec<u8>, now: Timestamp) {
    let file = File::open(path).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let wanted = [
        "id",
        "transactions.list.item.kind",
        "transactions.list.item.at",
        "transactions.list.item.amount",
    ];
    let schema = builder.parquet_schema();
    let leaves = (0..schema.num_columns())
        .filter(|&i| wanted.contains(&schema.column(i).path().string().as_str()));
    let mask = ProjectionMask::leaves(schema, leaves);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(8192)
        .build()
        .unwrap();
    let now_ms = now.as_millis();
    let month_ms = 30 * 86_400_000;
    for batch in reader {
        let batch = batch.unwrap();
        let ids = batch.column_by_name("id").unwrap().as_string::<i32>();
        let list = batch
            .column_by_name("transactions")
            .unwrap()
            .as_list::<i32>();
        let items: &StructArray = list.values().as_struct();
        let kind = items.column_by_name("kind").unwrap().as_string::<i32>();
        let at = items
            .column_by_name("at")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>()
            .values();
        let amount = items
            .column_by_name("amount")
            .unwrap()
            .as_primitive::<arrow_array::types::Float64Type>()
            .values();
        let offsets = list.value_offsets();
        for row in 0..batch.num_rows() {
            let (mut n, mut sum, mut last) = (0u32, 0.0, i64::MIN);
            for i in offsets[row] as usize..offsets[row + 1] as usize {
                if at[i] <= now_ms && kind.value(i) == "purchase" {
                    n += 1;
                    sum += amount[i];
                    last = last.max(at[i]);
                }
            }
            let champion = n >= 10 && sum >= 5000.0 && now_ms - last < month_ms;
            crate::write_answer(out, ids.value(row), champion);
        }
    }
}

/// `regua batch` over the Parquet file: the file opened for the plugins' reads, row groups
/// spread over `threads` workers.
pub fn regua_parquet(evals: &[Evaluation], path: &Path, out: &mut Vec<u8>, threads: usize) {
    let (evaluator, plugins) = crate::checked(evals, threads);
    let file = ColumnarInput::open(path, FileKind::Parquet, plugins.reads()).unwrap();
    let s = batch::run(
        &evaluator,
        plugins,
        Input::Columnar(Arc::new(file)),
        &mut *out,
        &BatchOptions::default(),
        &|_, _| {},
    )
    .unwrap();
    assert_eq!(s.bad_lines, 0);
}

/// Rows of a Parquet file, for the rate.
pub fn rows(path: &Path) -> usize {
    let file = File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .metadata()
        .file_metadata()
        .num_rows() as usize
}
