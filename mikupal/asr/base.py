"""Backend interface of the ``asr`` stage."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mikupal.records import Word


@dataclass(frozen=True)
class Transcript:
    """What a transcriber returns for one utterance.

    Attributes:
        text: the transcript ("" when nothing was recognised).
        language: ISO 639-1 code (detected, or the configured one).
        words: recognised words with times in seconds *from the start of the utterance audio*.
        language_probability: the detector's confidence, when it has one.
    """

    text: str
    language: str | None
    words: list[Word]
    language_probability: float | None = None


class Transcriber(ABC):
    """Speech recognition with word timestamps."""

    #: How many consecutive utterances of one video the ``asr`` stage hands to :meth:`transcribe_many` at once
    #: (1: one at a time through :meth:`transcribe`). Groups are fixed by utterance index, so resuming a run
    #: hands the backend the same groups.
    group_size: int = 1

    def setup(self) -> None:
        """Load the model (never at import or construction)."""

    def teardown(self) -> None:
        """Free the model."""

    @abstractmethod
    def transcribe(self, audio: np.ndarray, sampling_rate: int) -> Transcript:
        """Transcribe one utterance (mono float32)."""

    def transcribe_many(self, audios: Sequence[np.ndarray], sampling_rate: int) -> list[Transcript]:
        """Transcribe consecutive utterances of one recording (one transcript each, in order).

        The default transcribes them one by one; a backend may share work between them (e.g. faster-whisper
        packs short utterances into one 30 s window).
        """
        return [self.transcribe(audio, sampling_rate) for audio in audios]
