"""Régua for Python: the same plugins, sandbox and answers as the `regua` command line.

>>> import regua
>>> engine = regua.Engine(plugins=["dist/plugins/lapsed.wasm"])
>>> answers = engine.evaluate_arrow(batch, now="2025-03-11T12:00:00Z")

`Engine(plugins, limits=None)` loads plugins given as paths or as the bytes of their `.wasm`;
compiled plugins are kept for the life of the process, so making an `Engine` again (once per Spark
task, say) compiles nothing (`regua.compiled_plugins()` counts what the process compiled).
`limits` is a dict of `memory_mib`, `time_per_record_ms`, `output_kib_per_record` and
`stack_kib`, or by the names of `regua batch`'s flags, `memory_limit` (MiB), `time_limit` (ms)
and `output_limit` (KiB); the rest of the sandbox's limits keep their defaults.

`evaluate_arrow(batch, now, params=None, message=None, event=None, default_tz=..., first_row=1)`
takes a `pyarrow.RecordBatch` with the customer schema (docs/COLUMNAR.md) and returns one with,
per input row and in order: `id`, a column per plugin with its answer as JSON text (what
`regua batch` writes under `results`), and `error` (why the row is not a valid record; its
answers are then null).

`evaluate_ndjson(lines, now, ...)` returns the answer lines exactly as `regua batch` writes them.

`regua.spark.evaluate(df, plugins, now, ...)` runs the same over a Spark DataFrame.
"""

from ._regua import Engine, __version__, compiled_plugins

__all__ = ["Engine", "__version__", "compiled_plugins"]
