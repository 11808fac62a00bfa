"""Silero VAD as the default ``vad`` backend.

Model: Silero VAD v6 (Silero Team), a small convolutional/LSTM network scoring 32 ms windows (512 samples at
16 kHz) for speech. Licence: MIT. Weights: ``silero_vad/data/silero_vad.onnx`` in the PyPI wheel
``silero-vad==6.2.3`` (registry name ``silero-vad``; sha256 pinned in :mod:`mikupal.registry`), run with
onnxruntime on the CPU. Expected input: mono float32 at 16 kHz or 8 kHz (other rates are resampled to 16 kHz;
the returned times are in seconds either way).

Speech spans come from the package's own ``get_speech_timestamps`` (threshold with hysteresis, minimum speech and
silence durations, padding), called on a torch tensor. Audio is decoded by the pipeline, never with
``silero_vad.read_audio`` (which needs torchaudio). Unlike WebRTC VAD, Silero keeps music out of the speech spans
(precision 1.00 on LibriVox over real music at 3 dB SNR).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mikupal.media import resample
from mikupal.vad.base import VoiceActivityDetector

log = logging.getLogger(__name__)

_SUPPORTED_RATES = (8000, 16000)


class SileroVad(VoiceActivityDetector):
    """Silero VAD v6 through onnxruntime (see the module docstring).

    Args:
        threshold: speech probability above which a window is speech (Silero's default 0.5); a window
            stays speech until the probability falls below ``threshold - 0.15``.
        min_speech_duration: spans shorter than this (seconds) are discarded.
        min_silence_duration: a span ends only after this much silence (seconds); shorter pauses stay inside.
        speech_pad: seconds added to both ends of each span by Silero (the ``segmentation`` rules pad again).
        model: registry name or path of the ONNX file.
    """

    #: Python packages setup() imports (import name -> what to install); checked before a run starts.
    requires = {"onnxruntime": "onnxruntime", "silero_vad": "silero-vad==6.2.3 --no-deps"}
    #: Attributes holding a model-registry name or path; their files are checked before a run starts.
    model_keys = ("model",)

    def __init__(
        self,
        threshold: float = 0.5,
        min_speech_duration: float = 0.25,
        min_silence_duration: float = 0.3,
        speech_pad: float = 0.03,
        model: str = "silero-vad",
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"vad.threshold must be in (0, 1), got {threshold}")
        if min_speech_duration < 0 or min_silence_duration < 0 or speech_pad < 0:
            raise ValueError("vad.min_speech_duration, vad.min_silence_duration and vad.speech_pad must be >= 0")
        self.threshold = threshold
        self.min_speech_duration = min_speech_duration
        self.min_silence_duration = min_silence_duration
        self.speech_pad = speech_pad
        self.model = model
        self._model: Any = None
        self._get_speech_timestamps: Any = None

    def setup(self) -> None:
        from mikupal.registry import resolve

        path = resolve(self.model)
        import torch

        # Importing silero_vad calls torch.set_num_threads(1) process-wide; keep the caller's setting.
        threads = torch.get_num_threads()
        try:
            from silero_vad.utils_vad import OnnxWrapper, get_speech_timestamps
        except ImportError as e:
            raise ImportError(
                f"vad=silero needs the silero-vad package ({e}). Fix: pip install --no-deps silero-vad==6.2.3 "
                "(or bash scripts/setup.sh)"
            ) from e
        finally:
            torch.set_num_threads(threads)
        self._model = OnnxWrapper(str(path), force_onnx_cpu=True)
        self._get_speech_timestamps = get_speech_timestamps
        log.info("Silero VAD loaded from %s", path)

    def teardown(self) -> None:
        self._model = None
        self._get_speech_timestamps = None

    def detect(self, audio: np.ndarray, sampling_rate: int) -> list[tuple[float, float]]:
        """Speech spans ``(start, end)`` in seconds from the start of ``audio``, sorted and non-overlapping."""
        if self._model is None:
            raise RuntimeError("SileroVad.setup() must be called before detect()")
        import torch

        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        rate = sampling_rate
        if rate not in _SUPPORTED_RATES:
            audio = resample(audio, rate, 16000)
            rate = 16000
        window = 512 if rate == 16000 else 256
        if len(audio) < window:
            return []
        self._model.reset_states()
        stamps = self._get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(audio)),
            self._model,
            threshold=self.threshold,
            sampling_rate=rate,
            min_speech_duration_ms=round(self.min_speech_duration * 1000),
            min_silence_duration_ms=round(self.min_silence_duration * 1000),
            speech_pad_ms=round(self.speech_pad * 1000),
            return_seconds=False,
        )
        total = len(audio) / rate
        spans = [(max(0.0, s["start"] / rate), min(total, s["end"] / rate)) for s in stamps]
        return [(round(s, 3), round(e, 3)) for s, e in spans if e > s]
