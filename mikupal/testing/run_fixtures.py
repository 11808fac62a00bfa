"""Fixtures of the builder and report tests (a pytest plugin, see ``tests/conftest.py``): an isolated, offline
Hugging Face cache and synthetic run directories written through :mod:`mikupal.testing.records`.

``hf_offline_cache`` is not autouse here: ``tests/builder/conftest.py`` turns it on for every builder test, the
report tests ask for it by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from mikupal.testing.records import LABELS, RunDir, make_utterance, write_audio, write_stage_json


@pytest.fixture
def hf_offline_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Give every test its own HF_HOME / HF_DATASETS_CACHE and force offline mode.

    ``datasets`` reads these variables once at import, so the module-level values are patched as well.
    """
    import datasets.config

    home = tmp_path_factory.mktemp("hf_home")
    cache = home / "datasets"
    for name, value in {
        "HF_HOME": home,
        "HF_DATASETS_CACHE": cache,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setattr(datasets.config, "HF_CACHE_HOME", str(home))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", cache / "downloads")
    monkeypatch.setattr(datasets.config, "EXTRACTED_DATASETS_PATH", cache / "downloads" / "extracted")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    datasets.disable_progress_bars()
    return home


@pytest.fixture(scope="session")
def face_clip_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small face-crop clip (mp4 with an audio track, like the asd stage's ``faces/<id>.mp4``)."""
    from mikupal.testing.servers import write_clip

    return write_clip(tmp_path_factory.mktemp("clip") / "face.mp4", seconds=0.4, fps=10, size=64).read_bytes()


@pytest.fixture
def make_run_dir(tmp_path: Path, face_clip_bytes: bytes) -> Callable[..., RunDir]:
    """Factory: ``make_run_dir(name, videos=4, per_video=3, ...)`` writes a run directory under tmp_path.

    Keyword arguments: ``videos`` (count or list of video ids), ``per_video``, ``seconds`` (a float, or a function
    of the running utterance number), ``label`` (a label or a function of the running number), ``asd_score``,
    ``annotator``, ``prompt_version``, ``confidence`` (a value or a function of the running number), ``extras``
    (a function of the running number and the utterance giving fields to add to its line, e.g. ``speaker`` and
    ``quality``). Utterances with a face get their face clip.
    """

    def factory(
        name: str = "run",
        *,
        videos: int | list[str] = 4,
        per_video: int = 3,
        seconds: float | Callable[[int], float] = 1.5,
        label: str | None | Callable[[int], str | None] = lambda n: LABELS[n % len(LABELS)],
        asd_score: float | None = 0.9,
        annotator: str = "fusion-v1",
        prompt_version: str | None = "v1",
        stage_json: bool = True,
        extras: Callable[[int, Any], dict] | None = None,
        confidence: float | None | Callable[[int], float | None] = None,
    ) -> RunDir:
        run = RunDir(tmp_path / name, face_clip=face_clip_bytes)
        run.path.mkdir(parents=True, exist_ok=True)
        run.manifest.touch()
        video_ids = videos if isinstance(videos, list) else [f"{name}-video{v}-{v:08x}" for v in range(videos)]
        n = 0
        for v, video in enumerate(video_ids):
            for i in range(per_video):
                secs = seconds(n) if callable(seconds) else seconds
                lab = label(n) if callable(label) else label
                utt = make_utterance(
                    video, i, label=lab, seconds=secs, asd_score=asd_score, annotator=annotator,
                    prompt_version=prompt_version, confidence=confidence(n) if callable(confidence) else confidence,
                )
                write_audio(run.path / utt.audio, secs, freq=200.0 + 40 * (n % 10), seed=n)
                run.append(utt, **(extras(n, utt) if extras is not None else {}))
                n += 1
        if stage_json:
            write_stage_json(run.path, "asr", {"asr": {"_target_": "mikupal.asr.faster_whisper.FasterWhisper",
                                                        "model": "base"}})
            write_stage_json(run.path, "annotate", {"annotator": {"_target_": "mikupal.annotate.fusion.Fusion",
                                                                   "model": annotator}, "labels": "emobench26"})
        return run

    return factory
