"""Typed, frozen options: validated on construction, built by one function for every entry point."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

import mien
from mien.batch import BatchOptions
from mien.cli import app
from mien.options import (AnalyzerOptions, OptionsError, TrackerOptions, VideoOptions, analyzer_options,
                          video_options)


@pytest.mark.parametrize("settings, message", [
    ({"mode": "quick"}, "mode must be one of 'fast', 'thorough', 'auto', 'crops', not 'quick'"),
    ({"min_score": 1.5}, "min_score must be between 0.0 and 1.0, not 1.5"),
    ({"max_faces": 0}, "max_faces must be at least 1, not 0"),
    ({"prior": "uniform"}, "expression_prior must be one of 'natural', 'balanced', 'ferplus', 'rafdb', not 'uniform'"),
    ({"min_face_size": 2.5}, "min_face_size must be an integer, not 2.5"),
    ({"attributes": "yes"}, "attributes must be True or False, not 'yes'"),
])
def test_bad_values_are_refused_with_a_message_naming_them(settings, message):
    with pytest.raises(OptionsError) as caught:
        analyzer_options(**settings)
    assert str(caught.value) == message


def test_options_are_frozen_and_derived_values_computed():
    options = analyzer_options(mode="fast", min_score=0.7, max_faces=3, prior="balanced")
    assert options.expression_prior == "balanced"
    assert (options.detector.mode, options.detector.min_score, options.detector.max_faces) == ("fast", 0.7, 3)
    assert "detector" not in {f.name for f in dataclasses.fields(options)}  # derived, not stored
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.mode = "thorough"  # type: ignore[misc]
    with pytest.raises(TypeError, match="unknown option 'colour'"):
        analyzer_options(colour=True)


def test_video_and_batch_options_use_the_same_builder():
    video = video_options(detect_every=5, smooth=False, mode="fast", prior="balanced")
    assert isinstance(video, VideoOptions) and video.smoothing is None and video.detect_every == 5
    assert video.analyzer == analyzer_options(mode="fast", prior="balanced")
    with pytest.raises(OptionsError, match="detect_every must be at least 1"):
        video_options(detect_every=0)
    with pytest.raises(OptionsError, match="min_iou"):
        TrackerOptions(min_iou=-0.1)
    batch = BatchOptions(mode="thorough", prior="balanced", attributes=True)
    assert batch.analyzer_options() == analyzer_options(mode="thorough", prior="balanced", attributes=True)
    assert batch.video_options().analyzer == batch.analyzer_options()
    with pytest.raises(OptionsError, match="landmarks must be one of"):
        BatchOptions(landmarks="all")
    assert mien.AnalyzerOptions is AnalyzerOptions


def test_the_cli_reports_a_bad_value_as_a_usage_error_naming_the_flag(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["analyze", str(tmp_path), "--min-score", "2"])
    assert result.exit_code == 2 and "--min-score" in result.output and "between 0.0 and 1.0" in result.output
    result = runner.invoke(app, ["batch", str(tmp_path), "-o", str(tmp_path / "out"), "--prior", "odd"])
    assert result.exit_code == 2 and "--prior" in result.output
    assert not (tmp_path / "out").exists()  # refused before any work
