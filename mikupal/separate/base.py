"""Backend interface of the ``separate`` stage."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Separator(ABC):
    """Takes mono audio and returns the vocals (speech) at the same rate and length."""

    #: ``False`` for a backend that returns its input unchanged (the stage then reuses the file instead of copying).
    modifies_audio: bool = True

    def setup(self) -> None:
        """Load the model (never at import or construction)."""

    def teardown(self) -> None:
        """Free the model."""

    @abstractmethod
    def separate(self, audio: np.ndarray, sampling_rate: int) -> np.ndarray:
        """Return the vocals as mono float32, same length and rate as ``audio``."""
