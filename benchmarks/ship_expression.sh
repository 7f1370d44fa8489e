#!/usr/bin/env bash
# Ship a newly trained expression model and refit everything that depends on it, in order:
#
#   bash benchmarks/ship_expression.sh runs/expr-v2 [more training.json files of earlier steps]
#   FLIP=0 bash benchmarks/ship_expression.sh RUN   # one pass per face (for a network too slow to run twice)
#
# 1. store the float model's weights as float16 and quantize that to int8, averaging each face with its mirror image (mien quantize --flip; FLIP=0
#    leaves it out), ship both (the int8 model predicts, the float
#    one explains) and register their SHA-256s; the export's reference inputs/logits go to tests/data
#    (tests/test_expression.py checks the int8 ONNX against torch);
# 2. refit the open-set thresholds per prior on valid data (benchmarks/openset.py --fit);
# 3. refit the AU occurrence model, whose inputs include the expression logits (python -m mien.train.aus), then the
#    compound reading, whose inputs are both (python -m mien.train.compound);
# 4. measure the model on every built-in set, test sets once, and write its card
#    (benchmarks/expression_eval.py), then the AU results and card.
# Keep the previous model's figures first: python benchmarks/expression_eval.py --no-card --out /tmp/old.json
set -euo pipefail
run=${1:?usage: ship_expression.sh RUN_DIR [earlier training.json ...]}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

flip_option=--flip
[ "${FLIP:-1}" = 0 ] && flip_option=
# The float model keeps its weights in float16 (half the file; the int8 one is quantized from exactly it).
python -c "from mien.train.quantize import half_weights; half_weights('$run/expression.onnx', '$run/expression-half.onnx')"
mien quantize "$run/expression-half.onnx" --data ../shared/datasets -o "$run/expression-int8.onnx" $flip_option
cp "$run/expression-int8.onnx" src/mien/models/weights/expression.onnx
cp "$run/expression-half.onnx" src/mien/models/weights/expression_float.onnx
cp "$run/expression_reference.npz" tests/data/expression_reference.npz
for name in expression expression_float; do
  python -c "from pathlib import Path; from mien.train.aus import register
print('registered', '$name', register(Path('src/mien/models/weights/$name.onnx'), '$name'))"
done

python benchmarks/openset.py --fit
python -m mien.train.aus --data ../shared/datasets/rafce
python -m mien.train.compound --data ../shared/datasets/rafce --basic ../shared/datasets/rafdb
python benchmarks/expression_eval.py --training "$@" "$run/training.json"
mien eval-aus ../shared/datasets/rafce/valid -o benchmarks/aus_rafce_valid
python benchmarks/aus_groups.py
python benchmarks/aus_card.py
echo "shipped $run: now run the tests, python benchmarks/end_to_end.py and python benchmarks/video.py"
