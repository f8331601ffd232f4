#!/usr/bin/env python3
"""Time XGBoost's own inplace_predict on the example models, per row, for 1 and 64 rows.

    python3 -m pip install xgboost scikit-learn numpy
    python3 bench/models/xgb_bench.py [--repeat 2000]

Prints one line per (model, rows): the median over --repeat calls of one inplace_predict call,
divided by the number of rows, in nanoseconds per row. One thread (nthread=1), as the sidecar
evaluates a request on one worker thread. Rows are the fixture rows of each model, repeated.
"""

import argparse
import json
import os
import statistics
import time

import numpy as np
import xgboost as xgb

MODELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "models")


def rows_for(name, count):
    with open(os.path.join(MODELS, f"{name}.expected.json")) as f:
        instances = json.load(f)["instances"]
    base = np.array([[np.nan if v is None else v for v in row] for row in instances], dtype=np.float64)
    return np.vstack([base] * (count // len(base) + 1))[:count]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    print(f"xgboost {xgb.__version__}, numpy {np.__version__}; median of {args.repeat} calls")
    for name in ["churn-xgb-v3", "xgb-cancer-logistic"]:
        booster = xgb.Booster(model_file=os.path.join(MODELS, f"{name}.json"))
        booster.set_param({"nthread": 1})
        for count in [1, 64]:
            rows = rows_for(name, count)
            for _ in range(50):
                booster.inplace_predict(rows)
            samples = []
            for _ in range(args.repeat):
                start = time.perf_counter_ns()
                booster.inplace_predict(rows)
                samples.append(time.perf_counter_ns() - start)
            per_row = statistics.median(samples) / count
            print(f"{name:22s} rows={count:3d}  {per_row:10.0f} ns/row")


if __name__ == "__main__":
    main()
