#!/usr/bin/env bash
# Embedded XGBoost evaluation per row, Switchyard against XGBoost's own inplace_predict, on
# the same model files and rows, for batches of 1 and 64 rows; then the JSON parser against
# Foundation's JSONSerialization. Needs: python3 -m pip install xgboost numpy.
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --product switchyard >&2
BIN=.build/release/switchyard
echo "== XGBoost inplace_predict (python, nthread=1)"
python3 bench/models/xgb_bench.py --repeat 2000
echo "== Switchyard (release, one thread)"
for m in churn-xgb-v3 xgb-cancer-logistic; do
  echo "$m: $($BIN bench model examples/models/$m.json --rows examples/models/$m.expected.json | tr '\n' ' ')"
done
echo "== JSON parsing"
$BIN bench json
