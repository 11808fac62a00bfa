"""No separation: the extracted audio is used as it is (clean sources, or when speed matters most)."""

from __future__ import annotations

import numpy as np

from mikupal.separate.base import Separator


class PassthroughSeparator(Separator):
    """Returns its input; the stage then points at the extracted file instead of writing a copy."""

    modifies_audio = False

    def separate(self, audio: np.ndarray, sampling_rate: int) -> np.ndarray:
        return audio
