"""Benchmark (not a test): Régua in Spark local[1] and local[2] against `regua batch` on the same
Parquet file, each in the same run. Figures go to BENCHMARKS.md, the estimate to docs/SPARK.md.

    python3 python/bench/spark_bench.py [--count 300000] [--plugins lapsed,rfm,...]

Needs the wheel installed (`pip install target/wheels/regua-*.whl`, or PYTHONPATH), pyspark,
pyarrow and Java, and `target/release/regua` and the example plugins in `target/bench-plugins`
(built by `regua build plugins --out target/bench-plugins`)."""

import os
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REGUA = ROOT / "target/release/regua"
NOW = "2025-03-11T12:00:00Z"


def timed(what, run, repeat=2):
    best = None
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        spent = time.perf_counter() - started
        best = spent if best is None else min(best, spent)
    print(f"{what}: {best:.2f} s (best of {repeat})", file=sys.stderr)
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300_000)
    parser.add_argument("--plugins", default="lapsed,rfm,birthday-today,app-not-activated,cross-sell")
    parser.add_argument("--plugins-dir", default=str(ROOT / "target/bench-plugins"))
    args = parser.parse_args()
    plugins = [str(Path(args.plugins_dir) / f"{p}.wasm") for p in args.plugins.split(",")]
    work = Path(tempfile.mkdtemp())
    data = work / "customers.parquet"
    subprocess.run([REGUA, "generate", "--count", str(args.count), "--format", "parquet",
                    "--output", data], check=True, capture_output=True)
    figures = {"customers": args.count, "plugins": len(plugins), "bytes": data.stat().st_size}

    def batch(threads):
        cmd = [REGUA, "batch", "-q", "--now", NOW, "--threads", str(threads), "--allow-repeated-ids",
               "--input", data, "--output", "/dev/null"]
        for p in plugins:
            cmd += ["-p", p]
        return lambda: subprocess.run(cmd, check=True)

    figures["regua batch, 1 thread"] = timed("regua batch --threads 1", batch(1))
    figures["regua batch, 2 threads"] = timed("regua batch --threads 2", batch(2))

    # Spark's JVM reads this when it starts: without it, it binds beyond loopback when the
    # machine's name resolves to a loopback address.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    import regua.spark

    for master in ["local[1]", "local[2]"]:
        spark = (SparkSession.builder.master(master).appName("regua-bench")
                 .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
                 .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
                 .config("spark.driver.memory", "4g")
                 # Partitions of 16 MiB: several per core, so the cores stay busy to the end.
                 .config("spark.sql.files.maxPartitionBytes", str(16 << 20))
                 .getOrCreate())
        df = spark.read.parquet(str(data))
        figures[f"spark {master}, partitions"] = df.rdd.getNumPartitions()

        def evaluate():
            regua.spark.evaluate(df, plugins, NOW).write.format("noop").mode("overwrite").save()

        def passthrough():
            # The same job without the rules: what reading and moving the batches costs.
            df.mapInArrow(lambda batches: (b.select(["id"]) for b in batches), "id string") \
                .write.format("noop").mode("overwrite").save()

        figures[f"spark {master}, passthrough"] = timed(f"{master} passthrough", passthrough)
        figures[f"spark {master}"] = timed(f"{master} regua.spark.evaluate", evaluate)
        spark.stop()
        # A new session with another master needs a new JVM.
        from pyspark import SparkContext
        SparkContext._gateway = None
        SparkContext._jvm = None
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
