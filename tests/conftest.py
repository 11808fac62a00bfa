"""Shared fixtures: real test media (built at test time) and isolated caches.

Test support lives in :mod:`mikupal.testing`; its fixture modules are loaded here as pytest plugins, so every test
folder sees them without ``sys.path`` edits. Folder-specific fixtures stay in that folder's ``conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "mikupal.testing.real_media",  # real_media: real clips fetched from PyPI wheels
    "mikupal.testing.audio_fixtures",  # speech, music and voices; loaded audio backends
    "mikupal.testing.vision_fixtures",  # carphone, two_speaker, speech_data
    "mikupal.testing.run_fixtures",  # hf_offline_cache, make_run_dir, face_clip_bytes
    "mikupal.testing.paper",  # models_dir, no_network
    "mikupal.testing.paper_models",  # s3fd_ckpt, talknet_ckpt, tiny_omni
]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    """No test reaches a hub; Hugging Face caches live in a per-session temp folder."""
    hf = tmp_path_factory.getbasetemp() / "hf_home"
    monkeypatch.setenv("HF_HOME", str(hf))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(hf / "datasets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def librivox():
    from mikupal.testing.media import TestDataMissing, librivox_clips

    try:
        return librivox_clips()
    except TestDataMissing as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def speech_video(tmp_path_factory, librivox) -> tuple[Path, list[tuple[float, float]]]:
    """An MP4 (still real face photo, AAC audio) of the five LibriVox clips separated by 1.5 s silences.

    Returns the path and the true speech intervals (seconds).
    """
    from mikupal.testing.media import concat_with_silences, face_photo, write_video

    audio, intervals = concat_with_silences([c.audio for c in librivox], gap=1.5)
    photo = face_photo()[::2, ::2]  # 256x256
    path = tmp_path_factory.mktemp("media") / "librivox_face.mp4"
    write_video(path, audio, 16000, lambda i, t: photo, duration=len(audio) / 16000, fps=10)
    return path, intervals
