"""Bring a run trained on a lent GPU (`benchmarks/gpu/train_face.py`: NAME.pt, NAME.json) into runs/NAME and
export it as `mien train` would have (calibration on the valid sets, expression.onnx, reference logits):

    python benchmarks/gpu/import_run.py /work/.device/N/face128 --cache .cache/expr
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

import torch

from mien.train.export import export_run
from mien.train.loop import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="path of NAME.pt / NAME.json without the suffix")
    parser.add_argument("--cache", type=Path, default=Path(".cache/expr"))
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--single-pass", action="store_true", help="export without the mirror average in the "
                        "graph (mien quantize --flip then puts it back at run time, as the shipped models do)")
    args = parser.parse_args()
    summary = json.loads(args.run.with_suffix(".json").read_text())
    saved = torch.load(args.run.with_suffix(".pt"), weights_only=False, map_location="cpu")
    saved["model"] = {k: v.float() if v.is_floating_point() else v for k, v in saved["model"].items()}
    out = args.runs / summary["name"]
    out.mkdir(parents=True, exist_ok=True)
    torch.save(saved, out / "best.pt")
    training = {**summary["training"], "trained_on": "lent GPU (benchmarks/gpu/train_face.py), weights carried in float16"}
    (out / "training.json").write_text(json.dumps(training, indent=2))
    known = {f.name for f in fields(TrainConfig)}
    config = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved["config"].items() if k in known})
    if args.single_pass:
        config.test_flip = False
    export_run(config, out, args.cache, out / "best.pt", command=summary["command"])


if __name__ == "__main__":
    main()
