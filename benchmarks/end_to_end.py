"""What a user waits for: mien's whole commands against the bare MediaPipe FaceLandmarker, same files, same run.

    python benchmarks/end_to_end.py [--photos 200] [--repeat 5] [--clip ../shared/media/liveportrait_d3.mp4]

1. A folder of real one-face photos (UTKFace 200x200 from ../shared/datasets, else the media photos;
   the folder repeats them `--repeat` times so start-up is a small share): `mien analyze DIR -o r.csv -q`
   and `-o r.parquet -q` (default options), and `--landmarks none`, each timed as a whole subprocess
   (start-up included) against the bare FaceLandmarker (IMAGE mode, blendshapes on, same
   face_landmarker.task) decoding and analysing the same files in one Python loop.
   The shared KDEF portraits (all three views, 562x762, one face filling about half the shorter side) the
   same way: `mien analyze ../shared/datasets/kdef -o r.csv -q` against the bare landmarker on those files.
2. A real clip: `mien video CLIP -o r.parquet` (its own steady fps, printed by mien, and the whole
   command) against the bare FaceLandmarker in VIDEO mode on the same decoded frames.
3. Peak RSS of each mien command (ru_maxrss of exactly that child, via wait4).
4. The web page's request: a real `mien serve`, `POST /api/images?explain=true` with the media's
   5-face group photo and one-face photo (median of 5 after a warm-up).
All of it `--rounds` times (each command paired with the bare landmarker run just before it);
the median ratio over rounds is the figure. Prints JSON lines; writes benchmarks/end_to_end_results.json.

mien no longer installs MediaPipe (nor its windowed OpenCV), so the peer can run in its own environment:
`--peer-python /path/to/venv/bin/python` (a venv with `mediapipe` and `pillow`) runs the bare landmarker there,
while mien runs in this interpreter, as a user installs it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


PEER_PYTHON = sys.executable  # set by --peer-python


def _landmarker(video: bool, task: str, faces: int = 1):
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=task),
        running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
        num_faces=faces, output_face_blendshapes=True, output_facial_transformation_matrixes=True)
    return vision.FaceLandmarker.create_from_options(options)


def _task() -> str:
    from mien.models import resolve

    return str(resolve("face_landmarker"))


def _in_peer(kind: str, paths: list[Path]) -> list[float]:
    """Run `bare_photos` or `bare_clip` in the peer interpreter; its printed numbers."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
        listing.write("\n".join(str(p) for p in paths))
    try:
        out = subprocess.run([PEER_PYTHON, __file__, "--bare", kind, listing.name, _task()], check=True,
                             capture_output=True, text=True).stdout
    finally:
        os.unlink(listing.name)
    return [float(v) for v in out.split()]


def bare_photos(paths: list[Path], task: str | None = None) -> float:
    """img/s of the bare FaceLandmarker, decoding each file as mien does (PIL, RGB)."""
    if task is None and PEER_PYTHON != sys.executable:
        return _in_peer("photos", paths)[0]
    import mediapipe as mp
    from PIL import Image

    landmarker = _landmarker(video=False, task=task or _task())
    started = time.perf_counter()
    for path in paths:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
        landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb)))
    seconds = time.perf_counter() - started
    landmarker.close()
    return len(paths) / seconds


def bare_clip(path: Path, task: str | None = None, faces: int = 1) -> tuple[float, int, float]:
    """(fps, frames, faces found per frame) of the bare FaceLandmarker in VIDEO mode, looking for up to `faces`
    faces, on the clip's frames (decoding included)."""
    if task is None and PEER_PYTHON != sys.executable:
        fps, frames, found = _in_peer(f"clip{faces}", [path])
        return fps, int(frames), found
    import cv2
    import mediapipe as mp

    landmarker = _landmarker(video=True, task=task or _task(), faces=faces)
    capture = cv2.VideoCapture(str(path))
    frames, found, started = 0, 0, time.perf_counter()
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        result = landmarker.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb),
                                             int(frames * 1000 / 30))
        found += len(result.face_landmarks)
        frames += 1
    seconds = time.perf_counter() - started
    landmarker.close()
    return frames / seconds, frames, found / max(frames, 1)


def run_mien(*args: str) -> dict:
    """Run `mien ARGS`, timed as a whole; peak RSS of that process (KiB -> MB)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "mien", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    out, err = process.stdout.read(), process.stderr.read()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"mien {' '.join(args)} exited {code}: {err[-500:]}")
    return {"seconds": seconds, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "stdout": out, "stderr": err}


def photo_folder(folder: Path, count: int, repeat: int) -> list[Path]:
    source = sorted((SHARED / "datasets" / "utkface").glob("*.jpg"))[:count]
    if not source:
        source = [p for p in sorted((SHARED / "media").glob("*.jpg"))]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(repeat):
        for p in source:
            target = folder / f"{k:02d}_{p.name}"
            shutil.copy(p, target)
            paths.append(target)
    return paths


def web_requests(tmp: str, photos: list[Path], repeats: int = 5) -> list[dict]:
    """Median time of `POST /api/images?explain=true` (analysis, heatmaps, rationale, annotated image) per
    photo against a real `mien serve` on loopback, after one warm-up request."""
    import httpx

    sys.path.insert(0, str(ROOT / "tests"))
    from server_helpers import running_server

    rows = []
    with running_server(Path(tmp) / "serve-data") as url, httpx.Client(timeout=120) as client:
        for photo in photos:
            times, faces = [], 0
            for k in range(repeats + 1):
                started = time.perf_counter()
                reply = client.post(url + "/api/images", params={"explain": "true"},
                                    files={"file": (photo.name, photo.read_bytes(), "image/jpeg")})
                reply.raise_for_status()
                if k:
                    times.append(time.perf_counter() - started)
                faces = sum(1 for row in reply.json()["rows"] if row.get("face_found"))
            rows.append({"work": f"web request with explanations, {photo.name} ({faces} faces)",
                         "median_s": round(float(np.median(times)), 3), "all_s": [round(t, 3) for t in times]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _one_round(tmp: str, paths: list[Path], clip: Path, portraits: Path) -> list[dict]:
    """Each command once, each right after the bare landmarker on the same files."""
    rows = []
    portrait_paths = sorted(portraits.rglob("*.jpg"))
    if portrait_paths:
        bare = bare_photos(portrait_paths)
        run = run_mien("analyze", str(portraits), "-o", f"{tmp}/portraits.csv", "-q")
        rate = len(portrait_paths) / run["seconds"]
        rows.append({"work": f"{len(portrait_paths)} KDEF portraits, mien analyze DIR -o r.csv -q",
                     "bare_img_s": round(bare, 1), "mien_img_s": round(rate, 1), "ratio": round(rate / bare, 2),
                     "peak_rss_mb": run["peak_rss_mb"]})
        print(json.dumps(rows[-1]), flush=True)
    bare = bare_photos(paths)
    for label, extra in (("csv", ["-o", f"{tmp}/r.csv"]), ("parquet", ["-o", f"{tmp}/r.parquet"]),
                         ("csv --landmarks none", ["-o", f"{tmp}/r2.csv", "--landmarks", "none"])):
        run = run_mien("analyze", str(Path(tmp) / "photos"), *extra, "-q")
        rate = len(paths) / run["seconds"]
        rows.append({"work": f"{len(paths)} one-face photos, mien analyze DIR {label} -q", "bare_img_s": round(bare, 1),
                     "mien_img_s": round(rate, 1), "ratio": round(rate / bare, 2), "peak_rss_mb": run["peak_rss_mb"]})
        print(json.dumps(rows[-1]), flush=True)
    if clip.exists():
        fps, frames, _ = bare_clip(clip)
        run = run_mien("video", str(clip), "-o", f"{tmp}/clip.parquet", "--no-timelines")
        steady = float(run["stdout"].split(" fps)")[0].rsplit("(", 1)[1]) if " fps)" in run["stdout"] else None
        rows.append({"work": f"{clip.name}, {frames} frames, mien video -o r.parquet", "bare_fps": round(fps, 1),
                     "mien_fps_steady": steady, "mien_fps_whole_command": round(frames / run["seconds"], 1),
                     "ratio": round(steady / fps, 2) if steady else None, "peak_rss_mb": run["peak_rss_mb"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _bare_main(kind: str, listing: str, task: str) -> None:
    """In the peer interpreter: time the bare landmarker on the listed files and print the figures."""
    paths = [Path(line) for line in Path(listing).read_text().splitlines() if line]
    if kind == "photos":
        print(bare_photos(paths, task))
    else:  # "clipN": up to N faces
        print(*bare_clip(paths[0], task, int(kind.removeprefix("clip") or 1)))


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--bare":
        _bare_main(*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all commands; medians are reported")
    parser.add_argument("--clip", type=Path, default=SHARED / "media" / "liveportrait_d3.mp4")
    parser.add_argument("--portraits", type=Path, default=SHARED / "datasets" / "kdef")
    parser.add_argument("--skip-web", action="store_true", help="leave out the web requests")
    parser.add_argument("--peer-python", default=sys.executable,
                        help="the Python (of a venv with mediapipe) that runs the bare landmarker")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "end_to_end_results.json")
    args = parser.parse_args()
    global PEER_PYTHON
    PEER_PYTHON = args.peer_python
    with tempfile.TemporaryDirectory() as tmp:
        paths = photo_folder(Path(tmp) / "photos", args.photos, args.repeat)
        rounds = [_one_round(tmp, paths, args.clip, args.portraits) for _ in range(args.rounds)]
        photos = [p for p in (SHARED / "media" / "pyfeat_multi_face.jpg", SHARED / "media" / "pyfeat_single_face.jpg")
                  if p.exists()]
        web = web_requests(tmp, photos) if photos and not args.skip_web else []
    # This machine's speed drifts by 10-20% between minutes: each ratio pairs a command with the bare
    # landmarker run just before it, and the median over rounds is the figure.
    summary = []
    for k, first in enumerate(rounds[0]):
        runs = [r[k] for r in rounds]
        summary.append({"work": first["work"], "median_ratio": float(np.median([r["ratio"] for r in runs])),
                        "ratios": [r["ratio"] for r in runs], "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                        **{key: float(np.median([r[key] for r in runs])) for key in first
                           if key.endswith(("_img_s", "_fps", "_steady", "_command"))}})
        print(json.dumps(summary[-1]), flush=True)
    args.out.write_text(json.dumps({"summary": summary, "web": web, "rounds": rounds}, indent=2) + "\n")


if __name__ == "__main__":
    main()
