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


def test_stage_chain_check_imports_only_the_stages_that_run():
    """Checking ``stages=[extract,separate,vad,asr]`` does not import the vision and annotation stages (their
    imports are start-up cost of every audio-only run); a broken chain still names the stages that fix it."""
    import subprocess

    code = (
        "import sys\n"
        "from mikupal.checks import check_chain\n"
        "check_chain(['extract', 'separate', 'vad', 'asr'])\n"
        "print(sorted(m for m in sys.modules if m.startswith(('mikupal.faces', 'mikupal.asd', 'mikupal.annotate'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    from mikupal.checks import check_chain
    from mikupal.runner import ConfigError

    with pytest.raises(ConfigError, match="add vad between them"):
        check_chain(["extract", "asr"])
