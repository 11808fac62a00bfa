"""A user-supplied speaker-embedding ONNX model as the second ``speakers`` backend (``speakers=onnx``).

No speaker model other than Resemblyzer ships its weights inside a registry package with a clear provenance
(``reference/quality-speaker-models.md`` §3), so this backend runs a model you bring: registry name
``speaker-onnx`` (``$MIKUPAL_MODELS_DIR/speaker-onnx/model.onnx``; a missing file fails at setup with the
placement to do) or a path. Exports of WeSpeaker, 3D-Speaker or ECAPA-TDNN models typically take log-mel or
filterbank frames; set ``features`` and its parameters to what your model was trained on.

Per utterance: the audio is cut into ``window_seconds`` windows every ``hop_seconds`` (one window, zero-padded,
when the audio is shorter), each window is fed to the model as

* ``waveform``: ``[batch, samples]`` float32 at 16 kHz, or
* ``log_mel``: ``[batch, frames, n_mels]`` (``layout: time_first``) or ``[batch, n_mels, frames]``
  (``mels_first``): natural log of a Slaney mel power spectrogram (:mod:`mikupal.models.melspec`) + 1e-6,
  with the mean over time subtracted when ``mean_normalize`` is set,

the model's first output (``[batch, dim]``) is L2-normalised per window, and the utterance embedding is the
normalised mean of the windows. Kaldi-style filterbanks (Povey window, pre-emphasis, dither) are not reproduced;
a model trained on them sees slightly different features.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mikupal.media import resample
from mikupal.models.melspec import level_dbfs, mel_power_spectrogram
from mikupal.speakers.base import Embedding, EmbeddingSkipped, SpeakerEmbedder, l2_normalize

log = logging.getLogger(__name__)

RATE = 16000
FEATURES = ("waveform", "log_mel")
LAYOUTS = ("time_first", "mels_first")


class OnnxSpeakerEmbedder(SpeakerEmbedder):
    """Speaker embeddings from an ONNX model (see the module docstring)."""

    def __init__(
        self,
        model: str = "speaker-onnx",
        features: str = "log_mel",
        layout: str = "time_first",
        n_mels: int = 80,
        n_fft: int = 400,
        hop_length: int = 160,
        mean_normalize: bool = True,
        window_seconds: float = 1.6,
        hop_seconds: float = 0.8,
        min_speech_seconds: float = 1.2,
        silence_dbfs: float = -60.0,
        threads: int = 1,
    ) -> None:
        if features not in FEATURES:
            raise ValueError(f"speakers.features must be one of {FEATURES}, got {features!r}")
        if layout not in LAYOUTS:
            raise ValueError(f"speakers.layout must be one of {LAYOUTS}, got {layout!r}")
        if window_seconds <= 0 or hop_seconds <= 0:
            raise ValueError("speakers.window_seconds and speakers.hop_seconds must be positive")
        self.model = model
        self.features = features
        self.layout = layout
        self.n_mels, self.n_fft, self.hop_length = int(n_mels), int(n_fft), int(hop_length)
        self.mean_normalize = bool(mean_normalize)
        self.window_seconds = float(window_seconds)
        self.window = int(round(window_seconds * RATE))
        self.hop = int(round(hop_seconds * RATE))
        self.min_speech_seconds = float(min_speech_seconds)
        self.silence_dbfs = float(silence_dbfs)
        self.threads = int(threads)
        self._session: Any = None
        self._input: str | None = None

    def setup(self) -> None:
        import onnxruntime as ort

        from mikupal.registry import resolve

        path = resolve(self.model)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ValueError(f"speakers=onnx: {path} is not a loadable ONNX model ({e})") from e
        inputs = self._session.get_inputs()
        self._input = inputs[0].name
        rank = len(inputs[0].shape)
        expected = 2 if self.features == "waveform" else 3
        if rank != expected:
            raise ValueError(
                f"speakers=onnx: {path} takes a rank-{rank} input {inputs[0].shape}, but features={self.features} "
                f"feeds rank {expected}; set speakers.features to match the model"
            )

    def teardown(self) -> None:
        self._session = None

    def _model_input(self, windows: np.ndarray) -> np.ndarray:
        if self.features == "waveform":
            return windows.astype(np.float32)
        feats = []
        for w in windows:
            logmel = np.log(mel_power_spectrogram(w, RATE, self.n_fft, self.hop_length, self.n_mels) + 1e-6)
            if self.mean_normalize:
                logmel = logmel - logmel.mean(axis=0, keepdims=True)
            feats.append(logmel if self.layout == "time_first" else logmel.T)
        return np.stack(feats).astype(np.float32)

    def embed(self, audio: np.ndarray, sampling_rate: int) -> Embedding:
        if self._session is None:
            raise RuntimeError("OnnxSpeakerEmbedder.setup() was not called")
        wav = resample(np.asarray(audio, dtype=np.float32), sampling_rate, RATE)
        if level_dbfs(wav) < self.silence_dbfs:
            raise EmbeddingSkipped("silent", f"level {level_dbfs(wav):.1f} dBFS < {self.silence_dbfs:g}")
        seconds = len(wav) / RATE
        if seconds < self.min_speech_seconds:
            raise EmbeddingSkipped("too_short", f"{seconds:.2f} s < {self.min_speech_seconds:g} s")
        if len(wav) < self.window:
            wav = np.pad(wav, (0, self.window - len(wav)))
        starts = list(range(0, len(wav) - self.window + 1, self.hop))
        if starts[-1] + self.window < len(wav):
            starts.append(len(wav) - self.window)
        windows = np.stack([wav[s : s + self.window] for s in starts])
        out = np.asarray(self._session.run(None, {self._input: self._model_input(windows)})[0], dtype=np.float64)
        if out.ndim != 2 or out.shape[0] != len(windows):
            raise ValueError(f"speakers=onnx: the model returned shape {out.shape}, expected [{len(windows)}, dim]")
        partials = l2_normalize(out)
        return Embedding(vector=l2_normalize(partials.mean(axis=0)), partials=partials, speech_seconds=round(seconds, 3))
