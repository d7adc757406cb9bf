//! `regua._regua`: the Régua host core for Python, behind `regua.Engine` (python/regua). The same
//! engine, sandbox limits, record reader and answers as `regua batch`; record batches cross
//! from pyarrow through the Arrow C data interface, without a copy of the columns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_pyarrow::{FromPyArrow, ToPyArrow};
use arrow_schema::{DataType, Field, Schema};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use regua_host::pipeline::batch::{self, BatchOptions, Plugins};
use regua_host::pipeline::evaluator::{Evaluator, Input, LineRead};
use regua_host::pipeline::{columnar, output};
use regua_host::{
    EncodedBatch, Engine as HostEngine, Evaluation, Inputs, Limits, Plugin, RecordResult, Worker,
};
use regua_sdk::Timestamp;

/// Engines and compiled plugins, kept for the life of the process: a Spark executor makes an
/// `Engine` per task, and compiles each plugin (by content and limits) once.
#[derive(Default)]
struct Cache {
    engines: HashMap<String, HostEngine>,
    plugins: HashMap<(String, String), Arc<Plugin>>,
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// The sandbox limits from a dict of `memory_mib`, `time_per_record_ms`,
/// `output_kib_per_record`, `stack_kib` (or the names of `regua batch`'s flags: `memory_limit`
/// in MiB, `time_limit` in ms, `output_limit` in KiB); the rest keep the defaults.
fn limits_of(limits: Option<&Bound<'_, PyDict>>) -> PyResult<Limits> {
    let mut out = Limits::default();
    let Some(limits) = limits else {
        return Ok(out);
    };
    for (key, value) in limits.iter() {
        let key: String = key.extract()?;
        let n: u64 = value
            .extract()
            .map_err(|_| value_error(format!("limits[{key:?}] is not a whole number")))?;
        match key.as_str() {
            "memory_mib" | "memory_limit" => out.memory_bytes = (n as usize) << 20,
            "time_per_record_ms" | "time_limit" => out.time_per_record = Duration::from_millis(n),
            "output_kib_per_record" | "output_limit" => {
                out.output_bytes_per_record = (n as usize) << 10
            }
            "stack_kib" => out.stack_bytes = (n as usize) << 10,
            _ => {
                return Err(value_error(format!(
                    "unknown limit {key:?}: give memory_mib, time_per_record_ms, output_kib_per_record or stack_kib"
                )));
            }
        }
    }
    Ok(out)
}

/// A plugin given as a path (str or os.PathLike) or as the bytes of its `.wasm`, with a name
/// for errors.
fn plugin_bytes(item: &Bound<'_, PyAny>, i: usize) -> PyResult<(String, Vec<u8>)> {
    if let Ok(bytes) = item.cast::<PyBytes>() {
        return Ok((format!("plugins[{i}]"), bytes.as_bytes().to_vec()));
    }
    let path: std::path::PathBuf = item.extract().map_err(|_| {
        value_error(format!(
            "plugins[{i}] is neither a path nor the bytes of a .wasm"
        ))
    })?;
    let bytes = std::fs::read(&path)
        .map_err(|e| value_error(format!("cannot read plugin `{}`: {e}", path.display())))?;
    Ok((path.display().to_string(), bytes))
}

/// Rules loaded once and evaluated over record batches or NDJSON lines.
#[pyclass(module = "regua._regua", frozen)]
struct Engine {
    plugins: Vec<Arc<Plugin>>,
}

/// JSON text of a Python value (a dict of parameters, a message), through `json.dumps`.
fn json_text(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(text) = value.cast::<PyString>() {
        return Ok(text.to_string());
    }
    let json = py.import("json")?;
    json.call_method1("dumps", (value,))?.extract()
}

impl Engine {
    /// The evaluations of every plugin at `now`, with parameters by plugin name.
    fn evaluations(
        &self,
        py: Python<'_>,
        now: &str,
        params: Option<&Bound<'_, PyDict>>,
        message: Option<&Bound<'_, PyAny>>,
        event: Option<&Bound<'_, PyAny>>,
        default_tz: &str,
    ) -> PyResult<Vec<Evaluation>> {
        let now = Timestamp::parse(now).map_err(|e| value_error(format!("`now`: {e}")))?;
        let mut by_name: HashMap<String, String> = HashMap::new();
        if let Some(params) = params {
            for (name, value) in params.iter() {
                let name: String = name.extract()?;
                if !self.plugins.iter().any(|p| p.name() == name) {
                    return Err(value_error(format!(
                        "params[{name:?}]: no plugin named `{name}` is loaded"
                    )));
                }
                by_name.insert(name, json_text(py, &value)?);
            }
        }
        let parse = |what: &str, value: Option<&Bound<'_, PyAny>>| -> PyResult<Option<String>> {
            value
                .map(|v| json_text(py, v))
                .transpose()
                .map_err(|e| value_error(format!("`{what}`: {e}")))
        };
        let message = parse("message", message)?
            .map(|m| regua_sdk::json::from_str(&m, Some("message")))
            .transpose()
            .map_err(value_error)?;
        let event = parse("event", event)?
            .map(|m| regua_sdk::json::from_str(&m, Some("event")))
            .transpose()
            .map_err(value_error)?;
        self.plugins
            .iter()
            .map(|p| {
                let inputs = Inputs {
                    now,
                    default_tz: default_tz.to_owned(),
                    params: by_name
                        .get(p.name())
                        .cloned()
                        .unwrap_or_else(|| "{}".into()),
                    message: message.clone(),
                    event: event.clone(),
                };
                Evaluation::new(p.clone(), &inputs).map_err(value_error)
            })
            .collect()
    }

    fn checked(&self, evals: Vec<Evaluation>, worker: &mut Worker) -> PyResult<Plugins> {
        Plugins::new(evals).check(worker).map_err(value_error)
    }
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (plugins, limits=None))]
    fn new(plugins: &Bound<'_, PyList>, limits: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let limits = limits_of(limits)?;
        let key = format!("{limits:?}");
        let sources: Vec<(String, Vec<u8>)> = plugins
            .iter()
            .enumerate()
            .map(|(i, item)| plugin_bytes(&item, i))
            .collect::<PyResult<_>>()?;
        if sources.is_empty() {
            return Err(value_error("`plugins` is empty: give at least one"));
        }
        let mut cache = cache().lock().expect("plugin cache");
        let engine = match cache.engines.get(&key) {
            Some(e) => e.clone(),
            None => {
                let e =
                    HostEngine::new(limits).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
                cache.engines.insert(key.clone(), e.clone());
                e
            }
        };
        let mut loaded: Vec<Arc<Plugin>> = Vec::new();
        for (what, bytes) in sources {
            let version = regua_host::runtime::plugin::version_of(&bytes);
            let plugin = match cache.plugins.get(&(version.clone(), key.clone())) {
                Some(p) => p.clone(),
                None => {
                    let p = Arc::new(
                        Plugin::from_bytes(&engine, &what, &bytes)
                            .map_err(|e| value_error(format!("{what}: {e}")))?,
                    );
                    cache.plugins.insert((version, key.clone()), p.clone());
                    p
                }
            };
            if loaded.iter().any(|l| l.name() == plugin.name()) {
                return Err(value_error(format!(
                    "two plugins are named `{}`",
                    plugin.name()
                )));
            }
            loaded.push(plugin);
        }
        Ok(Engine { plugins: loaded })
    }

    /// The plugins' names, in the order given: the answer columns of `evaluate_arrow`.
    fn names(&self) -> Vec<String> {
        self.plugins.iter().map(|p| p.name().to_owned()).collect()
    }

    /// Each plugin's version (content hash), by name.
    fn versions(&self) -> HashMap<String, String> {
        self.plugins
            .iter()
            .map(|p| (p.name().to_owned(), p.version.clone()))
            .collect()
    }

    /// A record batch of customers (docs/COLUMNAR.md) → a record batch with, per row in order:
    /// `id`, one column per plugin holding its answer as JSON (as `regua batch` writes it under
    /// `results`), and `error`, why the row is not a valid record (its answers then null). A bad
    /// record is an error row, never a dropped one. Errors number rows from `first_row`; with
    /// `first_row=None` (Spark, where a batch is a piece of a partition) they name only the column.
    #[pyo3(signature = (batch, now, params=None, message=None, event=None, default_tz="America/Sao_Paulo", first_row=Some(1)))]
    #[allow(clippy::too_many_arguments)]
    fn evaluate_arrow<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'py, PyAny>,
        now: &str,
        params: Option<&Bound<'py, PyDict>>,
        message: Option<&Bound<'py, PyAny>>,
        event: Option<&Bound<'py, PyAny>>,
        default_tz: &str,
        first_row: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let batch = RecordBatch::from_pyarrow_bound(batch)?;
        let evals = self.evaluations(py, now, params, message, event, default_tz)?;
        let answers = py.detach(|| -> PyResult<RecordBatch> {
            let mut worker = Worker::new();
            let plugins = self.checked(evals, &mut worker)?;
            let mut customers = plugins.batch(&mut worker);
            let rows = columnar::fill_record_batch(&batch, first_row, &mut customers)
                .map_err(|e| value_error(format!("{e:#}")))?;
            let results: Vec<Vec<RecordResult>> = plugins
                .evaluate_batch(&mut worker, &customers)
                .into_iter()
                .map(|r| r.unwrap_or_else(|e| vec![Err(e.to_string()); customers.len()]))
                .collect();
            Ok(answer_batch(&self.plugins, &customers, &rows, &results))
        })?;
        answers.to_pyarrow(py)
    }

    /// NDJSON customer lines (str or bytes) → the answer lines, exactly as `regua batch` writes
    /// them: one per input line, in order, with error lines for bad records and repeated ids.
    #[pyo3(signature = (lines, now, params=None, message=None, event=None, default_tz="America/Sao_Paulo", allow_repeated_ids=false))]
    #[allow(clippy::too_many_arguments)]
    fn evaluate_ndjson(
        &self,
        py: Python<'_>,
        lines: &Bound<'_, PyAny>,
        now: &str,
        params: Option<&Bound<'_, PyDict>>,
        message: Option<&Bound<'_, PyAny>>,
        event: Option<&Bound<'_, PyAny>>,
        default_tz: &str,
        allow_repeated_ids: bool,
    ) -> PyResult<String> {
        let input: Vec<u8> = if let Ok(b) = lines.cast::<PyBytes>() {
            b.as_bytes().to_vec()
        } else {
            lines
                .extract::<String>()
                .map_err(|_| value_error("`lines` is neither str nor bytes"))?
                .into_bytes()
        };
        let evals = self.evaluations(py, now, params, message, event, default_tz)?;
        py.detach(|| {
            let evaluator =
                Evaluator::new(Some(1)).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
            let plugins = evaluator
                .run_blocking(move |w| Plugins::new(evals).check(w))
                .map_err(|e| PyRuntimeError::new_err(e.to_string()))?
                .map_err(value_error)?;
            let options = BatchOptions {
                allow_repeated_ids,
                ..BatchOptions::default()
            };
            let mut out = Vec::new();
            batch::run(
                &evaluator,
                Arc::new(plugins),
                Input::lines(&input[..]),
                &mut out,
                &options,
                &|_, _| {},
            )
            .map_err(|e| value_error(format!("{e:#}")))?;
            String::from_utf8(out).map_err(|e| PyRuntimeError::new_err(e.to_string()))
        })
    }
}

/// The answer columns: `id`, one JSON column per plugin, `error`.
fn answer_batch(
    plugins: &[Arc<Plugin>],
    customers: &EncodedBatch,
    rows: &[LineRead],
    results: &[Vec<RecordResult>],
) -> RecordBatch {
    let mut ids = Vec::with_capacity(rows.len());
    let mut errors = Vec::with_capacity(rows.len());
    let mut answers: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(rows.len()); plugins.len()];
    for row in rows {
        match row {
            LineRead::Record(i) => {
                ids.push(Some(customers.id(*i).to_owned()));
                errors.push(None);
                for (column, (plugin, results)) in
                    answers.iter_mut().zip(plugins.iter().zip(results))
                {
                    column.push(Some(output::result_value(plugin, &results[*i]).to_string()));
                }
            }
            LineRead::Bad(id, error) => {
                ids.push(id.clone());
                errors.push(Some(error.clone()));
                answers.iter_mut().for_each(|c| c.push(None));
            }
        }
    }
    let mut fields = vec![Field::new("id", DataType::Utf8, true)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(ids))];
    for (plugin, column) in plugins.iter().zip(answers) {
        fields.push(Field::new(plugin.name(), DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from(column)));
    }
    fields.push(Field::new("error", DataType::Utf8, true));
    columns.push(Arc::new(StringArray::from(errors)));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("columns of one length")
}

/// How many plugins this process has compiled: an `Engine` made again over the same plugins and
/// limits compiles none.
#[pyfunction]
fn compiled_plugins() -> usize {
    cache().lock().expect("plugin cache").plugins.len()
}

#[pymodule]
fn _regua(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_function(wrap_pyfunction!(compiled_plugins, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
