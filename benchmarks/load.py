"""Load test of `mien serve`: concurrent clients posting a photo to `POST /api/images`.

    python benchmarks/load.py                          # 20 clients x 50 requests, full figures
    python benchmarks/load.py --clients 4 --requests 5 --json out.json   # the bounded form the tests run

Starts its own server on a free localhost port (rate limit off), unless --url points at one.
Each client sends its requests one after another (a new request when the last answer came);
latency is measured per request from send to full response. The photo is the public-domain
astronaut (512x512 JPEG, one face). Writes benchmarks/load_results.json unless --json says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from server_helpers import jpeg_bytes, running_server  # noqa: E402

OUT = Path(__file__).with_name("load_results.json")


def run_load(url: str, clients: int, requests: int, payload: bytes, explain: bool) -> dict:
    """Latencies (ms), errors and throughput of `clients` x `requests` image analyses."""
    endpoint = f"{url}/api/images?explain={str(explain).lower()}"

    def client(_: int) -> list[tuple[float, int]]:
        out = []
        with httpx.Client(timeout=120) as session:
            for _ in range(requests):
                began = time.perf_counter()
                try:
                    response = session.post(endpoint, files={"file": ("astronaut.jpg", payload, "image/jpeg")})
                    ok = response.status_code == 200 and len(response.json()["rows"]) == 1
                    status = response.status_code if ok else -response.status_code
                except httpx.HTTPError:
                    status = -1
                out.append((1000 * (time.perf_counter() - began), status))
        return out

    httpx.post(endpoint, files={"file": ("warm.jpg", payload, "image/jpeg")}, timeout=120)  # warm the models
    began = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for batch in pool.map(client, range(clients)) for r in batch]
    wall = time.perf_counter() - began
    latency = np.array([ms for ms, _ in results])
    errors = sum(status != 200 for _, status in results)
    return {"clients": clients, "requests_per_client": requests, "total": len(results), "errors": errors,
            "explain": explain, "wall_s": round(wall, 2), "throughput_rps": round(len(results) / wall, 2),
            "p50_ms": round(float(np.percentile(latency, 50)), 1), "p95_ms": round(float(np.percentile(latency, 95)), 1),
            "p99_ms": round(float(np.percentile(latency, 99)), 1), "max_ms": round(float(latency.max()), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=50, help="requests per client")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="server --workers settings to try")
    parser.add_argument("--explain", action="store_true", help="ask for heatmaps too (slower)")
    parser.add_argument("--url", help="an already running server (its own --workers)")
    parser.add_argument("--json", type=Path, default=OUT)
    args = parser.parse_args()
    from skimage.data import astronaut

    payload = jpeg_bytes(astronaut())
    runs = []
    for workers in ([None] if args.url else args.workers):
        if args.url:
            runs.append(run_load(args.url, args.clients, args.requests, payload, args.explain))
            continue
        with tempfile.TemporaryDirectory() as tmp, running_server(
                Path(tmp) / "data", "--rate-limit", "0", "--workers", str(workers)) as url:
            result = run_load(url, args.clients, args.requests, payload, args.explain)
        result["server_workers"] = workers
        runs.append(result)
        print(json.dumps(result))
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "command": "python benchmarks/load.py " + " ".join(sys.argv[1:]), "runs": runs}
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    if any(r["errors"] for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
