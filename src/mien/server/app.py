"""`create_app`: the FastAPI app behind `mien serve` (REST API, WebSocket webcam mode, web page).

Interactive API docs at /docs (OpenAPI schema at /openapi.json).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import uuid
from contextlib import asynccontextmanager, contextmanager
from importlib import resources
from typing import Annotated, Literal, Optional

import pandas as pd
from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.websockets import WebSocketDisconnect

from mien import __version__
from mien.io.table import json_records
from mien.server.browser import add_headers, allowed_hosts, check_request, websocket_refusal
from mien.server.gate import FAILED_KEYS_PER_MINUTE, Gate, request_key
from mien.io.writer import csv_bytes, write_parquet
from mien.report.annotate import data_uri
from mien.server.live import LiveSession
from mien.server.security import RateLimiter, key_matches, key_owner
from mien.server.service import (RESULT_TABLE, AnalyzerPool, JobRunner, analyze_image, result_dir,
                                 save_pictures, upload_dir)
from mien.server.settings import ServerSettings
from mien.server.store import Job, JobStore, new_job_id
from mien.server.uploads import UploadError, check_image, check_video, display_name, receive

STATIC = resources.files("mien.server") / "static"


class _State:
    """What the app holds while it runs."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.store: JobStore | None = None
        self.pool: AnalyzerPool | None = None
        self.runner: JobRunner | None = None
        self.live = 0
        # Submissions admitted but not yet stored as queued jobs (their uploads still being checked): counted
        # with the queue under one lock, so parallel submits cannot all pass the --max-queued check.
        self.admitting = 0
        self.queue_lock = threading.Lock()

    @contextmanager
    def queue_slot(self, owner: str | None):
        """Hold a place in the queue while a submission's files are checked; raises 503 when it is full."""
        settings = self.settings
        with self.queue_lock:
            waiting = self.store.with_status("queued")
            mine = sum(j.owner == owner for j in waiting)  # with keys, one key may hold half the queue
            taken = len(waiting) + self.admitting
            if taken >= settings.max_queued or (settings.api_key and mine >= max(1, settings.max_queued // 2)):
                raise HTTPException(503, f"{taken} jobs are waiting (the limit is {settings.max_queued}); try again "
                                         "later", headers={"Retry-After": "30"})
            self.admitting += 1
        try:
            yield
        finally:
            with self.queue_lock:
                self.admitting -= 1


class ProxyClient:
    """ASGI middleware for `--trust-proxy`: the client address is the rightmost X-Forwarded-For entry (the one the
    proxy appended), never one the client wrote further left (HTTP and WebSocket alike)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            forwarded = [v for k, v in scope.get("headers", []) if k == b"x-forwarded-for"]
            if forwarded:
                last = forwarded[-1].decode("latin-1").split(",")[-1].strip()
                if last:
                    scope = {**scope, "client": (last, 0)}
        await self.app(scope, receive, send)


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """The web app; models load and queued jobs resume when it starts (lifespan)."""
    settings = settings or ServerSettings()
    state = _State(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for sub in ("uploads", "results"):
            (settings.data_dir / sub).mkdir(parents=True, exist_ok=True)
        state.store = JobStore(settings.db_url)
        state.pool = await run_in_threadpool(AnalyzerPool, settings.workers)
        state.runner = JobRunner(settings, state.store, state.pool)
        state.runner.start()
        yield
        state.runner.stop()
        state.pool.close()
        state.store.close()

    app = FastAPI(title="mien", version=__version__, lifespan=lifespan,
                  description="Offline facial expression analysis: faces, mesh, pose, AUs, blendshapes, "
                              "expressions with calibrated confidence, as tidy rows.")
    app.state.mien = state

    @app.exception_handler(StarletteHTTPException)  # FastAPI's and the router's own (404, 405) alike
    async def http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": exc.detail, "status": exc.status_code}, exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}", "status": 422}, 422)

    hosts = allowed_hosts(settings.listen_host, tuple(settings.allowed_hosts))
    failed_keys = RateLimiter(FAILED_KEYS_PER_MINUTE)  # wrong keys, over HTTP and the WebSocket alike
    app.add_middleware(Gate, settings=settings, failures=failed_keys)  # key, rate limits and body size before any body is read
    if settings.trust_proxy:
        app.add_middleware(ProxyClient)  # runs before the gate: the gate counts the client the proxy saw
    # (added first, so it runs inside the browser protections below: those answer first and label every reply)

    @app.middleware("http")
    async def browser_protections(request: Request, call_next):
        refused = check_request(request.method, request.headers, hosts)
        response = refused if refused is not None else await call_next(request)
        add_headers(request.url.path, response.headers)
        return response


    def job_or_404(job_id: str, owner: str | None) -> Job:
        job = state.store.get(job_id) if _valid_id(job_id) else None
        if job is None or (settings.api_key and job.owner != owner):
            raise HTTPException(404, f"no job {job_id}")
        return job

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/api/health", tags=["service"])
    def health() -> dict:
        """Liveness, version and whether an API key is required."""
        return {"status": "ok", "version": __version__, "auth": bool(settings.api_key),
                "limits": {"max_upload_mb": settings.max_upload_mb, "max_video_s": settings.max_video_s,
                           "max_files": settings.max_files}, "blur_faces": settings.blur_faces}

    @app.post("/api/images", tags=["images"])
    def analyze_one(owner: Owner, file: UploadFile = File(..., description="an image (type judged by content)"),
                    explain: bool = Query(True, description="occlusion heatmap and region-based rationale"),
                    store: bool = Query(False, description="keep the results as a job (downloads later)"),
                    landmarks: Literal["none", "2d", "3d"] = Query("none", description="landmark columns")) -> dict:
        """Analyse one image now: tidy rows (one per face, each with a `rationale`), the annotated
        image and the heatmap (JPEG data URIs). With `store`, the results are kept as a finished job."""
        job_id = new_job_id()
        folder = upload_dir(settings, job_id)
        name = display_name(file.filename, 0)
        try:
            item = receive(file.file, name, folder, 0, settings.max_upload_bytes, kinds=("image",))
            loaded = check_image(folder / item["stored"], name, settings.max_pixels)
            with state.pool.analyzer() as analyzer:
                result = analyze_image(analyzer, loaded, explain=explain, blur=settings.blur_faces,
                                       landmarks=landmarks, rules=settings.rules)
        except UploadError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise HTTPException(exc.status, exc.message) from None
        files: list[str] = []
        if store:
            out = result_dir(settings, job_id)
            out.mkdir(parents=True)
            write_parquet(pd.DataFrame(result.rows), out / RESULT_TABLE, result.provenance)
            files = [RESULT_TABLE, *save_pictures(result, out, 0)]
            state.store.add(Job(id=job_id, kind="image", status="done", progress=1.0, inputs=[item],
                                files=files, rows=len(result.rows), owner=owner, message="finished",
                                options={"explain": explain}))
        if not (store and settings.retain_uploads):
            shutil.rmtree(folder, ignore_errors=True)
        return {"job": job_id if store else None, "source": name, "width": result.width, "height": result.height,
                "rows": result.rows, "annotated": data_uri(result.annotated),
                "heatmap": data_uri(result.heatmap) if result.heatmap else None, "provenance": result.provenance,
                "files": {f: f"/api/jobs/{job_id}/files/{f}" for f in files}}

    @app.post("/api/jobs", status_code=202, tags=["jobs"])
    def submit(owner: Owner, files: list[UploadFile] = File(..., description="one video, or images"),
               explain: bool = Form(False), every: int = Form(1, ge=1, le=1000),
               calibrate: str | None = Form(None, max_length=40, description="video: per-track neutral calibration, "
                                            "each track's rest START-END seconds (0-5s) or auto"),
               reference: str | None = Form(None, max_length=65536, description="images: per-person neutral "
                                            "calibration, CSV text person,file,neutral naming the uploaded files")) -> dict:
        """Queue a video (one file) or a batch of images; poll `GET /api/jobs/{id}` for progress."""
        if len(files) > settings.max_files:
            raise HTTPException(413, f"{len(files)} files; the limit is {settings.max_files} per job")
        if calibrate is not None:
            from mien.expression.neutral import parse_window

            try:
                parse_window(calibrate)
            except ValueError as exc:
                raise HTTPException(400, str(exc)) from None
        with state.queue_slot(owner):
            return _admit(owner, files, explain, every, calibrate, reference)

    def _admit(owner: str | None, files: list[UploadFile], explain: bool, every: int,
               calibrate: str | None = None, reference: str | None = None) -> dict:
        job_id = new_job_id()
        folder = upload_dir(settings, job_id)
        inputs = []
        try:
            for k, upload in enumerate(files):
                name = display_name(upload.filename, k)
                item = receive(upload.file, name, folder, k, settings.max_upload_bytes)
                if item["type"] == "video":
                    if len(files) > 1:
                        raise UploadError(400, f"{name}: send a video as a job of its own")
                    item["video"] = check_video(folder / item["stored"], name, settings.max_video_s,
                                                settings.max_pixels)
                else:
                    check_image(folder / item["stored"], name, settings.max_pixels)
                inputs.append(item)
        except UploadError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise HTTPException(exc.status, exc.message) from None
        kind = "video" if inputs[0]["type"] == "video" else "images"
        if calibrate is not None and kind != "video":
            shutil.rmtree(folder, ignore_errors=True)
            raise HTTPException(400, "calibrate applies to a video job (a job of photos takes reference: CSV text "
                                     "person,file,neutral)")
        options: dict = {"explain": explain, "every": every}
        if calibrate is not None:
            options["calibrate"] = calibrate
        if reference is not None:
            options["reference"] = _checked_reference(reference, kind, [item["name"] for item in inputs], folder)
        job = state.store.add(Job(id=job_id, kind=kind, inputs=inputs, owner=owner, options=options))
        state.runner.submit(job_id)
        return _job_json(job)

    @app.get("/api/jobs", tags=["jobs"])
    def jobs(owner: Owner, limit: int = Query(50, ge=1, le=500)) -> list[dict]:
        """Recent jobs, newest first."""
        return [_job_json(j) for j in state.store.recent(owner if settings.api_key else None, limit)]

    @app.get("/api/jobs/{job_id}", tags=["jobs"])
    def job_status(job_id: str, owner: Owner) -> dict:
        """Status, progress (0-1), errors and result files of a job."""
        return _job_json(job_or_404(job_id, owner))

    @app.get("/api/jobs/{job_id}/results", tags=["jobs"])
    def results(job_id: str, owner: Owner, format: Literal["json", "csv", "parquet"] = "json"):
        """The job's rows: JSON records, CSV or Parquet."""
        job = job_or_404(job_id, owner)
        path = result_dir(settings, job.id) / RESULT_TABLE
        if job.status != "done" or not path.exists():
            raise HTTPException(409, f"job {job_id} has no results ({job.status})")
        if format == "parquet":
            return FileResponse(path, media_type="application/vnd.apache.parquet", filename=f"mien-{job_id}.parquet")
        table = pd.read_parquet(path)
        if format == "csv":
            return Response(csv_bytes(table), media_type="text/csv",
                            headers={"Content-Disposition": f'attachment; filename="mien-{job_id}.csv"'})
        return Response(table.to_json(orient="records"), media_type="application/json")

    @app.get("/api/jobs/{job_id}/files/{name}", tags=["jobs"])
    def job_file(job_id: str, name: str, owner: Owner) -> FileResponse:
        """One result file of a job (annotated images, heatmaps, timelines), by the name listed in the job."""
        job = job_or_404(job_id, owner)
        if name not in job.files:  # only names the job lists: no path traversal
            raise HTTPException(404, f"job {job_id} has no file {name!r}")
        return FileResponse(result_dir(settings, job.id) / name)

    @app.get("/api/jobs/{job_id}/timeline", tags=["jobs"])
    def timeline(job_id: str, owner: Owner) -> dict:
        """A video job's expression segments, per-person summary and valence/arousal curves
        (smoothed, at most 300 points per person)."""
        job = job_or_404(job_id, owner)
        out: dict = {"curves": _curves(result_dir(settings, job.id) / RESULT_TABLE) if job.kind == "video" else {}}
        for part in ("segments", "tracks"):
            name = f"rows.{part}.csv"
            path = result_dir(settings, job.id) / name
            out[part] = (json_records(pd.read_csv(path)) if name in job.files and path.exists()
                         and path.stat().st_size > 1 else [])
        return out

    @app.post("/api/jobs/{job_id}/cancel", tags=["jobs"])
    def cancel(job_id: str, owner: Owner) -> dict:
        """Cancel a queued job (at once) or a running one (at its next image or frame): status `cancelled`."""
        job = job_or_404(job_id, owner)
        outcome = state.runner.cancel(job.id)
        if outcome not in ("cancelled", "cancelling"):
            raise HTTPException(409, f"job {job_id} is {outcome}: nothing to cancel")
        return {**_job_json(state.store.get(job.id)), "cancel": outcome}

    @app.delete("/api/jobs/{job_id}", tags=["jobs"])
    def delete(job_id: str, owner: Owner) -> dict:
        """Delete a finished (or cancelled) job with its files."""
        job = job_or_404(job_id, owner)
        if job.status in ("queued", "running"):
            raise HTTPException(409, f"job {job_id} is {job.status}; cancel it first (POST /api/jobs/{job_id}/cancel)")
        shutil.rmtree(result_dir(settings, job.id), ignore_errors=True)
        shutil.rmtree(upload_dir(settings, job.id), ignore_errors=True)
        state.store.delete(job.id)
        return {"deleted": job.id}

    @app.websocket("/api/live")
    async def live(ws: WebSocket, key: str | None = None) -> None:
        """Webcam mode: send JPEG frames as binary messages; each gets one JSON reply whose `faces` are
        table rows, as in the files and the REST results (`box_x/y/w/h`, track ids, expression,
        probabilities, AUs, and their `*_smooth` columns). Send the next frame after the reply.
        Per-person calibration: the text message `{"calibrate": SECONDS}` (0.5-30; no reply of its own) takes each
        face's next SECONDS as its neutral rest; later rows of those tracks add the `_cal` columns of
        `mien calibrate`, and replies say `calibration` (collecting, then calibrated tracks).
        The API key goes in the `X-API-Key` (or `Authorization: Bearer`) header, or `?key=` for browsers."""
        if websocket_refusal(ws.headers, hosts) is not None:
            await ws.close(code=1008)  # before accept: the handshake is answered 403
            return
        if settings.api_key:
            given = request_key({k.lower(): v for k, v in ws.headers.items()}) or key
            address = ws.client.host if ws.client else "?"
            if not key_matches(given, settings.api_key):
                wait = failed_keys.allow(address)
                await ws.close(code=1008, reason="missing or wrong API key" if wait is None
                               else "too many wrong API keys; wait")
                return
        if state.live >= settings.max_live:
            await ws.close(code=1013, reason=f"at most {settings.max_live} live sessions; try again later")
            return
        state.live += 1
        session = None
        try:
            await ws.accept()
            session = await run_in_threadpool(LiveSession, settings.rules)
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("bytes")
                if data is None and _calibration_request(message.get("text"), session):
                    continue
                refusal = _frame_refusal(data, message.get("text"), settings)
                if refusal is not None:  # answer, then close with the code that says why
                    await ws.send_json({"error": refusal[1], "status": refusal[0]})
                    await ws.close(code=refusal[0], reason=refusal[1][:120])
                    break
                await ws.send_json(await run_in_threadpool(session.process, data))
        except (WebSocketDisconnect, asyncio.CancelledError):
            pass
        finally:
            state.live -= 1
            if session is not None:
                await run_in_threadpool(session.close)

    return app


def _checked_reference(text: str, kind: str, names: list[str], folder) -> str:
    """The `reference` of an image job, checked against its uploads (400, one line, and no job, otherwise)."""
    from mien.expression.neutral import NeutralReferenceError, references_for_names

    try:
        if kind != "images":
            raise NeutralReferenceError("reference applies to a job of photos (a video job uses calibrate)")
        if len(set(names)) < len(names):
            raise NeutralReferenceError("reference: two uploads have the same name; name each photo once")
        references_for_names(text, names)
    except NeutralReferenceError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise HTTPException(400, str(exc)) from None
    return text


def _calibration_request(text: str | None, session: LiveSession) -> bool:
    """True when `text` is a valid `{"calibrate": SECONDS}` request (and the session now collects a rest)."""
    try:
        seconds = float(json.loads(text or "")["calibrate"])
        session.calibrate(seconds)
    except (ValueError, TypeError, KeyError):
        return False
    return True


def _frame_refusal(data: bytes | None, text: str | None, settings) -> tuple[int, str] | None:
    """(WebSocket close code, reason) for a frame the live mode cannot take, else None."""
    from mien.server.uploads import UploadError, check_pixels

    if data is None:
        return 1003, ('send frames as binary (JPEG, PNG or WebP bytes); the one text message is '
                      '{"calibrate": SECONDS} with 0.5-30 seconds')
    if not data:
        return 1007, "empty frame"
    if len(data) > settings.max_upload_bytes:
        return 1009, "frame larger than the upload limit"
    try:
        check_pixels(data, "frame", settings.max_pixels)
    except UploadError as exc:
        return (1009 if exc.status == 413 else 1003), exc.message
    return None


def client(request: Request) -> str | None:
    """The owner name of the request's API key (the gate, `mien.server.gate`, has already checked the
    key and the rate limits before the body was read)."""
    settings = request.app.state.mien.settings
    key = request_key({k.lower(): v for k, v in request.headers.items()})
    if settings.api_key and not key_matches(key, settings.api_key):  # a route the gate does not cover
        raise HTTPException(401, "missing or wrong API key (send it as X-API-Key)")
    return key_owner(key) if settings.api_key else None


Owner = Annotated[Optional[str], Depends(client)]


def _curves(path, points: int = 300) -> dict:
    """Per track: time, valence and arousal (smoothed when present), thinned to `points`."""
    if not path.exists():
        return {}
    import pyarrow.parquet as pq

    names = set(pq.ParquetFile(path).schema_arrow.names)
    suffix = "_smooth" if "valence_smooth" in names else ""
    table = pd.read_parquet(path, columns=["track_id", "time_s", f"valence{suffix}", f"arousal{suffix}"])
    table = table[table["track_id"] >= 0].dropna()
    curves = {}
    for track, rows in table.groupby("track_id"):
        rows = rows.sort_values("time_s").iloc[:: max(1, len(rows) // points)]
        curves[str(int(track))] = {"time_s": rows["time_s"].round(3).tolist(),
                                   "valence": rows[f"valence{suffix}"].round(3).tolist(),
                                   "arousal": rows[f"arousal{suffix}"].round(3).tolist()}
    return curves


def _valid_id(job_id: str) -> bool:
    try:
        return uuid.UUID(hex=job_id).hex == job_id
    except ValueError:
        return False


def _job_json(job: Job) -> dict:
    out = job.public()
    out["urls"] = {name: f"/api/jobs/{job.id}/files/{name}" for name in job.files}
    if job.status == "done":
        out["urls"].update({f"rows.{fmt}": f"/api/jobs/{job.id}/results?format={fmt}" for fmt in ("csv", "parquet", "json")})
    return out


__all__ = ["create_app", "ServerSettings"]
