"""Fixtures for the annotate tests: small real media files, seeded run directories, a fake API key."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf

from mikupal.records import Utterance
from mikupal.testing.annotate import KEY_ENV, SECRET, SR, make_utterances
from mikupal.testing.rundirs import seed_run_dir
from mikupal.testing.servers import write_clip


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(KEY_ENV, SECRET)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A face clip with audio (``clip.mp4``, 1 s, 64×64) and a 1 s FLAC (``speech.flac``)."""
    root = tmp_path_factory.mktemp("media")
    write_clip(root / "clip.mp4", seconds=1.0)
    t = np.arange(SR) / SR
    sf.write(root / "speech.flac", (0.2 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), SR, subtype="PCM_16")
    return root


@pytest.fixture
def seeded_run(tmp_path: Path, media_dir: Path) -> Callable[..., tuple[Path, Path, list[Utterance]]]:
    """Factory: a run directory ready for ``stages=[extract, vad, asr, annotate]`` with the given transcripts."""

    def make(texts: list[str], faces: list[bool] | None = None) -> tuple[Path, Path, list[Utterance]]:
        source = tmp_path / "video.mp4"
        source.write_bytes((media_dir / "clip.mp4").read_bytes())
        run_dir = tmp_path / "run"
        utterances = make_utterances(run_dir, source, media_dir, texts, faces)
        seed_run_dir(run_dir, source, utterances)
        return run_dir, source, utterances

    return make
