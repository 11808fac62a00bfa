"""Backend interface of the ``extract`` stage."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from mikupal.media import MediaInfo


class AudioExtractor(ABC):
    """Decodes a media file's audio track to mono float32 at a given rate and reports its streams."""

    def setup(self) -> None:
        """Nothing to load by default."""

    def teardown(self) -> None:
        """Nothing to free by default."""

    @abstractmethod
    def extract(self, path: str, sampling_rate: int) -> tuple[np.ndarray, MediaInfo]:
        """Return ``(audio, info)``: mono float32 samples at ``sampling_rate`` starting at the container start time,
        and the container's stream properties.

        Raises:
            mikupal.media.MediaError: the file is missing, empty, truncated, not media, or has no audio stream.
        """
