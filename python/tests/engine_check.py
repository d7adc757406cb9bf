"""The Python engine against `regua batch` (tests/tests/all/spark.rs), run with the wheel on
PYTHONPATH: `engine_check.py PARQUET NDJSON BATCH_PARQUET_OUT BATCH_NDJSON_OUT NOW PLUGIN...`,
where the two *_OUT files are what `regua batch` answered over the same inputs. Exits non-zero,
saying what differs, when an answer does."""

import json
import os
import sys

import pyarrow.parquet as pq

import regua


def fail(message):
    sys.exit(message)


def unnumbered(error):
    row, sep, rest = error.partition(", ")
    return rest if sep and row.startswith("row ") else error


def main(parquet, ndjson, batch_parquet, batch_ndjson, now, plugins):
    # Paths and bytes load the same plugins; making an engine again compiles nothing.
    engine = regua.Engine(plugins=plugins)
    again = regua.Engine(plugins=[open(p, "rb").read() for p in plugins], limits={"memory_mib": 32})
    if engine.versions() != again.versions():
        fail(f"versions differ: {engine.versions()} {again.versions()}")
    compiled = regua.compiled_plugins()
    if compiled != 2 * len(plugins):
        fail(f"{compiled} plugins compiled for two sets of limits, not {2 * len(plugins)}")
    regua.Engine(plugins=list(reversed(plugins)))
    if regua.compiled_plugins() != compiled:
        fail("an engine over plugins already compiled compiled them again")
    names = engine.names()

    # evaluate_ndjson: the very lines regua batch writes.
    with open(ndjson) as f:
        got = engine.evaluate_ndjson(f.read(), now)
    with open(batch_ndjson) as f:
        want = f.read()
    if got != want:
        for n, (a, b) in enumerate(zip(got.splitlines(), want.splitlines()), 1):
            if a != b:
                fail(f"evaluate_ndjson line {n}: {a!r} != {b!r}")
        fail(f"evaluate_ndjson: {len(got.splitlines())} lines, regua batch {len(want.splitlines())}")

    # evaluate_arrow, batch by batch, rows numbered as in the file.
    rows = []
    first = 1
    for batch in pq.read_table(parquet).to_batches(max_chunksize=333):
        answers = engine.evaluate_arrow(batch, now, first_row=first)
        if answers.num_rows != batch.num_rows:
            fail(f"{batch.num_rows} rows in, {answers.num_rows} out")
        if answers.schema.names != ["id", *names, "error"]:
            fail(f"columns {answers.schema.names}")
        rows.extend(answers.to_pylist())
        first += batch.num_rows
    with open(batch_parquet) as f:
        want = [json.loads(line) for line in f]
    if len(rows) != len(want):
        fail(f"{len(rows)} answers, regua batch {len(want)}")
    errors = 0
    for n, (got, line) in enumerate(zip(rows, want), 1):
        if "error" in line:
            errors += 1
            if (got["id"], got["error"]) != (line["id"], line["error"]):
                fail(f"row {n}: {got} != {line}")
            continue
        for name in names:
            if json.loads(got[name]) != line["results"][name]:
                fail(f"row {n} {name}: {got[name]} != {line['results'][name]}")
    if errors != 3:
        fail(f"{errors} error rows, not 3")

    # The sandbox's limits hold: a plugin that never returns fails its victim, within the time
    # limit, and answers everyone else.
    hostile = regua.Engine(plugins=[os.environ["REGUA_HOSTILE"]], limits={"time_limit": 20})
    sample = pq.read_table(parquet).slice(0, 40).to_batches()[0]
    params = {"hostile": {"mode": "loop", "victims": "cus-0000007"}}
    for row in hostile.evaluate_arrow(sample, now, params=params).to_pylist():
        if row["error"]:
            continue
        answer = json.loads(row["hostile"])
        if row["id"] == "cus-0000007":
            if "time" not in answer.get("error", ""):
                fail(f"the looping plugin's victim: {answer}")
        elif answer.get("match") is not True:
            fail(f"a customer the plugin did not attack: {answer}")

    # What a caller gets wrong is named.
    for call, wanted in [
        (lambda: regua.Engine(plugins=[b"not wasm"]), "plugins[0]"),
        (lambda: regua.Engine(plugins=[]), "empty"),
        (lambda: regua.Engine(plugins=plugins, limits={"memory": 1}), "unknown limit"),
        (lambda: regua.Engine(plugins=plugins, limits={"time_limit": "soon"}), "time_limit"),
        (lambda: engine.evaluate_arrow(batch, "yesterday"), "`now`"),
        (lambda: engine.evaluate_arrow(batch, now, params={"nope": {}}), "params"),
        (lambda: engine.evaluate_arrow(batch.drop_columns(["id"]), now), "`id`"),
    ]:
        try:
            call()
        except ValueError as e:
            if wanted not in str(e):
                fail(f"the error {e!r} does not name {wanted!r}")
        else:
            fail(f"no error for a call that names {wanted!r}")
    print("ok")


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], a[2], a[3], a[4], a[5:])
