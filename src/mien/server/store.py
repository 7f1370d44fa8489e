"""Job store: jobs and their results in an embedded SQLite file, or PostgreSQL for a team.

SQLAlchemy Core keeps the SQL portable. The schema is versioned: `MIGRATIONS[k]` takes a
database from version k to k + 1, and `JobStore` applies the missing ones when it opens a
database, so a data directory made by an older mien keeps working after an upgrade.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import sqlalchemy as sa

JOB_STATUSES = ("queued", "running", "done", "failed")


@dataclass
class Job:
    """One analysis: a synchronous image kept for later download, or a queued video/batch."""

    id: str
    kind: str  # "image", "images" or "video"
    status: str = "queued"
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    progress: float = 0.0
    message: str = ""
    inputs: list[dict[str, Any]] = field(default_factory=list)  # name shown, stored file, type, size
    files: list[str] = field(default_factory=list)  # result files, in the job's result folder
    rows: int = 0
    error: str | None = None
    errors: list[str] = field(default_factory=list)  # one line per input that failed
    owner: str | None = None  # hash of the API key that made it
    options: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """What the API returns about a job (no stored file names, no owner)."""
        out = asdict(self)
        out["inputs"] = [{k: v for k, v in item.items() if k != "stored"} for item in self.inputs]
        out.pop("owner")
        return out


def new_job_id() -> str:
    return uuid.uuid4().hex


def _v1(conn: sa.Connection) -> None:
    conn.execute(sa.text(
        "CREATE TABLE jobs (id VARCHAR(32) PRIMARY KEY, kind VARCHAR(16) NOT NULL, status VARCHAR(16) NOT NULL, "
        "created_at FLOAT NOT NULL, updated_at FLOAT NOT NULL, progress FLOAT NOT NULL DEFAULT 0, "
        "message TEXT, inputs TEXT, files TEXT, rows_written INTEGER NOT NULL DEFAULT 0, error TEXT, owner VARCHAR(64))"))


def _v2(conn: sa.Connection) -> None:
    conn.execute(sa.text("ALTER TABLE jobs ADD COLUMN errors TEXT"))
    conn.execute(sa.text("ALTER TABLE jobs ADD COLUMN options TEXT"))
    conn.execute(sa.text("CREATE INDEX jobs_created ON jobs (created_at)"))


MIGRATIONS: list[Callable[[sa.Connection], None]] = [_v1, _v2]
SCHEMA_VERSION = len(MIGRATIONS)

_JSON_FIELDS = ("inputs", "files", "errors", "options")


class JobStore:
    """Jobs in a SQL database (thread-safe; one engine per store)."""

    def __init__(self, url: str) -> None:
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = sa.create_engine(url, **kwargs)
        self._lock = threading.Lock()  # SQLite allows one writer; keep our own writes in order
        self.version_before = self.migrate()

    def migrate(self) -> int:
        """Bring the schema to `SCHEMA_VERSION`; returns the version found."""
        with self.engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"))
            found = conn.execute(sa.text("SELECT MAX(version) FROM schema_version")).scalar() or 0
            for step in range(found, SCHEMA_VERSION):
                MIGRATIONS[step](conn)
                conn.execute(sa.text("INSERT INTO schema_version (version) VALUES (:v)"), {"v": step + 1})
        if found > SCHEMA_VERSION:
            raise RuntimeError(f"job database schema {found} is newer than this mien ({SCHEMA_VERSION}); upgrade mien")
        return found

    def close(self) -> None:
        self.engine.dispose()

    def add(self, job: Job) -> Job:
        row = self._row(job)
        names = ", ".join(row)
        values = ", ".join(f":{k}" for k in row)
        with self._lock, self.engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO jobs ({names}) VALUES ({values})"), row)
        return job

    def update(self, job_id: str, **changes: Any) -> None:
        """Set some fields of a job (and its `updated_at`)."""
        changes["updated_at"] = time.time()
        row = {("rows_written" if k == "rows" else k): (json.dumps(v) if k in _JSON_FIELDS else v)
               for k, v in changes.items()}
        sets = ", ".join(f"{k} = :{k}" for k in row)
        with self._lock, self.engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE jobs SET {sets} WHERE id = :id"), {**row, "id": job_id})

    def get(self, job_id: str) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.text("SELECT * FROM jobs WHERE id = :id"), {"id": job_id}).mappings().first()
        return None if row is None else self._job(row)

    def recent(self, owner: str | None = None, limit: int = 50) -> list[Job]:
        query = "SELECT * FROM jobs" + (" WHERE owner = :owner" if owner else "") + \
                " ORDER BY created_at DESC LIMIT :limit"
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(query), {"owner": owner, "limit": limit}).mappings().all()
        return [self._job(r) for r in rows]

    def with_status(self, *statuses: str) -> list[Job]:
        marks = ", ".join(f":s{i}" for i in range(len(statuses)))
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY created_at"),
                                {f"s{i}": s for i, s in enumerate(statuses)}).mappings().all()
        return [self._job(r) for r in rows]

    def delete(self, job_id: str) -> None:
        with self._lock, self.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM jobs WHERE id = :id"), {"id": job_id})

    @staticmethod
    def _row(job: Job) -> dict[str, Any]:
        row = asdict(job)
        row["rows_written"] = row.pop("rows")
        for key in _JSON_FIELDS:
            row[key] = json.dumps(row[key])
        return row

    @staticmethod
    def _job(row) -> Job:
        data = dict(row)
        data["rows"] = data.pop("rows_written")
        for key in _JSON_FIELDS:
            data[key] = json.loads(data[key]) if data.get(key) else ([] if key != "options" else {})
        return Job(**data)
