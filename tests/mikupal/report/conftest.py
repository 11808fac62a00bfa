"""Fixtures for the report tests: run directories, real pipeline output, a browser.

The builder tests' fixtures (``hf_offline_cache``, ``make_run_dir``, ``face_clip_bytes``) come from
:mod:`mikupal.testing.run_fixtures`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mikupal.testing.report import ReportRun, fast_pipeline, write_report_run


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
