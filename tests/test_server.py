"""`mien serve`: the REST API and webcam WebSocket of a real server process, over HTTP (httpx)."""

from __future__ import annotations

import io
import json
import sqlite3

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mien.expression.classes import EXPRESSIONS
from mien.server.store import JobStore
from server_helpers import jpeg_bytes, running_server, wait_for_job as _wait




def _count_jobs(data) -> int:
    with sqlite3.connect(data / "mien.db") as db:
        return db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]


def test_health_and_openapi(server):
    url, _ = server
    assert httpx.get(url + "/api/health").json()["status"] == "ok"
    paths = httpx.get(url + "/openapi.json").json()["paths"]
    for path in ("/api/images", "/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/results"):
        assert path in paths


def test_analyse_image_now(server, photo):
    url, data = server
    response = httpx.post(url + "/api/images", files={"file": ("astronaut.jpg", photo, "image/jpeg")}, timeout=60)
    assert response.status_code == 200
    result = response.json()
    assert result["job"] is None and result["width"] == 512
    (row,) = result["rows"]
    assert row["face_found"] and row["expression"] == "happy" and row["expression_confidence"] > 0.8
    assert "AU12" in row["rationale"] and "mouth" in row["rationale"]
    annotated = Image.open(io.BytesIO(_decode(result["annotated"])))
    assert annotated.size == (512, 512)
    assert result["heatmap"].startswith("data:image/jpeg;base64,")
    assert result["provenance"]["options"]["expression_prior"] == "natural"
    assert result["provenance"]["models"]["expression"]["sha256"]
    assert not any((data / "uploads").iterdir())  # the upload is gone


def test_stored_image_results_download(server, photo):
    url, data = server
    with httpx.Client(base_url=url, timeout=60) as client:
        result = client.post("/api/images?store=true&explain=false",
                             files={"file": ("../../etc/+evil name.jpg", photo, "image/jpeg")}).json()
        job = client.get(f"/api/jobs/{result['job']}").json()
        assert job["status"] == "done" and job["rows"] == 1
        assert job["inputs"][0]["name"] == "+evil name.jpg"  # display only; stored under mien's own name
        csv = pd.read_csv(io.BytesIO(client.get(f"/api/jobs/{job['id']}/results?format=csv").content))
        assert csv.loc[0, "source"] == "'+evil name.jpg"  # a spreadsheet would run "+..." as a formula
        download = client.get(f"/api/jobs/{job['id']}/results?format=parquet").content
        parquet = pd.read_parquet(io.BytesIO(download))
        import pyarrow.parquet as pq

        record = json.loads(pq.read_schema(io.BytesIO(download)).metadata[b"mien"])
        assert record["kind"] == "images" and record["options"]["mode"] == "auto"
        records = client.get(f"/api/jobs/{job['id']}/results?format=json").json()
        assert len(csv) == len(parquet) == len(records) == 1
        assert parquet.loc[0, "expression"] == records[0]["expression"] == "happy"
        picture = client.get(f"/api/jobs/{job['id']}/files/annotated_0000.jpg")
        assert picture.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(picture.content)).size == (512, 512)
        assert client.get(f"/api/jobs/{job['id']}/files/..%2Fmien.db").status_code == 404
        assert client.get(f"/api/jobs/{job['id']}/files/mien.db").status_code == 404
        assert client.get("/api/jobs/..%2F..%2Fetc/results").status_code == 404
        assert any(j["id"] == job["id"] for j in client.get("/api/jobs").json())
        assert client.delete(f"/api/jobs/{job['id']}").json() == {"deleted": job["id"]}
        assert client.get(f"/api/jobs/{job['id']}").status_code == 404
        assert not (data / "results" / job["id"]).exists()


def test_bad_uploads_are_refused_and_nothing_is_stored(server, photo):
    url, data = server
    before = _count_jobs(data)
    noise = np.random.default_rng(0).integers(0, 255, (900, 900, 3), np.uint8)
    big = io.BytesIO()
    Image.fromarray(noise).save(big, "PNG")
    assert len(big.getvalue()) > 1 << 20
    cases = {
        "notes.jpg": (b"just some text, named like a photo", 415),
        "cut.jpg": (photo[: len(photo) // 3], 422),
        "empty.png": (b"", 400),
        "huge.png": (big.getvalue(), 413),
        "fake.mp4": (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4000, 422),
    }
    with httpx.Client(base_url=url, timeout=60) as client:
        for name, (content, status) in cases.items():
            one = client.post("/api/images?store=true", files={"file": (name, content)})
            job = client.post("/api/jobs", files=[("files", (name, content))])
            expected_one = 415 if name == "fake.mp4" else status  # the image endpoint takes images only
            assert one.status_code == expected_one, (name, one.text)
            assert job.status_code == status, (name, job.text)
            assert name in job.json()["error"]
        mixed = client.post("/api/jobs", files=[("files", ("ok.jpg", photo)), ("files", ("bad.jpg", b"nope"))])
        assert mixed.status_code == 415
    assert _count_jobs(data) == before
    assert not any((data / "uploads").iterdir())


def test_image_batch_job(server, photo, astronaut):
    url, _ = server
    flipped = jpeg_bytes(np.ascontiguousarray(astronaut[:, ::-1]))
    with httpx.Client(base_url=url, timeout=60) as client:
        submitted = client.post("/api/jobs", files=[("files", ("a.jpg", photo)), ("files", ("b.jpg", flipped))],
                                data={"explain": "true"})
        assert submitted.status_code == 202 and submitted.json()["status"] == "queued"
        job = _wait(client, submitted.json()["id"])
        assert job["status"] == "done" and job["rows"] == 2 and job["progress"] == 1.0
        assert {"annotated_0000.jpg", "annotated_0001.jpg", "heatmap_0001.jpg"} <= set(job["files"])
        rows = client.get(f"/api/jobs/{job['id']}/results?format=json").json()
        assert sorted(r["source"] for r in rows) == ["a.jpg", "b.jpg"]


def test_video_job_with_timeline(server, tmp_path):
    from mien.video import synthetic

    video = synthetic.write_video(tmp_path / "two.mp4", synthetic.frames(synthetic.faces_grid(2, side=160), 2.0))
    url, _ = server
    with httpx.Client(base_url=url, timeout=60) as client:
        submitted = client.post("/api/jobs", files=[("files", ("clip.mp4", video.read_bytes()))])
        assert submitted.status_code == 202, submitted.text
        assert submitted.json()["inputs"][0]["video"]["frames"] == 60
        job = _wait(client, submitted.json()["id"])
        assert job["status"] == "done" and job["kind"] == "video"
        table = pd.read_parquet(io.BytesIO(client.get(f"/api/jobs/{job['id']}/results?format=parquet").content))
        assert len(table) == 120 and set(table["track_id"]) == {0, 1}
        timeline = client.get(f"/api/jobs/{job['id']}/timeline").json()
        assert {s["track_id"] for s in timeline["segments"]} == {0, 1} and len(timeline["tracks"]) == 2
        curves = timeline["curves"]
        assert set(curves) == {"0", "1"} and len(curves["0"]["time_s"]) == 60
        assert all(-1 <= v <= 1 for v in curves["1"]["valence"]) and curves["0"]["valence"][-1] > 0.5  # smiling


def test_video_job_calibrates_each_track_from_its_rest_window(server, tmp_path, photo):
    from mien.video import synthetic

    video = synthetic.write_video(tmp_path / "two.mp4", synthetic.frames(synthetic.faces_grid(2, side=160), 2.0))
    url, _ = server
    with httpx.Client(base_url=url, timeout=60) as client:
        bad = client.post("/api/jobs", files=[("files", ("clip.mp4", video.read_bytes()))], data={"calibrate": "5-2"})
        assert bad.status_code == 400 and "5-2" in bad.json()["error"]
        photos = client.post("/api/jobs", files=[("files", ("a.jpg", photo))], data={"calibrate": "auto"})
        assert photos.status_code == 400 and "video" in photos.json()["error"]
        listed = client.post("/api/jobs", files=[("files", ("clip.mp4", video.read_bytes()))],
                             data={"reference": "person,file,neutral\nA,clip.mp4,1\n"})
        assert listed.status_code == 400 and "job of photos" in listed.json()["error"]
        submitted = client.post("/api/jobs", files=[("files", ("clip.mp4", video.read_bytes()))],
                                data={"calibrate": "0-1s"})
        assert submitted.status_code == 202, submitted.text
        job = _wait(client, submitted.json()["id"])
        assert job["status"] == "done", job
        table = pd.read_parquet(io.BytesIO(client.get(f"/api/jobs/{job['id']}/results?format=parquet").content))
        assert {"expression_cal", "expression_status_cal", "AU12_cal", "person"} <= set(table.columns)
        assert set(table["person"]) == {"track 0", "track 1"} and table["expression_cal"].notna().all()


def test_photo_job_calibrates_each_person_from_their_neutral_photo(server, photo):
    """The REST twin of `mien calibrate --reference`: a KDEF person whose rest reads sad, their half-profile
    neutral as the rest; bad reference lists are refused before any work, in one line; a person whose neutral
    upload shows no face is named among the job's errors and the others are calibrated."""
    from conftest import needs_dataset

    kdef = needs_dataset("kdef")
    uploads = {"rest.jpg": kdef / "HL" / "neutral" / "AF02NEHL.jpg", "calm.jpg": kdef / "S" / "neutral" / "AF02NES.jpg",
               "smile.jpg": kdef / "S" / "happy" / "AF02HAS.jpg"}
    files = [("files", (name, path.read_bytes())) for name, path in uploads.items()]
    files.append(("files", ("blank.jpg", jpeg_bytes(np.full((200, 320, 3), 128, np.uint8)))))
    reference = "person,file,neutral\nF02,rest.jpg,1\nF02,calm.jpg,0\nF02,smile.jpg,0\nnobody,blank.jpg,1\n"
    url, _ = server
    with httpx.Client(base_url=url, timeout=60) as client:
        for text, words in (("person,file\nF02,rest.jpg\n", "missing neutral"),
                            ("person,file,neutral\nF02,other.jpg,1\n", "other.jpg is not one of the uploaded"),
                            ("person,file,neutral\nF02,rest.jpg,0\n", "no neutral photo marked")):
            refused = client.post("/api/jobs", files=files, data={"reference": text})
            assert refused.status_code == 400 and words in refused.json()["error"], refused.text
        submitted = client.post("/api/jobs", files=files, data={"reference": reference})
        assert submitted.status_code == 202, submitted.text
        job = _wait(client, submitted.json()["id"])
        assert job["status"] == "done", job
        assert job["errors"] == ["reference: nobody: no face found in the neutral photo blank.jpg; their rows are not "
                                 "calibrated"]
        table = pd.read_parquet(io.BytesIO(client.get(f"/api/jobs/{job['id']}/results?format=parquet").content))
    read = dict(zip(table.source, zip(table.expression, table.expression_cal)))
    assert read["calm.jpg"] == ("sad", "neutral") and read["smile.jpg"][1] == "happy"
    assert list(table["person"]) == ["F02"] * 3 + ["nobody"]


def test_video_over_the_length_limit(server, tmp_path):
    from mien.video import synthetic

    video = synthetic.write_video(tmp_path / "long.mp4", synthetic.frames(synthetic.faces_grid(1, side=60),
                                                                          25.0, size=(64, 64)))
    url, data = server
    response = httpx.post(url + "/api/jobs", files=[("files", ("long.mp4", video.read_bytes()))], timeout=60)
    assert response.status_code == 422 and "limit is 20 s" in response.json()["error"]


def test_webcam_websocket(server, astronaut):
    from websockets.sync.client import connect

    url, _ = server
    frame = jpeg_bytes(astronaut)
    with connect(url.replace("http", "ws") + "/api/live") as socket:
        replies = []
        for _ in range(4):
            socket.send(frame)
            replies.append(json.loads(socket.recv(timeout=30)))
        socket.send(b"not an image")
        assert "error" in json.loads(socket.recv(timeout=30))
    assert all(len(r["faces"]) == 1 for r in replies)
    assert {r["faces"][0]["track_id"] for r in replies} == {0}
    assert replies[-1]["faces"][0]["expression"] == "happy"


def test_webcam_calibration_takes_the_next_seconds_as_each_face_s_rest(server):
    """A KDEF person whose rest reads sad (F12's half-left view): after
    `{"calibrate": 1}` and a second of their neutral face, the same face reads neutral calibrated (sad
    uncalibrated) and their smile stays happy; a bad request is refused."""
    from websockets.sync.client import connect

    from conftest import needs_dataset

    kdef = needs_dataset("kdef") / "HL"
    neutral, happy = (jpeg_bytes(np.asarray(Image.open(kdef / folder / f"AF12{code}HL.jpg").convert("RGB")))
                      for folder, code in (("neutral", "NE"), ("happy", "HA")))
    url, _ = server
    with connect(url.replace("http", "ws") + "/api/live") as socket:
        socket.send(neutral)
        before = json.loads(socket.recv(timeout=30))
        assert before["faces"][0]["expression"] == "sad" and "expression_cal" not in before["faces"][0]
        socket.send(json.dumps({"calibrate": 1}))  # no reply of its own
        states = []
        while not states or states[-1] != "calibrated":
            socket.send(neutral)
            reply = json.loads(socket.recv(timeout=30))
            states.append(reply["calibration"]["state"])
            assert len(states) < 200
        assert states[0] == "collecting" and reply["calibration"]["tracks"] == [reply["faces"][0]["track_id"]]
        # A still photo's reading jitters from frame to frame with the tracked mesh (sad 0.50-0.67 here), so the
        # verdict is the frames' majority.
        faces = []
        for _ in range(7):
            socket.send(neutral)
            faces.append(json.loads(socket.recv(timeout=30))["faces"][0])
        assert sum(f["expression"] == "sad" for f in faces) >= 5, [f["expression"] for f in faces]
        assert sum(f["expression_cal"] == "neutral" for f in faces) >= 5, [f["expression_cal"] for f in faces]
        face = faces[-1]
        assert abs(sum(face[f"expr_{c}_cal"] for c in EXPRESSIONS) - 1) < 1e-4 and face["AU04_cal"] is not None
        socket.send(happy)
        assert json.loads(socket.recv(timeout=30))["faces"][0]["expression_cal"] == "happy"
        socket.send(json.dumps({"calibrate": 600}))
        refused = json.loads(socket.recv(timeout=30))
        assert refused["status"] == 1003 and "calibrate" in refused["error"]


@pytest.mark.slow
def test_webcam_session_outlives_the_body_timeout(server, astronaut):
    """A webcam session streams past the 30 s stalled-body timeout of the HTTP protocol (it used to be cut at
    30.1 s: h11 still thought the upgraded request's body was coming), with a quiet stretch in the middle."""
    import time

    from websockets.sync.client import connect

    from mien.server.timeouts import BODY_TIMEOUT_S

    url, _ = server
    frame = jpeg_bytes(astronaut[::2, ::2].copy())
    started = time.monotonic()
    replies = 0
    with connect(url.replace("http", "ws") + "/api/live") as socket:
        while time.monotonic() - started < BODY_TIMEOUT_S + 12:
            socket.send(frame)
            assert json.loads(socket.recv(timeout=30))["faces"]
            replies += 1
            time.sleep(4.0 if replies == 3 else 1.0)  # one idle stretch too
    assert time.monotonic() - started > BODY_TIMEOUT_S + 10 and replies >= 10


def test_websocket_refuses_foreign_host_and_origin(server, astronaut):
    """The webcam socket applies the Host and Origin checks HTTP requests get: 403 before accepting."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    import socket as sockets
    from urllib.parse import urlsplit

    url, _ = server
    ws_url = url.replace("http", "ws") + "/api/live"
    port = urlsplit(url).port
    # A page elsewhere whose name resolves to this machine (DNS rebinding): Host and Origin are its own.
    for name, origin in (("evil.example", "http://evil.example"), ("127.0.0.1", "http://evil.example"),
                         ("127.0.0.1", "null")):
        with pytest.raises(InvalidStatus) as refused:
            with connect(f"ws://{name}:{port}/api/live", sock=sockets.create_connection(("127.0.0.1", port)),
                         additional_headers={"Origin": origin}):
                pass
        assert refused.value.response.status_code == 403, (name, origin)
    with connect(ws_url, additional_headers={"Origin": url}) as socket:  # the page itself
        socket.send(jpeg_bytes(astronaut))
        assert json.loads(socket.recv(timeout=30))["faces"]


def test_api_key_and_rate_limit(tmp_path, photo):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with running_server(tmp_path / "data", "--api-key", "s3cret", "--rate-limit", "5") as url:
        assert httpx.get(url + "/api/health").json()["auth"] is True
        assert httpx.get(url + "/api/jobs").status_code == 401
        assert httpx.get(url + "/api/jobs", headers={"X-API-Key": "wrong"}).status_code == 401
        assert httpx.get(url + "/api/jobs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        codes = [httpx.get(url + "/api/jobs", headers={"X-API-Key": "s3cret"}).status_code for _ in range(6)]
        assert codes[:4] == [200] * 4 and codes[-1] == 429
        limited = httpx.get(url + "/api/jobs", headers={"X-API-Key": "s3cret"})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        with pytest.raises(InvalidStatus, match="403"):  # refused at the handshake
            connect(url.replace("http", "ws") + "/api/live?key=wrong")
        with connect(url.replace("http", "ws") + "/api/live?key=s3cret") as socket:
            socket.send(photo)
            assert len(json.loads(socket.recv(timeout=30))["faces"]) == 1


def test_refuses_public_bind_without_key(tmp_path):
    from typer.testing import CliRunner

    from mien.cli import app

    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)],
                                env={"MIEN_API_KEY": ""})
    assert result.exit_code == 2 and "API key" in result.output


def test_store_migrates_an_old_database(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # a version-1 database, as the first release wrote it
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (1)")
        db.execute("CREATE TABLE jobs (id VARCHAR(32) PRIMARY KEY, kind VARCHAR(16) NOT NULL, status VARCHAR(16) "
                   "NOT NULL, created_at FLOAT NOT NULL, updated_at FLOAT NOT NULL, progress FLOAT NOT NULL DEFAULT 0,"
                   " message TEXT, inputs TEXT, files TEXT, rows_written INTEGER NOT NULL DEFAULT 0, error TEXT, "
                   "owner VARCHAR(64))")
        db.execute("INSERT INTO jobs VALUES ('ab', 'image', 'done', 1.0, 2.0, 1.0, 'finished', '[]', "
                   "'[\"rows.parquet\"]', 3, NULL, NULL)")
    store = JobStore(f"sqlite:///{path}")
    assert store.version_before == 1
    job = store.get("ab")
    assert job.files == ["rows.parquet"] and job.rows == 3 and job.errors == [] and job.options == {}
    store.update("ab", errors=["x.jpg: corrupt"])
    assert store.get("ab").errors == ["x.jpg: corrupt"]
    assert JobStore(f"sqlite:///{path}").version_before == 2
    store.close()


def _decode(uri: str) -> bytes:
    import base64

    return base64.b64decode(uri.split(",", 1)[1])


def test_bounded_load(tmp_path):
    """The committed load test in a small form: 4 concurrent clients x 5 requests, no errors."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "load.py"
    out = tmp_path / "load.json"
    subprocess.run([sys.executable, str(script), "--clients", "4", "--requests", "5", "--workers", "1",
                    "--json", str(out)], check=True, timeout=300)
    (run,) = json.loads(out.read_text())["runs"]
    assert run["total"] == 20 and run["errors"] == 0
    assert run["p95_ms"] < 5000


def test_blurred_outputs_and_retained_uploads(tmp_path, photo, analyzer):
    """--blur-faces: the annotated image no longer shows a face the detector can find;
    --retain-uploads keeps the upload of a stored job (by default it is deleted)."""
    data = tmp_path / "data"
    with running_server(data, "--blur-faces", "--retain-uploads") as url:
        result = httpx.post(url + "/api/images?store=true", files={"file": ("a.jpg", photo)}, timeout=60).json()
        assert result["rows"][0]["expression"] == "happy"  # measured on the real image
        annotated = np.asarray(Image.open(io.BytesIO(_decode(result["annotated"]))).convert("RGB"))
        assert len(analyzer.analyze(annotated)) == 0
        assert (data / "uploads" / result["job"] / "input_0000.jpg").exists()


def test_jobs_left_by_a_stopped_server_run_on_restart(tmp_path, photo):
    """A job that was queued (or running) when the server went down is run when it starts again."""
    data = tmp_path / "data"
    job_id = "0123456789abcdef0123456789abcdef"
    folder = data / "uploads" / job_id
    folder.mkdir(parents=True)
    (folder / "input_0000.jpg").write_bytes(photo)
    store = JobStore(f"sqlite:///{data / 'mien.db'}")
    from mien.server.store import Job

    store.add(Job(id=job_id, kind="images", status="running", progress=0.4,
                  inputs=[{"name": "a.jpg", "stored": "input_0000.jpg", "type": "image", "size": len(photo)}]))
    store.close()
    with running_server(data) as url, httpx.Client(base_url=url, timeout=60) as client:
        job = _wait(client, job_id)
        assert job["status"] == "done" and job["rows"] == 1
    assert not folder.exists()  # the upload went once processed
