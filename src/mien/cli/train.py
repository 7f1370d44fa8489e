"""`mien train`: the expression model from the shared datasets (needs the train extra)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from mien.cli.common import app, console


@app.command()
def train(
    data: Path = typer.Option(..., "--data", help="Datasets folder holding ferplus/ and affectnet8/ (as ../shared/datasets)."),
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoint, best weights, training.json, expression.onnx."),
    epochs: int = typer.Option(30, help="Training epochs."),
    seed: int = typer.Option(0, help="Random seed."),
    threads: int = typer.Option(2, help="CPU threads for torch."),
    cache: Path = typer.Option(Path(".cache/expr"), help="Folder for cached aligned crops and blendshapes."),
    stop_after: Optional[int] = typer.Option(None, help="Stop after this many epochs in this call (resume later with the same command)."),
    lr: float = typer.Option(3e-3, help="Peak learning rate (one-cycle schedule)."),
    init: Optional[Path] = typer.Option(None, help="Fine-tune from an earlier run's best.pt, or from a float expression ONNX "
                                        "(such as the shipped expression_float.onnx; same --channels/--top/--colour), "
                                        "instead of starting from scratch; --input-size may differ."),
    sets: str = typer.Option("ferplus-train,affectnet8-train", help="Comma-separated training sets."),
    select: str = typer.Option("", help="Comma-separated valid sets whose mean accuracy picks the best epoch (default: all)."),
    channels: str = typer.Option("16,32,64,128", help="Channels of the four CNN stages (width of the model)."),
    top: int = typer.Option(256, help="Width of the image feature layer."),
    test_flip: bool = typer.Option(True, help="Average over the face and its mirror image (about half the speed)."),
    init_share: float = typer.Option(0.0, min=0.0, max=1.0, help="With --init: ship this share of the initial weights "
                                     "averaged with the fine-tuned ones (WiSE-FT); 0 ships the fine-tuned weights. "
                                     "Re-running a finished run with another share re-exports it without training."),
    precision: str = typer.Option("auto", help="auto, bf16 or fp32: bf16 autocast trains ~2x faster on CPUs with "
                                  "AVX512-BF16 or AMX; auto uses it where the CPU has it."),
    domain_bias: bool = typer.Option(True, help="Learn a class-prior bias per dataset (FER+, AffectNet) while "
                                     "training; the model ships with FER+'s."),
    balance: float = typer.Option(0.3, min=0.0, max=1.0, help="Class-balanced sampling: a face is drawn with weight "
                                  "(1 / its class frequency) ** BALANCE; 0 samples as the data come, 1 balances fully."),
    exclude: str = typer.Option("", help="Comma-separated classes to leave out of training (open-set experiments)."),
    valid_sets: str = typer.Option("ferplus-valid,affectnet8-valid", "--valid-sets",
                                   help="Comma-separated validation sets (selection and calibration), e.g. add rafdb-valid."),
    input_size: int = typer.Option(48, help="Side in pixels of the crop the model reads (48, 64, 80, 96...; divisible by 16)."),
    colour: bool = typer.Option(False, "--colour/--grey", help="RGB crops (cached at 96 px) instead of grey 48 px ones."),
    grey_prob: float = typer.Option(0.0, min=0.0, max=1.0, help="With --colour: share of training faces turned grey "
                                    "(keeps grey inputs such as FER+ familiar)."),
    small_prob: float = typer.Option(0.0, min=0.0, max=1.0, help="Share of training faces rendered at 48 px (FER+'s "
                                     "resolution) and enlarged again, so that sharpness does not tell the sets apart."),
    label_transition: str = typer.Option("", help="Comma-separated dataset families (ferplus, affectnet8, rafdb) whose "
                                         "labels are read through a learned label-transition matrix (how that set's "
                                         "annotators label each true expression); the network itself ships."),
    teacher: Optional[list[Path]] = typer.Option(
        None, metavar="BEST_PT", help="best.pt of a trained run, or a float face-network ONNX such as the shipped "
        "expression_float.onnx (same input size and colour), whose softened predictions the model also learns "
        "(knowledge distillation); give it several times to distil an ensemble (the mean of their logits)."),
    distill: float = typer.Option(0.5, min=0.0, max=1.0, help="With --teacher: weight of the teacher's predictions."),
    mixup: float = typer.Option(0.0, min=0.0, help="Mixup between faces of the same dataset: ALPHA of the Beta "
                                "distribution of the mixing weights (e.g. 0.2); 0 for none."),
    backbone: Optional[str] = typer.Option(None, help="Start from a face-trained network instead of from scratch "
                                           "(needs --colour; --channels/--top are then unused): 'face' (dlib's "
                                           "face-recognition ResNet, trained on ~3M faces; CC0, from the train extra's "
                                           "face-recognition-models; --input-size 112 or more) or 'age' (dlib's age "
                                           "predictor that mien ships, 64 px)."),
    backbone_lr: float = typer.Option(1.0, min=0.0, max=1.0, help="With --backbone: the backbone's learning rate as "
                                      "a share of --lr (the new layers get --lr)."),
    batch_size: int = typer.Option(128, min=8, help="Faces per training step."),
    oversample: str = typer.Option("", help="Comma-separated FAMILY=FACTOR: draw that dataset family's faces FACTOR "
                                   "times as often (e.g. kdef=10: KDEF's few posers among 51k web faces)."),
) -> None:
    """Train the expression model (needs the train extra).

    Install with `pip install 'mien[train]'`; re-running the same command resumes an interrupted run."""
    try:
        from mien.train.export import train_and_export
        from mien.train.loop import DOMAINS, TrainConfig, domain_of
    except ImportError as error:
        raise typer.BadParameter(f"training needs the train extra (pip install 'mien[train]'): {error}") from error
    from mien.expression.classes import EXPRESSIONS
    from mien.datasets.expressions import BUILTIN

    try:
        stage_channels = tuple(int(c) for c in channels.split(","))
    except ValueError:
        raise typer.BadParameter(f"--channels takes comma-separated integers, got {channels!r}") from None
    train_sets = tuple(name.strip() for name in sets.split(",") if name.strip())
    select_on = tuple(name.strip() for name in select.split(",") if name.strip())
    unknown = [name for name in train_sets if name not in BUILTIN]
    if unknown:
        raise typer.BadParameter(f"unknown sets {unknown}; choose from {', '.join(BUILTIN)}")
    excluded = tuple(c.strip() for c in exclude.split(",") if c.strip())
    if any(c not in EXPRESSIONS for c in excluded):
        raise typer.BadParameter(f"--exclude takes classes of {', '.join(EXPRESSIONS)}")
    valid = tuple(name.strip() for name in valid_sets.split(",") if name.strip())
    unknown = [name for name in valid if name not in BUILTIN]
    if unknown:
        raise typer.BadParameter(f"unknown sets {unknown}; choose from {', '.join(BUILTIN)}", param_hint="--valid-sets")
    if backbone is not None and (backbone not in ("age", "face") or not colour):
        raise typer.BadParameter("the backbones are 'face' and 'age', with --colour", param_hint="--backbone")
    if init is not None and init.suffix == ".onnx" and init_share:
        raise typer.BadParameter("--init-share needs a best.pt to average with, not an ONNX file", param_hint="--init-share")
    families = tuple(f.strip() for f in label_transition.split(",") if f.strip())
    if set(families) - set(DOMAINS):
        raise typer.BadParameter(f"takes the families {', '.join(DOMAINS)}", param_hint="--label-transition")
    if input_size % 16:
        raise typer.BadParameter("must be divisible by 16 (four 2x poolings)", param_hint="--input-size")
    try:
        factors = {family.strip(): float(factor) for family, _, factor in
                   (item.partition("=") for item in oversample.split(",") if item.strip())}
    except ValueError:
        raise typer.BadParameter(f"takes FAMILY=FACTOR pairs, got {oversample!r}", param_hint="--oversample") from None
    if set(factors) - set(DOMAINS) or any(v <= 0 for v in factors.values()):
        raise typer.BadParameter(f"takes families of {', '.join(DOMAINS)} with factors > 0", param_hint="--oversample")
    # one class-prior bias per family trained on; the first three always (the layout of earlier runs)
    n_domains = max(3, 1 + max(domain_of(name) for name in train_sets))
    config = TrainConfig(epochs=epochs, seed=seed, threads=threads, lr=lr, init_from=str(init) if init else None,
                         train_sets=train_sets, valid_sets=valid, select_on=select_on,
                         init_share=init_share if init else 0.0,
                         channels=stage_channels, top=top, test_flip=test_flip, precision=precision,
                         domain_bias=domain_bias, balance_power=balance,
                         exclude=excluded, input_size=input_size, colour=colour, grey_prob=grey_prob, small_prob=small_prob,
                         label_transition=families,
                         backbone=backbone, backbone_lr=backbone_lr, batch_size=batch_size,
                         teacher=",".join(str(t) for t in teacher) if teacher else None, distill=distill, mixup=mixup,
                         n_domains=n_domains, oversample=factors)
    bad_select = [name for name in select_on if name not in config.valid_sets]
    if bad_select:
        raise typer.BadParameter(f"--select takes valid sets: {', '.join(config.valid_sets)}")
    command = shlex.join(["mien", *sys.argv[1:]])  # as typed; training.json also records every setting
    train_and_export(config, data, out, cache, command=command, log=console.print, stop_after=stop_after)


@app.command()
def quantize(
    model: Path = typer.Argument(..., exists=True, dir_okay=False, help="Float expression model `mien train` wrote (RUN/expression.onnx)."),
    data: Path = typer.Option(..., "--data", help="Datasets folder (as ../shared/datasets): training faces to measure "
                              "activation ranges on, valid sets to refit the temperatures on."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the int8 model (e.g. RUN/expression-int8.onnx)."),
    cache: Path = typer.Option(Path(".cache/expr"), help="Folder for cached aligned crops (valid sets)."),
    per_set: int = typer.Option(256, min=16, help="Calibration faces drawn from each training set."),
    seed: int = typer.Option(0, help="Random seed of the calibration draw."),
    flip: bool = typer.Option(False, "--flip/--no-flip", help="The int8 model averages each face with its mirror "
                              "image (twice the work; temperatures fitted that way; recorded in the file)."),
) -> None:
    """Make the 8-bit version of a trained expression model.

    Faster on most CPUs; needs the train extra (for `onnx`)."""
    try:
        from mien.train.quantize import quantize_expression
    except ImportError as error:
        raise typer.BadParameter(f"quantizing needs the train extra (pip install 'mien[train]'): {error}") from error
    command = shlex.join(["mien", *sys.argv[1:]])
    try:
        quantize_expression(model, out, data, cache, per_set=per_set, seed=seed, command=command, log=console.print,
                            flip=flip)
    except (ValueError, FileNotFoundError) as error:
        console.print(f"[red]{error}[/red]", soft_wrap=True)
        raise typer.Exit(1) from None
