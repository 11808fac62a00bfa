"""Backend interface of the ``extract`` stage."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from mikupal.media import MediaInfo


@dataclass(frozen=True)
class Extracted:
    """A decoded audio track and what is known about the file.

    Attributes:
        audio: mono float32 samples at the requested rate, starting at the container start time.
        info: the container's stream properties.
        corrupt_packets: audio packets skipped (or kept incomplete) because they were corrupt.
        decoded_share: share of the declared audio duration that decoded (``None``: no duration declared).
    """

    audio: np.ndarray
    info: MediaInfo
    corrupt_packets: int = 0
    decoded_share: float | None = None


class AudioExtractor(ABC):
    """Decodes a media file's audio track to mono float32 at a given rate and reports its streams."""

    def setup(self) -> None:
        """Nothing to load by default."""

    def teardown(self) -> None:
        """Nothing to free by default."""

    @abstractmethod
    def extract(self, path: str, sampling_rate: int) -> Extracted:
        """Decode ``path``'s first audio stream at ``sampling_rate`` and probe its streams.

        Corrupt packets are skipped and counted (``Extracted.corrupt_packets``), not raised.

        Raises:
            mikupal.media.MediaError: the file is missing, empty, not media, has no audio stream, or too little of
                its audio decodes.
        """
