"""Video: readers and their failure modes, tracking, smoothing, timelines, streaming output, CLI."""

import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pandas as pd
import pytest

from mien.video import synthetic as syn
from mien.video.analyzer import VideoAnalyzer, VideoOptions
from mien.video.reader import DEFAULT_FPS, VideoError, open_video
from mien.video.smoothing import SmoothingOptions


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """2 s, 30 fps, 640x480 mp4 of one drifting face."""
    path = tmp_path_factory.mktemp("video") / "one.mp4"
    return syn.write_video(path, syn.frames(syn.faces_grid(1, side=200), 2.0))


def _tracks(frames, **options):
    """{track id: [(frame index, box centre x, y)]} for generated frames."""
    tracks = {}
    with VideoAnalyzer(VideoOptions(**options)) as video:
        for frame, faces in video.run(frames):
            for box, track_id in zip(faces.boxes, faces.track_ids):
                tracks.setdefault(int(track_id), []).append((frame.index, (box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
    return tracks


def test_reader_reports_info_and_samples(clip):
    with open_video(clip) as reader:
        assert (reader.info.width, reader.info.height, reader.info.fps, reader.info.frame_count) == (640, 480, 30.0, 60)
        assert reader.info.duration_s == pytest.approx(2.0) and not reader.info.fps_assumed
        frames = list(reader)
    assert [f.index for f in frames] == list(range(60)) and frames[0].rgb.shape == (480, 640, 3)
    assert frames[30].time_s == pytest.approx(1.0)
    assert [f.index for f in open_video(clip, every=7)] == list(range(0, 60, 7))
    assert [f.index for f in open_video(clip, fps=5)] == list(range(0, 60, 6))
    assert [f.index for f in open_video(clip, start_s=0.5, end_s=1.0)] == list(range(15, 30))


def test_image_sequence_without_frame_rate(tmp_path, clip):
    for frame in list(open_video(clip, every=10)):
        cv2.imwrite(str(tmp_path / f"f{frame.index:03d}.png"), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
    reader = open_video(tmp_path)
    assert reader.info.kind == "images" and reader.info.fps_assumed and reader.info.fps == DEFAULT_FPS
    assert len(list(reader)) == 6
    reader = open_video(str(tmp_path / "*.png"), input_fps=3)
    assert reader.info.fps == 3 and not reader.info.fps_assumed
    assert [f.time_s for f in reader][-1] == pytest.approx(5 / 3)


def test_raw_stream_without_container_metadata_still_reads(tmp_path, clip):
    raw = tmp_path / "raw.mjpeg"  # concatenated JPEGs: no container, no frame count or rate
    with open(raw, "wb") as handle:
        for frame in open_video(clip, every=4):
            handle.write(cv2.imencode(".jpg", frame.rgb)[1].tobytes())
    reader = open_video(raw)
    assert reader.info.frame_count is None and reader.info.fps > 0
    assert len(list(reader)) == 15


def test_bad_videos_give_one_line_errors_not_hangs(tmp_path, clip):
    writer = cv2.VideoWriter(str(tmp_path / "zero.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 64))
    writer.release()
    (tmp_path / "junk.mp4").write_bytes(os.urandom(4000))
    (tmp_path / "empty.mp4").write_bytes(b"")
    data = clip.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # MPEG-4 index lost with the tail
    cases = {"zero.avi": "no decodable frames", "junk.mp4": "not a readable video", "empty.mp4": "empty file",
             "cut.mp4": "not a readable video", "missing.mp4": "no such file"}
    for name, reason in cases.items():
        with pytest.raises(VideoError, match=reason) as info:
            open_video(tmp_path / name)
        assert name in str(info.value) and "\n" not in str(info.value)
    started = time.monotonic()
    with pytest.raises(VideoError, match="stream cannot be opened"):
        open_video("rtsp://127.0.0.1:9/nothing")
    assert time.monotonic() - started < 15


def test_truncated_avi_keeps_the_frames_before_the_damage(tmp_path, clip):
    avi = syn.write_video(tmp_path / "a.avi", open_video(clip))
    data = avi.read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    reader = open_video(tmp_path / "cut.avi")
    frames = list(reader)
    assert 10 < len(frames) < 60
    assert reader.truncated and reader.warnings and "truncated or damaged" in reader.warnings[0]


def test_track_ids_survive_crossing_paths():
    tracks = _tracks(syn.frames(syn.crossing_scene(4.0), 4.0))
    assert len(tracks) == 2
    for path in tracks.values():
        assert len(path) >= 115  # found in (nearly) every one of 120 frames
        xs = [x for _, x, _ in path]
        ys = [y for _, _, y in path]
        assert abs(xs[-1] - xs[0]) > 350  # one id follows one face all the way across
        assert np.ptp(ys) < 40  # ...and never jumps to the other face's row


def test_track_id_comes_back_after_one_second_away():
    side = 200

    def blinking(t):
        return None if 1.0 <= t < 2.0 else (100 + 20 * t, 120)

    actors = [syn.Actor(syn.face_sprite(side), blinking),
              syn.Actor(syn.face_sprite(side, (1.25, 0.9, 0.7)), lambda t: (400, 150))]
    tracks = _tracks(syn.frames(actors, 3.0))
    assert len(tracks) == 2
    moving = next(path for path in tracks.values() if np.ptp([x for _, x, _ in path]) > 10)
    frames = [f for f, _, _ in moving]
    assert min(frames) < 30 and max(frames) > 60  # the same id before and after the gap
    assert not any(30 <= f < 60 for f in frames)


def test_smoothing_lowers_jitter_on_a_still_face():
    actors = [syn.Actor(syn.face_sprite(220), lambda t: (210, 130))]
    rows = []
    with VideoAnalyzer(VideoOptions(smoothing=SmoothingOptions())) as video:
        for _, faces in video.run(syn.frames(actors, 2.0, noise=8.0)):
            rows.append(faces.to_pandas(smoothed=True))
    table = pd.concat(rows, ignore_index=True).iloc[10:]  # after the filters settle
    assert len(table) >= 45 and (table["track_id"] == 0).all()
    for column in ("pose_yaw", "pose_pitch", "AU12", "expr_happy"):
        assert table[f"{column}_smooth"].std() < 0.7 * table[column].std(), column


def test_streaming_writer_merges_parts_and_keeps_rows(tmp_path):
    from mien.io.writer import TableWriter, parts_dir

    out = tmp_path / "rows.parquet"
    frames = [pd.DataFrame({"frame": np.arange(i * 10, i * 10 + 10), "expression": [None] * 10 if i == 0 else ["happy"] * 10})
              for i in range(5)]
    with TableWriter(out, flush_rows=15) as writer:
        for frame in frames:
            writer.write(frame)
            if writer.rows >= 30:
                assert len(pd.read_parquet(parts_dir(out))) >= 15  # finished rows are on disk mid-run
    back = pd.read_parquet(out)
    assert back["frame"].tolist() == list(range(50)) and back["expression"].iloc[-1] == "happy"
    assert not parts_dir(out).exists()


def _mien(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "mien", *map(str, args)], capture_output=True, text=True, **kwargs)


def test_mien_video_writes_rows_timelines_and_annotated_video(tmp_path):
    video = syn.write_video(tmp_path / "two.mp4", syn.frames(syn.crossing_scene(2.0), 2.0))
    out = tmp_path / "rows.parquet"
    result = _mien("video", video, "-o", out, "--annotate", tmp_path / "annotated.mp4")
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(out)
    assert len(table) == 120 and sorted(table["track_id"].unique()) == [0, 1]
    assert {"expression_smooth", "AU12_smooth", "pose_yaw_smooth", "time_s"} <= set(table.columns)
    assert table.groupby("track_id")["frame"].nunique().tolist() == [60, 60]
    segments = pd.read_csv(tmp_path / "rows.segments.csv")
    tracks = pd.read_csv(tmp_path / "rows.tracks.csv")
    assert set(segments["track_id"]) == {0, 1} and len(tracks) == 2
    assert tracks["frames"].tolist() == [60, 60]
    assert pd.read_csv(tmp_path / "rows.events.csv").columns[0] == "track_id"
    with open_video(tmp_path / "annotated.mp4") as annotated:
        assert annotated.info.frame_count == 60 and (annotated.info.width, annotated.info.height) == (640, 480)
    assert "fps" in result.stdout


def test_mien_video_bad_input_exit_codes(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(os.urandom(3000))
    result = _mien("video", tmp_path / "junk.mp4", "-o", tmp_path / "rows.parquet")
    assert result.returncode == 1 and "junk.mp4: not a readable video" in result.stderr
    assert not (tmp_path / "rows.parquet").exists()
    assert _mien("video", tmp_path / "junk.mp4").returncode == 2  # neither --output nor --annotate


def test_killed_run_leaves_readable_rows(tmp_path):
    video = syn.write_video(tmp_path / "long.mp4", syn.frames(syn.faces_grid(1, side=200), 20.0))
    out = tmp_path / "rows.parquet"
    process = subprocess.Popen([sys.executable, "-m", "mien", "video", str(video), "-o", str(out), "--flush-s", "0.2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = tmp_path / "rows.parquet.parts"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(parts.glob("part-*.parquet"))) < 2:
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = pd.read_parquet(parts)
    assert len(saved) >= 32 and saved["frame"].tolist() == list(range(len(saved)))  # every row up to the last flush


def test_mien_live_records_without_a_window(tmp_path, clip):
    result = _mien("live", clip, "--no-window", "--record", tmp_path / "live.mp4")
    assert result.returncode == 0, result.stderr
    assert "fps" in result.stdout
    with open_video(tmp_path / "live.mp4") as recorded:
        assert recorded.info.frame_count == 60


def test_tracker_matches_by_motion_and_reacquires_by_look():
    from mien.video.tracker import FaceTracker

    tracker = FaceTracker()
    look_a, look_b = np.eye(4)[0], np.eye(4)[1]
    boxes = np.array([[0, 0, 50, 50], [200, 0, 250, 50]], np.float32)
    first = tracker.update(0.0, boxes, np.stack([look_a, look_b]))
    moved = boxes + [[10, 0, 10, 0], [-10, 0, -10, 0]]
    assert tracker.update(0.1, moved[::-1], np.stack([look_b, look_a])).tolist() == first[::-1].tolist()
    ids, predicted = tracker.predict(0.2)
    ahead = predicted[list(ids).index(first[0])]
    assert 10 < ahead[0] <= 20 and ahead[2] - ahead[0] == pytest.approx(50)  # predicted further along its way
    tracker.update(0.2, moved[:1] + [10, 0, 10, 0], look_a[None])  # b is lost
    back = tracker.update(1.5, np.array([[190, 0, 240, 50]], np.float32), look_b[None])
    assert back.tolist() == [first[1]]  # same place, same look, within 2 s: the old id
    stranger = tracker.update(1.6, np.array([[400, 300, 450, 350]], np.float32), look_b[None])
    assert stranger[0] not in first  # far from any lost face: a new id
