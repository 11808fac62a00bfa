"""PyAV extractor: any container FFmpeg reads (the FFmpeg libraries ship inside the ``av`` wheel)."""

from __future__ import annotations

import numpy as np

from mikupal.extract.base import AudioExtractor
from mikupal.media import MediaInfo, decode_audio, probe


class PyAvExtractor(AudioExtractor):
    """Decode with PyAV; resample to mono with FFmpeg's resampler; trim codec padding (see :mod:`mikupal.media`)."""

    def extract(self, path: str, sampling_rate: int) -> tuple[np.ndarray, MediaInfo]:
        info = probe(path)
        audio, _ = decode_audio(path, sampling_rate)
        return audio, info
