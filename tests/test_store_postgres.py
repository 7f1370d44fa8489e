"""The job store on a real PostgreSQL server (the team option of `mien serve`).

Starts a throw-away cluster with the PostgreSQL binaries found on this machine (Debian package
`postgresql`) and needs `psycopg`; skips when either is missing.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import pytest

from server_helpers import free_port

BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def _as_postgres_user(cmd: list[str], **kwargs):
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=True, capture_output=True, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory):
    pytest.importorskip("psycopg")
    if not BIN or (os.geteuid() == 0 and shutil.which("runuser") is None):
        pytest.skip("PostgreSQL server binaries not installed (Debian package postgresql)")
    folder = tmp_path_factory.mktemp("pg")
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        os.chmod(folder, 0o755)
        for parent in folder.parents:  # the postgres user must be able to reach the folder
            if str(parent).startswith(str(tmp_path_factory.getbasetemp().parent)):
                os.chmod(parent, os.stat(parent).st_mode | 0o011)
    port = free_port()
    _as_postgres_user([f"{BIN[-1]}/initdb", "-D", str(data), "-U", "mien", "--auth=trust"])
    _as_postgres_user([f"{BIN[-1]}/pg_ctl", "-D", str(data), "-w", "-l", str(folder / "log"), "-o",
                       f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"])
    try:
        _as_postgres_user([f"{BIN[-1]}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "mien", "jobs"])
        yield f"postgresql+psycopg://mien@127.0.0.1:{port}/jobs"
    finally:
        _as_postgres_user([f"{BIN[-1]}/pg_ctl", "-D", str(data), "-m", "fast", "stop"])


def test_job_store_on_postgres(postgres_url):
    from mien.server.store import SCHEMA_VERSION, Job, JobStore, new_job_id

    store = JobStore(postgres_url)
    assert store.version_before == 0
    job = store.add(Job(id=new_job_id(), kind="images", inputs=[{"name": "a.jpg", "stored": "input_0000.jpg"}]))
    store.update(job.id, status="done", rows=4, files=["rows.parquet"], errors=["b.jpg: corrupt"], progress=1.0)
    again = JobStore(postgres_url)  # a second server process opening the same database
    assert again.version_before == SCHEMA_VERSION
    loaded = again.get(job.id)
    assert (loaded.status, loaded.rows, loaded.files, loaded.errors) == ("done", 4, ["rows.parquet"], ["b.jpg: corrupt"])
    assert [j.id for j in again.recent()] == [job.id]
    assert again.with_status("queued") == []
    again.delete(job.id)
    assert store.get(job.id) is None
    store.close()
    again.close()


def test_server_on_postgres(postgres_url, tmp_path, astronaut):
    import httpx

    from server_helpers import jpeg_bytes, running_server

    with running_server(tmp_path / "data", "--database-url", postgres_url) as url:
        result = httpx.post(url + "/api/images?store=true", files={"file": ("a.jpg", jpeg_bytes(astronaut))},
                            timeout=60).json()
        job = httpx.get(f"{url}/api/jobs/{result['job']}").json()
        assert job["status"] == "done" and job["rows"] == 1
    assert not (tmp_path / "data" / "mien.db").exists()
