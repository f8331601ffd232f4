#!/usr/bin/env python3
"""Train the example churn models that the default config serves.

    python3 -m pip install scikit-learn numpy
    python3 examples/train/train_examples.py

Writes, next to each other in examples/models/:
  churn-linear-v1.json           LogisticRegression (C=1.0), Switchyard's linear format, 1-D coef
  churn-linear-v2.json           the candidate: stronger L2 (C=0.01), 2-D coef with one row
  churn-scores.csv               v1's churn probability for customers 1001..1100 (a table model)
  churn-linear-v1.expected.json  sample rows and scikit-learn's predict_proba[:, 1] for them,
                                 which ModelsTests checks Switchyard's predictions against

The data are synthetic (scikit-learn bundles no churn data set): 2000 customers drawn from a
seeded generator with a known logistic ground truth, so the script needs no download and gives
the same files on every run with the same numpy and scikit-learn.
"""

import json
import os
import sys

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "contract_months"]
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models")


def make_data(n=2000, seed=20240601):
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 73, n).astype(float)
    charges = np.round(rng.uniform(20.0, 120.0, n), 2)
    calls = rng.poisson(1.5, n).astype(float)
    contract = rng.choice([1.0, 12.0, 24.0], n, p=[0.5, 0.3, 0.2])
    x = np.column_stack([tenure, charges, calls, contract])
    logit = 0.4 - 0.05 * tenure + 0.02 * charges + 0.45 * calls - 0.08 * contract
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    return x, y


def linear_json(model, two_dimensional, description):
    coef = model.coef_.tolist() if two_dimensional else model.coef_[0].tolist()
    intercept = model.intercept_.tolist() if two_dimensional else float(model.intercept_[0])
    return {
        "coef": coef,
        "intercept": intercept,
        "link": "logistic",
        "feature_names": FEATURES,
        "metadata": {
            "description": description,
            "trained_with": f"scikit-learn {sklearn.__version__}, numpy {np.__version__}",
            "output": "probability of churn (predict_proba[:, 1])",
        },
    }


def write_json(name, value):
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


def main():
    x, y = make_data()
    v1 = LogisticRegression(C=1.0, max_iter=10000, tol=1e-10).fit(x, y)
    v2 = LogisticRegression(C=0.01, max_iter=10000, tol=1e-10).fit(x, y)
    os.makedirs(OUT, exist_ok=True)
    write_json("churn-linear-v1.json", linear_json(v1, False, "churn v1: logistic regression, C=1.0"))
    write_json("churn-linear-v2.json", linear_json(v2, True, "churn v2: logistic regression, C=0.01"))

    scores = v1.predict_proba(x[:100])[:, 1]
    with open(os.path.join(OUT, "churn-scores.csv"), "w", newline="") as f:
        f.write("customer_id,score\n")
        for k, score in enumerate(scores):
            f.write(f"{1001 + k},{float(score)!r}\n")

    rows = np.vstack([x[:6], [[1.0, 119.99, 9.0, 1.0], [72.0, 20.0, 0.0, 24.0]]])
    write_json(
        "churn-linear-v1.expected.json",
        {
            "model": "churn-linear-v1.json",
            "feature_names": FEATURES,
            "instances": rows.tolist(),
            "predict_proba_1": v1.predict_proba(rows)[:, 1].tolist(),
            "v2_predict_proba_1": v2.predict_proba(rows)[:, 1].tolist(),
            "customer_ids": [1001 + k for k in range(6)],
        },
    )
    print(f"wrote 4 files to {os.path.normpath(OUT)}; v1 train accuracy {v1.score(x, y):.3f}", file=sys.stderr)


if __name__ == "__main__":
    main()
