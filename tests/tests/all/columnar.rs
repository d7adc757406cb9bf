//! Columnar input: Parquet and Arrow IPC files of customers (docs/COLUMNAR.md) give the same
//! answers as the same records in NDJSON, and broken files and rows get errors naming where.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use regua_tests::{repo, wasm};

use crate::cli::{regua, text};

const NOW: &str = "2025-03-11T12:00:00Z";
const MESSAGE: &str = r#"{"channel":"push","category":"marketing","campaign":"BEN-1"}"#;

/// Every example plugin (the crates under `plugins/`).
fn example_plugins() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("plugins"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 14, "{names:?}");
    names
}

fn ok(args: &[&str]) -> String {
    let out = regua(args, "");
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// `regua batch` of `plugins` over `input`, answers written to a file (large outputs never block
/// on a pipe); the answer text.
fn batch(input: &Path, plugins: &[&str]) -> String {
    // Beside the test's files, never beside the input (which may be the repository's examples).
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("answers.out");
    let mut args = vec!["batch", "-q", "--now", NOW, "--message", MESSAGE];
    let paths: Vec<String> = plugins
        .iter()
        .map(|p| wasm(p).display().to_string())
        .collect();
    for p in &paths {
        args.extend(["-p", p]);
    }
    args.extend(["-i", input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    ok(&args);
    std::fs::read_to_string(out).unwrap()
}

/// `regua convert` of `from` into `to` (its format told by the extension).
pub(crate) fn convert(from: &Path, to: &Path) {
    ok(&[
        "convert",
        "-q",
        "-i",
        from.to_str().unwrap(),
        "-o",
        to.to_str().unwrap(),
    ]);
}

fn records(ndjson: &str) -> Vec<regua_sdk::Record> {
    ndjson
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| regua_sdk::record::parse_customer(l).unwrap())
        .collect()
}

#[test]
fn ndjson_parquet_and_arrow_give_identical_answers_for_every_example_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let ndjson = repo().join("examples/customers.ndjson");
    let (parquet, arrow) = (dir.path().join("c.parquet"), dir.path().join("c.arrow"));
    convert(&ndjson, &parquet);
    convert(&ndjson, &arrow);
    let names = example_plugins();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    // All together (one pass reading the union of their parts) and one by one (each reading
    // only its own columns).
    let together = batch(&ndjson, &names);
    assert_eq!(together.lines().count(), 300);
    assert!(!together.contains("\"error\""), "{together}");
    assert_eq!(batch(&parquet, &names), together, "Parquet, all plugins");
    assert_eq!(batch(&arrow, &names), together, "Arrow IPC, all plugins");
    for name in names {
        let alone = batch(&ndjson, &[name]);
        assert_eq!(batch(&parquet, &[name]), alone, "Parquet, {name}");
    }
}

#[test]
fn a_campaign_run_over_parquet_answers_as_over_ndjson() {
    let dir = tempfile::tempdir().unwrap();
    let ndjson = repo().join("examples/customers.ndjson");
    let parquet = dir.path().join("c.parquet");
    convert(&ndjson, &parquet);
    let run = |input: &Path| {
        let stem = input.file_name().unwrap().to_str().unwrap();
        let (out, list) = (
            dir.path().join(format!("{stem}.run.out")),
            dir.path().join(format!("{stem}.list.out")),
        );
        ok(&[
            "campaign",
            "run",
            "--campaigns",
            repo().join("examples/campaigns").to_str().unwrap(),
            "--plugins-dir",
            regua_tests::plugins_dir().to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--send-list",
            list.to_str().unwrap(),
            "--now",
            NOW,
            "-q",
        ]);
        (
            std::fs::read_to_string(out).unwrap(),
            std::fs::read_to_string(list).unwrap(),
        )
    };
    let from_lines = run(&ndjson);
    assert_eq!(from_lines.0.lines().count(), 300);
    assert_eq!(run(&parquet), from_lines);
}

#[test]
fn convert_keeps_every_record_exactly_and_generate_writes_the_same_customers_in_each_format() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name);
    // The examples through Parquet and Arrow IPC and back.
    let examples = std::fs::read_to_string(repo().join("examples/customers.ndjson")).unwrap();
    for via in ["c.parquet", "c.arrow"] {
        convert(&repo().join("examples/customers.ndjson"), &d(via));
        convert(&d(via), &d("back.ndjson"));
        let back = std::fs::read_to_string(d("back.ndjson")).unwrap();
        assert_eq!(records(&back), records(&examples), "through {via}");
    }
    // Generated customers, more than one row group, written directly in each format.
    let n = "20000";
    ok(&["generate", "-n", n, "-o", d("g.ndjson").to_str().unwrap()]);
    for (format, file) in [("parquet", "g.parquet"), ("arrow", "g.arrow")] {
        let path = d(file);
        ok(&[
            "generate",
            "-n",
            n,
            "--format",
            format,
            "-o",
            path.to_str().unwrap(),
        ]);
        convert(&path, &d("g-back.ndjson"));
        let generated = std::fs::read_to_string(d("g.ndjson")).unwrap();
        let back = std::fs::read_to_string(d("g-back.ndjson")).unwrap();
        assert_eq!(records(&back), records(&generated), "{format}");
    }
}

/// Writes `rows` (JSON objects in the columnar layout) as a Parquet file of `schema`, in row
/// groups of `group` rows.
fn write_parquet(path: &Path, schema: Schema, rows: &[&str], group: usize) {
    let schema = Arc::new(schema);
    let text = rows.join("\n");
    let reader = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(group)
        .build(std::io::Cursor::new(text))
        .unwrap();
    let file = std::fs::File::create(path).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(group))
        .build();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, Some(props)).unwrap();
    for batch in reader {
        writer.write(&batch.unwrap()).unwrap();
        writer.flush().unwrap();
    }
    writer.close().unwrap();
}

fn list_of(fields: Vec<Field>) -> DataType {
    DataType::List(Arc::new(Field::new(
        "element",
        DataType::Struct(Fields::from(fields)),
        true,
    )))
}

/// A schema as another writer might make it (Spark, pyarrow): microsecond timestamps, decimal
/// amounts, large strings, nullable everything, `element` as the list item's name.
fn foreign_schema() -> Schema {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
    Schema::new(vec![
        Field::new("id", DataType::LargeUtf8, true),
        Field::new("tz", DataType::Utf8, true),
        Field::new(
            "transactions",
            list_of(vec![
                Field::new("id", DataType::Utf8, true),
                Field::new("at", ts.clone(), true),
                Field::new("kind", DataType::LargeUtf8, true),
                Field::new("amount", DataType::Decimal128(12, 2), true),
            ]),
            true,
        ),
        Field::new(
            "contacts",
            list_of(vec![
                Field::new("channel", DataType::Utf8, true),
                Field::new("at", ts, true),
                Field::new("category", DataType::Utf8, true),
            ]),
            true,
        ),
        Field::new("unknown_column", DataType::Int32, true),
    ])
}

#[test]
fn foreign_column_types_read_as_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        r#"{"id":"c-1","tz":"America/Sao_Paulo","transactions":[{"id":"t1","at":"2025-01-02T10:00:00.123456Z","kind":"purchase","amount":120.55}],"contacts":[{"channel":"push","at":"2025-03-11T11:00:00Z","category":"marketing"}],"unknown_column":7}"#,
        r#"{"id":"c-2","transactions":null,"contacts":[]}"#,
    ];
    let parquet = dir.path().join("foreign.parquet");
    write_parquet(&parquet, foreign_schema(), &rows, 1024);
    let ndjson = dir.path().join("same.ndjson");
    std::fs::write(
        &ndjson,
        concat!(
            r#"{"id":"c-1","tz":"America/Sao_Paulo","transactions":[{"id":"t1","at":"2025-01-02T10:00:00.123Z","kind":"purchase","amount":120.55}],"contacts":[{"channel":"push","at":"2025-03-11T11:00:00Z","category":"marketing"}]}"#,
            "\n",
            r#"{"id":"c-2"}"#,
            "\n"
        ),
    )
    .unwrap();
    for plugins in [&["lapsed"][..], &["rfm", "standard-rest"]] {
        let expected = batch(&ndjson, plugins);
        assert!(!expected.contains("\"error\""), "{expected}");
        assert_eq!(batch(&parquet, plugins), expected, "{plugins:?}");
    }
}

#[test]
fn a_bad_row_gets_an_error_line_naming_its_row_and_column_and_the_rest_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"id":"ok-1","transactions":[{"id":"t","at":"2025-01-01T00:00:00Z","kind":"purchase","amount":1}]}"#;
    let rows = [
        good,
        r#"{"id":null}"#,
        r#"{"id":"  "}"#,
        r#"{"id":"tz-1","tz":"-03:00"}"#,
        r#"{"id":"at-1","transactions":[{"id":"t","at":"2025-01-01T00:00:00Z","kind":"purchase","amount":1},{"id":"t2","at":null,"kind":"purchase","amount":1}]}"#,
        // In the same row group as the row that failed half-way through its transactions.
        r#"{"id":"ok-3","transactions":[{"id":"u","at":"2024-06-01T00:00:00Z","kind":"purchase","amount":9}]}"#,
        r#"{"id":"fax-1","contacts":[{"channel":"fax","at":"2025-01-01T00:00:00Z","category":"marketing"}]}"#,
        r#"{"id":"ok-2"}"#,
    ];
    let parquet = dir.path().join("bad-rows.parquet");
    // Two rows a group: errors keep their row numbers across groups.
    write_parquet(&parquet, foreign_schema(), &rows, 2);
    let out = batch(&parquet, &["lapsed", "standard-rest"]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), rows.len(), "{out}");
    let error = |row: usize| lines[row - 1]["error"].as_str().unwrap_or("").to_owned();
    for (row, column, says) in [
        (2, "id", "is null"),
        (3, "id", "is empty"),
        (4, "tz", "is not a time-zone name"),
        (5, "transactions[1].at", "is null"),
        (7, "contacts[0].channel", "unknown channel `fax`"),
    ] {
        let e = error(row);
        assert!(
            e.contains(&format!("row {row}, column `{column}`")) && e.contains(says),
            "row {row}: {e}"
        );
        assert_eq!(lines[row - 1]["line"], row, "row {row}");
    }
    assert_eq!(lines[3]["id"], "tz-1", "the id is kept when it can be read");
    for row in [1, 6, 8] {
        assert!(
            lines[row - 1]["results"]["lapsed"].is_object(),
            "{}",
            lines[row - 1]
        );
    }
    // Nothing of the row that failed half-way is left to the row after it: that row answers
    // as it does alone, from NDJSON.
    let alone = dir.path().join("ok-3.ndjson");
    std::fs::write(&alone, format!("{}\n", rows[5])).unwrap();
    let alone: serde_json::Value =
        serde_json::from_str(batch(&alone, &["lapsed", "standard-rest"]).trim()).unwrap();
    assert_eq!(lines[5], alone);
    // A row whose broken part no plugin reads is answered.
    let only_lapsed = batch(&parquet, &["lapsed"]);
    let seventh: serde_json::Value =
        serde_json::from_str(only_lapsed.lines().nth(6).unwrap()).unwrap();
    assert_eq!(seventh["id"], "fax-1");
    assert!(seventh["results"]["lapsed"].is_object(), "{seventh}");
}

/// The byte where row group `group`'s first column chunk starts.
fn row_group_start(path: &Path, group: usize) -> (u64, u64) {
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    use parquet::file::reader::FileReader as _;
    let meta = reader.metadata().row_group(group).clone();
    let column = meta.column(0);
    let start = column
        .dictionary_page_offset()
        .unwrap_or(column.data_page_offset());
    (start as u64, meta.num_rows() as u64)
}

#[test]
fn a_row_group_that_cannot_be_read_fails_its_rows_and_the_others_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let parquet = dir.path().join("g.parquet");
    ok(&[
        "generate",
        "-n",
        "20000",
        "--format",
        "parquet",
        "-o",
        parquet.to_str().unwrap(),
    ]);
    let (start, rows) = row_group_start(&parquet, 1);
    let mut bytes = std::fs::read(&parquet).unwrap();
    bytes[start as usize..start as usize + 32].fill(0xff);
    std::fs::write(&parquet, bytes).unwrap();

    let out = batch(&parquet, &["lapsed"]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 20000);
    let first = 8193;
    for (i, line) in lines.iter().enumerate() {
        let row = i as u64 + 1;
        if (first..first + rows).contains(&row) {
            let e = line["error"]
                .as_str()
                .unwrap_or_else(|| panic!("row {row}: {line}"));
            assert!(
                e.starts_with(&format!(
                    "row {row}: row group 1 (rows {first}–{})",
                    first + rows - 1
                )) && e.contains("cannot be read"),
                "{e}"
            );
            assert_eq!(line["line"], row);
        } else {
            assert!(line["results"]["lapsed"].is_object(), "row {row}: {line}");
        }
    }
}

fn refused(input: &Path) -> String {
    let out = regua(
        &[
            "batch",
            "-q",
            "-p",
            wasm("lapsed").to_str().unwrap(),
            "-i",
            input.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    text(&out.stderr)
}

#[test]
fn a_file_that_is_not_a_customer_table_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| -> PathBuf { dir.path().join(name) };
    // Garbage after the magic bytes, and a good file cut short.
    std::fs::write(path("junk.parquet"), b"PAR1 this is not parquet at all").unwrap();
    let err = refused(&path("junk.parquet"));
    assert!(
        err.contains("junk.parquet") && err.contains("is not a readable Parquet file"),
        "{err}"
    );
    let good = path("good.parquet");
    convert(&repo().join("examples/customers.ndjson"), &good);
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(path("cut.parquet"), &bytes[..bytes.len() - 100]).unwrap();
    let err = refused(&path("cut.parquet"));
    assert!(err.contains("is not a readable Parquet file"), "{err}");
    std::fs::write(path("junk.arrow"), b"ARROW1\0\0 not really").unwrap();
    let err = refused(&path("junk.arrow"));
    assert!(err.contains("is not a readable Arrow IPC file"), "{err}");

    // Readable, but not customers.
    let no_id = Schema::new(vec![Field::new("name", DataType::Utf8, true)]);
    write_parquet(&path("no-id.parquet"), no_id, &[r#"{"name":"x"}"#], 10);
    let err = refused(&path("no-id.parquet"));
    assert!(err.contains("no `id` column"), "{err}");
    let int_id = Schema::new(vec![Field::new("id", DataType::Int64, true)]);
    write_parquet(&path("int-id.parquet"), int_id, &[r#"{"id":1}"#], 10);
    let err = refused(&path("int-id.parquet"));
    assert!(err.contains("column `id` is Int64, expected text"), "{err}");
    let flat = Schema::new(vec![
        Field::new("id", DataType::Utf8, true),
        Field::new("transactions", DataType::Utf8, true),
    ]);
    write_parquet(
        &path("flat.parquet"),
        flat,
        &[r#"{"id":"a","transactions":"[]"}"#],
        10,
    );
    let err = refused(&path("flat.parquet"));
    assert!(
        err.contains("column `transactions` is Utf8, expected a list of structs"),
        "{err}"
    );
    let no_at = Schema::new(vec![
        Field::new("id", DataType::Utf8, true),
        Field::new(
            "transactions",
            list_of(vec![Field::new("kind", DataType::Utf8, true)]),
            true,
        ),
    ]);
    write_parquet(
        &path("no-at.parquet"),
        no_at,
        &[r#"{"id":"a","transactions":[]}"#],
        10,
    );
    let err = refused(&path("no-at.parquet"));
    assert!(
        err.contains("column `transactions` has no member `at`"),
        "{err}"
    );
}

#[test]
fn convert_reports_each_record_it_cannot_read_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(
        &input,
        "{\"id\":\"a\"}\n{\"id\":\"b\",\"tz\":3}\n{\"id\":\"c\"}\n",
    )
    .unwrap();
    let output = dir.path().join("out.parquet");
    let out = regua(
        &[
            "convert",
            "-i",
            input.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("line 2: field `tz`"), "{err}");
    assert!(err.contains("2 records written, 1 left out"), "{err}");
    let back = dir.path().join("back.ndjson");
    convert(&output, &back);
    let ids: Vec<String> = records(&std::fs::read_to_string(back).unwrap())
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["a", "c"]);
}

#[test]
fn a_value_that_does_not_convert_to_its_column_is_that_rows_error_not_an_absent_value() {
    // `instance` as UInt64: a value past i64 does not survive the cast to the schema's Int64,
    // and must not read as a missing instance (which would mean instance 1).
    let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into()));
    let schema = Schema::new(vec![
        Field::new("id", DataType::Utf8, true),
        Field::new(
            "journeys",
            list_of(vec![
                Field::new("journey", DataType::Utf8, true),
                Field::new("instance", DataType::UInt64, true),
                Field::new("status", DataType::Utf8, true),
                Field::new("entered_at", ts.clone(), true),
                Field::new("step", DataType::Utf8, true),
                Field::new("step_entered_at", ts, true),
            ]),
            true,
        ),
    ]);
    let journey = |instance: &str| {
        format!(
            r#"[{{"journey":"welcome","instance":{instance},"status":"active","entered_at":"2025-03-01T00:00:00Z","step":"day0","step_entered_at":"2025-03-01T00:00:00Z"}}]"#
        )
    };
    let rows = [
        format!(
            r#"{{"id":"big","journeys":{}}}"#,
            journey("18446744073709551615")
        ),
        format!(r#"{{"id":"fine","journeys":{}}}"#, journey("2")),
    ];
    let dir = tempfile::tempdir().unwrap();
    let parquet = dir.path().join("overflow.parquet");
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    write_parquet(&parquet, schema, &rows, 1024);
    let out = batch(&parquet, &["welcome"]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    let e = lines[0]["error"].as_str().unwrap_or_default();
    assert!(
        e.contains("row 1, column `journeys[0].instance`") && e.contains("18446744073709551615"),
        "{e}"
    );
    assert_eq!(lines[0]["id"], "big");
    assert!(lines[1]["results"]["welcome"].is_object(), "{}", lines[1]);
}
