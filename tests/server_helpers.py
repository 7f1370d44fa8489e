"""Start a real `mien serve` in a subprocess for the API, browser and load tests."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER_PIDS: dict[str, int] = {}  # url -> pid of the server process, for memory checks


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident (VmRSS) or peak resident (VmHWM) memory of a process, MB (Linux)."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


@contextmanager
def running_server(data_dir: Path, *args: str, timeout_s: float = 90.0) -> Iterator[str]:
    """Run `mien serve` on a free localhost port; yields its base URL; stops it afterwards."""
    port = free_port()
    log = open(data_dir.parent / f"server-{port}.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "mien", "serve", "--port", str(port), "--data-dir",
                                str(data_dir), *args], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    SERVER_PIDS[url] = process.pid
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {Path(log.name).read_text()[-2000:]}")
            try:
                if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def wait_for_job(client: httpx.Client, job_id: str, timeout_s: float = 120) -> dict:
    """Poll a job until it is done, failed or cancelled; returns its JSON."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")
