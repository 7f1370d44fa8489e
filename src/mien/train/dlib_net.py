"""dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`) as a torch module.

The weights come from the PyPI package `face-recognition-models` (CC0-1.0; the train extra), a
ResNet trained by dlib's author on about 3 million faces. `read_dlib_layers` parses dlib's own
serialization (dlib/serialize.h, dlib/dnn/core.h, layers.h, cuda/tensor.h):

- integers: one control byte (byte count, 0x80 if negative), then that many little-endian bytes;
- floats: an integer mantissa and an integer exponent (value = m * 2**e); bools: ASCII '0' or '1';
- strings: an integer length, then the bytes; tensors: version 2, four dims, raw little-endian float32;
- a network: the loss layer's version and details first, then the version numbers of its layers from the
  output down to the input, the input layer, then each computational layer's details in forward order,
  each followed by 3 bools and 3 (empty) tensors; tag and skip layers store nothing but their version.

`FaceResNet` then rebuilds the network: a 7x7/2 convolution and a 3x3/2 max pool, then residual
blocks of 32, 64, 128, 256 channels (stride-2 convolutions without padding, a 2x2/2 average pool
as the shortcut of a down block, and dlib's addition of tensors of different shapes, which pads
the smaller one with zeros at the end of channels, rows and columns), global average pooling and
a 256 -> 128 linear layer (the face descriptor).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# dlib's input normalisation of this network: (value - channel mean) / 256, RGB order.
DLIB_RGB_MEAN = (122.782, 117.001, 104.298)
DESCRIPTOR_SIZE = 150  # the side of the aligned face chip the network was trained on


class _Reader:
    """Sequential reader of dlib's serialization format."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("unexpected end of the dlib file")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def integer(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        value = int.from_bytes(self._take(size), "little") if size else 0
        return -value if control & 0x80 else value

    def floating(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        return float(mantissa) * 2.0 ** exponent

    def boolean(self) -> bool:
        byte = self._take(1)
        if byte not in (b"0", b"1"):
            raise ValueError(f"bad bool {byte!r} at byte {self.pos - 1}")
        return byte == b"1"

    def string(self) -> str:
        return self._take(self.integer()).decode("ascii")

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise ValueError(f"tensor version {version} at byte {self.pos}")
        shape = tuple(self.integer() for _ in range(4))
        count = int(np.prod(shape))
        return np.frombuffer(self._take(4 * count), "<f4").reshape(shape).copy()

    def alias_shape(self) -> tuple[int, ...]:
        if self.integer() != 1:
            raise ValueError(f"alias tensor version at byte {self.pos}")
        return tuple(self.integer() for _ in range(4))


@dataclass
class DlibLayer:
    """One computational layer as stored: its kind (`con`, `affine`, `relu`, `max_pool`, `avg_pool`,
    `add_prev`, `fc`), its shape settings and its weights."""

    kind: str
    settings: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)


def _layer_details(r: _Reader) -> DlibLayer:
    name = r.string()
    if name.startswith("con_"):
        params = r.tensor().reshape(-1)
        filters = r.integer()
        nr, nc, sy, sx, py, px = (r.integer() for _ in range(6))
        w_shape, b_shape = r.alias_shape(), r.alias_shape()
        for _ in range(4):
            r.floating()  # learning-rate and weight-decay multipliers
        if name in ("con_5", "con_6"):
            r.boolean()
        if name == "con_6":
            r.boolean()
        n_w = int(np.prod(w_shape))
        weight = params[:n_w].reshape(w_shape)
        bias = params[n_w:n_w + int(np.prod(b_shape))]
        return DlibLayer("con", {"filters": filters, "kernel": (nr, nc), "stride": (sy, sx), "padding": (py, px)},
                         {"weight": weight, "bias": bias})
    if name.startswith("affine_"):
        params = r.tensor().reshape(-1)
        g_shape, b_shape = r.alias_shape(), r.alias_shape()
        r.integer()  # mode (convolutional: per channel)
        if name == "affine_2":
            r.boolean()
        n = int(np.prod(g_shape))
        return DlibLayer("affine", {}, {"gamma": params[:n], "beta": params[n:n + int(np.prod(b_shape))]})
    if name.startswith("relu_"):
        if name == "relu_2":
            r.boolean()
        return DlibLayer("relu")
    if name in ("max_pool_2", "avg_pool_2"):
        nr, nc, sy, sx, py, px = (r.integer() for _ in range(6))
        return DlibLayer(name[:-2], {"kernel": (nr, nc), "stride": (sy, sx), "padding": (py, px)})
    if name == "add_prev_":
        return DlibLayer("add_prev")
    if name in ("fc_2", "fc_3"):
        outputs, inputs = r.integer(), r.integer()
        params = r.tensor().reshape(-1)
        w_shape, b_shape = r.alias_shape(), r.alias_shape()
        r.integer()  # bias mode
        for _ in range(4):
            r.floating()
        if name == "fc_3":
            r.boolean()
        weight = params[:int(np.prod(w_shape))].reshape(inputs, outputs)  # stored (in, out)
        return DlibLayer("fc", {"outputs": outputs}, {"weight": weight})
    raise ValueError(f"unsupported dlib layer {name!r}")


def read_dlib_layers(path: str | Path) -> tuple[dict, list[DlibLayer]]:
    """(input settings, computational layers in forward order) of a dlib network file."""
    r = _Reader(Path(path).read_bytes())
    r.integer()  # the loss layer's version; its details come first
    loss = r.string()
    if loss.startswith("loss_metric"):
        r.floating(), r.floating()  # margin, distance threshold
    # Layer versions from the output down to the input, until the input layer's name.
    versions = []
    while not (r.data[r.pos] == 0x01 and r.data[r.pos + 1] > 4):  # a string's length, not a version number
        versions.append(r.integer())
    name = r.string()
    if not name.startswith("input_rgb_image"):
        raise ValueError(f"unsupported dlib input layer {name!r}")
    means = (r.floating(), r.floating(), r.floating())
    size = (r.integer(), r.integer()) if name == "input_rgb_image_sized" else None
    inputs = {"kind": name, "mean": means, "size": size, "loss": loss}
    layers: list[DlibLayer] = []
    while r.pos < len(r.data):
        layers.append(_layer_details(r))
        for _ in range(3):
            r.boolean()
        for _ in range(3):
            r.tensor()
        if len(layers) == 1 and versions[-1] >= 3:
            r.integer()  # the input-adjacent layer, version 3: its sample expansion factor
    return inputs, layers


def dlib_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: tensors of different shapes are zero-padded at the end (channels, rows, columns)."""
    c, h, w = max(a.shape[1], b.shape[1]), max(a.shape[2], b.shape[2]), max(a.shape[3], b.shape[3])

    def grown(x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] == (c, h, w):
            return x
        return F.pad(x, (0, w - x.shape[3], 0, h - x.shape[2], 0, c - x.shape[1]))

    return grown(a) + grown(b)


def _folded(layer: DlibLayer, affine: DlibLayer) -> tuple[torch.Tensor, torch.Tensor]:
    """A convolution's weight and bias with the following per-channel affine (dlib's frozen batch norm) folded in."""
    weight = torch.from_numpy(layer.weights["weight"])
    bias = torch.from_numpy(layer.weights["bias"]) if layer.weights["bias"].size else torch.zeros(weight.shape[0])
    gamma = torch.from_numpy(affine.weights["gamma"])
    beta = torch.from_numpy(affine.weights["beta"])
    return weight * gamma[:, None, None, None], bias * gamma + beta


class _Block(nn.Module):
    """conv-affine-relu-conv-affine plus the shortcut (2x2/2 average pool in a down block), then relu."""

    def __init__(self, cin: int, cout: int, down: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, 2 if down else 1, 0 if down else 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(dlib_add(y, shortcut))


# (channels, down) of each residual block, input side first, as dlib's dnn_face_recognition_ex.cpp defines them.
BLOCKS = ([(32, False)] * 3 + [(64, True)] + [(64, False)] * 3 + [(128, True)] + [(128, False)] * 2
          + [(256, True)] + [(256, False)] * 2 + [(256, True)])


class FaceResNet(nn.Module):
    """dlib's face-recognition ResNet: (B, 3, S, S) RGB in [0, 255] -> pooled 256-d features (`features`)
    or the 128-d face descriptor (`forward`, unnormalised as dlib computes it before its loss).
    Built untrained; `load_dlib` puts dlib's weights in (`load_face_resnet` does both)."""

    out_channels = 256

    def __init__(self, mean: tuple[float, float, float] = DLIB_RGB_MEAN) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.stem = nn.Conv2d(3, 32, 7, 2, 0)
        blocks, cin = [], 32
        for cout, down in BLOCKS:
            blocks.append(_Block(cin, cout, down))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(256, 128, bias=False)

    def load_dlib(self, layers: list[DlibLayer]) -> "FaceResNet":
        """Copy the weights of dlib's layers (`read_dlib_layers`) in, checking the structure as it goes."""
        kinds = [layer.kind for layer in layers]
        if kinds[:4] != ["con", "affine", "relu", "max_pool"] or kinds[-2:] != ["avg_pool", "fc"]:
            raise ValueError(f"not dlib's face-recognition ResNet: starts {kinds[:4]}, ends {kinds[-2:]}")
        convs: list[tuple[torch.Tensor, torch.Tensor]] = [_folded(layers[0], layers[1])]
        i = 4
        for _, down in BLOCKS:
            expected = ["con", "affine", "relu", "con", "affine"] + (["avg_pool"] if down else []) + ["add_prev", "relu"]
            if kinds[i:i + len(expected)] != expected:
                raise ValueError(f"unexpected layers {kinds[i:i + len(expected)]} at {i}")
            convs += [_folded(layers[i], layers[i + 1]), _folded(layers[i + 3], layers[i + 4])]
            i += len(expected)
        targets = [self.stem] + [conv for block in self.blocks for conv in (block.conv1, block.conv2)]
        with torch.no_grad():
            for conv, (weight, bias) in zip(targets, convs):
                if conv.weight.shape != weight.shape:
                    raise ValueError(f"weight of shape {tuple(weight.shape)} where {tuple(conv.weight.shape)} belongs")
                conv.weight.copy_(weight)
                conv.bias.copy_(bias)
            self.fc.weight.copy_(torch.from_numpy(layers[-1].weights["weight"]).T)
        return self

    def features(self, rgb255: torch.Tensor) -> torch.Tensor:
        """(B, 256) globally pooled features of (B, 3, S, S) RGB values in [0, 255]."""
        x = (rgb255 - self.mean) / 256.0
        return self.blocks(F.max_pool2d(F.relu(self.stem(x)), 3, 2)).mean((2, 3))

    def forward(self, rgb255: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(rgb255))


def load_face_resnet(path: str | Path | None = None) -> FaceResNet:
    """dlib's face-recognition ResNet from `path` (default: the file of the installed `face-recognition-models`)."""
    if path is None:
        path = face_resnet_file()
    if Path(path).suffix == ".pt":  # a state dict `save_half` made of the checked .dat (smaller, for a lent GPU)
        state = torch.load(path, map_location="cpu")
        model = FaceResNet()
        model.load_state_dict({key: value.float() for key, value in state.items()})
        return model
    inputs, layers = read_dlib_layers(path)
    return FaceResNet(inputs["mean"]).load_dlib(layers)


def save_half(out: str | Path) -> Path:
    """The installed network's weights as a float16 state dict (11 MB instead of 22; relative rounding 5e-4):
    what carries the backbone to a machine without the package (`MIEN_FACE_RESNET=out`)."""
    model = load_face_resnet()
    torch.save({key: value.half() for key, value in model.state_dict().items()}, out)
    return Path(out)


FACE_RESNET_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"


def face_resnet_file() -> Path:
    """The installed `dlib_face_recognition_resnet_model_v1.dat` (or the file `MIEN_FACE_RESNET` names, for a
    machine without the package), checked by SHA-256."""
    import hashlib
    import importlib.util
    import os

    if os.environ.get("MIEN_FACE_RESNET"):
        path = Path(os.environ["MIEN_FACE_RESNET"])
        if path.suffix == ".pt":
            return path  # made by `save_half` from the checked file
    else:
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("dlib's face-recognition ResNet needs the train extra: "
                                    "pip install 'mien[train]' (package face-recognition-models)")
        path = Path(list(spec.submodule_search_locations)[0]) / "models" / "dlib_face_recognition_resnet_model_v1.dat"
    if hashlib.sha256(path.read_bytes()).hexdigest() != FACE_RESNET_SHA256:
        raise ValueError(f"{path}: SHA-256 differs from the pinned {FACE_RESNET_SHA256[:12]}...")
    return path
