"""Helpers of the annotate tests: constants, utterance records with media, composed configs, overrides.

API tests talk to the stub servers of :mod:`mikupal.testing.servers` on 127.0.0.1 (no network); retry delays are
set to milliseconds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mikupal.ids import utterance_id, video_id
from mikupal.records import Face, Utterance, Word
from mikupal.testing.records import make_utterance

SR = 16000
SECRET = "sk-TEST-SECRET-5f3a9c"  # a fake API key; tests check it never leaks
KEY_ENV = "MIKUPAL_TEST_GEMINI_KEY"

#: retry settings for tests: milliseconds, no jitter
FAST_RETRY = {"max_attempts": 3, "initial_delay": 0.001, "max_delay": 0.01, "multiplier": 2.0, "jitter": 0.0,
              "max_server_delay": 1.0}


def make_utterances(run_dir: Path, source: Path, media_dir: Path, texts: list[str],
                    faces: list[bool] | None = None) -> list[Utterance]:
    """Utterances of one video with their media copied into ``run_dir`` (``audio/<id>.flac``, ``faces/<id>.mp4``)."""
    vid = video_id(source)
    faces = faces if faces is not None else [True] * len(texts)
    out = []
    for i, (text, has_face) in enumerate(zip(texts, faces)):
        uid = utterance_id(vid, i)
        audio = run_dir / "audio" / f"{uid}.flac"
        audio.parent.mkdir(parents=True, exist_ok=True)
        audio.write_bytes((media_dir / "speech.flac").read_bytes())
        face = None
        if has_face:
            clip = run_dir / "faces" / f"{uid}.mp4"
            clip.parent.mkdir(parents=True, exist_ok=True)
            clip.write_bytes((media_dir / "clip.mp4").read_bytes())
            face = Face(track_id=0, box=[0.0, 0.0, 64.0, 64.0], asd_score=0.9, clip=f"faces/{uid}.mp4")
        words = [Word(word=w, start=2.0 * i + 0.1 * j, end=2.0 * i + 0.1 * j + 0.08, score=0.9)
                 for j, w in enumerate(text.split())]
        out.append(make_utterance(vid, i, start=2.0 * i, end=2.0 * i + 1.0, source=str(source), text=text,
                                  words=words, face=face, emotion=None))
    return out


def compose(overrides: list[str]) -> Any:
    """The pipeline config composed with Hydra, as the CLI would (``overrides`` as on the command line)."""
    from hydra.core.global_hydra import GlobalHydra

    from mikupal.testing.config import compose_pipeline

    GlobalHydra.instance().clear()
    return compose_pipeline(*overrides)


def stub_overrides(run_dir: Path, source: Path, base_url: str, extra: list[str] | None = None) -> list[str]:
    """Overrides running the annotate stage with Gemini against a stub (fast retries, meld7)."""
    retry = ",".join(f"{k}:{v}" for k, v in FAST_RETRY.items())
    return [
        f"input={source}",
        f"run_dir={run_dir}",
        "stages=[extract,vad,asr,annotate]",
        "annotator=gemini",
        "labels=meld7",
        f"annotator.base_url={base_url}",
        f"annotator.api_key_env={KEY_ENV}",
        f"annotator.retry={{{retry}}}",
        "annotator.timeout=5",
        "fail_fast=false",
        *(extra or []),
    ]


def all_text_under(root: Path) -> str:
    """Every file under ``root`` read as text (binary files decoded leniently)."""
    chunks = []
    for path in root.rglob("*"):
        if path.is_file():
            chunks.append(path.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(chunks)


def env_secret() -> str:
    return os.environ[KEY_ENV]
