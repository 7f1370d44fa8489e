"""Export trained weights to ONNX (flip-averaged, batch-dynamic) with calibration metadata."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from mien.expression.classes import EXPRESSIONS
from mien.expression.crop import CROP_FRAMING, EXPR_SIZE
from mien.train.cache import load_cache, set_render_side
from mien.train.loop import (DOMAINS, blend_input, cache_path, crops_tensor, load_trained,
                             predict_logits, render_rule, training_prior)
from mien.train.model import ExpressionNet, FlipAveraged
from mien.train.priors import fit_priors
from mien.train.reference import reference_inputs


def calibrate(model: ExpressionNet, valid_caches: list[Path], flip: bool = True,
              priors: dict[str, np.ndarray] | None = None, rule: dict | None = None) -> dict:
    """Per class prior (a shift added to the logits): a temperature fitted on valid data, ECE before and
    after, and accuracy per set (`mien.train.priors.fit_priors`). The first prior's figures are also
    given at the top level.
    """
    logits, labels = {}, {}
    size = getattr(model, "input_size", EXPR_SIZE)
    for path in valid_caches:
        data = load_cache(path)
        images = crops_tensor(data["crops"], size, set_render_side(Path(path).stem, rule))
        blend = torch.from_numpy(blend_input(data["blendshapes"]))
        logits[Path(path).stem] = predict_logits(model, images, blend, flip=flip).numpy()
        labels[Path(path).stem] = data["targets"].argmax(1)
    results = fit_priors(logits, labels, priors or {"natural": np.zeros(len(EXPRESSIONS))})
    first = next(iter(results.values()))
    return {**{k: v for k, v in first.items() if k != "shift"}, "priors": results}


NEVER = -8.0  # logit shift for a class a dataset never labels (probability x e^-8)


def class_priors(prior: np.ndarray, domain_bias: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Logit shifts of the shipped priors, relative to the exported logits (FER+'s learned class bias).

    - `natural`: everyday photos and video. With a RAF-DB-trained model, the mean of the class priors learned
      for FER+ and for RAF-DB (two real-world sets with many annotators per face; contempt as FER+, as RAF-DB
      has none); otherwise FER+'s.
    - `balanced`: every class equally likely a priori (logit adjustment with FER+'s training frequencies).
    - `ferplus`, `rafdb`: the class prior learned for that dataset's labels (RAF-DB: never contempt), for
      data like it and for reporting on its test split.
    """
    balanced = -np.log(prior)
    balanced -= balanced.mean()
    rafdb = DOMAINS.index("rafdb")
    if domain_bias is None or len(domain_bias) <= rafdb:
        return {"natural": np.zeros_like(balanced), "balanced": balanced}
    learned = np.asarray(domain_bias[rafdb] - domain_bias[0], np.float64)
    contempt = EXPRESSIONS.index("contempt")
    natural = learned / 2
    natural[contempt] = 0.0
    learned[contempt] = NEVER
    return {"natural": natural, "balanced": balanced, "ferplus": np.zeros_like(balanced), "rafdb": learned}


def interpolate_weights(tuned: Path, init: Path, init_share: float, out: Path) -> Path:
    """Weight-space ensemble of a fine-tuned model and its starting point (WiSE-FT, Wortsman et al. 2022).

    Fine-tuning on FER+ alone lifts FER+ accuracy but forgets some of what AffectNet taught;
    averaging the weights keeps most of both.
    """
    saved = torch.load(tuned, weights_only=False)
    start = torch.load(init, weights_only=False)["model"]
    mixed = {key: (init_share * start.get(key, value).float() + (1 - init_share) * value.float()).to(value.dtype)
             if value.is_floating_point() else value for key, value in saved["model"].items()}
    torch.save({**saved, "model": mixed, "init_share": init_share}, out)
    return out


def export_onnx(model: ExpressionNet, out: Path, metadata: dict, flip: bool = True, size: int = EXPR_SIZE,
                colour: bool = False, rule: dict | None = None) -> Path:
    """Write the model (flip-averaged unless `flip` is off) to `out` with `metadata` (JSON values) in the ONNX file;
    it reads (n, 3 if `colour` else 1, `size`, `size`) images."""
    import onnx

    wrapped = FlipAveraged(model).eval() if flip else model.eval()
    image = torch.rand(2, 3 if colour else 1, size, size)
    blend = torch.rand(2, 53)
    torch.onnx.export(wrapped, (image, blend), str(out), input_names=["image", "blendshapes"],
                      output_names=["logits"], dynamic_axes={"image": {0: "n"}, "blendshapes": {0: "n"}, "logits": {0: "n"}},
                      opset_version=17, dynamo=False)
    proto = onnx.load(str(out))
    meta = {"classes": list(EXPRESSIONS), **CROP_FRAMING, "input_size": size, "colour": colour, **metadata,
            **({"render": rule} if rule else {})}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(proto, str(out))
    return out


def write_reference(model: ExpressionNet, path: Path, flip: bool = True, size: int = EXPR_SIZE,
                    colour: bool = False) -> Path:
    """Save reference inputs and the torch model's logits (as exported, and averaged with the mirror image),
    so tests can check the ONNX export."""
    crops, blends = reference_inputs(size=size, colour=colour)
    images = crops_tensor(crops, size)
    blend = torch.from_numpy(blend_input(blends))
    logits = predict_logits(model, images, blend, flip=flip).numpy()
    # Also the face-and-mirror average, for a model quantized to average at run time (`mien quantize --flip`).
    flipped = logits if flip else predict_logits(model, images, blend, flip=True).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, crops=crops, blendshapes=blends, torch_logits=logits, torch_logits_flip=flipped)
    return path


def train_and_export(config, datasets: Path, out: Path, cache_dir: Path, command: str = "", log=print,
                     stop_after: int | None = None) -> Path | None:
    """Train (resuming if interrupted), calibrate on the valid sets and export `out/expression.onnx`."""
    from mien.train.loop import run_training

    best = run_training(config, datasets, out, cache_dir, log=log, stop_after=stop_after)
    if best is None:
        return None
    return export_run(config, out, cache_dir, best, command=command, log=log)


def export_run(config, out: Path, cache_dir: Path, best: Path | None = None, command: str = "", log=print) -> Path:
    """Calibrate a finished run (`out/best.pt` and `out/training.json`, as `run_training` leaves them, here or on
    another machine such as a lent GPU) on the valid sets and export `out/expression.onnx`."""
    best = best or out / "best.pt"
    if config.init_from and config.init_share:
        best = interpolate_weights(best, Path(config.init_from), config.init_share, out / "interpolated.pt")
    model, saved = load_trained(best)
    learned = None
    if "rafdb-train" in config.train_sets and hasattr(model, "domain_bias"):
        learned = model.domain_bias.detach().numpy()
    priors = class_priors(training_prior(config, cache_dir), learned)
    model.input_size = config.input_size
    settings = asdict(config)
    rule = render_rule(settings)
    calibration = calibrate(model, [cache_path(cache_dir, name, settings) for name in config.valid_sets],
                            flip=config.test_flip, priors=priors, rule=rule)
    info = json.loads((out / "training.json").read_text())
    info.update({"command": command, "best_epoch": saved["epoch"], "valid_accuracy": calibration.pop("valid_accuracy"),
                 "calibration": calibration})
    (out / "training.json").write_text(json.dumps(info, indent=2))
    onnx_path = export_onnx(model, out / "expression.onnx", {
        "temperature": calibration["temperature"],
        "priors": {name: {"shift": p["shift"], "temperature": p["temperature"]} for name, p in calibration["priors"].items()},
        "trained_with": command, "seed": config.seed,
        "epochs": config.epochs, "best_epoch": saved["epoch"], "train_seconds": info["train_seconds"],
        "hardware": info["hardware"], "train_sets": list(config.train_sets), "test_flip": config.test_flip},
        flip=config.test_flip, size=config.input_size, colour=config.colour, rule=rule)
    write_reference(model, out / "expression_reference.npz", flip=config.test_flip, size=config.input_size,
                    colour=config.colour)
    log(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB); temperature {calibration['temperature']:.3f}, "
        f"valid ECE {calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f}")
    return onnx_path
