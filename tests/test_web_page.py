"""The web page in a real headless browser (Debian's Chromium driven by Playwright): drop a photo,
see annotated results; webcam mode with a fake camera that plays a face."""

from __future__ import annotations

import shutil
import time

import cv2
import numpy as np
import pytest

from server_helpers import jpeg_bytes, running_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian package chromium)")


def write_y4m(path, rgb: np.ndarray, frames: int = 30) -> None:
    """A raw YUV4MPEG2 clip of a still image: Chromium's fake camera plays it in a loop."""
    height, width = rgb.shape[:2]
    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes()
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            out.write(b"FRAME\n" + yuv)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """`mien serve` with a custom expression that the astronaut's smile fires."""
    rules = tmp_path_factory.mktemp("rules") / "smiles.toml"
    rules.write_text('[expressions.broad_smile]\nall = ["expr_happy"]\n')
    with running_server(tmp_path_factory.mktemp("web") / "data", "--expressions", str(rules)) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory, astronaut):
    from playwright.sync_api import sync_playwright

    camera = tmp_path_factory.mktemp("camera") / "face.y4m"
    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[:, 64:576] = cv2.resize(astronaut, (512, 480))
    write_y4m(camera, canvas)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}"])
        yield browser
        browser.close()


def test_drop_a_photo_and_see_results(site, browser, astronaut, tmp_path):
    photo = tmp_path / "astronaut.jpg"
    photo.write_bytes(jpeg_bytes(astronaut))
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((site, "data:", "blob:")) else None)
    page.goto(site)
    page.wait_for_selector("#limits:not(:empty)")  # a selector, not a function: the CSP forbids eval
    for warm in range(2):  # the first analysis warms the models up; the second is what a user sees
        page.set_input_files("#file-input", str(photo))
        page.wait_for_selector(".face-card h3", timeout=30_000)
        elapsed_ms = int(page.evaluate("document.body.dataset.resultMs"))
    assert elapsed_ms < 2000, f"results took {elapsed_ms} ms"
    assert "happy" in page.inner_text(".face-card h3")
    assert "AU12" in page.inner_text(".face-card .rationale")
    assert page.locator(".face-card .bars").count() == 3  # expression bars, the AU chart, custom expressions
    assert "broad_smile" in page.inner_text(".face-card .bars >> nth=2")
    assert page.evaluate("document.querySelector('img.annotated').naturalWidth") == 512
    before = page.get_attribute("img.annotated", "src")
    page.click(".heatmap-toggle")
    assert page.get_attribute(".heatmap-toggle", "aria-pressed") == "true"
    assert page.get_attribute("img.annotated", "src") != before
    assert page.locator("button.download").count() == 3
    with page.expect_download() as download:
        page.click("button.download >> nth=0")
    assert download.value.suggested_filename.endswith(".csv")
    assert "happy" in open(download.value.path()).read()
    shot = cv2.imdecode(np.frombuffer(page.screenshot(full_page=True), np.uint8), cv2.IMREAD_COLOR)
    assert shot is not None and shot.std() > 20
    assert not outside, f"requests outside the server: {outside}"
    page.close()


def test_bad_file_shows_a_clear_error(site, browser, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a picture")
    page = browser.new_page()
    page.goto(site)
    page.set_input_files("#file-input", str(bad))
    page.wait_for_selector("#status.error", timeout=15_000)
    assert "415" in page.inner_text("#status") and "notes.jpg" in page.inner_text("#status")
    page.close()


def test_webcam_mode(site, browser):
    context = browser.new_context(permissions=["camera"])
    page = context.new_page()
    page.goto(site)
    page.click("#webcam-button")
    # Polled from here: the page's Content-Security-Policy forbids the eval a string wait_for_function needs.
    deadline = time.monotonic() + 60
    while int(page.get_attribute("body", "data-live-frames") or 0) < 5:
        assert time.monotonic() < deadline, "fewer than 5 live frames in 60 s"
        page.wait_for_timeout(200)
    assert "happy" in page.inner_text("#live-faces") and "broad_smile" in page.inner_text("#live-faces")
    assert "fps" in page.inner_text("#live-stats")
    page.click("#webcam-calibrate")  # the fake camera's face is the rest for the next 3 s
    deadline = time.monotonic() + 60
    while page.get_attribute("body", "data-live-calibration") != "calibrated":
        assert time.monotonic() < deadline, "not calibrated 60 s after asking"
        page.wait_for_timeout(200)
    page.wait_for_timeout(500)
    assert "(cal)" in page.inner_text("#live-faces") and "calibrated: face #0" in page.inner_text("#live-calibration")
    page.click("#webcam-stop")
    context.close()


def test_drop_a_video_and_see_timelines(site, browser, tmp_path):
    from mien.video import synthetic

    video = synthetic.write_video(tmp_path / "two people.mp4", synthetic.frames(synthetic.faces_grid(2, side=150), 2.0))
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    page.goto(site)
    page.set_input_files("#file-input", str(video))
    # "attached", not "visible": a person whose valence never changes draws a flat line, whose SVG bounding box
    # has no height, which Playwright counts as invisible although the stroke shows.
    page.wait_for_selector(".valence-curve", state="attached", timeout=120_000)
    assert page.locator(".valence-curve").count() == 2  # one curve per person
    assert page.locator("rect.segment").count() >= 2
    assert page.locator("table.tracks tr").count() == 3  # header + two people
    assert "done" in page.inner_text("#status")
    assert page.locator("button.download").count() == 6  # rows in 3 formats + segments, events, tracks
    page.close()
