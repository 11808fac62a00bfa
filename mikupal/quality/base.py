"""Backend interface of the ``quality`` stage."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from mikupal.records import Quality


class QualityScorer(ABC):
    """Predicts the speech quality of mono audio without a clean reference."""

    def setup(self) -> None:
        """Load the model (never at import or construction)."""

    def teardown(self) -> None:
        """Free the model."""

    @abstractmethod
    def score(self, audio: np.ndarray, sampling_rate: int) -> Quality:
        """Scores of one utterance (``audio`` is mono float32; the stage has already rejected unscorable input)."""
