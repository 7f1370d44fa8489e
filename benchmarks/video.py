"""Video pipeline speed (fps, stage by stage) and memory over a long video, on this machine.

    python benchmarks/video.py                 # speed: 640x480 and 1280x720, 1 and 5 faces
    python benchmarks/video.py --hour 60       # + peak RSS of `mien video` on a generated 60-minute video

Inputs are generated (`mien.video.synthetic`: copies of the astronaut face drifting on a grey
background), encoded to MPEG-4 and read back, so decoding is included. "end to end" is what
`mien video IN -o OUT.parquet` does per frame (decode, detect every 10th frame, mesh-following,
tracking, pose, AUs, expression, smoothing, rows streamed to Parquet); the stage table comes from
a separate, unpipelined pass. References: the image pipeline run on every frame (`Analyzer.analyze`: detector on
every frame, no tracking), mien's way before video mode, and, with `--peer-python` (a venv with mediapipe), the bare
MediaPipe FaceLandmarker in VIDEO mode looking for as many faces, on the same clip in the same run.
Writes benchmarks/video_results.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


import mien.video.analyzer as video_analyzer
from mien.analyzer import Analyzer
from mien.io.table import faces_to_frame
from mien.video import synthetic as syn
from mien.video.analyzer import VideoAnalyzer
from mien.video.reader import open_video
from mien.video.run import analyze_video

ROOT = Path(__file__).resolve().parents[1]
CASES = [((480, 640), 1, 200), ((480, 640), 5, 180), ((720, 1280), 1, 300), ((720, 1280), 5, 260)]


def _clip(folder: Path, size, faces: int, side: int, seconds: float) -> Path:
    path = folder / f"{size[1]}x{size[0]}_{faces}.mp4"
    if not path.exists():
        actors = syn.faces_grid(faces, side=side, size=size)
        syn.write_video(path, syn.frames(actors, seconds, size=size))
    return path


def _end_to_end(path: Path, out: Path) -> dict:
    with open_video(path) as reader:
        run = analyze_video(reader, out, timelines=False)
    return {"fps": round(run.fps, 1), "frames": run.frames, "tracks": len(run.tracks), "rows": run.rows}


def _stages(path: Path, frames: int = 300) -> dict:
    """ms per frame of each stage, timed one after another (no pipelining)."""
    spent: dict[str, float] = defaultdict(float)

    def timed(owner, name, key):
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - started
        setattr(owner, name, wrapper)

    with VideoAnalyzer() as video, open_video(path) as reader:
        timed(video.analyzer.detector, "detect_with_roll", "detector (every 10th frame, amortised)")
        timed(video.analyzer.mesh, "estimate", "mesh + blendshapes (LiteRT, 2 threads)")
        timed(video.analyzer.classifier, "logits_and_features", "expression classifier")
        timed(video.analyzer, "measure", "measurements (pose, gaze, AUs, expression, flags)")
        timed(video.tracker, "update", "tracking")
        timed(video_analyzer, "appearance_vector", "tracking")
        timed(video, "smoother", "smoothing")
        iterator = iter(reader)
        count = 0
        pending = []
        while count < frames:
            started = time.perf_counter()
            frame = next(iterator, None)
            spent["decode"] += time.perf_counter() - started
            if frame is None:
                break
            pending.append(video.process(frame))
            count += 1
            if len(pending) == 32:
                started = time.perf_counter()
                faces_to_frame(pending, landmarks="none", smoothed=True)
                spent["table rows (batches of 32 frames)"] += time.perf_counter() - started
                pending = []
    result = {k: round(1000 * v / count, 2) for k, v in spent.items()}
    # The classifier runs inside the measurements: report the rest separately.
    result["measurements (pose, gaze, AUs, expression, flags)"] -= result["expression classifier"]
    result["measurements (pose, gaze, AUs, expression, flags)"] = round(
        result.pop("measurements (pose, gaze, AUs, expression, flags)"), 2)
    result["sum"] = round(sum(v for k, v in result.items()), 2)
    return result


def _per_frame_images(path: Path, frames: int = 150) -> float:
    """fps of the image pipeline (detector every frame, no tracking) on the same frames."""
    with Analyzer() as analyzer, open_video(path) as reader:
        decoded = [f.rgb for _, f in zip(range(frames), reader)]
        analyzer.analyze(decoded[0])
        started = time.perf_counter()
        for rgb in decoded:
            analyzer.analyze(rgb)
        return round(len(decoded) / (time.perf_counter() - started), 1)


def _bare(peer_python: str, clip: Path, faces: int) -> dict:
    """fps and faces found per frame of the bare FaceLandmarker (VIDEO mode, up to `faces` faces) on `clip`."""
    import end_to_end

    end_to_end.PEER_PYTHON = peer_python
    fps, _, found = end_to_end.bare_clip(clip, faces=faces)
    return {"fps": round(fps, 1), "faces_per_frame": round(found, 2)}


def _hour(folder: Path, minutes: float) -> dict:
    """Peak RSS of `mien video` on a generated video of `minutes`: sampled every 0.5 s, and the
    kernel's maximum for exactly that process (wait4), which sees every moment."""
    path = folder / f"long_{minutes:g}min.mp4"
    if not path.exists():
        print(f"encoding a {minutes:g}-minute video ...", flush=True)
        syn.write_video(path, syn.frames(syn.faces_grid(1, side=200), minutes * 60))
    out = folder / "long.parquet"
    started = time.time()
    process = subprocess.Popen([sys.executable, "-m", "mien", "video", str(path), "-o", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    samples = []
    child_peak = 0
    while True:
        proc_status = Path(f"/proc/{process.pid}/status")
        try:
            fields = dict(line.split(":", 1) for line in proc_status.read_text().splitlines() if ":" in line)
            samples.append((time.time() - started, int(fields["VmRSS"].split()[0]) // 1024,
                            int(fields["VmHWM"].split()[0]) // 1024))
        except (OSError, KeyError, ValueError):
            pass
        # Reap exactly this child with its own resource usage (RUSAGE_CHILDREN would mix in others).
        pid, wait_status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(wait_status)
            child_peak = usage.ru_maxrss // 1024
            break
        time.sleep(0.5)
    stdout = process.stdout.read()
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(out).metadata.num_rows
    peak = max(child_peak, max(s[2] for s in samples))
    n = len(samples)
    samples = [(round(t), rss, hwm) for t, rss, hwm in samples]
    return {"video_minutes": minutes, "frames": int(minutes * 60 * 30), "rows": rows, "wall_s": round(time.time() - started),
            "peak_rss_mb": peak, "rss_mb_at_10_50_90_percent": [samples[int(n * q)][1] for q in (0.1, 0.5, 0.9)],
            "peak_rss_mb_kernel": child_peak, "last_samples_mb": samples[-6:],
            "rss_samples_mb": samples[::max(1, n // 40)], "exit_code": process.returncode, "stdout": stdout.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each speed clip")
    parser.add_argument("--hour", type=float, default=None, metavar="MINUTES", help="also measure memory on a long video")
    parser.add_argument("--hour-only", action="store_true", help="only the long-video memory run (keeps the speed figures)")
    parser.add_argument("--peer-python", default=None,
                        help="the Python of a venv with mediapipe: also time the bare FaceLandmarker on each clip")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mien-video-bench")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "cases": []}
    out = ROOT / "benchmarks" / "video_results.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    if args.hour_only:
        results["cases"] = previous.get("cases", [])
    for size, faces, side in [] if args.hour_only else CASES:
        clip = _clip(args.work, size, faces, side, args.seconds)
        case = {"size": f"{size[1]}x{size[0]}", "faces": faces, "end_to_end": _end_to_end(clip, args.work / "rows.parquet"),
                "image_pipeline_every_frame_fps": _per_frame_images(clip), "stages_ms_per_frame": _stages(clip)}
        case["speedup_vs_image_pipeline"] = round(case["end_to_end"]["fps"] / case["image_pipeline_every_frame_fps"], 2)
        if args.peer_python:
            case["bare_landmarker"] = _bare(args.peer_python, clip, faces)
            case["ratio_vs_bare_landmarker"] = round(case["end_to_end"]["fps"] / case["bare_landmarker"]["fps"], 2)
        print(json.dumps(case), flush=True)
        results["cases"].append(case)
    if args.hour:
        results["long_video"] = _hour(args.work, args.hour)
        print(json.dumps(results["long_video"]), flush=True)
    if not args.hour and "long_video" in previous:
        results["long_video"] = previous["long_video"]  # keep the last long run
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
