"""mien's own age and gender-presentation network, trained on the UTKFace train split, to compare
with the shipped dlib-models networks on the same held-out faces (`benchmarks/attributes.py`).

A small CNN over the 64x64 face chip with two heads: a distribution over ages 0-80 (trained
towards a Gaussian around the labelled age, sigma 3 years: label-distribution learning, Gao et al.
2017) and two gender-presentation logits. Needs the `train` extra (torch).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from mien.face.attributes import AGE_BINS


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class AttributeNet(nn.Module):
    """(B, 3, 64, 64) chips in [0, 1] -> (age logits (B, 81), gender logits (B, 2): female, male)."""

    def __init__(self, channels: tuple[int, ...] = (24, 48, 96, 160)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for c in channels:  # 64 -> 32 -> 16 -> 8 -> 4
            layers += [_conv(cin, c), _conv(c, c), nn.MaxPool2d(2)]
            cin = c
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3)]
        self.features = nn.Sequential(*layers)
        self.age = nn.Linear(cin, len(AGE_BINS))
        self.gender = nn.Linear(cin, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features((x - 0.5) / 0.25)
        return self.age(f), self.gender(f)


def _age_targets(ages: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    d = np.exp(-0.5 * ((AGE_BINS[None, :] - np.minimum(ages, 80)[:, None]) / sigma) ** 2)
    return (d / d.sum(1, keepdims=True)).astype(np.float32)


def _augment(batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    flip = torch.from_numpy(rng.random(len(batch)) < 0.5)
    batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
    gain = torch.from_numpy(rng.uniform(0.75, 1.25, (len(batch), 1, 1, 1)).astype(np.float32))
    shift = torch.from_numpy(rng.uniform(-0.08, 0.08, (len(batch), 1, 1, 1)).astype(np.float32))
    # small random translations (up to 3 px)
    dx, dy = rng.integers(-3, 4, 2)
    batch = torch.roll(batch, shifts=(int(dy), int(dx)), dims=(2, 3))
    return (batch * gain + shift).clamp(0, 1)


def predict(model: AttributeNet, chips: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(age probabilities (n, 81), P(female) (n,)) for uint8 (n, 64, 64, 3) chips; flip-averaged."""
    model.eval()
    ages, female = [], []
    with torch.no_grad():
        for start in range(0, len(chips), batch):
            x = torch.from_numpy(chips[start:start + batch]).permute(0, 3, 1, 2).float() / 255
            a1, g1 = model(x)
            a2, g2 = model(x.flip(3))
            ages.append(((a1.softmax(1) + a2.softmax(1)) / 2).numpy())
            female.append(((g1.softmax(1) + g2.softmax(1)) / 2)[:, 0].numpy())
    return np.concatenate(ages), np.concatenate(female)


def train(chips: np.ndarray, ages: np.ndarray, female: np.ndarray, valid: tuple[np.ndarray, np.ndarray, np.ndarray],
          epochs: int = 30, seed: int = 0, log=print) -> tuple[AttributeNet, dict]:
    """Train on uint8 (n, 64, 64, 3) chips; keep the epoch with the best valid age MAE + gender error."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = AttributeNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    steps = epochs * int(np.ceil(len(chips) / 64))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    x_all = torch.from_numpy(chips).permute(0, 3, 1, 2).float() / 255
    age_t = torch.from_numpy(_age_targets(ages))
    gender_t = torch.from_numpy((~female.astype(bool)).astype(np.int64))  # 0 female, 1 male
    best, best_state, history = np.inf, None, []
    began = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(chips))
        for start in range(0, len(order), 64):
            idx = torch.from_numpy(order[start:start + 64])
            age_logits, gender_logits = model(_augment(x_all[idx], rng))
            loss = -(age_t[idx] * age_logits.log_softmax(1)).sum(1).mean() \
                + nn.functional.cross_entropy(gender_logits, gender_t[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        probs, p_female = predict(model, valid[0])
        mae = float(np.abs(probs @ AGE_BINS - valid[1]).mean())
        gender_error = float(((p_female > 0.5) != valid[2].astype(bool)).mean())
        score = mae / 10 + gender_error
        history.append({"epoch": epoch + 1, "valid_age_mae": round(mae, 3), "valid_gender_error": round(gender_error, 4)})
        log(f"epoch {epoch + 1}: valid age MAE {mae:.2f}, gender error {gender_error:.3f}")
        if score < best:
            best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model, {"history": history, "seconds": round(time.perf_counter() - began, 1), "epochs": epochs,
                   "parameters": sum(p.numel() for p in model.parameters())}
