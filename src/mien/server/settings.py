"""Settings of `mien serve`: where data lives, limits, and the safety switches."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from pathlib import Path

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass
class ServerSettings:
    """Options of the web app and REST API.

    Attributes:
        data_dir: folder for the job database, results and (briefly) uploads.
        database_url: SQLAlchemy URL of the job database; None = SQLite file `data_dir/mien.db`.
            A team deployment can use PostgreSQL: "postgresql+psycopg://user:pass@host/db".
        api_key: required in `X-API-Key` (or `Authorization: Bearer`) when set; `mien serve`
            refuses to listen beyond localhost without one.
        max_upload_mb: largest accepted upload (each file), in MiB.
        max_video_s: longest accepted video, in seconds.
        max_files: most files in one batch job.
        max_request_mb: largest request body, in MiB, whatever its files (a job's body may otherwise be
            `max_files` x `max_upload_mb`, 10 GiB with the defaults); the gate stops reading there (413).
        retain_uploads: keep uploaded files after processing (default: delete them).
        blur_faces: blur faces in annotated outputs (anonymised images and heatmaps).
        rate_limit: requests per minute per API key (or per client address without keys); 0 = off.
        workers: image pipelines kept loaded for synchronous requests (each about 60 MB more; the server with one is about 500 MB).
        max_live: concurrent webcam (WebSocket) sessions.
        max_queued: most jobs waiting at once (503 with Retry-After beyond it); with API keys one key
            may hold at most half of them.
        max_pixels: largest image (width x height, from its header, before decoding) accepted by
            uploads and webcam frames.
        listen_host: the address the server listens on (allowed in the Host header, with the
            localhost names; see `mien.server.browser`).
        allowed_hosts: more host names clients may use (`--allowed-host`, e.g. the machine's name).
        trust_proxy: behind one reverse proxy: a client's address (for rate limits and key throttling) is the
            rightmost `X-Forwarded-For` entry, the one the proxy itself appended; entries to its left are
            whatever the client claimed and are ignored.
    """

    data_dir: Path = Path("mien-data")
    database_url: str | None = None
    api_key: str | None = None
    max_upload_mb: float = 50.0
    max_video_s: float = 600.0
    max_files: int = 200
    max_request_mb: float = 512.0
    retain_uploads: bool = False
    blur_faces: bool = False
    rate_limit: int = 600
    workers: int = 1
    max_live: int = 2
    max_pixels: int = 40_000_000
    max_queued: int = 50
    listen_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    trust_proxy: bool = False
    rules: Any = None  # custom expressions (`mien.expression.rules.RuleSet`, from `--expressions`)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if self.api_key is None:
            self.api_key = os.environ.get("MIEN_API_KEY") or None

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'mien.db').resolve()}"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def max_body_bytes(self, files: int) -> int:
        """The gate's limit for a request carrying up to `files` files (multipart framing included)."""
        return min(int(self.max_request_mb * 1024 * 1024), self.max_upload_bytes * files) + 1024 * 1024
