"""A long webcam session on the web page, in headless Chromium with a fake camera playing a face.

    python benchmarks/webcam_session.py [--seconds 600]

Starts `mien serve` on a free port, opens the page with Playwright driving Debian's Chromium (its fake
camera plays the astronaut photo on a grey 640x480 background), presses **Use webcam** and lets the page
stream for `--seconds`. Every 10 s it records the frames the page has had answered, its reconnects (a dropped
WebSocket is reopened by the page) and the server's resident memory. Sessions used to be cut at 30 s.
Writes benchmarks/webcam_session_results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from server_helpers import SERVER_PIDS, rss_mb, running_server  # noqa: E402

OUT = Path(__file__).with_name("webcam_session_results.json")


def fake_camera(path: Path, rgb: np.ndarray, frames: int = 30) -> Path:
    """A raw YUV4MPEG2 clip of one image, which Chromium's fake camera plays in a loop."""
    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[:, 64:576] = cv2.resize(rgb, (512, 480))
    yuv = cv2.cvtColor(canvas, cv2.COLOR_RGB2YUV_I420).tobytes()
    with open(path, "wb") as out:
        out.write(b"YUV4MPEG2 W640 H480 F30:1 Ip A1:1 C420jpeg\n")
        for _ in range(frames):
            out.write(b"FRAME\n" + yuv)
    return path


def main() -> None:
    from playwright.sync_api import sync_playwright
    from skimage.data import astronaut

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        camera = fake_camera(Path(tmp) / "face.y4m", astronaut())
        with running_server(Path(tmp) / "data") as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=[
                "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={camera}"])
            page = browser.new_context(permissions=["camera"]).new_page()
            page.goto(url)
            page.click("#webcam-button")
            started = time.monotonic()
            while (elapsed := time.monotonic() - started) < args.seconds:
                page.wait_for_timeout(10_000)
                body = page.evaluate("({...document.body.dataset})")
                samples.append({"s": round(time.monotonic() - started, 1), "frames": int(body.get("liveFrames", 0)),
                                "reconnects": int(body.get("liveReconnects", 0)),
                                "server_rss_mb": round(rss_mb(SERVER_PIDS[url]), 1),
                                "status": page.inner_text("#status")[:80]})
                print(samples[-1], flush=True)
            stats = page.inner_text("#live-stats")
            page.click("#webcam-stop")
            browser.close()
    frames = [s["frames"] for s in samples]
    stalled = [s["s"] for prev, s in zip(samples, samples[1:]) if s["frames"] == prev["frames"]]
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "command": "python benchmarks/webcam_session.py " + " ".join(sys.argv[1:]),
              "seconds": samples[-1]["s"] if samples else 0, "frames": frames[-1] if frames else 0,
              "reconnects": samples[-1]["reconnects"] if samples else 0, "stalled_at_s": stalled,
              "peak_server_rss_mb": max(s["server_rss_mb"] for s in samples) if samples else None,
              "page_stats": stats, "samples": samples}
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}))


if __name__ == "__main__":
    main()
