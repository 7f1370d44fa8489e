"""Time from dropping a photo on the web page to seeing its results, in headless Chromium.

    python benchmarks/web_page.py [--drops 10]

Starts `mien serve` on a free port, opens the page with Playwright driving Debian's Chromium,
and drops the astronaut photo (512x512 JPEG) `--drops` times with heatmaps on (the page's
default). The time is what the page itself measures: from the file arriving to the rendered
results (upload, analysis with heatmap, annotated image and face cards). The first drop is
reported apart (it warms the models). Writes benchmarks/web_page_results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from server_helpers import jpeg_bytes, running_server  # noqa: E402

OUT = Path(__file__).with_name("web_page_results.json")


def main() -> None:
    from playwright.sync_api import sync_playwright
    from skimage.data import astronaut

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drops", type=int, default=10)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "astronaut.jpg"
        photo.write_bytes(jpeg_bytes(astronaut()))
        with running_server(Path(tmp) / "data") as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(url)
            page.wait_for_function("document.getElementById('limits').textContent.length > 0")
            times = []
            for _ in range(args.drops + 1):
                page.evaluate("delete document.body.dataset.resultMs")
                page.set_input_files("#file-input", str(photo))
                page.wait_for_function("document.body.dataset.resultMs !== undefined", timeout=60_000)
                times.append(int(page.evaluate("document.body.dataset.resultMs")))
            browser.close()
    later = np.array(times[1:])
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "command": "python benchmarks/web_page.py " + " ".join(sys.argv[1:]),
              "first_drop_ms": times[0], "drops": len(later), "median_ms": float(np.median(later)),
              "max_ms": int(later.max()), "all_ms": times}
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
