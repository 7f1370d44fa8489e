"""Training loop for ExpressionNet with checkpoint/resume, EMA weights and model selection.

Training data: FER+ train (annotator vote shares as soft targets) + AffectNet-8 train (one-hot,
label-smoothed), each with its own class-prior bias (`domain_bias`); bfloat16 autocast where the
CPU has it (`precision`). Model selection: mean accuracy of the EMA weights on FER+ valid and AffectNet-8
valid (or on the sets in `TrainConfig.select_on`). `run_training` can be interrupted at any point and resumed from `checkpoint.pt`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress

from mien.expression.classifier import blend_input, mirrored_blend_input_order
from mien.train.augment import augment, mix_within_sets
from mien.expression.crop import RENDER_RULE, resize_crops
from mien.train.cache import build_set_cache, cache_file, load_cache, set_render_side
from mien.datasets.expressions import read_builtin
from mien.expression.classes import EXPRESSIONS
from mien.train.model import ExpressionNet

TRAIN_SETS = ("ferplus-train", "affectnet8-train")
DOMAINS = ("ferplus", "affectnet8", "rafdb", "kdef")  # dataset families; index 0 is the prior the shipped model uses
VALID_SETS = ("ferplus-valid", "affectnet8-valid")
# Classes a dataset family never labels: their logit is masked for its faces (RAF-DB has no contempt),
# rather than teaching the model that its faces are "never contempt".
ABSENT = {"rafdb": ("contempt",), "kdef": ("contempt",)}


@dataclass
class TrainConfig:
    """Everything that decides the trained weights (saved next to them)."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.05
    channels: tuple[int, ...] = (16, 32, 64, 128)
    top: int = 256
    use_blendshapes: bool = True
    blend_dropout: float = 0.15
    label_smoothing: float = 0.1
    balance_power: float = 0.3  # sample weight = (1 / class frequency) ** power
    ema_decay: float = 0.998
    seed: int = 0
    threads: int = 2
    train_sets: tuple[str, ...] = TRAIN_SETS
    valid_sets: tuple[str, ...] = VALID_SETS
    init_from: str | None = None  # best.pt of an earlier run, or a float expression ONNX, to fine-tune from
    select_on: tuple[str, ...] = ()  # valid sets whose mean accuracy picks the best epoch (empty: all)
    test_flip: bool = True  # average logits over the face and its mirror image (at ~half the speed)
    init_share: float = 0.0  # with init_from: ship init_share * initial + (1 - init_share) * fine-tuned weights
    domain_bias: bool = True  # a class-prior bias per dataset family while training; FER+'s is shipped
    precision: str = "auto"  # "bf16" (autocast, ~2x faster where the CPU has AVX512-BF16 or AMX), "fp32", or "auto"
    exclude: tuple[str, ...] = ()  # classes left out of training (open-set experiments): their faces and votes
    input_size: int = 48  # side of the crop the model reads
    colour: bool = False  # RGB crops (grey FER+ faces enter as three equal channels)
    grey_prob: float = 0.0  # with colour: share of training faces turned grey, so grey inputs stay familiar
    # share of training faces rendered at 48 px (FER+'s resolution) and enlarged again, so that sharpness alone
    # does not tell which set (and so which labelling habits) a face comes from
    small_prob: float = 0.0
    # dataset families whose labels are read through a learned label-transition matrix (what that set's annotators
    # write for each true class; `LabelTransition`), so the network need not learn a set's habits from its look
    label_transition: tuple[str, ...] = ()
    n_domains: int = 3  # class-prior biases learned: FER+, AffectNet-8, RAF-DB (4 when KDEF is trained on too)
    # dataset family -> factor on its faces' sampling weight (a small set such as KDEF's 34 posers is otherwise
    # drawn about once per epoch among 51k faces)
    oversample: dict = field(default_factory=dict)
    backbone: str | None = None  # "age" (dlib's age network) or "face" (dlib's face-recognition ResNet): colour only
    backbone_lr: float = 1.0  # with a backbone: its learning rate as a share of `lr` (the new layers get `lr`)
    # best.pt of a trained run whose predictions the model also learns (distillation); several, joined by commas,
    # teach together as an ensemble (their logits averaged)
    teacher: str | None = None
    distill: float = 0.5  # with a teacher: weight of its softened predictions in the loss
    distill_temperature: float = 2.0
    mixup: float = 0.0  # alpha of the Beta distribution of mixup's weights between faces of one set (0: no mixup)
    extra: dict = field(default_factory=dict)


def rendered_small(images: torch.Tensor, side: int = 48) -> torch.Tensor:
    """(B, C, S, S) images shrunk to `side` px and enlarged back to S, both as OpenCV's INTER_AREA resizes: a face
    exactly as the run-time crop renders one that spans only `side` pixels (`mien.expression.crop.resize_crops`)."""
    size = images.shape[-1]
    if not len(images) or size <= side:
        return images
    down, up = (_area_matrix(o, n).to(images) for o, n in ((side, size), (size, side)))
    small = torch.einsum("oi,bcij,pj->bcop", down, images, down)
    return torch.einsum("oi,bcij,pj->bcop", up, small, up)


def _area_matrix(out: int, n: int) -> torch.Tensor:
    """(out, n) weights of a 1-D area resize: each output pixel averages the input it covers, by overlap."""
    scale = n / out
    o, i = torch.arange(out)[:, None].double(), torch.arange(n)[None].double()
    overlap = torch.minimum((o + 1) * scale, i + 1) - torch.maximum(o * scale, i)
    return (overlap.clamp(min=0) / scale).float()


def domain_of(set_name: str) -> int:
    """Index in `DOMAINS` of a built-in set (e.g. `affectnet8-train` -> 1)."""
    return DOMAINS.index(set_name.split("-")[0])


def training_device() -> torch.device:
    """A CUDA GPU where torch sees one (the same recipe, much faster), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_precision(precision: str, device: torch.device | None = None) -> str:
    """`auto` becomes `bf16` on a GPU or where the CPU computes bfloat16 natively, else `fp32`."""
    if precision != "auto":
        if precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, not {precision!r}")
        return precision
    if device is not None and device.type == "cuda":
        return "bf16"
    native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() or \
        getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return "bf16" if native else "fp32"


# The label-transition matrices' learning rate: a handful of numbers that must move far in a short fine-tune.
TRANSITION_LR = 0.02


class LabelTransition(torch.nn.Module):
    """Per dataset family, how its annotators label each true expression: row-stochastic (classes x classes)
    matrices T, so that a face of family d gets label j with probability sum_y p(y | face) T_d[y, j] (the
    latent-truth idea of Zeng et al. 2018, "Facial expression recognition with inconsistently annotated
    datasets"). Used in training only; the network's own p(y | face) is what ships. Families not in `families`
    keep the identity. Starts near the identity (diagonal `start`)."""

    def __init__(self, families: tuple[str, ...], n_classes: int = len(EXPRESSIONS), start: float = 0.98) -> None:
        super().__init__()
        unknown = set(families) - set(DOMAINS)
        if unknown:
            raise ValueError(f"label transition: unknown dataset families {sorted(unknown)}; choose from {DOMAINS}")
        diagonal = float(np.log(start * (n_classes - 1) / (1 - start)))
        self.register_buffer("learned", torch.tensor([name in families for name in DOMAINS]), persistent=False)
        self.weight = torch.nn.Parameter(torch.eye(n_classes).repeat(len(DOMAINS), 1, 1) * diagonal)

    def matrices(self) -> torch.Tensor:
        """(families, classes, classes): row y is the distribution of labels given true class y."""
        learned = torch.softmax(self.weight, 2)
        identity = torch.eye(self.weight.shape[1], device=self.weight.device).expand_as(learned)
        return torch.where(self.learned[:, None, None], learned, identity)

    def log_label_probabilities(self, logits: torch.Tensor, domains: torch.Tensor,
                                absent: torch.Tensor) -> torch.Tensor:
        """log p(label | face) for each face's family, from the network's (masked) logits; labels a family never
        uses get no mass."""
        observed = torch.bmm(torch.softmax(logits, 1)[:, None], self.matrices()[domains])[:, 0]
        observed = observed.masked_fill(absent, 0.0)
        return torch.log(observed.clamp_min(1e-12) / observed.sum(1, keepdim=True))


def build_model(settings: dict, pretrained: bool = True) -> ExpressionNet:
    """An untrained ExpressionNet shaped by a training config (`asdict(TrainConfig)`, as saved in checkpoints;
    settings older than `domain_bias` get no domain bias, older than `n_domains` two domains). With
    `backbone` set, a network starting from that face-trained backbone's weights (`pretrained`; off when
    trained weights are loaded next)."""
    n_domains = settings.get("n_domains", 2) if settings.get("domain_bias") else 1
    if settings.get("backbone") == "face":
        from mien.train.model import FaceExpressionNet

        return FaceExpressionNet(use_blendshapes=settings["use_blendshapes"], n_domains=n_domains,
                                 pretrained=pretrained)
    if settings.get("backbone"):
        from mien.models import resolve
        from mien.train.model import BackboneExpressionNet

        return BackboneExpressionNet(str(resolve(settings["backbone"])), use_blendshapes=settings["use_blendshapes"],
                                     n_domains=n_domains)
    return ExpressionNet(channels=tuple(settings["channels"]), top=settings["top"],
                         use_blendshapes=settings["use_blendshapes"], n_domains=n_domains,
                         in_channels=3 if settings.get("colour") else 1)


def cache_path(cache_dir: Path, name: str, settings: dict) -> Path:
    """Where the cached crops of a set live for a config (`mien.train.cache.cache_file`)."""
    return cache_file(cache_dir, name, bool(settings.get("colour")))


def absent_mask(names: list[str] | None = None) -> torch.Tensor:
    """(n_domains, 8) bool: True where a domain's data never has that class (its logit is masked)."""
    mask = torch.zeros(len(DOMAINS), len(EXPRESSIONS), dtype=torch.bool)
    for family, classes in ABSENT.items():
        for cls in classes:
            mask[DOMAINS.index(family), EXPRESSIONS.index(cls)] = True
    return mask


def sample_weights(targets: torch.Tensor, power: float) -> torch.Tensor:
    """Sampling weight per face: (1 / frequency of its majority class) ** power."""
    labels = targets.argmax(1)
    freq = torch.bincount(labels, minlength=targets.shape[1]).float() / len(labels)
    return (1.0 / freq[labels].clamp_min(1e-4)) ** power


def oversampled_weights(targets: torch.Tensor, domains: torch.Tensor, power: float,
                        oversample: dict[str, float]) -> torch.Tensor:
    """`sample_weights`, times `oversample[family]` for the faces of that dataset family (index into `DOMAINS`)."""
    weights = sample_weights(targets, power)
    for family, factor in oversample.items():
        weights[domains == DOMAINS.index(family)] *= factor
    return weights


def training_prior(config: "TrainConfig", cache_dir: Path) -> np.ndarray:
    """Class frequencies the shipped (domain 0) logits were trained under: domain-0 targets, as sampled.

    Subtracting their log from the logits gives a balanced classifier (logit adjustment,
    Menon et al. 2021): every class equally likely before the face is seen.
    """
    sets = [(name, load_cache(cache_path(cache_dir, name, asdict(config)))["targets"]) for name in config.train_sets]
    targets = torch.from_numpy(np.concatenate([t for _, t in sets]))
    weights = sample_weights(targets, config.balance_power)
    domain = torch.cat([torch.full((len(t),), domain_of(n) if config.domain_bias else 0) for n, t in sets])
    chosen = domain == 0 if (domain == 0).any() else torch.ones_like(domain, dtype=torch.bool)
    prior = (weights[chosen, None] * targets[chosen]).sum(0) / weights[chosen].sum()
    return prior.clamp_min(1e-4).numpy().astype(np.float64)


def _load_sets(names, datasets: Path, cache_dir: Path, exclude: tuple[str, ...] = (), settings: dict | None = None) -> list[dict]:
    colour = bool((settings or {}).get("colour"))
    sets = []
    for name in names:
        cached = cache_file(cache_dir, name, colour)
        if cached.exists() and not (Path(datasets) / name.split("-")[0]).exists():
            data = load_cache(cached)  # a cache carried to a machine without the datasets (e.g. a lent GPU)
        else:
            data = load_cache(build_set_cache(read_builtin(name, datasets), cache_dir, colour))
        data["name"] = name
        if exclude:
            data = _without_classes(data, [EXPRESSIONS.index(c) for c in exclude])
        sets.append(data)
    return sets


def _without_classes(data: dict, classes: list[int]) -> dict:
    """Drop faces whose majority class is excluded; remove the excluded classes' votes from the rest."""
    targets = data["targets"].copy()
    keep = ~np.isin(targets.argmax(1), classes)
    targets[:, classes] = 0.0
    keep &= targets.sum(1) > 0
    targets = targets / np.maximum(targets.sum(1, keepdims=True), 1e-9)
    out = {k: (v[keep] if isinstance(v, np.ndarray) and len(v) == len(keep) else v) for k, v in data.items()}
    out["targets"] = targets[keep].astype(np.float32)
    return out


def crops_tensor(crops: np.ndarray, size: int, render: int | None = None) -> torch.Tensor:
    """uint8 (n, C, size, size) from cached (n, S, S) grey or (n, S, S, 3) RGB crops (resized if S != size, first
    to `render` px if given: `mien.expression.crop.resize_crops`)."""
    if crops.ndim == 4:
        crops = resize_crops(crops, size, render)
        return torch.from_numpy(np.ascontiguousarray(crops.transpose(0, 3, 1, 2)))
    return torch.from_numpy(crops).unsqueeze(1)


def render_rule(settings: dict) -> dict | None:
    """How a config's model renders crops (`mien.expression.crop.RENDER_RULE`): the face backbone, whose input
    is larger than the training faces, renders each at its resolution; the others read the crop at their size."""
    return RENDER_RULE if settings.get("backbone") == "face" else None


def _tensors(data: dict, size: int = 48, rule: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images = crops_tensor(data["crops"], size, set_render_side(data["name"], rule))  # uint8, scaled per batch
    return images, torch.from_numpy(blend_input(data["blendshapes"])), torch.from_numpy(data["targets"])


@torch.no_grad()
def predict_logits(model: torch.nn.Module, images: torch.Tensor, blend: torch.Tensor, batch: int = 512,
                   flip: bool = True) -> torch.Tensor:
    """Logits for uint8 (n, C, S, S) images in eval mode, with test-time flip averaging unless `flip` is off."""
    model.eval()
    device = next(model.parameters()).device
    mirror = torch.tensor(mirrored_blend_input_order(), device=device)
    out = []
    for i in range(0, len(images), batch):
        x = images[i:i + batch].to(device).float() / 255
        b = blend[i:i + batch].to(device)
        out.append(((model(x, b) + model(x.flip(3), b[:, mirror])) / 2 if flip else model(x, b)).float().cpu())
    return torch.cat(out)


def run_training(config: TrainConfig, datasets: Path, out: Path, cache_dir: Path, log=print,
                 stop_after: int | None = None) -> Path | None:
    """Train (or resume) into `out`; returns the path of the best weights (`best.pt`), or None if stopped early.

    `stop_after` ends this call after that many epochs (the run resumes from the checkpoint
    next time), so a long training can be spread over several sessions.
    """
    out.mkdir(parents=True, exist_ok=True)
    device = training_device()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    settings = asdict(config)
    train = _load_sets(config.train_sets, datasets, cache_dir, tuple(config.exclude), settings)
    valid = _load_sets(config.valid_sets, datasets, cache_dir, tuple(config.exclude), settings)

    rule = render_rule(asdict(config))
    tensors = [_tensors(d, config.input_size, rule) for d in train]
    images = torch.cat([t[0] for t in tensors])
    blend = torch.cat([t[1] for t in tensors])
    targets = torch.cat([t[2] for t in tensors])
    del tensors
    hard = torch.cat([torch.full((len(d["targets"]),), not d["name"].startswith("ferplus")) for d in train])
    domains = torch.cat([torch.full((len(d["targets"]),), domain_of(d["name"])) for d in train])
    weights = oversampled_weights(targets, domains, config.balance_power, config.oversample)
    absent = absent_mask()[domains]  # (n, 8): logits masked for classes a face's dataset never labels
    # One-hot targets get label smoothing (over the classes their dataset has); vote shares already carry
    # annotator disagreement.
    present = (~absent).float()
    smooth = targets * (1 - config.label_smoothing) + config.label_smoothing * present / present.sum(1, keepdim=True)
    targets = torch.where(hard[:, None], smooth, targets)

    model = build_model(asdict(config))
    if config.init_from and config.init_from.endswith(".onnx"):
        from mien.train.unfold import unfold_into

        unfold_into(model, Path(config.init_from), images, blend, targets, domains, DOMAINS)
    elif config.init_from:
        missing, unexpected = model.load_state_dict(torch.load(config.init_from, weights_only=False)["model"],
                                                    strict=False)
        if unexpected or set(missing) - {"domain_bias"}:
            raise ValueError(f"{config.init_from} does not fit this model (missing {missing}, unexpected {unexpected})")
    # (built before the training faces move to the device: an ONNX teacher fits its per-set biases on them)
    teacher = _load_teacher(config.teacher, config, (images, blend, targets, domains)) if config.teacher else None
    precision = resolve_precision(config.precision, device)
    # channels_last lets oneDNN (and cuDNN) pick their fast convolution kernels (~1.4x in fp32 here).
    model = model.to(device, memory_format=torch.channels_last)
    images, blend, targets, domains, absent = (t.to(device) for t in (images, blend, targets, domains, absent))
    ema = copy.deepcopy(model)
    steps_per_epoch = max(1, len(images) // config.batch_size)  # sampling is with replacement, so tiny sets work too
    transition = LabelTransition(tuple(config.label_transition)).to(device) if config.label_transition else None
    groups = _parameter_groups(model, config)
    if transition is not None:  # a handful of numbers that must move far in a short fine-tune: a larger step
        groups.append({"params": [transition.weight], "lr": TRANSITION_LR, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    peaks = [group["lr"] for group in optimizer.param_groups]
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, peaks, total_steps=config.epochs * steps_per_epoch,
                                                    pct_start=0.15)
    state = {"epoch": 0, "best_score": -1.0, "history": [], "seconds": 0.0}
    checkpoint = out / "checkpoint.pt"
    if checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=False, map_location=device)
        if "config" in saved and _training_settings(saved["config"]) != _training_settings(asdict(config)):
            raise ValueError(f"{checkpoint} was made with other settings; use a new --out folder or the same options")
        model.load_state_dict(saved["model"])
        ema.load_state_dict(saved["ema"])
        if transition is not None:
            transition.load_state_dict(saved["transition"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
        saved_epochs = saved.get("config", {}).get("epochs", config.epochs)
        if saved_epochs != config.epochs:
            if state["epoch"] >= config.epochs:
                raise ValueError(f"{checkpoint} is already past epoch {config.epochs}")
            _replan(scheduler, saved["scheduler"])
            state.setdefault("replanned", []).append({"after_epoch": state["epoch"], "from": saved_epochs,
                                                      "to": config.epochs})
            log(f"resuming after epoch {state['epoch']}; learning-rate schedule re-planned from "
                f"{saved_epochs} to {config.epochs} epochs")
        else:
            scheduler.load_state_dict(saved["scheduler"])
            log(f"resuming after epoch {state['epoch']}")

    if config.init_from and "init_sha256" not in state:
        # which file the run started from, read when it starts (the file may be replaced before the run ends,
        # e.g. by shipping an earlier fine-tune), so that a chain of runs can be followed back
        state["init_sha256"] = hashlib.sha256(Path(config.init_from).read_bytes()).hexdigest()
    mirror = torch.tensor(mirrored_blend_input_order(), device=device)
    valid_tensors = [(d["name"], *_tensors(d, config.input_size, rule)) for d in valid]
    teacher = teacher.to(device) if teacher is not None else None
    with Progress() as progress:
        task = progress.add_task("training", total=config.epochs, completed=state["epoch"])
        last = config.epochs if stop_after is None else min(config.epochs, state["epoch"] + stop_after)
        for epoch in range(state["epoch"], last):
            started = time.time()
            g = torch.Generator().manual_seed(config.seed * 1000 + epoch)
            order = torch.multinomial(weights, steps_per_epoch * config.batch_size, replacement=True, generator=g)
            order = order.to(device)
            if device.type != "cpu":  # augmentation draws its numbers where the images are
                g = torch.Generator(device=device).manual_seed(config.seed * 1000 + epoch)
            model.train()
            total_loss = 0.0
            if config.mixup:  # the face's own share, >= 0.5 (numpy: torch draws no Beta numbers from a generator)
                shares = np.random.default_rng(config.seed * 1000 + epoch).beta(
                    config.mixup, config.mixup, (steps_per_epoch, config.batch_size))
                mix_weights = torch.from_numpy(np.maximum(shares, 1 - shares)).float()
            for step in range(steps_per_epoch):
                idx = order[step * config.batch_size:(step + 1) * config.batch_size]
                x, b = augment(images[idx].float() / 255, blend[idx].clone(), mirror, g)
                if config.colour and config.grey_prob:
                    grey = torch.rand(len(idx), generator=g, device=device) < config.grey_prob
                    x[grey] = x[grey].mean(1, keepdim=True).expand(-1, x.shape[1], -1, -1)
                if config.small_prob:
                    small = torch.rand(len(idx), generator=g, device=device) < config.small_prob
                    x[small] = rendered_small(x[small])
                drop = torch.rand(len(idx), generator=g, device=device) < config.blend_dropout
                b[drop] = 0.0
                target = targets[idx]
                if config.mixup:
                    x, b, target = mix_within_sets(x, b, target, domains[idx], mix_weights[step], g)
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    logits = model(x, b, domains[idx] if config.domain_bias else None)
                logits = logits.float().masked_fill(absent[idx], -1e4)
                if transition is None:
                    loss = F.cross_entropy(logits, target)
                else:
                    observed = transition.log_label_probabilities(logits, domains[idx], absent[idx])
                    loss = -(target * observed).sum(1).mean()
                if teacher is not None:
                    loss = (1 - config.distill) * loss + config.distill * _distillation_loss(
                        logits, teacher, x, b, domains[idx], absent[idx], config.distill_temperature,
                        precision == "bf16")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                _ema_update(ema, model, config.ema_decay if epoch > 0 or config.init_from else 0.9)
                total_loss += loss.item()
            scores = {name: _accuracy(ema, im, bl, tg, config.test_flip) for name, im, bl, tg in valid_tensors}
            score = float(np.mean([v for k, v in scores.items() if k in (config.select_on or scores)]))
            state["seconds"] += time.time() - started
            state["epoch"] = epoch + 1
            state["history"].append({"epoch": epoch + 1, "loss": total_loss / steps_per_epoch, **scores,
                                     "seconds": round(time.time() - started, 1)})
            if score > state["best_score"]:
                state["best_score"] = score
                torch.save({"model": ema.state_dict(), "config": asdict(config), "epoch": epoch + 1,
                            "valid": scores}, out / "best.pt")
            torch.save({"config": asdict(config), "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "state": state,
                        "transition": transition.state_dict() if transition is not None else None},
                       checkpoint.with_suffix(".tmp"))
            checkpoint.with_suffix(".tmp").replace(checkpoint)
            log(f"epoch {epoch + 1}/{config.epochs} loss {total_loss / steps_per_epoch:.3f} "
                + " ".join(f"{k} {v:.4f}" for k, v in scores.items()) + f" ({time.time() - started:.0f} s)")
            progress.advance(task)

    if state["epoch"] < config.epochs:
        log(f"stopped after epoch {state['epoch']} of {config.epochs}; run the same command again to continue")
        return None
    info = {"config": asdict(config), "history": state["history"], "train_seconds": round(state["seconds"]),
            "hardware": (torch.cuda.get_device_name(device) + f", {precision}" if device.type == "cuda" else
                         f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {precision}"),
            "torch": torch.__version__, "schedule_replanned": state.get("replanned", [])}
    if "init_sha256" in state:
        info["init_sha256"] = state["init_sha256"]
    if transition is not None:
        info["label_transition"] = _described_transitions(transition)
    (out / "training.json").write_text(json.dumps(info, indent=2))
    return out / "best.pt"


def _described_transitions(transition: LabelTransition) -> dict:
    """Each learned family's matrix (rows: true class, columns: label given), rounded, keyed by class names."""
    matrices = transition.matrices().detach().cpu().numpy()
    return {name: {true: {label: round(float(v), 3) for label, v in zip(EXPRESSIONS, row)}
                   for true, row in zip(EXPRESSIONS, matrices[d])}
            for d, name in enumerate(DOMAINS) if bool(transition.learned[d])}


def load_trained(best: Path) -> tuple[torch.nn.Module, dict]:
    """The EMA model a run saved (its best.pt), in eval mode, and the checkpoint dict."""
    saved = torch.load(best, weights_only=False, map_location="cpu")
    model = build_model(saved["config"], pretrained=False)
    model.load_state_dict({key: value.float() if value.is_floating_point() else value
                           for key, value in saved["model"].items()})
    return model.eval(), saved


class TeacherEnsemble(torch.nn.Module):
    """Several trained runs answering as one: the mean of their logits (an ensemble a student can distil)."""

    def __init__(self, members: list[torch.nn.Module]) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        if any(hasattr(m, "domain_bias") for m in members):
            # Asks `_distillation_loss` for each face's training set and hands it to the members that read it, as
            # each of them alone would get it.
            self.domain_bias = True

    def forward(self, x: torch.Tensor, b: torch.Tensor, domains: torch.Tensor | None = None) -> torch.Tensor:
        return torch.stack([m(x, b, domains if hasattr(m, "domain_bias") else None).float()
                            for m in self.members]).mean(0)


def _load_teacher(path: str, config: TrainConfig, training: tuple[torch.Tensor, ...] | None = None) -> torch.nn.Module:
    """A trained run's EMA model (its best.pt), frozen, reading the same crops as the model being trained; for
    several paths joined by commas, their `TeacherEnsemble`.

    A path ending in `.onnx` is a float export of the face network, such as the shipped `expression_float.onnx`:
    its weights come back by name as with `--init` (`mien.train.unfold`), and `training` (images, blendshapes,
    targets, domains of the training faces) fits the per-set bias the file does not store, so a shipped model
    can teach without the run that made it."""
    members = []
    for one in [p.strip() for p in path.split(",") if p.strip()]:
        if one.endswith(".onnx"):
            teacher, crops = _onnx_teacher(Path(one), training)
        else:
            teacher, saved = load_trained(Path(one))
            crops = (saved["config"].get("input_size", 48), bool(saved["config"].get("colour")))
        if crops != (config.input_size, config.colour):
            raise ValueError(f"{one}: the teacher reads other crops (input size or colour) than this model")
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
        members.append(teacher.to(memory_format=torch.channels_last))
    if not members:
        raise ValueError("no teacher given")
    return members[0] if len(members) == 1 else TeacherEnsemble(members).eval()


def _onnx_teacher(path: Path, training: tuple[torch.Tensor, ...] | None) -> tuple[torch.nn.Module, tuple[int, bool]]:
    """The face network of a float expression ONNX, in eval mode, and the (input size, colour) of its crops."""
    from mien.train.unfold import unfold_into

    if training is None:
        raise ValueError(f"{path}: an ONNX teacher needs the training faces to fit its per-set biases")
    model = build_model({"backbone": "face", "use_blendshapes": True, "domain_bias": True, "n_domains": len(DOMAINS)},
                        pretrained=False)
    meta = unfold_into(model, path, *training, DOMAINS)
    return model.eval(), (int(meta.get("input_size", 48)), bool(meta.get("colour", False)))


def _distillation_loss(logits: torch.Tensor, teacher: torch.nn.Module, x: torch.Tensor, b: torch.Tensor,
                       domains: torch.Tensor, absent: torch.Tensor, temperature: float,
                       bf16: bool = False) -> torch.Tensor:
    """KL divergence from the teacher's softened prediction on the same augmented batch (Hinton et al. 2015),
    scaled by T^2 so its gradients keep their size as T changes."""
    t = temperature
    with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        taught = teacher(x, b, domains if hasattr(teacher, "domain_bias") else None)
    target = F.softmax(taught.float().masked_fill(absent, -1e4) / t, 1)
    return F.kl_div(F.log_softmax(logits / t, 1), target, reduction="batchmean") * t * t


def _parameter_groups(model: torch.nn.Module, config: TrainConfig) -> list[dict]:
    """One AdamW group, or with a pretrained backbone two: its layers at `backbone_lr` x `lr`, the rest at `lr`."""
    backbone = getattr(model, "backbone", None)
    if backbone is None or config.backbone_lr == 1.0:
        return [{"params": list(model.parameters()), "lr": config.lr}]
    inside = {id(p) for p in backbone.parameters()}
    return [{"params": [p for p in model.parameters() if id(p) in inside], "lr": config.lr * config.backbone_lr},
            {"params": [p for p in model.parameters() if id(p) not in inside], "lr": config.lr}]


def _training_settings(config: dict) -> dict:
    """The settings a checkpoint must share to resume; `init_share` only shapes the export, `epochs` can
    be changed on resume (the rest of the schedule is re-planned) and `threads` only how fast it runs (a run may
    go on on a machine with more cores), so they may differ.
    Settings newer than a checkpoint take their defaults (what that checkpoint was trained with)."""
    return {key: value for key, value in {**asdict(TrainConfig()), **config}.items()
            if key not in ("init_share", "epochs", "threads")}


def _replan(scheduler: torch.optim.lr_scheduler.OneCycleLR, saved: dict) -> None:
    """Continue a saved one-cycle schedule at its step, but over this scheduler's total length: the
    learning rate follows the new cosine from where the run is (a shorter run anneals sooner)."""
    planned = {key: scheduler.state_dict()[key] for key in ("total_steps", "_schedule_phases")}
    scheduler.load_state_dict({**saved, **planned})


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, m in zip(ema.state_dict().values(), model.state_dict().values()):
            if e.dtype.is_floating_point:
                e.mul_(decay).add_(m.detach(), alpha=1 - decay)
            else:
                e.copy_(m)


def _accuracy(model, images, blend, targets, flip: bool) -> float:
    logits = predict_logits(model, images, blend, flip=flip)
    return float((logits.argmax(1) == targets.argmax(1)).float().mean())
