"""Backend interface of the ``vad`` stage."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class VoiceActivityDetector(ABC):
    """Finds speech in mono audio."""

    def setup(self) -> None:
        """Load the model (never at import or construction)."""

    def teardown(self) -> None:
        """Free the model."""

    @abstractmethod
    def detect(self, audio: np.ndarray, sampling_rate: int) -> list[tuple[float, float]]:
        """Return sorted, non-overlapping speech spans ``(start, end)`` in seconds from the start of ``audio``."""
