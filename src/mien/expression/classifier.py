"""mien's expression classifier: the committed ONNX model run with onnxruntime on CPU.

Input: aligned face crops (`expression_crop`: grey 48x48 for the FER+-era models, RGB of the size
the model's metadata names for colour models; `ExpressionClassifier.crop` makes the right one) and
the face's 52 blendshapes (NaN when no mesh was found). Output: calibrated probabilities over
`EXPRESSIONS` (temperature-scaled; the temperature is stored in the ONNX file's metadata).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mien.expression.calibration import softmax
from mien.expression.classes import EXPRESSIONS
from mien.expression.crop import CROP_FRAMING, crop_from_face_image, crop_native_px, expression_crop, render_side
from mien.face.blendshapes import BLENDSHAPE_NAMES, mirrored_order
from mien.face.align import unit_matrix
from mien.models import resolve


def mirrored_blend_input_order() -> list[int]:
    """Column order that turns `blend_input` of a face into that of its mirror image (the presence flag stays)."""
    return mirrored_order() + [len(BLENDSHAPE_NAMES)]


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
    face: "natural" (default; everyday photos and video, mostly happy and neutral: the mean of the
    priors learned for FER+ and RAF-DB), "balanced" (every class equally likely; finds more of the
    rarer fear, disgust, contempt and anger, at some cost in overall accuracy; for data where those
    are common), or a training set's own, "ferplus" or "rafdb" (for data like it). Models trained
    without RAF-DB have only "natural" (FER+'s) and "balanced".
    `spin=False` lets onnxruntime's idle threads sleep: use it when other work (the mesh) runs
    on the same cores at the same time; batch throughput alone is ~7% higher with spinning.
    `flip`: average the logits of each face and its mirror image (with mirrored blendshapes): twice the
    network's work for about one point of accuracy. The default (None) follows the model file
    (`flip_average` in its metadata; its temperatures were fitted that way).
    """

    def __init__(self, model_path: str | Path | None = None, threads: int | None = None, batch_size: int = 256,
                 prior: str = "natural", spin: bool = True, flip: bool | None = None) -> None:
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
        self.shift = self._shift  # added to the network's logits for the chosen prior
        self.temperature = float(priors[prior]["temperature"])
        self.input_size = int(meta.get("input_size", 48))
        self.colour = bool(meta.get("colour", False))
        framing = {"input_size": self.input_size, "align_margin": float(meta.get("align_margin", 0.0)),
                   "align_shift": float(meta.get("align_shift", 0.0))}
        expected = {**CROP_FRAMING, "input_size": self.input_size}  # any size; the framing must match
        if not np.allclose(list(framing.values()), list(expected.values())):
            raise ValueError(f"{path}: made for {_describe(framing)}, but this mien crops faces at "
                             f"{_describe(CROP_FRAMING)}; use a model exported by this version")
        self.batch_size = batch_size
        self.flip = bool(meta.get("flip_average", False)) if flip is None else flip
        self.render_rule: dict | None = meta.get("render")  # `mien.expression.crop.RENDER_RULE`, if it has one
        self._mirror = np.array(mirrored_blend_input_order())
        self.has_features = "features" in {o.name for o in self._session.get_outputs()}
        self._outputs = ["logits", "features"] if self.has_features else ["logits"]

    def crop(self, rgb: np.ndarray, landmarks: np.ndarray, unit: np.ndarray | None = None) -> np.ndarray:
        """The crop this model reads, from an (H, W, 3) RGB image and a face's (478, 3) landmarks in its pixels
        (`unit`: the face's `mien.face.align.unit_matrix`, if already computed)."""
        if self.render_rule is None:
            return expression_crop(rgb, landmarks, self.input_size, self.colour, unit)
        unit = unit_matrix(landmarks) if unit is None else unit
        render = render_side(crop_native_px(unit), self.render_rule)
        return expression_crop(rgb, landmarks, self.input_size, self.colour, unit, render)

    def crop_face_image(self, mesh, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """(crop, blendshapes, mesh found) for an image that already is a face crop (datasets)."""
        return crop_from_face_image(mesh, rgb, self.input_size, self.colour, self.render_rule)

    def logits(self, crops: np.ndarray, blendshapes: np.ndarray) -> np.ndarray:
        """(n, 8) uncalibrated logits (under the chosen prior) for uint8 crops as `crop` makes them
        ((n, S, S) grey or (n, S, S, 3) RGB)."""
        return self.logits_and_features(crops, blendshapes)[0]

    def logits_and_features(self, crops: np.ndarray, blendshapes: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """`logits` and, for a model with a `features` output (`mien.train.quantize.add_feature_output`), the
        network's regional appearance features of each face (n, D) from the same run (None otherwise). With
        `flip`, the features are the face's own, not averaged with its mirror image."""
        n = len(crops)
        if n == 0:
            return np.zeros((0, len(self.classes)), np.float32), (np.zeros((0, 0), np.float32) if self.has_features
                                                                   else None)
        blend = blend_input(blendshapes)
        logits, features = [], []
        for i in range(0, n, self.batch_size):
            chunk = crops[i:i + self.batch_size]
            # Channels first while still bytes, then one float array from the division: a quarter of the memory
            # traffic of converting and scaling first (tens of ms for a photo's heatmap batch), same values.
            images = np.ascontiguousarray(chunk.transpose(0, 3, 1, 2) if chunk.ndim == 4 else chunk[:, None])
            images = np.divide(images, np.float32(255.0), dtype=np.float32)
            blends = blend[i:i + self.batch_size]
            if self.flip:  # one run over the faces and their mirror images
                images = np.concatenate([images, images[..., ::-1]])
                blends = np.concatenate([blends, blends[:, self._mirror]])
            out = self._session.run(self._outputs, {"image": images, "blendshapes": blends})
            faces = len(chunk)
            logits.append((out[0][:faces] + out[0][faces:]) / 2 if self.flip else out[0])
            if self.has_features:
                features.append(out[1][:faces])  # the face's own, not its mirror's
        return (np.concatenate(logits) + self._shift,
                np.concatenate(features).astype(np.float32) if self.has_features else None)

    def predict(self, crops: np.ndarray, blendshapes: np.ndarray) -> np.ndarray:
        """(n, 8) calibrated probabilities."""
        return softmax(self.logits(crops, blendshapes), self.temperature).astype(np.float32)
