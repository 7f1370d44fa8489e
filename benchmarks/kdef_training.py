"""How an expression model trained with KDEF's posers reads KDEF people it never saw (person-level two-fold).

    mien train ... --sets ferplus-train,affectnet8-train,rafdb-train,kdef-fold0 --oversample kdef=30 --out runs/kdef_f0x30
    mien train ... (the same with kdef-fold1)                                                     --out runs/kdef_f1x30
    python benchmarks/kdef_training.py runs/kdef_f0x30/expression.onnx runs/kdef_f1x30/expression.onnx -o kdef_oof.parquet
    python benchmarks/neutral_kdef.py kdef_oof.parquet

Each fold's model reads the other fold's 17 people through the whole pipeline (detector, mesh, crop, as `mien
analyze ../shared/datasets/kdef`), so every photo in the table is read by a model that never saw its person. Prints
accuracy by view and class (7 KDEF classes, default prior) and writes the table for `neutral_kdef.py` (per-person
calibration measured on people the model never saw).
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def read_out_of_fold(models: list[Path], datasets: Path) -> pd.DataFrame:
    """The shared KDEF analysed with model k on the people of fold 1 - k (k = 0, 1)."""
    import mien.expression.classifier as classifier_module
    from mien.api import analyze
    from mien.datasets.expressions import read_builtin

    tables = []
    real_resolve = classifier_module.resolve
    for k, model in enumerate(models):
        held_out = read_builtin(f"kdef-fold{1 - k}", datasets)
        # the pipeline resolves "expression" to this fold's model; everything else stays as shipped
        classifier_module.resolve = partial(lambda name, path: path if name == "expression" else real_resolve(name),
                                            path=Path(model))
        try:
            tables.append(analyze([str(p) for p in held_out.paths], landmarks="none").assign(fold_model=str(model)))
        finally:
            classifier_module.resolve = real_resolve
    return pd.concat(tables, ignore_index=True)


def summary(table: pd.DataFrame) -> str:
    faces = table[table.face_found].copy()
    faces["view"] = [Path(s).parts[-3] for s in faces.source]
    faces["label"] = [Path(s).parts[-2] for s in faces.source]
    faces["right"] = faces.expression == faces.label
    by_view = faces.groupby("view").right.mean().mul(100).round(1).to_dict()
    by_class = faces.groupby("label").right.mean().mul(100).round(1).to_dict()
    return (f"{len(faces)} faces read, {100 * faces.right.mean():.1f}% right; by view {by_view}; by class {by_class}; "
            f"neutral photos read neutral {100 * faces[faces.label == 'neutral'].right.mean():.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs=2, help="expression ONNX of the runs trained with kdef-fold0, kdef-fold1")
    parser.add_argument("-o", "--out", type=Path, default=Path("kdef_oof.parquet"))
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    args = parser.parse_args()
    table = read_out_of_fold(args.models, args.datasets)
    table.to_parquet(args.out)
    print(summary(table))
    print(f"wrote {args.out}; per-person calibration: python benchmarks/neutral_kdef.py {args.out}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
