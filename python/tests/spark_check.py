"""Helpers of the Spark test (tests/tests/all/spark.rs), run with the wheel on PYTHONPATH.

    spark_check.py break IN OUT        rows made invalid, so error rows are compared too
    spark_check.py spark IN OUT NOW PLUGIN...
                                       regua.spark.evaluate in local[2], each row as a JSON line
"""

import os
import json
import sys


def break_rows(source, target):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(source)
    ids = table.column("id").to_pylist()
    ids[5] = None  # no id
    ids[17] = "   "  # a blank id
    ids[1500] = ""
    index = table.schema.get_field_index("id")
    field = table.schema.field("id").with_nullable(True)
    table = table.set_column(index, field, pa.array(ids, field.type))
    # Several row groups, so Spark splits the file into several partitions.
    pq.write_table(table, target, row_group_size=700)


def spark(source, target, now, plugins):
    # Spark's JVM reads this when it starts: without it, it binds beyond loopback when the
    # machine's name resolves to a loopback address.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    import regua.spark

    session = (
        SparkSession.builder.master("local[2]")
        .appName("regua-spark-test")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
        # One partition per row group or so, so both task slots work.
        .config("spark.sql.files.maxPartitionBytes", str(256 << 10))
        .config("spark.sql.files.openCostInBytes", "0")
        .getOrCreate()
    )
    df = session.read.parquet(source)
    partitions = df.rdd.getNumPartitions()
    answers = regua.spark.evaluate(df, plugins, now)
    with open(target, "w") as out:
        # collect() keeps the partitions' order and each partition's rows in order.
        for row in answers.collect():
            out.write(json.dumps(row.asDict()) + "\n")
    print(f"partitions: {partitions}", file=sys.stderr)
    session.stop()


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "break":
        break_rows(*args)
    elif command == "spark":
        spark(args[0], args[1], args[2], args[3:])
    else:
        sys.exit(f"unknown command {command!r}")
