"""Speed of the expression network against its input: grey 48 px (the FER+-era model) and colour 64-112 px.

    python benchmarks/expression_sizes.py [--channels 24,48,96,192 --top 384]

Exports an untrained ExpressionNet of each input to ONNX (speed does not depend on the weights) and
measures what `ExpressionClassifier` gives on this machine: faces/s batched (256) and the latency of
one face, onnxruntime on 2 threads, no test-time flip. Needs the train extra (torch, onnx).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from mien.expression.classifier import ExpressionClassifier
from mien.expression.evaluate import classifier_speed
from mien.train.export import export_onnx
from mien.train.model import ExpressionNet

SIZES = [(48, False), (64, True), (80, True), (96, True), (112, True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", default="24,48,96,192")
    parser.add_argument("--top", type=int, default=384)
    args = parser.parse_args()
    channels = tuple(int(c) for c in args.channels.split(","))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, colour in SIZES:
            net = ExpressionNet(channels=channels, top=args.top, in_channels=3 if colour else 1)
            path = export_onnx(net, Path(tmp) / f"m{size}.onnx", {"temperature": 1.0}, flip=False, size=size,
                               colour=colour)
            speed = classifier_speed(ExpressionClassifier(path, threads=2), repeats=40)
            params = sum(p.numel() for p in net.parameters())
            results.append({"input": f"{size} px {'RGB' if colour else 'grey'}", "params": params,
                            "onnx_mb": round(path.stat().st_size / 1e6, 2), **speed})
            print(json.dumps(results[-1]))


if __name__ == "__main__":
    main()
