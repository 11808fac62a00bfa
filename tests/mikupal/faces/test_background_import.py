"""The faces stage imports the slow scipy modules of the tracker (and of the asd stage after it) in a thread."""

from __future__ import annotations

import sys

from mikupal.faces.stage import _asd_follows, import_in_background
from mikupal.testing.config import compose_pipeline


def test_modules_are_imported_in_a_thread_and_a_missing_one_is_left_to_its_user(monkeypatch):
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    thread = import_in_background(["no_such_module_for_mikupal", "colorsys"])
    thread.join(timeout=30)
    assert not thread.is_alive() and thread.daemon
    assert "colorsys" in sys.modules  # the failed import before it did not stop it
    assert "no_such_module_for_mikupal" not in sys.modules


def test_scipy_signal_is_preloaded_only_when_the_asd_stage_runs():
    assert _asd_follows(compose_pipeline("input=x.mp4"))  # stages: null, all of them
    assert _asd_follows(compose_pipeline("input=x.mp4", "stages=[faces,asd]"))
    assert not _asd_follows(compose_pipeline("input=x.mp4", "stages=[faces]"))
