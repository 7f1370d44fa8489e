"""`mien batch`: tasks, partitions and manifest; a real local Ray cluster; resuming after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pandas as pd
import pytest

from mien.batch import read_results, run_batch
from mien.batch.manifest import Manifest
from mien.video import synthetic

KEY = ["source", "frame", "face_id"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, astronaut):
    """4 photos (one corrupt) in a folder, a 4 s video of two faces crossing, a 2 s video of one face."""
    root = tmp_path_factory.mktemp("batch-in")
    photos = root / "photos"
    photos.mkdir()
    for k in range(3):
        shifted = np.ascontiguousarray(np.roll(astronaut, 30 * k, axis=1))
        cv2.imwrite(str(photos / f"p{k}.jpg"), cv2.cvtColor(shifted, cv2.COLOR_RGB2BGR))
    (photos / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff this is not a JPEG")
    synthetic.write_video(root / "cross.mp4", synthetic.frames(synthetic.crossing_scene(4.0), 4.0))
    synthetic.write_video(root / "one.mp4", synthetic.frames(synthetic.faces_grid(1, side=160), 2.0))
    return root


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(KEY).reset_index(drop=True)


@pytest.fixture(scope="module")
def single(inputs, tmp_path_factory):
    """The reference: every task in this one process."""
    out = tmp_path_factory.mktemp("batch-single")
    summary = run_batch([inputs], out, workers=1, shard_size=2, chunk_s=1.5, progress=False)
    return out, summary


def test_single_process_run(single, inputs):
    out, summary = single
    assert summary.planned == 7 and summary.done == 7 and summary.failed == 0  # 2 shards + 3 + 2 chunks
    assert summary.errors == [f"{inputs / 'photos' / 'zz_broken.jpg'}: not a recognised image format"]
    table = read_results(out)
    assert len(table) == summary.rows == 3 + 2 * 120 + 60
    assert not table.duplicated(KEY).any()
    assert sorted(os.listdir(out / "parts")) == sorted(f"{e['task_id']}.parquet" for e in Manifest(out).done())


def test_ray_cluster_matches_single_process(single, inputs, tmp_path):
    pytest.importorskip("ray")
    import ray

    out = tmp_path / "ray"
    try:
        summary = run_batch([inputs], out, workers=2, ray="local", shard_size=2, chunk_s=1.5, progress=False)
    finally:
        ray.shutdown()
    assert summary.workers == 2 and summary.done == 7 and summary.failed == 0
    workers = {e["worker"] for e in Manifest(out).entries.values()}
    assert len(workers) == 2  # both actors worked
    assert os.getpid() not in {int(w.split(":")[1]) for w in workers}
    pd.testing.assert_frame_equal(_sorted(read_results(single[0])), _sorted(read_results(out)))


def test_video_chunks_join_into_whole_tracks(single, inputs, tmp_path):
    """Per-chunk track ids are joined across chunk borders: same people as an unchunked run."""
    whole = tmp_path / "whole"
    run_batch([inputs / "cross.mp4"], whole, workers=1, chunk_s=None, progress=False)
    chunked = read_results(single[0])
    chunked = chunked[chunked["source"] == str(inputs / "cross.mp4")]
    assert chunked["chunk"].nunique() == 3 and set(chunked["track_id"]) == {0, 1}
    reference = read_results(whole)
    reference["whole_id"] = reference["track_id"]
    # Faces of a frame may be listed in another order: pair them by box position.
    chunked = chunked.assign(cx=chunked["box_x"] + chunked["box_w"] / 2).sort_values(["frame", "cx"])
    reference = reference.assign(cx=reference["box_x"] + reference["box_w"] / 2).sort_values(["frame", "cx"])
    assert chunked["frame"].tolist() == reference["frame"].tolist()
    assert np.abs(chunked["cx"].to_numpy() - reference["cx"].to_numpy()).max() < 5
    joined = chunked.assign(whole_id=reference["whole_id"].to_numpy())
    pairs = joined.groupby("video_track_id")["whole_id"].nunique()
    assert len(pairs) == 2 and (pairs == 1).all()  # each joined id is one whole-video track


def test_resume_after_sigkill(single, inputs, tmp_path):
    """Kill the driver mid-run; the same command finishes the rest with no lost or repeated rows."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "mien", "batch", str(inputs), "-o", str(out), "--shard-size", "2", "--chunk-s", "1.5"]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = len(Manifest(out).entries) if (out / "manifest.jsonl").exists() else 0
        if done >= 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(Manifest(out).entries)
    assert 3 <= finished < 7, "the run should be killed mid-way"
    # A crash while appending leaves a cut line; it must be ignored and that task redone.
    with open(out / "manifest.jsonl", "a") as f:
        f.write('{"task_id": "img-')
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1  # the corrupt photo is still reported
    assert "zz_broken.jpg" in result.stderr
    assert f"{finished} already done" in result.stdout.replace("\n", " ")
    assert not list((out / "parts").glob(".tmp/*"))
    resumed = _sorted(read_results(out))
    assert not resumed.duplicated(KEY).any()
    pd.testing.assert_frame_equal(_sorted(read_results(single[0])), resumed)


def test_changed_input_is_redone_and_retries(inputs, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("p0.jpg", "p1.jpg"):
        (folder / name).write_bytes((inputs / "photos" / name).read_bytes())
    out = tmp_path / "out"
    first = run_batch([folder], out, workers=1, shard_size=1, progress=False)
    assert (first.done, first.skipped) == (2, 0)
    (folder / "p1.jpg").write_bytes((inputs / "photos" / "p2.jpg").read_bytes())  # same name, new content
    from mien.batch.worker import BatchWorker

    real_run, calls = BatchWorker.run, []

    def flaky(self, task, out_dir):  # the first attempt hits a transient failure
        calls.append(task.task_id)
        if len(calls) == 1:
            raise OSError("network file system hiccup")
        return real_run(self, task, out_dir)

    monkeypatch.setattr(BatchWorker, "run", flaky)
    second = run_batch([folder], out, workers=1, shard_size=1, progress=False)
    assert (second.done, second.skipped, second.retries, second.failed) == (1, 1, 1, 0)
    assert len(read_results(out)) == 2


def test_query_command(single):
    from typer.testing import CliRunner

    from mien.cli import app

    out, summary = single
    result = CliRunner().invoke(app, ["query", str(out), "SELECT count(*) AS n, count(DISTINCT video_track_id) "
                                                         "FILTER (WHERE video_track_id >= 0) AS people FROM faces",
                                      "-o", str(out.parent / "q.json")])
    assert result.exit_code == 0, result.output
    (row,) = json.loads((out.parent / "q.json").read_text())
    assert row == {"n": summary.rows, "people": 3}
    bad = CliRunner().invoke(app, ["query", str(out), "SELECT nope FROM faces"])
    assert bad.exit_code == 2 and "query failed" in bad.output


def test_unreachable_ray_cluster_is_one_clear_line(inputs, tmp_path):
    from typer.testing import CliRunner

    from mien.cli import app

    result = CliRunner().invoke(app, ["batch", str(inputs / "one.mp4"), "-o", str(tmp_path / "out"), "--ray", "auto"],
                                env={"RAY_ADDRESS": ""})
    assert result.exit_code == 2
    assert "cannot start or reach the Ray cluster (auto)" in result.output
    assert not list((tmp_path / "out" / "parts").glob("*.parquet"))


def test_rerun_after_adding_a_file_or_resharding_never_duplicates(inputs, tmp_path):
    """Exactly once per dataset: new files are added, other shard/chunk sizes redo nothing, a removed file leaves."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("p0.jpg", "p1.jpg"):
        (folder / name).write_bytes((inputs / "photos" / name).read_bytes())
    video = inputs / "one.mp4"
    out = tmp_path / "out"
    first = run_batch([folder, video], out, workers=1, shard_size=2, chunk_s=1.0, progress=False)
    assert (first.done, first.skipped) == (3, 0)  # one shard + two chunks
    (folder / "p2.jpg").write_bytes((inputs / "photos" / "p2.jpg").read_bytes())
    second = run_batch([folder, video], out, workers=1, shard_size=5, chunk_s=0.7, progress=False)
    assert (second.done, second.skipped) == (1, 3)  # only the new photo; old shard and chunks kept
    table = read_results(out)
    assert len(table) == 3 + 60 and not table.duplicated(KEY).any()
    assert sorted(table.loc[table["source"].str.endswith(".jpg"), "source"].map(lambda s: s[-6:])) == \
        ["p0.jpg", "p1.jpg", "p2.jpg"]
    (folder / "p0.jpg").unlink()
    third = run_batch([folder, video], out, workers=1, shard_size=1, chunk_s=None, progress=False)
    assert third.done == 0
    table = read_results(out)
    assert len(table) == 2 + 60 and not table["source"].str.endswith("p0.jpg").any()
    from mien.batch import query

    assert query(out, "SELECT count(*) AS n FROM faces")["n"].tolist() == [62]


def test_rerun_with_other_options_is_refused(inputs, tmp_path):
    from typer.testing import CliRunner

    from mien.cli import app
    from mien.io.writer import read_provenance

    out = tmp_path / "out"
    run_batch([inputs / "photos" / "p0.jpg"], out, workers=1, progress=False)
    result = CliRunner().invoke(app, ["batch", str(inputs / "photos" / "p0.jpg"), "-o", str(out), "--mode", "fast",
                                      "--workers", "1"])
    assert result.exit_code == 2
    said = result.output.replace("\n", " ")
    assert "other options or models (analyzer.mode: auto -> fast" in said
    assert "face_detector_centerface" in said  # fast mode never runs CenterFace: the model list changes too
    part = next((out / "parts").glob("*.parquet"))
    record = read_provenance(part)
    assert record["options"]["analyzer"]["mode"] == "auto" and record["models"]["expression"]["sha256"]
    assert record["inputs"][0]["source"].endswith("p0.jpg") and len(record["inputs"][0]["sha256"]) == 64


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_batch_joins_a_ray_start_cluster_with_token_auth(inputs, tmp_path):
    """The path a cluster user takes: `ray start --head` (token authentication, Ray >= 2.59), then
    `mien batch --ray auto` with RAY_ADDRESS. Loopback only: the head is bound to 127.0.0.1."""
    pytest.importorskip("ray")
    import shutil
    import tempfile

    ray_bin = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")
    if ray_bin is None:
        pytest.skip("the `ray` command is not installed")
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="mray", dir="/tmp")  # Ray's socket paths must stay short
    token = tmp_path / "auth_token"
    token.write_text(os.urandom(32).hex())
    # Ray maps 127.0.0.1 to the machine's outward address unless told it is a single-machine cluster.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_TOKEN_PATH=str(token))
    head = subprocess.run([ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                           "--temp-dir", temp, "--num-cpus", "2", "--include-dashboard", "false",
                           "--disable-usage-stats"], env={**env, "RAY_AUTH_MODE": "token"},
                          capture_output=True, text=True, timeout=180)
    try:
        assert head.returncode == 0, head.stderr[-2000:]
        address = f"127.0.0.1:{port}"
        probe = subprocess.run([sys.executable, "-c", "import ray; ray.init(address='" + address + "', "
                                "log_to_driver=False, configure_logging=False); "
                                "print(sorted({n['NodeManagerAddress'] for n in ray.nodes()}))"],
                               env={**env, "RAY_AUTH_MODE": "token"}, capture_output=True, text=True, timeout=120)
        if probe.returncode != 0 or probe.stdout.strip().splitlines()[-1:] != ["['127.0.0.1']"]:
            pytest.skip(f"the Ray head does not report 127.0.0.1 ({probe.stdout.strip()[-200:]}); "
                        "tests send traffic to loopback only")
        photos = tmp_path / "photos"
        photos.mkdir()
        for name in ("p0.jpg", "p1.jpg"):
            (photos / name).write_bytes((inputs / "photos" / name).read_bytes())
        out = tmp_path / "out"
        result = subprocess.run([sys.executable, "-m", "mien", "batch", str(photos), "-o", str(out), "--ray", "auto",
                                 "--workers", "2", "--shard-size", "1"],
                                env={**env, "RAY_ADDRESS": address}, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
        assert "2 done" in result.stdout and len(read_results(out)) == 2
        workers = {e["worker"] for e in Manifest(out).entries.values()}
        assert all(int(w.split(":")[1]) != os.getpid() for w in workers)
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def test_crops_mode_reads_the_photos_and_names_each_video_it_cannot_read(inputs, astronaut, tmp_path):
    from mien.batch import BatchOptions

    chips = tmp_path / "chips"
    chips.mkdir()
    for k, (w, h) in enumerate([(50, 60), (90, 100)]):  # the astronaut's head, cropped tight, as a dataset's chips
        chip = cv2.resize(astronaut[40:220, 130:280], (w, h), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(chips / f"c{k}.png"), cv2.cvtColor(chip, cv2.COLOR_RGB2BGR))
    summary = run_batch([chips, inputs / "one.mp4"], tmp_path / "out", BatchOptions(mode="crops"), workers=1,
                        progress=False)
    assert summary.errors == [f"{inputs / 'one.mp4'}: mode 'crops' reads images of one cropped face each; "
                              "a video needs another mode"]
    table = read_results(tmp_path / "out")
    assert len(table) == summary.rows == 2 and table.expression.eq("happy").all()  # one row per chip, no video rows
