"""Fixtures of the audio tests (separate, vad, asr, speakers, quality; a pytest plugin, see ``tests/conftest.py``):
real speech, music and voices built at test time, and loaded backends.

Media come from Debian ``pocketsphinx-testdata`` (LibriVox read speech + transcripts), ``asterisk-moh-opsound-wav``
(real music) and the voice packages of :mod:`mikupal.testing.voices` (voices of known identity); tests that need
them skip with the install command when they are absent.
Model weights come from the registry (``bash scripts/setup.sh`` installs and assembles them); a missing model is a
test error with the registry's fix message, not a skip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mikupal.testing import loaded, or_skip

SNR_DB = 3.0
#: Each clip gets music from a different place in the track (seconds), as in benchmarks/measure_audio_quality.py.
MUSIC_OFFSETS = (5.0, 35.0, 65.0, 95.0, 125.0)


@pytest.fixture(scope="session")
def compose_cfg():
    """The ``mikupal`` config composed as the CLI would (``mikupal.testing.config.compose_pipeline``)."""
    from mikupal.testing.config import compose_pipeline

    return compose_pipeline


@pytest.fixture(scope="session")
def speech_set():
    """The five LibriVox clips joined with 1.5 s silences, with the true speech intervals and references."""
    from mikupal.testing.audio_eval import librivox_test_set

    return or_skip(librivox_test_set, "needs Debian pocketsphinx-testdata")


@pytest.fixture(scope="session")
def music_audio() -> np.ndarray:
    """Real music (Debian asterisk-moh-opsound-wav), 16 kHz."""
    from mikupal.testing.audio_eval import music_track

    return or_skip(music_track, "needs Debian asterisk-moh-opsound-wav")


@pytest.fixture(scope="session")
def noisy_clips(speech_set, music_audio) -> list[np.ndarray]:
    """Each LibriVox clip with real music mixed in at 3 dB SNR."""
    from mikupal.testing.audio_eval import mix_music

    return [mix_music(c.audio, music_audio, SNR_DB, offset=o) for c, o in zip(speech_set.clips, MUSIC_OFFSETS)]


@pytest.fixture(scope="session")
def noisy_concat(speech_set, music_audio) -> np.ndarray:
    """The joined clips with music at 3 dB SNR (speech power measured over the true speech intervals)."""
    from mikupal.testing.audio_eval import mix_music

    return mix_music(speech_set.audio, music_audio, SNR_DB, intervals=speech_set.speech_intervals)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """An empty session folder for media the audio tests write (the annotate tests' conftest has its own)."""
    return tmp_path_factory.mktemp("audio_media")


@pytest.fixture(scope="session")
def rnnoise():
    from mikupal.separate.rnnoise import RnnoiseSeparator

    yield from loaded(RnnoiseSeparator())


@pytest.fixture(scope="session")
def whisper():
    """faster-whisper exactly as ``conf/asr/faster_whisper.yaml`` configures it (language detection on), CPU."""
    from hydra.utils import instantiate

    from mikupal.testing.config import compose_pipeline

    cfg = compose_pipeline("input=x", "run_dir=x", "asr=faster_whisper", "runner.device=cpu")
    yield from loaded(instantiate(cfg.asr))


@pytest.fixture(scope="session")
def voices():
    """Real voices of known identity (Debian voice packages)."""
    from mikupal.testing.voices import known_voices

    return or_skip(known_voices, "needs the Debian voice packages")


@pytest.fixture(scope="session")
def resemblyzer():
    from mikupal.speakers.resemblyzer import ResemblyzerEmbedder

    yield from loaded(ResemblyzerEmbedder())


@pytest.fixture(scope="session")
def dnsmos():
    from mikupal.quality.dnsmos import DnsmosScorer

    yield from loaded(DnsmosScorer())
