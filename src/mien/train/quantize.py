"""Quantize a trained expression model to 8-bit integers (`mien quantize`).

Static QDQ quantization with onnxruntime: weights int8 per output channel with 7-bit range
(`reduce_range`, so CPUs without VNNI, whose 8-bit dot products can saturate, compute the same
answers), activations uint8 with ranges measured (MinMax) on face crops drawn from the training
sets, made the way inference makes them. The temperature of each class prior is refitted on the
valid sets (as `mien train` fits them), and the float model's SHA-256, the calibration and the
agreement with the float model on valid data are stored in the file's metadata. On this 2-core
CPU the int8 model runs 2.1x (batched, 2 threads) to 3.2x (one thread) faster than the float one.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np

from mien.datasets.expressions import read_builtin
from mien.expression.classifier import ExpressionClassifier, blend_input
from mien.expression.evaluate import collect_crops
from mien.train.cache import cache_for_classifier
from mien.train.priors import fit_priors

CALIBRATION_SETS = ("ferplus-train", "affectnet8-train", "rafdb-train")
VALID_SETS = ("ferplus-valid", "affectnet8-valid", "rafdb-valid")


def calibration_crops(classifier: ExpressionClassifier, datasets: Path, per_set: int = 256, seed: int = 0,
                      progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(crops, blendshapes) of `per_set` faces drawn at random (fixed seed) from each training set."""
    crops, blends = [], []
    for name in CALIBRATION_SETS:
        labelled = read_builtin(name, datasets)
        chosen = np.sort(np.random.default_rng(seed).choice(len(labelled), min(per_set, len(labelled)), replace=False))
        paths = [labelled.paths[i] for i in chosen]
        for _, crop, blend, _, _ in collect_crops(paths, True, progress, classifier):
            if crop is not None:
                crops.append(crop)
                blends.append(blend)
    return np.stack(crops), np.stack(blends).astype(np.float32)


def _feeds(crops: np.ndarray, blends: np.ndarray, batch: int = 64) -> list[dict[str, np.ndarray]]:
    feeds = []
    for i in range(0, len(crops), batch):
        images = crops[i:i + batch].astype(np.float32) / 255.0
        images = images.transpose(0, 3, 1, 2) if images.ndim == 4 else images[:, None]
        feeds.append({"image": images, "blendshapes": blend_input(blends[i:i + batch])})
    return feeds


def _quantize_graph(model: Path, out: Path, feeds: list[dict[str, np.ndarray]]) -> None:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self._left = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._left, None)

    quantize_static(str(model), str(out), Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
                    reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)


def _network_logits(classifier: ExpressionClassifier, data: dict) -> np.ndarray:
    """Logits of cached crops without the class prior (what temperatures are fitted on)."""
    return classifier.logits(data["crops"], data["blendshapes"]) - classifier.shift


def quantize_expression(model: Path, out: Path, datasets: Path, cache: Path, per_set: int = 256, seed: int = 0,
                        command: str = "", progress: bool = True, log=print, flip: bool = False) -> dict:
    """Write the int8 version of `model` to `out`; returns what went into its metadata.

    `flip`: the int8 model is to average each face with its mirror image (`flip_average` in its metadata,
    which `ExpressionClassifier` follows); temperatures, accuracy and agreement are measured that way."""
    import onnx

    model, out = Path(model), Path(out)
    float_model = ExpressionClassifier(model, flip=flip)
    if "quantized" in float_model.metadata:
        raise ValueError(f"{model}: already quantized; start from the float model `mien train` wrote")
    crops, blends = calibration_crops(float_model, datasets, per_set, seed, progress)
    log(f"calibrating activation ranges on {len(crops)} training faces")
    # Valid logits of both models: the priors' temperatures are refitted on the int8 ones.
    valid = {name: cache_for_classifier(read_builtin(name, datasets), cache, float_model.input_size,
                                        float_model.colour, float_model.render_rule) for name in VALID_SETS}
    original = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    original["flip_average"] = json.dumps(flip)
    with tempfile.TemporaryDirectory() as tmp:
        scored = Path(tmp) / "int8.onnx"
        # Weights stored as float16 (`half_weights`) are unpacked first, so the quantizer sees them as weights.
        _quantize_graph(_float32_weights(model, Path(tmp) / "float32.onnx"), scored, _feeds(crops, blends))
        graph = onnx.load(str(scored))
        _set_metadata(graph, original)  # the int8 graph must read as a mien model to score it
        onnx.save(graph, str(scored))
        int8_model = ExpressionClassifier(scored)
    int8_logits = {name: _network_logits(int8_model, data) for name, data in valid.items()}
    float_logits = {name: _network_logits(float_model, data) for name, data in valid.items()}
    labels = {name: data["targets"].argmax(1) for name, data in valid.items()}
    shifts = {name: np.asarray(p["shift"]) for name, p in float_model.metadata["priors"].items()}
    priors = fit_priors(int8_logits, labels, shifts)
    summary = {
        "from_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "method": "onnxruntime static QDQ: int8 weights per channel (reduce_range), uint8 activations, MinMax",
        "flip_average": flip,
        "calibration": {"sets": list(CALIBRATION_SETS), "faces": len(crops), "per_set": per_set, "seed": seed},
        "command": command,
        "valid_agreement": {name: float((int8_logits[name].argmax(1) == float_logits[name].argmax(1)).mean())
                            for name in VALID_SETS},
        "valid_accuracy_natural": {
            name: {"float": float(((float_logits[name] + shifts["natural"]).argmax(1) == labels[name]).mean()),
                   "int8": float(((int8_logits[name] + shifts["natural"]).argmax(1) == labels[name]).mean())}
            for name in VALID_SETS},
    }
    metadata = {**original,
                "priors": json.dumps({name: {"shift": p["shift"], "temperature": p["temperature"]}
                                      for name, p in priors.items()}),
                "temperature": json.dumps(priors["natural"]["temperature"]),
                "quantized": json.dumps(summary)}
    _set_metadata(graph, metadata)
    add_feature_output(graph)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, str(out))
    for name in VALID_SETS:
        acc = summary["valid_accuracy_natural"][name]
        log(f"{name}: agreement with the float model {summary['valid_agreement'][name]:.4f}, accuracy "
            f"{acc['float']:.4f} -> {acc['int8']:.4f} (natural prior)")
    log(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, float model {model.stat().st_size / 1e6:.2f} MB)")
    return summary


# The output of the third stage of dlib's ResNet (128 channels, 7 x 7 at 128 px): local appearance the AU model
# reads as 3 x 3 overlapping regions (brows and eyes, cheeks and nose, mouth and chin; left, middle, right).
FEATURE_TENSOR = "/blocks/blocks.9/Relu_1_output_0"


def add_feature_output(graph, tensor: str = FEATURE_TENSOR) -> bool:
    """Give an expression model a second output, `features` (n, C * 9): `tensor` (n, C, 7, 7) averaged over 3 x 3
    windows with stride 2, flattened channel-major (the AU model's appearance input). In a quantized graph the
    dequantized tensor is read, as the next layer reads it. Modifies the ModelProto `graph`; False (and nothing
    added) for a graph without that tensor, such as the compact CNN's: its AU inputs then sit at their mean."""
    from onnx import TensorProto, helper

    if "features" in {o.name for o in graph.graph.output}:
        return True
    produced = {name for node in graph.graph.node for name in node.output}
    source = next((name for name in (f"{tensor}_DequantizeLinear_Output", tensor) if name in produced), None)
    if source is None:
        return False
    graph.graph.node.extend([
        helper.make_node("AveragePool", [source], ["features_regions"], kernel_shape=[3, 3], strides=[2, 2],
                         name="features_regions"),
        helper.make_node("Flatten", ["features_regions"], ["features"], axis=1, name="features_flatten")])
    graph.graph.output.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", None]))
    return True


def _set_metadata(graph, metadata: dict[str, str]) -> None:
    """Replace the graph's metadata (dropping the quantizer's own non-JSON entries) with `metadata`."""
    import onnx

    del graph.metadata_props[:]
    for key, value in metadata.items():
        graph.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))


def _float32_weights(model: Path, out: Path) -> Path:
    """`model` with float16-stored weights (`half_weights`) back as float32 initializers (the same values), or
    `model` itself when it has none."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(model))
    halves = {init.name: init for init in proto.graph.initializer if init.data_type == onnx.TensorProto.FLOAT16}
    casts = [node for node in proto.graph.node if node.op_type == "Cast" and node.input[0] in halves]
    if not casts:
        return model
    for node in casts:
        init = halves[node.input[0]]
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), node.output[0]))
        proto.graph.node.remove(node)
    onnx.save(proto, str(out))
    return out


def half_weights(model: Path, out: Path, min_size: int = 1024) -> Path:
    """`model` with its large float32 weights stored as float16 and cast back to float32 in the graph: half
    the file (the explainer's float model), the same arithmetic after onnxruntime folds the casts at load
    (weights rounded to 11 significant bits)."""
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.load(str(model))
    casts = []
    for init in proto.graph.initializer:
        weights = numpy_helper.to_array(init)
        if weights.dtype == np.float32 and weights.size >= min_size:
            name = init.name
            init.CopyFrom(numpy_helper.from_array(weights.astype(np.float16), f"{name}_fp16"))
            casts.append(helper.make_node("Cast", [f"{name}_fp16"], [name], to=onnx.TensorProto.FLOAT,
                                          name=f"{name}_cast"))
    nodes = casts + list(proto.graph.node)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    return Path(out)
