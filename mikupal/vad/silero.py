"""Silero VAD as the default ``vad`` backend.

Model: Silero VAD v6 (Silero Team), a small convolutional/LSTM network scoring 32 ms windows (512 samples at
16 kHz) for speech. Licence: MIT. Weights: ``silero_vad/data/silero_vad.onnx`` in the PyPI wheel
``silero-vad==6.2.3`` (registry name ``silero-vad``; sha256 pinned in :mod:`mikupal.registry`), run with
onnxruntime on the CPU. Expected input: mono float32 at 16 kHz or 8 kHz (other rates are resampled to 16 kHz;
the returned times are in seconds either way).

The model is driven directly with onnxruntime and numpy (no torch, no import of the ``silero_vad`` package, whose
import alone loads torch): the audio is cut into windows of 512 samples at 16 kHz (256 at 8 kHz, the last one
zero-padded), each fed with the previous window's last 64 (32) samples as context and the recurrent state the
model returned for the previous window.

Two ways to run it, with the same probabilities bit for bit (tests/mikupal/vad checks it on the LibriVox clips):

* **sequence** (the default at 16 kHz): the package's ``silero_vad_16k_sequence.onnx`` export of the same network
  takes ``frames_per_call`` windows (each with its context) in one session call: the convolutional encoder runs
  over all of them as one batch, and its LSTM steps through them inside onnxruntime, its state carried from call
  to call. About 3x less CPU than the streaming path (0.11 s against 0.36 s on the 33.7 s LibriVox set, one
  thread; two onnxruntime threads were slower on the shared 2-core machine);
* **streaming** (``sequence_model: null``, and always at 8 kHz, which the sequence export does not cover): the
  streaming model ``silero_vad.onnx``, one window per session call, as the package's own wrapper runs it.

The probabilities become spans by the rules of the package's ``get_speech_timestamps`` (its defaults except those
set here; no maximum span length): a span starts at a window at or above ``threshold``, ends where the probability
first fell below ``threshold - 0.15`` once that silence has lasted ``min_silence_duration``, is dropped if not
longer than ``min_speech_duration``, and is padded by ``speech_pad`` on each side (half the gap when two spans are
closer than twice the pad). Audio is decoded by the pipeline. Unlike WebRTC VAD, Silero keeps music out of the
speech spans (precision 1.00 on LibriVox over real music at 3 dB SNR).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mikupal.media import resample
from mikupal.vad.base import VoiceActivityDetector

log = logging.getLogger(__name__)

#: Sample rate -> (window samples, context samples) the Silero ONNX model expects.
_WINDOWS = {16000: (512, 64), 8000: (256, 32)}


class SileroVad(VoiceActivityDetector):
    """Silero VAD v6 through onnxruntime (see the module docstring).

    Args:
        threshold: speech probability above which a window is speech (Silero's default 0.5); a window
            stays speech until the probability falls below ``threshold - 0.15``.
        min_speech_duration: spans shorter than this (seconds) are discarded.
        min_silence_duration: a span ends only after this much silence (seconds); shorter pauses stay inside.
        speech_pad: seconds added to both ends of each span by Silero (the ``segmentation`` rules pad again).
        model: registry name or path of the streaming ONNX model (one window per call; 8 kHz input).
        sequence_model: registry name or path of the 16 kHz sequence ONNX model (many windows per call), or
            ``None`` to run 16 kHz audio through ``model`` one window at a time too.
        frames_per_call: windows per call of the sequence model (2048 windows = 65.5 s of audio, ~5 MB of input).
    """

    #: Python packages setup() imports (import name -> what to install); checked before a run starts.
    requires = {"onnxruntime": "onnxruntime"}
    #: Attributes holding a model-registry name or path; their files are checked before a run starts.
    model_keys = ("model", "sequence_model")

    def __init__(
        self,
        threshold: float = 0.5,
        min_speech_duration: float = 0.25,
        min_silence_duration: float = 0.3,
        speech_pad: float = 0.03,
        model: str = "silero-vad",
        sequence_model: str | None = "silero-vad-sequence",
        frames_per_call: int = 2048,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"vad.threshold must be in (0, 1), got {threshold}")
        if min_speech_duration < 0 or min_silence_duration < 0 or speech_pad < 0:
            raise ValueError("vad.min_speech_duration, vad.min_silence_duration and vad.speech_pad must be >= 0")
        self.threshold = threshold
        self.min_speech_duration = min_speech_duration
        self.min_silence_duration = min_silence_duration
        self.speech_pad = speech_pad
        if frames_per_call < 1:
            raise ValueError(f"vad.frames_per_call must be >= 1, got {frames_per_call}")
        self.model = model
        self.sequence_model = sequence_model
        self.frames_per_call = int(frames_per_call)
        self._session: Any = None
        self._sequence: Any = None

    def setup(self) -> None:
        self._session = _load(self.model, {"input", "state", "sr"}, "vad.model", "a Silero VAD v6 .onnx file")
        if self.sequence_model is not None:
            self._sequence = _load(
                self.sequence_model, {"input", "h", "c"}, "vad.sequence_model", "silero_vad_16k_sequence.onnx"
            )

    def teardown(self) -> None:
        self._session = None
        self._sequence = None

    def probabilities(self, audio: np.ndarray, sampling_rate: int) -> np.ndarray:
        """Speech probability of each window (512 samples at 16 kHz, 256 at 8 kHz; the last one zero-padded):
        through the sequence model at 16 kHz when one is configured, else one window at a time."""
        if self._session is None:
            raise RuntimeError("SileroVad.setup() must be called before detect()")
        if sampling_rate not in _WINDOWS:
            raise ValueError(f"Silero VAD runs at 8000 or 16000 Hz, got {sampling_rate}")
        if sampling_rate == 16000 and self._sequence is not None:
            return self.sequence_probabilities(audio)
        return self.streaming_probabilities(audio, sampling_rate)

    def sequence_probabilities(self, audio: np.ndarray) -> np.ndarray:
        """16 kHz probabilities through the sequence model, ``frames_per_call`` windows per session call."""
        if self._sequence is None:
            raise RuntimeError("SileroVad.setup() with a sequence_model must be called before sequence_probabilities()")
        window, context = _WINDOWS[16000]
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        count = -(-len(audio) // window)
        if count == 0:
            return np.empty(0, np.float32)
        frames = np.zeros((count, window), np.float32)
        frames.reshape(-1)[: len(audio)] = audio
        # Row i: the last `context` samples of window i - 1 (zeros before the first), then window i.
        rows = np.empty((count, context + window), np.float32)
        rows[:, context:] = frames
        rows[0, :context] = 0.0
        rows[1:, :context] = frames[:-1, -context:]
        h = np.zeros((1, 1, 128), np.float32)
        c = np.zeros((1, 1, 128), np.float32)
        probs = np.empty(count, np.float32)
        for first in range(0, count, self.frames_per_call):
            block = rows[first : first + self.frames_per_call]
            out, h, c = self._sequence.run(None, {"input": block, "h": h, "c": c})
            probs[first : first + len(block)] = np.asarray(out).reshape(-1)
        return probs

    def streaming_probabilities(self, audio: np.ndarray, sampling_rate: int) -> np.ndarray:
        """Probabilities through the streaming model, one window per session call (the package's own way)."""
        if self._session is None:
            raise RuntimeError("SileroVad.setup() must be called before detect()")
        window, context = _WINDOWS[sampling_rate]
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        count = -(-len(audio) // window)
        # Model input: the previous window's last `context` samples (zeros before the first) then the window.
        buffer = np.zeros((1, context + window), np.float32)
        state = np.zeros((2, 1, 128), np.float32)
        rate = np.array(sampling_rate, dtype=np.int64)
        probs = np.empty(count, np.float32)
        run = self._session.run
        for i in range(count):
            buffer[0, :context] = buffer[0, -context:]
            chunk = audio[i * window : (i + 1) * window]
            buffer[0, context : context + len(chunk)] = chunk
            buffer[0, context + len(chunk) :] = 0.0
            out, state = run(None, {"input": buffer, "state": state, "sr": rate})
            probs[i] = out[0, 0]
        return probs

    def detect(self, audio: np.ndarray, sampling_rate: int) -> list[tuple[float, float]]:
        """Speech spans ``(start, end)`` in seconds from the start of ``audio``, sorted and non-overlapping."""
        if self._session is None:
            raise RuntimeError("SileroVad.setup() must be called before detect()")
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        rate = sampling_rate
        if rate not in _WINDOWS:
            audio = resample(audio, rate, 16000)
            rate = 16000
        if len(audio) < _WINDOWS[rate][0]:
            return []
        stamps = speech_spans(
            self.probabilities(audio, rate),
            window=_WINDOWS[rate][0],
            length=len(audio),
            threshold=self.threshold,
            min_speech=rate * round(self.min_speech_duration * 1000) / 1000,
            min_silence=rate * round(self.min_silence_duration * 1000) / 1000,
            pad=rate * round(self.speech_pad * 1000) / 1000,
        )
        total = len(audio) / rate
        spans = [(max(0.0, s / rate), min(total, e / rate)) for s, e in stamps]
        return [(round(s, 3), round(e, 3)) for s, e in spans if e > s]


def _load(name: str, inputs: set[str], key: str, expected: str) -> Any:
    """An onnxruntime CPU session of the model ``name`` (registry name or path), checked to take ``inputs``."""
    import onnxruntime

    from mikupal.registry import resolve

    path = resolve(name)
    opts = onnxruntime.SessionOptions()
    # A recurrent state steps window by window (and the machine is shared): extra threads only add overhead.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    try:
        session = onnxruntime.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise RuntimeError(
            f"vad=silero: cannot load the Silero VAD model {path} ({e}). Fix: reinstall it with "
            "pip install --no-deps --force-reinstall silero-vad==6.2.3 (or bash scripts/setup.sh)"
        ) from e
    names = {i.name for i in session.get_inputs()}
    if names != inputs:
        raise RuntimeError(
            f"vad=silero: {path} has inputs {sorted(names)}, not {sorted(inputs)}. Fix: point {key} at {expected}"
        )
    log.info("Silero VAD loaded from %s", path)
    return session


def speech_spans(
    probs: np.ndarray, window: int, length: int, threshold: float, min_speech: float, min_silence: float, pad: float
) -> list[tuple[int, int]]:
    """Speech spans ``(start, end)`` in samples from per-window speech probabilities (rules: module docstring).

    Args:
        probs: one probability per window of ``window`` samples.
        length: number of audio samples (a span still open at the end closes there).
        threshold: a span starts at a window with probability ``>= threshold``; once in speech, a window is
            silence below ``max(threshold - 0.15, 0.01)``.
        min_speech, min_silence, pad: in samples (may be fractional).
    """
    low = max(threshold - 0.15, 0.01)
    spans: list[list[int]] = []
    start: int | None = None  # sample where the open span began
    silence_from = 0  # sample where the current silence inside the open span began (0: none)
    for i, p in enumerate(probs.tolist()):
        sample = window * i
        if p >= threshold:
            silence_from = 0
            if start is None:
                start = sample
            continue
        if start is None or p >= low:
            continue
        if not silence_from:
            silence_from = sample
        if sample - silence_from >= min_silence:
            if silence_from - start > min_speech:
                spans.append([start, silence_from])
            start, silence_from = None, 0
    if start is not None and length - start > min_speech:
        spans.append([start, length])
    # Pad each side; where two spans are closer than twice the pad, the gap is split between them.
    for i, span in enumerate(spans):
        if i == 0:
            span[0] = int(max(0, span[0] - pad))
        if i + 1 < len(spans):
            gap = spans[i + 1][0] - span[1]
            if gap < 2 * pad:
                span[1] += int(gap // 2)
                spans[i + 1][0] = int(max(0, spans[i + 1][0] - gap // 2))
            else:
                span[1] = int(min(length, span[1] + pad))
                spans[i + 1][0] = int(max(0, spans[i + 1][0] - pad))
        else:
            span[1] = int(min(length, span[1] + pad))
    return [(s, e) for s, e in spans]
