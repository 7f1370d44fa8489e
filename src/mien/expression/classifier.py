"""mien's expression classifier: the committed ONNX model run with onnxruntime on CPU.

Input: 48x48 grayscale aligned crops (`expression_crop`) and the face's 52 blendshapes (NaN
when no mesh was found). Output: calibrated probabilities over `EXPRESSIONS`
(temperature-scaled; the temperature is stored in the ONNX file's metadata).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mien.expression.calibration import softmax
from mien.expression.classes import EXPRESSIONS
from mien.expression.crop import CROP_FRAMING
from mien.models import resolve


def blend_input(blendshapes: np.ndarray) -> np.ndarray:
    """(n, 53) float32: blendshapes with NaN rows zeroed, plus a presence flag (1 = mesh found)."""
    blendshapes = np.asarray(blendshapes, np.float32).reshape(len(blendshapes), -1)
    present = ~np.isnan(blendshapes).any(1)
    out = np.zeros((len(blendshapes), blendshapes.shape[1] + 1), np.float32)
    out[present, :-1] = blendshapes[present]
    out[present, -1] = 1.0
    return out


def _describe(framing: dict) -> str:
    return f"{framing['input_size']} px with margin {framing['align_margin']:.3f} and shift {framing['align_shift']:.3f}"


class ExpressionClassifier:
    """Calibrated 8-class expression probabilities for aligned face crops.

    `prior` is what the model assumes about how common each expression is before it sees the
    face: "natural" (default; the frequencies of everyday photos as in FER+, mostly neutral and
    happy: the most accurate choice for ordinary photos and video) or "balanced" (every class
    equally likely; finds more of the rarer fear, disgust, contempt and anger, at some cost in
    overall accuracy; for data where those are common).
    `spin=False` lets onnxruntime's idle threads sleep: use it when other work (the mesh) runs
    on the same cores at the same time; batch throughput alone is ~7% higher with spinning.
    """

    def __init__(self, model_path: str | Path | None = None, threads: int | None = None, batch_size: int = 256,
                 prior: str = "natural", spin: bool = True) -> None:
        import onnxruntime as ort

        path = Path(model_path) if model_path else resolve("expression")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if not spin:
            # Idle worker threads sleep instead of spinning, leaving the cores to the mesh threads that
            # run alongside the classifier in the pipeline (video: 55 -> 67 fps on one face, 2 cores).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = {k: json.loads(v) for k, v in self._session.get_modelmeta().custom_metadata_map.items()}
        self.metadata = meta
        self.classes: tuple[str, ...] = tuple(meta.get("classes", EXPRESSIONS))
        priors = meta.get("priors", {"natural": {"shift": [0.0] * len(self.classes),
                                                 "temperature": meta.get("temperature", 1.0)}})
        if prior not in priors:
            raise ValueError(f"{path}: no class prior {prior!r}; this model has {', '.join(priors)}")
        self.prior = prior
        self._shift = np.asarray(priors[prior]["shift"], np.float32)
        self.temperature = float(priors[prior]["temperature"])
        self.input_size = int(meta.get("input_size", 48))
        framing = {"input_size": self.input_size, "align_margin": float(meta.get("align_margin", 0.0)),
                   "align_shift": float(meta.get("align_shift", 0.0))}
        if not np.allclose(list(framing.values()), list(CROP_FRAMING.values())):
            raise ValueError(f"{path}: made for {_describe(framing)}, but this mien crops faces at "
                             f"{_describe(CROP_FRAMING)}; use a model exported by this version")
        self.batch_size = batch_size

    def logits(self, crops: np.ndarray, blendshapes: np.ndarray) -> np.ndarray:
        """(n, 8) uncalibrated logits (under the chosen prior) for (n, 48, 48) uint8 crops."""
        n = len(crops)
        if n == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        blend = blend_input(blendshapes)
        out = []
        for i in range(0, n, self.batch_size):
            images = crops[i:i + self.batch_size, None].astype(np.float32) / 255.0
            out.append(self._session.run(None, {"image": images, "blendshapes": blend[i:i + self.batch_size]})[0])
        return np.concatenate(out) + self._shift

    def predict(self, crops: np.ndarray, blendshapes: np.ndarray) -> np.ndarray:
        """(n, 8) calibrated probabilities."""
        return softmax(self.logits(crops, blendshapes), self.temperature).astype(np.float32)
