"""A face-trained ONNX network's layers as a trainable torch backbone (for transfer learning).

`OnnxBackbone` reads an ONNX image network (such as dlib-models' age predictor that mien ships, a
ResNet trained on faces) and runs its graph in torch up to the global average pooling, with every
weight a trainable parameter: fine-tuning starts from features learned on faces instead of from
scratch. It supports the operators those networks use (Conv, per-channel Mul/Add, Relu, residual
Add, channel Pad, Max/AveragePool, GlobalAveragePool); anything else raises with its name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _attributes(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class OnnxBackbone(nn.Module):
    """(B, 3, S, S) images -> (B, C) pooled features of the ONNX network at `path` (C = `out_channels`)."""

    def __init__(self, path: str | Path, stop_at: str = "GlobalAveragePool") -> None:
        super().__init__()
        import onnx
        from onnx import numpy_helper

        graph = onnx.load(str(path)).graph
        constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.input_name = graph.input[0].name
        self.steps: list[tuple[str, list[str], str, dict]] = []
        self.layers = nn.ModuleDict()
        self.params = nn.ParameterDict()
        nodes = list(graph.node)
        folded: set[int] = set()
        for k, node in enumerate(nodes):
            if k in folded:
                continue
            attrs = _attributes(node)
            key = f"n{k}"
            output = node.output[0]
            if node.op_type == "Conv":
                weight = constants[node.input[1]].astype(np.float32)
                bias = (constants[node.input[2]].astype(np.float32) if len(node.input) > 2
                        else np.zeros(weight.shape[0], np.float32))
                # A per-channel Mul then Add right after the conv is a frozen batch norm: fold it in, so the
                # network is plain convolutions (fast in onnxruntime once exported).
                for j in (k + 1, k + 2):
                    follow = nodes[j] if j < len(nodes) else None
                    if (follow is None or follow.op_type not in ("Mul", "Add") or follow.input[0] != output
                            or follow.input[1] not in constants):
                        break
                    value = constants[follow.input[1]].astype(np.float32).reshape(-1)
                    if follow.op_type == "Mul":
                        weight, bias = weight * value[:, None, None, None], bias * value
                    else:
                        bias = bias + value
                    folded.add(j)
                    output = follow.output[0]
                top, left, bottom, right = attrs.get("pads", (0, 0, 0, 0))
                symmetric = top == bottom and left == right
                conv = nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]),
                                 stride=tuple(attrs.get("strides", (1, 1))), padding=(top, left) if symmetric else 0)
                conv.weight.data, conv.bias.data = torch.from_numpy(weight.copy()), torch.from_numpy(bias.copy())
                self.layers[key] = conv
                attrs["padding"] = (0, 0, 0, 0) if symmetric else (top, left, bottom, right)
                inputs = [node.input[0]]
            elif node.op_type in ("Mul", "Add") and any(i in constants for i in node.input):
                constant = next(i for i in node.input if i in constants)
                self.params[key] = nn.Parameter(torch.from_numpy(np.array(constants[constant], np.float32)))
                inputs = [i for i in node.input if i not in constants]
            elif node.op_type == "Pad":
                attrs["pads"] = [int(v) for v in constants[node.input[1]]]
                inputs = [node.input[0]]
            elif node.op_type in ("Relu", "Add", "MaxPool", "AveragePool", "GlobalAveragePool"):
                inputs = list(node.input)
            else:
                raise ValueError(f"{path}: operator {node.op_type} is not supported by OnnxBackbone")
            self.steps.append((node.op_type, inputs, output, {**attrs, "key": key}))
            if node.op_type == stop_at:
                self.output_name = output
                break
        else:
            raise ValueError(f"{path}: no {stop_at} node")
        last_conv = [m for m in self.layers.values() if isinstance(m, nn.Conv2d)][-1]
        self.out_channels = last_conv.out_channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        values = {self.input_name: images}
        for op, inputs, output, attrs in self.steps:
            x = [values[i] for i in inputs]
            key = attrs["key"]
            if op == "Conv":
                top, left, bottom, right = attrs["padding"]
                y = self.layers[key](F.pad(x[0], (left, right, top, bottom)) if any(attrs["padding"]) else x[0])
            elif op in ("Mul", "Add") and key in self.params:
                y = x[0] * self.params[key] if op == "Mul" else x[0] + self.params[key]
            elif op == "Add":
                y = x[0] + x[1]
            elif op == "Relu":
                y = torch.relu(x[0])
            elif op == "Pad":
                pads = attrs["pads"]  # ONNX order: begins of each axis, then ends
                half = len(pads) // 2
                torch_pads = []
                for axis in reversed(range(half)):
                    torch_pads += [pads[axis], pads[axis + half]]
                y = F.pad(x[0], torch_pads)
            elif op in ("MaxPool", "AveragePool"):
                kernel, stride = tuple(attrs["kernel_shape"]), tuple(attrs.get("strides", attrs["kernel_shape"]))
                pool = F.max_pool2d if op == "MaxPool" else F.avg_pool2d
                y = pool(x[0], kernel, stride, ceil_mode=bool(attrs.get("ceil_mode", 0)))
            else:  # GlobalAveragePool
                y = x[0].mean((2, 3), keepdim=True)
            values[output] = y
        return values[self.output_name].flatten(1)
