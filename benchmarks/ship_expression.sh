#!/usr/bin/env bash
# Ship a newly trained expression model and refit everything that depends on it, in order:
#
#   bash benchmarks/ship_expression.sh runs/expr-v2 [more training.json files of earlier steps]
#
# 1. copy RUN/expression.onnx into the package and register its SHA-256; the export's reference
#    inputs/logits go to tests/data (tests/test_expression.py checks ONNX against torch);
# 2. refit the open-set thresholds per prior on valid data (benchmarks/openset.py --fit);
# 3. refit the AU occurrence model, whose inputs include the expression logits (python -m mien.train.aus);
# 4. measure the model on every built-in set, test sets once, and write its card
#    (benchmarks/expression_eval.py), then the AU results and card.
# Keep the previous model's figures first: python benchmarks/expression_eval.py --no-card --out /tmp/old.json
set -euo pipefail
run=${1:?usage: ship_expression.sh RUN_DIR [earlier training.json ...]}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

cp "$run/expression.onnx" src/mien/models/weights/expression.onnx
cp "$run/expression_reference.npz" tests/data/expression_reference.npz
digest=$(sha256sum src/mien/models/weights/expression.onnx | cut -d' ' -f1)
python - "$digest" <<'EOF'
import re, sys
from pathlib import Path
path = Path("src/mien/models/sources.py")
text = re.sub(r'("name": "expression",\n    "file": "expression.onnx",\n    "sha256": ")[0-9a-f]+(")',
              rf"\g<1>{sys.argv[1]}\g<2>", path.read_text())
path.write_text(text)
print("registered expression.onnx", sys.argv[1])
EOF

python benchmarks/openset.py --fit
python -m mien.train.aus --data ../shared/datasets/rafce
python benchmarks/expression_eval.py --training "$@" "$run/training.json"
mien eval-aus ../shared/datasets/rafce/valid -o benchmarks/aus_rafce_valid
python benchmarks/aus_groups.py
python benchmarks/aus_card.py
echo "shipped $run: now run the tests, python benchmarks/end_to_end.py and python benchmarks/video.py"
