"""The ``mikupal`` command composes its config once per plain run (issue 15: no repeated Hydra composition)."""

from __future__ import annotations

import sys

import pytest


def test_plain_run_composes_the_config_once(tmp_path, monkeypatch):
    """``@hydra.main`` composes twice (once only to read ``hydra.mode``); the CLI's plain-run path once, and it
    still writes Hydra's ``.hydra/`` files and exits 2 with the config error."""
    from hydra._internal.hydra import Hydra

    from mikupal import cli

    calls = []
    compose = Hydra.compose_config
    monkeypatch.setattr(Hydra, "compose_config", lambda self, *a, **k: calls.append(1) or compose(self, *a, **k))
    run_dir = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["mikupal", f"input={tmp_path / 'missing.wav'}", f"run_dir={run_dir}"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2  # input does not exist: ConfigError
    assert len(calls) == 1
    saved = list(run_dir.glob("logs/*/.hydra/overrides.yaml"))
    assert len(saved) == 1 and "missing.wav" in saved[0].read_text()
