"""Time-ordered runtime inputs for `regua replay` benchmarks: for customers `cus-0000001`…
(`regua generate`'s ids), about `--per-customer` inputs each over `--days` days from `--start`:
logins, abandoned carts, purchases, app activations, one `account_created` for a tenth.
Deterministic for a seed; standard library only.

    python3 bench/runtime/inputs.py --customers 100000 --days 30 > inputs.ndjson
"""

import argparse
import datetime as dt
import json
import random
import sys


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, default=10_000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--per-customer", type=float, default=5.0)
    p.add_argument("--start", default="2025-03-01T00:00:00+00:00")
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args()
    rng = random.Random(a.seed)
    start = dt.datetime.fromisoformat(a.start)
    span = a.days * 86_400
    rows = []
    for n in range(1, a.customers + 1):
        cid = f"cus-{n:07d}"
        if rng.random() < 0.1:
            rows.append((rng.randrange(span), cid, {"name": "account_created"}))
        for _ in range(int(rng.expovariate(1 / a.per_customer))):
            r = rng.random()
            if r < 0.55:
                what = {"name": "login"}
            elif r < 0.8:
                what = {"name": "cart_abandoned", "props": {"value": round(rng.uniform(20, 900), 2)}}
            elif r < 0.95:
                what = {"transaction": {"id": f"t-{n}-{len(rows)}", "kind": "purchase",
                                        "amount": round(rng.uniform(10, 600), 2), "currency": "BRL"}}
            else:
                what = {"name": "app_activated"}
            rows.append((rng.randrange(span), cid, what))
    rows.sort(key=lambda r: r[0])
    out = sys.stdout
    for i, (sec, cid, what) in enumerate(rows):
        at = (start + dt.timedelta(seconds=sec)).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.write(json.dumps({"id": f"in-{i}", "customer": cid, "at": at, **what}) + "\n")


if __name__ == "__main__":
    main()
