"""Régua as a step of a Spark job: `evaluate(df, plugins, now)` → a DataFrame of answers.

The DataFrame holds customers with the documented schema (docs/COLUMNAR.md), as read from the
data lake (`spark.read.parquet(...)`). Each task gets its partition as Arrow record batches
(`mapInArrow`), evaluates them with the plugins shipped with the job, and returns record batches
of answers: `id`, one JSON column per plugin, `error`. Rows keep their order within a partition;
no row is dropped (a bad record is an error row). Each executor process compiles each plugin once.
"""

from pathlib import Path


def _plugin_bytes(plugins):
    out = []
    for i, p in enumerate(plugins):
        if isinstance(p, (bytes, bytearray)):
            out.append(bytes(p))
        else:
            path = Path(p)
            try:
                out.append(path.read_bytes())
            except OSError as e:
                raise ValueError(f"cannot read plugin `{path}`: {e}") from e
    return out


def evaluate(df, plugins, now, params=None, message=None, event=None, limits=None,
             default_tz="America/Sao_Paulo"):
    """The answers of `plugins` (paths or `.wasm` bytes, read on the driver) for every customer
    of `df` at the instant `now` (RFC 3339): a DataFrame of `id`, one string column per plugin
    (its answer as JSON) and `error`. `params` is a dict by plugin name; `message` the proposed
    message for rest policies; `event` the triggering event for journeys; `limits` the sandbox's
    limits, as for `regua.Engine`. Each row is evaluated, repeated ids included (deduplicate
    upstream if a customer may appear twice)."""
    from pyspark.sql.types import StringType, StructField, StructType

    from . import Engine

    blobs = _plugin_bytes(plugins)
    # Checked on the driver first: a plugin that does not load fails the call, not the tasks.
    names = Engine(plugins=blobs, limits=limits).names()
    schema = StructType(
        [StructField("id", StringType(), True)]
        + [StructField(name, StringType(), True) for name in names]
        + [StructField("error", StringType(), True)]
    )
    shipped = df.sparkSession.sparkContext.broadcast(blobs)

    def run(batches):
        from regua import Engine as TaskEngine

        engine = TaskEngine(plugins=shipped.value, limits=limits)
        for batch in batches:
            # Rows of a partition have no file row number: errors name the column only.
            yield engine.evaluate_arrow(batch, now, params=params, message=message, event=event,
                                        default_tz=default_tz, first_row=None)

    return df.mapInArrow(run, schema)
