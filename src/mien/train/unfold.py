"""Start training from a shipped float expression ONNX (`mien train --init expression_float.onnx`).

The face network's export keeps its parameters under their own names (float16 storage), so they are copied back.
For the compact network:

`torch.onnx.export` folds each batch norm into its convolution, so the file has convolutions with a bias
and no statistics. Each batch norm here gets the measured mean and variance of its convolution's output
on the training faces, and a scale and shift that reproduce the folded convolution: the network computes
the same logits in eval mode and nearly the same in train mode (where batch statistics are used), so
fine-tuning starts where the shipped model is, also at another input size.

Domain biases: FER+'s is the exported constant, RAF-DB's is the file's `rafdb` prior added to it, and
AffectNet-8's (not in the file) is fitted by maximum likelihood on its training faces with the rest frozen.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

STAT_FACES = 2048  # training faces the batch-norm statistics are measured on


def _read(path: Path):
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    if "quantized" in meta:
        raise ValueError(f"{path} is an int8 model: start from its float source (named in its metadata)")
    constants = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in proto.graph.initializer}
    # A flip-averaging export (`mien train` without --no-test-flip) wraps the network: its parameters are `net.<name>`.
    constants.update({name[len("net."):]: value for name, value in constants.items() if name.startswith("net.")})
    return proto, meta, constants


def unfold_into(model: nn.Module, path: Path, images: torch.Tensor, blend: torch.Tensor, targets: torch.Tensor,
                domains: torch.Tensor, domain_names: tuple[str, ...]) -> dict:
    """Load the float expression ONNX at `path` into `model` (an ExpressionNet of the same shape, or the face network);
    returns the file's metadata (input size, colour, priors...).

    `images` (uint8 (n, C, S, S)), `blend` ((n, 53)), `targets` ((n, 8)) and `domains` (index into
    `domain_names` per face) are training faces: the batch-norm statistics and AffectNet-8's bias are
    measured on them."""
    proto, meta, constants = _read(path)
    domain_names = domain_names[:model.domain_bias.shape[0]]  # the families this model learns a bias for
    if hasattr(model, "features"):
        _unfold_norms(model, path, proto, constants, images)
    else:  # the face network's export keeps its parameter names and has no batch norms to unfold
        _load_named(model, path, constants)
    with torch.no_grad():
        # FER+'s bias: the last addition of a class vector (the graph's output, or the wrapped network's in a
        # flip-averaging export)
        classes = model.domain_bias.shape[1]
        last = [n for n in proto.graph.node if n.op_type == "Add" and len(n.input) == 2
                and constants.get(n.input[1], np.zeros(0)).shape == (classes,)]
        ferplus = torch.from_numpy(constants[last[-1].input[1]]) if last else torch.zeros(classes)
        bias = ferplus.repeat(len(domain_names), 1)
        if "rafdb" in domain_names:
            shift = torch.tensor(meta["priors"]["rafdb"]["shift"], dtype=torch.float32)
            bias[domain_names.index("rafdb")] += shift.clamp_min(-4.0)  # contempt is masked for RAF-DB anyway
        model.domain_bias.copy_(bias)
    for name in domain_names:
        if name not in ("ferplus", "rafdb"):
            _fit_domain_bias(model, images, blend, targets, domains, domain_names.index(name))
    return meta


# The face network's parameters its expression export leaves out: dlib's descriptor layer, which the head does not read.
UNEXPORTED = {"domain_bias", "backbone.fc.weight"}


def _load_named(model: nn.Module, path: Path, constants: dict[str, np.ndarray]) -> None:
    """Copy each parameter and buffer stored under its own name (float16 ones as `<name>_fp16`)."""
    missing = set()
    with torch.no_grad():
        for name, value in model.state_dict().items():
            stored = constants.get(name, constants.get(f"{name}_fp16"))
            if stored is None or stored.shape != tuple(value.shape):
                missing.add(name)
            else:
                value.copy_(torch.from_numpy(stored.astype(np.float32)))
    if missing - UNEXPORTED:
        raise ValueError(f"{path}: does not fit this network (no {', '.join(sorted(missing - UNEXPORTED)[:3])})")


def _unfold_norms(model: nn.Module, path: Path, proto, constants: dict[str, np.ndarray], images: torch.Tensor) -> None:
    """The compact network's convolutions and batch norms from an export that folded the norms in."""
    convs = [m for m in model.features.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.features.modules() if isinstance(m, nn.BatchNorm2d)]
    folded = [(constants[n.input[1]], constants[n.input[2]]) for n in proto.graph.node if n.op_type == "Conv"]
    shapes = [tuple(w.shape) for w, _ in folded]
    if shapes != [tuple(c.weight.shape) for c in convs]:
        raise ValueError(f"{path}: its convolutions {shapes} do not fit this network shape (--channels/--top/--colour)")
    outputs: dict[int, torch.Tensor] = {}
    hooks = [c.register_forward_hook(lambda _m, _i, out, k=k: outputs.__setitem__(k, out)) for k, c in enumerate(convs)]
    model.eval()
    with torch.no_grad():
        for conv, norm, (weight, bias) in zip(convs, norms, folded):
            conv.weight.copy_(torch.from_numpy(weight))
            norm.running_mean.zero_()
            norm.running_var.fill_(1.0 - norm.eps)  # identity: sqrt(var + eps) == 1
            norm.weight.fill_(1.0)
            norm.bias.copy_(torch.from_numpy(bias))
        x = (images[:STAT_FACES].float() / 255 - 0.5) / 0.25
        for k, norm in enumerate(norms):  # layer by layer: each layer's input is already the folded network's
            model.features(x)
            mean, var = outputs[k].mean((0, 2, 3)), outputs[k].var((0, 2, 3), unbiased=False)
            norm.bias.add_(mean)
            norm.weight.copy_(torch.sqrt(var + norm.eps))
            norm.running_mean.copy_(mean)
            norm.running_var.copy_(var)
        for hook in hooks:
            hook.remove()
        for name, value in model.named_parameters():
            if name.startswith(("blend.", "head.")):
                value.copy_(torch.from_numpy(constants[name]))


def _fit_domain_bias(model: nn.Module, images: torch.Tensor, blend: torch.Tensor, targets: torch.Tensor,
                     domains: torch.Tensor, domain: int, faces: int = 4096) -> None:
    """One domain's class-prior bias by maximum likelihood on (up to `faces` of) its faces, the rest frozen."""
    chosen = torch.nonzero(domains == domain).flatten()[:faces]
    if len(chosen) == 0:
        return
    model.eval()
    with torch.no_grad():
        base = model(images[chosen].float() / 255, blend[chosen], torch.zeros(len(chosen), dtype=torch.long))
        base = base - model.domain_bias[0]
    shift = model.domain_bias[domain].detach().clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([shift], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(base + shift, targets[chosen])
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        model.domain_bias[domain].copy_(shift.detach())
