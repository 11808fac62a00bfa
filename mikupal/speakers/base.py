"""Backend interface of the ``speakers`` stage: audio in, a speaker embedding out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


class EmbeddingSkipped(Exception):
    """The audio cannot be embedded (``reason``: ``too_short``, ``silent``); the stage counts it, nothing fails."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


@dataclass
class Embedding:
    """A speaker embedding of one utterance.

    Attributes:
        vector: L2-normalised utterance embedding, shape ``(dim,)``.
        partials: L2-normalised embeddings of the fixed-length windows the utterance was cut into, shape
            ``(n, dim)``; ``vector`` is their normalised mean. Used to count the voices inside the utterance.
        speech_seconds: seconds of audio that were embedded (after the backend's silence trimming, if any).
    """

    vector: np.ndarray
    partials: np.ndarray
    speech_seconds: float


class SpeakerEmbedder(ABC):
    """Turns mono utterance audio into a speaker embedding (cosine similarity compares two)."""

    #: Length of one embedding window (seconds); shorter speech is below what the model was trained on.
    window_seconds: float = 1.6

    def setup(self) -> None:
        """Load the model (never at import or construction)."""

    def teardown(self) -> None:
        """Free the model."""

    @abstractmethod
    def embed(self, audio: np.ndarray, sampling_rate: int) -> Embedding:
        """Embed one utterance.

        Raises:
            EmbeddingSkipped: the audio is silent or holds less speech than the backend's minimum.
        """


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``x`` divided by its L2 norm along ``axis`` (zero vectors stay zero)."""
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)
