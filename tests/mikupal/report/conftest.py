"""Fixtures for the report tests: run directories, real pipeline output, the builder's fixtures, a browser."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from report_testkit import TESTS, ReportRun, fast_pipeline, write_report_run

# The builder tests' fixtures: the isolated, offline Hugging Face cache (not autouse here), make_run_dir and the
# face clip it writes.
_spec = importlib.util.spec_from_file_location("builder_tests_conftest", TESTS / "builder" / "conftest.py")
_builder_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_builder_conftest)
hf_offline_cache = pytest.fixture(_builder_conftest.hf_offline_cache.__wrapped__)
make_run_dir = _builder_conftest.make_run_dir
face_clip_bytes = _builder_conftest.face_clip_bytes


@pytest.fixture(scope="session")
def rich_run(tmp_path_factory) -> ReportRun:
    return write_report_run(tmp_path_factory.mktemp("runs") / "rich")


@pytest.fixture
def chromium():
    """A headless system-Chromium page (Playwright); skipped only where no Chromium is installed."""
    from mikupal.report.browser import chromium_page, find_chromium

    if find_chromium() is None:
        pytest.skip("system Chromium not installed: apt-get install chromium (scripts/setup.sh installs it)")
    with chromium_page() as page:
        yield page


@pytest.fixture(scope="session")
def pipeline_run(speech_video, tmp_path_factory) -> tuple[Path, dict]:
    """A real (fast) pipeline run over the LibriVox face video: extract, passthrough, energy VAD, filter."""
    video, _ = speech_video
    run = tmp_path_factory.mktemp("pipeline") / "run"
    return run, fast_pipeline(video, run)
