"""The worked examples of ``CONTRIBUTING.md`` run as written.

The guide claims that a backend is one module plus one config file (no existing file changes) and that a stage is
new files plus three edits of existing ones. These tests take the files and diffs from the guide itself, apply them
to a copy of ``mikupal/`` and ``conf/`` in a temporary folder, and run the CLI on real speech there, so the guide
and the claims fail here when the code moves on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "CONTRIBUTING.md"

#: A fenced block right after a line naming a file (`path` on its own, or "1. `path`, ...").
_BLOCK = re.compile(r"^(?:\d+\.\s+)?`(?P<path>[\w/.]+\.\w+)`[^\n]*\n(?:(?!```)[^\n]*\n)*?```(?P<lang>\w+)\n(?P<body>.*?)^```",
                    re.M | re.S)


def guide_section(title: str) -> str:
    """The text of the ``## title`` section of the guide."""
    text = GUIDE.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def guide_blocks(section: str) -> list[tuple[str, str, str]]:
    """``(path, language, body)`` of every fenced block the section introduces with its file's path."""
    return [(m["path"], m["lang"], m["body"]) for m in _BLOCK.finditer(section)]


def apply_guide_diff(path: Path, diff: str) -> None:
    """Apply a guide diff to ``path``: hunks separated by `` ...`` lines; context and ``-`` lines must appear once."""
    text = path.read_text()
    for hunk in re.split(r"^ \.\.\.\n", diff, flags=re.M):
        old, new = [], []
        for line in hunk.splitlines():
            tag, rest = line[:1], line[1:]
            if tag in (" ", "-"):
                old.append(rest)
            if tag in (" ", "+"):
                new.append(rest)
        before, after = "\n".join(old) + "\n", "\n".join(new) + "\n"
        assert text.count(before) == 1, f"{path.name}: the guide's context is not found once:\n{before}"
        text = text.replace(before, after)
    path.write_text(text)


def project_copy(tmp_path: Path) -> Path:
    """A copy of the package and its configs in which the guide's edits are made."""
    root = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "mikupal", root / "mikupal", ignore=ignore)
    shutil.copytree(REPO / "conf", root / "conf", ignore=ignore)
    return root


def tree_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run_cli(root: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``mikupal`` with the copy's package and configs (a fresh process, as a user runs it)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("MIKUPAL_CONF_DIR", None)
    code = "from mikupal.cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", code, *overrides], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def two_voices(tmp_path_factory, librivox) -> tuple[Path, list[tuple[float, float]]]:
    """Two real LibriVox utterances, the second 20 dB quieter, with silences around them (16 kHz WAV), and where
    they are (seconds)."""
    import soundfile as sf

    from mikupal.testing.media import concat_with_silences

    audio, intervals = concat_with_silences([librivox[0].audio, librivox[1].audio * 0.1], gap=1.5)
    path = tmp_path_factory.mktemp("contributing") / "two.wav"
    sf.write(path, audio, 16000)
    return path, intervals


def utterances(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "utterances.jsonl").read_text().splitlines() if line.strip()]


def test_guide_blocks_are_found():
    """The parser sees every file the two worked examples name (a reworded guide fails here, not silently)."""
    backend = [p for p, _, _ in guide_blocks(guide_section("Add a backend"))]
    stage = [p for p, _, _ in guide_blocks(guide_section("Add a stage"))]
    assert backend[:2] == ["mikupal/vad/threshold.py", "conf/vad/threshold.yaml"]
    assert {"mikupal/loudness/stage.py", "conf/loudness/_stage.yaml", "mikupal/rundir.py", "conf/pipeline.yaml",
            "mikupal/records.py"} <= set(stage)


def test_new_backend_is_a_module_and_a_config_file(tmp_path, two_voices):
    """``vad=threshold`` from the guide: two new files, no existing file edited, and the pipeline runs with it."""
    root = project_copy(tmp_path)
    before = tree_files(root)
    blocks = [(p, lang, body) for p, lang, body in guide_blocks(guide_section("Add a backend")) if lang != "diff"]
    written = {p for p, lang, body in blocks[:2]}
    for path, _, body in blocks[:2]:
        assert not (root / path).exists(), f"{path} already exists: the guide's example must add a new file"
        (root / path).write_text(body)
    after = tree_files(root)
    assert set(after) - set(before) == written
    assert all(after[p] == before[p] for p in before)

    wav, voices = two_voices
    run_dir = tmp_path / "run"
    run_cli(root, f"input={wav}", f"run_dir={run_dir}", "separate=passthrough", "vad=threshold",
            "vad.threshold_dbfs=-60", "stages=[extract,separate,vad]")
    utts = utterances(run_dir)
    for start, end in voices:  # each real voice is found, with no utterance in the silences
        assert any(u["start"] < end and u["end"] > start for u in utts), (start, end, utts)
    assert all(any(u["start"] < e and u["end"] > s for s, e in voices) for u in utts)


def test_new_stage_is_new_files_and_three_edits(tmp_path, two_voices):
    """The ``loudness`` stage from the guide: its new files, its three diffs, and a run that fills and filters."""
    root = project_copy(tmp_path)
    for path, _, body in guide_blocks(guide_section("Add a backend"))[:2]:  # the example run uses vad=threshold
        (root / path).write_text(body)
    edited = set()
    for path, lang, body in guide_blocks(guide_section("Add a stage")):
        target = root / path
        if lang == "diff":
            apply_guide_diff(target, body)
            edited.add(path)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            assert not target.exists(), f"{path} already exists: the guide's example must add a new file"
            target.write_text(body)
    assert edited == {"mikupal/rundir.py", "conf/pipeline.yaml", "mikupal/records.py"}

    stages = "stages=[extract,separate,vad,loudness]"
    common = [f"input={two_voices[0]}", "separate=passthrough", "vad=threshold", "vad.threshold_dbfs=-60", stages]
    keep_all = tmp_path / "all"
    run_cli(root, f"run_dir={keep_all}", *common)
    levels = [u["loudness"] for u in utterances(keep_all)]
    assert len(levels) >= 2 and all(isinstance(v, float) for v in levels)
    assert max(levels) - min(levels) > 10  # the second voice is 20 dB quieter

    threshold = float(np.mean([max(levels), min(levels)]))
    quiet_dropped = tmp_path / "loud_only"
    run_cli(root, f"run_dir={quiet_dropped}", *common, f"loudness.min_dbfs={threshold}")
    kept = utterances(quiet_dropped)
    assert 0 < len(kept) < len(levels)
    assert all(u["loudness"] >= threshold for u in kept)
    summary = json.loads((quiet_dropped / "summary.json").read_text())
    assert "loudness.too_quiet" in json.dumps(summary)
