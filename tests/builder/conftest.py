"""Fixtures of the builder tests: every test gets the isolated, offline Hugging Face cache.

``make_run_dir``, ``face_clip_bytes`` and ``hf_offline_cache`` come from :mod:`mikupal.testing.run_fixtures`.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _hf_offline(hf_offline_cache: Path) -> Path:
    """Turn :func:`mikupal.testing.run_fixtures.hf_offline_cache` on for every builder test."""
    return hf_offline_cache
