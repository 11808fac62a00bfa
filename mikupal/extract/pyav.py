"""PyAV extractor: any container FFmpeg reads (the FFmpeg libraries ship inside the ``av`` wheel)."""

from __future__ import annotations

from mikupal.extract.base import AudioExtractor, Extracted
from mikupal.media import decode_audio_report, probe


class PyAvExtractor(AudioExtractor):
    """Decode with PyAV; resample to mono with FFmpeg's resampler; trim codec padding (see :mod:`mikupal.media`).

    Corrupt or incomplete packets are skipped and counted, as ``ffmpeg`` does; a file fails only when less than
    ``min_decoded_share`` of its declared audio duration decodes.
    """

    def __init__(self, min_decoded_share: float = 0.5) -> None:
        if not 0.0 <= float(min_decoded_share) <= 1.0:
            raise ValueError(f"extract.min_decoded_share must be in [0, 1], got {min_decoded_share}")
        self.min_decoded_share = float(min_decoded_share)

    def extract(self, path: str, sampling_rate: int) -> Extracted:
        info = probe(path)
        decoded = decode_audio_report(path, sampling_rate, self.min_decoded_share)
        return Extracted(decoded.audio, info, decoded.corrupt_packets, decoded.decoded_share)
