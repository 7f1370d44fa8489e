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
import json
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


def figures(table: pd.DataFrame) -> dict:
    """Accuracy (%) over the faces read, by view (S, HL, HR) and by class (7 KDEF classes, default prior)."""
    from mien.datasets.expressions import kdef_person

    faces = table[table.face_found].copy()
    faces["view"] = [Path(s).parts[-3] for s in faces.source]
    faces["label"] = [Path(s).parts[-2] for s in faces.source]
    faces["right"] = faces.expression == faces.label
    return {"people": len({kdef_person(s) for s in faces.source}), "faces": len(faces),
            "accuracy": round(100 * float(faces.right.mean()), 1),
            "by_view": faces.groupby("view").right.mean().mul(100).round(1).to_dict(),
            "by_class": faces.groupby("label").right.mean().mul(100).round(1).to_dict()}


def summary(table: pd.DataFrame) -> str:
    f = figures(table)
    return (f"{f['faces']} faces read, {f['accuracy']:.1f}% right; by view {f['by_view']}; by class {f['by_class']}; "
            f"neutral photos read neutral {f['by_class'].get('neutral', float('nan')):.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs=2, help="expression ONNX of the runs trained with kdef-fold0, kdef-fold1")
    parser.add_argument("-o", "--out", type=Path, default=Path("kdef_oof.parquet"))
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the figures here (benchmarks/kdef_oof.json goes into the model card)")
    args = parser.parse_args()
    table = read_out_of_fold(args.models, args.datasets)
    table.to_parquet(args.out)
    print(summary(table))
    if args.json:
        models = [{"model": str(m), "training": json.loads((m.parent / "training.json").read_text())["command"]
                   if (m.parent / "training.json").exists() else None} for m in args.models]
        args.json.write_text(json.dumps({**figures(table), "fold_models": models}, indent=1) + "\n")
    print(f"wrote {args.out}; per-person calibration: python benchmarks/neutral_kdef.py {args.out}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
