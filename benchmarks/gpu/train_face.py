"""Train the face-backbone expression model on a lent GPU, several recipes side by side.

The GPU machine has torch but not mien's run-time stack (nor the datasets), so the training caches travel
as JPEG packs (`python -m mien.train.cache --pack`), dlib's face-recognition ResNet as its .dat file
(MIEN_FACE_RESNET), and each recipe is exactly what `mien train` runs (`mien.train.loop.run_training`;
the command each one corresponds to is recorded). Runs go in parallel processes on the one GPU and stop at
`--deadline` seconds if not done (the best epoch so far is kept). Each run's best EMA weights come back in
float16 (`NAME.pt`, the files are limited to 16 MiB) with its training record (`NAME.json`). A recipe with
`teacher_runs` (`face128ens`) is a student distilled from those runs' ensemble: it starts after them, in the same
call or, on a machine still warm, in a later one with the same `--work`.

    python3 benchmarks/gpu/train_face.py --cache /tmp/mien/cache --out $OUT --deadline 420
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shlex
import sys
import time
from pathlib import Path

COMMON = {"train_sets": ("ferplus-train", "affectnet8-train", "rafdb-train"),
          "valid_sets": ("ferplus-valid", "affectnet8-valid", "rafdb-valid"),
          "colour": True, "grey_prob": 0.2, "backbone": "face", "test_flip": True, "threads": 3}
RUNS = {
    "face112": {"input_size": 112, "lr": 1e-3, "backbone_lr": 0.3, "epochs": 25},
    "face112hi": {"input_size": 112, "lr": 2e-3, "backbone_lr": 0.5, "epochs": 25},
    "face128": {"input_size": 128, "lr": 1e-3, "backbone_lr": 0.3, "epochs": 25},
    "face144": {"input_size": 144, "lr": 1e-3, "backbone_lr": 0.3, "epochs": 25},
    "face128e35": {"input_size": 128, "lr": 1e-3, "backbone_lr": 0.3, "epochs": 35},
    "face128s1": {"input_size": 128, "lr": 1e-3, "backbone_lr": 0.3, "epochs": 25, "seed": 1},
    "face128bb2": {"input_size": 128, "lr": 1e-3, "backbone_lr": 0.2, "epochs": 30},
    "face128s2": {"input_size": 128, "lr": 1e-3, "backbone_lr": 0.3, "epochs": 25, "seed": 2},
    # A student of the shipped recipe distilled from an ensemble of finished runs (`mien train --teacher A --teacher
    # B`): it starts once the runs it learns from have ended, in this call or (same --work) an earlier one.
    "face128ens": {"input_size": 128, "lr": 1e-3, "backbone_lr": 0.3, "epochs": 25, "seed": 4,
                   "teacher_runs": ("face128", "face128s1", "face128s2")},
}


def command_for(settings: dict) -> str:
    """The `mien train` command that runs this recipe."""
    args = ["mien", "train", "--data", "../shared/datasets", "--out", f"runs/{settings['name']}", "--colour",
            "--backbone", "face", "--sets", ",".join(COMMON["train_sets"]),
            "--valid-sets", ",".join(COMMON["valid_sets"]), "--grey-prob", str(COMMON["grey_prob"]),
            "--input-size", str(settings["input_size"]), "--lr", str(settings["lr"]),
            "--backbone-lr", str(settings["backbone_lr"]), "--epochs", str(settings["epochs"]),
            "--seed", str(settings.get("seed", 0))]
    for run in settings.get("teacher_runs", ()):
        args += ["--teacher", f"runs/{run}/best.pt"]
    return shlex.join(args)


def _train(name: str, cache: str, runs_dir: str) -> None:
    import torch

    from mien.train.loop import TrainConfig, run_training

    settings = {**RUNS[name]}
    teachers = settings.pop("teacher_runs", ())
    if teachers:
        settings["teacher"] = ",".join(str(Path(runs_dir) / t / "best.pt") for t in teachers)
    config = TrainConfig(**{**COMMON, **settings})
    out = Path(runs_dir) / name
    log = open(out.parent / f"{name}.log", "w", buffering=1)
    torch.backends.cudnn.benchmark = True
    run_training(config, Path("/nonexistent-datasets"), out, Path(cache), log=lambda *a: print(*a, file=log))


def _collect(name: str, runs_dir: Path, out: Path, finished: bool) -> dict:
    import torch

    run = runs_dir / name
    summary: dict = {"name": name, "finished": finished, "command": command_for({**RUNS[name], "name": name})}
    if (run / "training.json").exists():
        summary["training"] = json.loads((run / "training.json").read_text())
    if (run / "checkpoint.pt").exists():
        state = torch.load(run / "checkpoint.pt", weights_only=False, map_location="cpu")["state"]
        summary["history"] = state["history"]
        summary["train_seconds"] = state["seconds"]
    log = runs_dir / f"{name}.log"
    summary["log_tail"] = log.read_text()[-4000:] if log.exists() else ""
    if (run / "best.pt").exists():
        best = torch.load(run / "best.pt", weights_only=False, map_location="cpu")
        best["model"] = {k: v.half() if v.is_floating_point() else v for k, v in best["model"].items()}
        torch.save(best, out / f"{name}.pt")
        summary["best_epoch"], summary["best_valid"] = best["epoch"], best["valid"]
    (out / f"{name}.json").write_text(json.dumps(summary, indent=1))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="folder with rgb96/NAME.npz packs")
    parser.add_argument("--out", required=True)
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--deadline", type=float, default=420, help="seconds before unfinished runs are stopped")
    parser.add_argument("--work", default="/tmp/mien-runs")
    args = parser.parse_args()
    started = time.time()
    names = [n for n in args.runs.split(",") if n]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    finished: dict[str, bool] = {}
    # Students of an ensemble start when their teachers' runs have ended.
    for phase in ([n for n in names if "teacher_runs" not in RUNS[n]], [n for n in names if "teacher_runs" in RUNS[n]]):
        ready = [n for n in phase if all((work / t / "best.pt").exists() for t in RUNS[n].get("teacher_runs", ()))]
        for n in sorted(set(phase) - set(ready)):
            print(n, "not started: a teacher run has no best.pt in", work, file=sys.stderr)
            finished[n] = False
        procs = {n: ctx.Process(target=_train, args=(n, args.cache, str(work))) for n in ready}
        for p in procs.values():
            p.start()
        while any(p.is_alive() for p in procs.values()) and time.time() - started < args.deadline:
            time.sleep(5)
        finished.update({n: not p.is_alive() and p.exitcode == 0 for n, p in procs.items()})
        for p in procs.values():
            if p.is_alive():
                p.terminate()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for n in names:
        s = _collect(n, work, out, finished[n])
        print(n, "finished" if finished[n] else "STOPPED", "best epoch", s.get("best_epoch"), s.get("best_valid"),
              f"{s.get('train_seconds', 0):.0f} s", file=sys.stderr)
        print(s["log_tail"][-1500:], file=sys.stderr)
    print(f"total {time.time() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
