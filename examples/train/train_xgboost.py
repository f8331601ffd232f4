#!/usr/bin/env python3
"""Train the XGBoost example and test models, and record XGBoost's own predictions for them.

    python3 -m pip install xgboost scikit-learn numpy
    python3 examples/train/train_xgboost.py            # current XGBoost: every file below
    python3 examples/train/train_xgboost.py --legacy   # under XGBoost 1.x: the *-xgb1 files only

Writes to examples/models/, for each model M:
  M.json            Booster.save_model (XGBoost's JSON model format)
  M.expected.json   sample rows (null = missing) with Booster.predict's output for them, the
                    margins (output_margin=True), and the XGBoost version; ModelsTests checks
                    Switchyard's predictions against these, with no Python at test time

Models (few trees, shallow, so the files stay small):
  xgb-cancer-logistic   breast_cancer, binary:logistic, ~10% of values set to NaN, feature names
  xgb-cancer-logitraw   the same data, binary:logitraw (margins, identity base score)
  xgb-cancer-reglogistic  the same data, reg:logistic
  xgb-iris-softprob     iris, multi:softprob (3 classes, tree_info grouping)
  xgb-iris-softmax      iris, multi:softmax (class index as a number)
  xgb-diabetes-reg      diabetes, reg:squarederror (intercept = mean label)
  churn-xgb-v3          the synthetic churn data of train_examples.py, binary:logistic, with the
                        four churn feature names (the default config's XGBoost version)
With --legacy (XGBoost 1.x), the cancer-logistic, iris-softprob and diabetes models again, as
xgb1-*.json: a scalar "5E-1"-style base_score and the 1.x tree layout.

Every row set mixes training rows with rows that have missing values, so that each split's
default direction is exercised. Same versions of the libraries, same files.
"""

import json
import os
import sys

import numpy as np
import xgboost as xgb
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_examples import FEATURES as CHURN_FEATURES, make_data as make_churn_data  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models")


def with_missing(x, share, seed):
    """A copy of x with about `share` of its values set to NaN (missing)."""
    rng = np.random.default_rng(seed)
    x = x.copy()
    x[rng.random(x.shape) < share] = np.nan
    return x


def sample_rows(x, seed, count=12, missing_rows=6):
    """Some rows as they are, then rows with 30% of their values missing, one with all missing."""
    rng = np.random.default_rng(seed)
    picked = x[rng.choice(len(x), count, replace=False)]
    holes = with_missing(x[rng.choice(len(x), missing_rows, replace=False)], 0.3, seed + 1)
    empty = np.full((1, x.shape[1]), np.nan)
    return np.vstack([picked, holes, empty])


def clean_names(names):
    # XGBoost refuses '[', ']' and '<' in feature names; scikit-learn's have none, but be sure.
    return [str(n).replace("[", "(").replace("]", ")").replace("<", "lt") for n in names]


def save(name, booster, rows, feature_names):
    booster.save_model(os.path.join(OUT, f"{name}.json"))
    matrix = xgb.DMatrix(rows, missing=np.nan, feature_names=feature_names)
    predictions = booster.predict(matrix)
    margins = booster.predict(matrix, output_margin=True)
    inplace = booster.inplace_predict(rows, missing=np.nan)
    assert np.array_equal(predictions, inplace), f"{name}: predict and inplace_predict differ"
    expected = {
        "model": f"{name}.json",
        "xgboost_version": xgb.__version__,
        "objective": json.loads(booster.save_config())["learner"]["objective"]["name"],
        "feature_names": feature_names,
        "instances": [[None if np.isnan(v) else float(v) for v in row] for row in rows],
        "predictions": predictions.astype(float).tolist(),
        "margins": margins.astype(float).tolist(),
    }
    with open(os.path.join(OUT, f"{name}.expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    size = os.path.getsize(os.path.join(OUT, f"{name}.json"))
    print(f"{name}: {booster.num_boosted_rounds()} rounds, {size} bytes", file=sys.stderr)


def train(x, y, params, rounds, feature_names):
    dtrain = xgb.DMatrix(x, label=y, missing=np.nan, feature_names=feature_names)
    return xgb.train({"seed": 7, "nthread": 1, **params}, dtrain, rounds)


def main():
    legacy = "--legacy" in sys.argv[1:]
    major = int(xgb.__version__.split(".")[0])
    if legacy != (major == 1):
        sys.exit(f"XGBoost {xgb.__version__}: run --legacy under XGBoost 1.x and without it under 2 or later")
    os.makedirs(OUT, exist_ok=True)
    prefix = "xgb1-" if legacy else "xgb-"

    cancer = load_breast_cancer()
    cancer_names = clean_names(cancer.feature_names)
    cancer_x = with_missing(cancer.data, 0.1, seed=11)
    cancer_rows = sample_rows(cancer.data, seed=12)
    binary = {"max_depth": 3, "eta": 0.3}
    save(f"{prefix}cancer-logistic",
         train(cancer_x, cancer.target, {**binary, "objective": "binary:logistic"}, 8, cancer_names),
         cancer_rows, cancer_names)

    iris = load_iris()
    iris_names = clean_names(n.replace(" (cm)", "") for n in iris.feature_names)
    iris_rows = sample_rows(iris.data, seed=22)
    multi = {"max_depth": 2, "eta": 0.3, "num_class": 3}
    save(f"{prefix}iris-softprob",
         train(iris.data, iris.target, {**multi, "objective": "multi:softprob"}, 5, iris_names),
         iris_rows, iris_names)

    diabetes = load_diabetes()
    diabetes_rows = sample_rows(diabetes.data, seed=32)
    save(f"{prefix}diabetes-reg",
         train(with_missing(diabetes.data, 0.05, seed=31), diabetes.target,
               {"max_depth": 3, "eta": 0.3, "objective": "reg:squarederror"}, 10, list(diabetes.feature_names)),
         diabetes_rows, list(diabetes.feature_names))
    if legacy:
        return

    save("xgb-cancer-logitraw",
         train(cancer_x, cancer.target, {**binary, "objective": "binary:logitraw"}, 8, cancer_names),
         cancer_rows, cancer_names)
    save("xgb-cancer-reglogistic",
         train(cancer_x, cancer.target, {**binary, "objective": "reg:logistic"}, 8, cancer_names),
         cancer_rows, cancer_names)
    save("xgb-iris-softmax",
         train(iris.data, iris.target, {**multi, "objective": "multi:softmax"}, 5, iris_names),
         iris_rows, iris_names)

    churn_x, churn_y = make_churn_data()
    churn_rows = np.vstack([
        churn_x[:8],
        [[1.0, 119.99, 9.0, 1.0], [72.0, 20.0, 0.0, 24.0], [12.0, np.nan, 2.0, 1.0], [np.nan] * 4],
    ])
    save("churn-xgb-v3",
         train(churn_x, churn_y, {"max_depth": 3, "eta": 0.3, "objective": "binary:logistic"}, 20, CHURN_FEATURES),
         churn_rows, CHURN_FEATURES)


if __name__ == "__main__":
    main()
