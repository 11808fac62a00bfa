"""Resemblyzer as the default ``speakers`` backend.

Model: the GE2E speaker encoder (Wan et al., "Generalized end-to-end loss for speaker verification", ICASSP 2018)
as trained and packaged by Resemble AI in ``resemblyzer==0.1.4`` (Apache-2.0): a 3-layer LSTM (256 units) over 40
mel bands, a 256-d ReLU projection, L2-normalised. Weights: ``resemblyzer/pretrained.pt`` in the wheel (registry
name ``resemblyzer``, sha256 pinned). The wheel does not state its training data.

Per utterance, as the package does it (``preprocess_wav`` + ``VoiceEncoder.embed_utterance``):

1. volume normalised to -30 dBFS (raised only) and silences longer than about 0.2 s trimmed with WebRTC VAD;
2. cut into 1.6 s partial windows (160 mel frames) at ``partials_per_second`` (1.3 by default, i.e. 50 % overlap);
   a last partial covering less than ``min_coverage`` (75 %) of a window is dropped, and speech shorter than one
   window is zero-padded to it;
3. each partial embedded, the utterance embedding is the L2-normalised mean.

The package's own classes do steps 1 and 3 (``VoiceEncoder`` loads the weights, runs the LSTM, and cuts the
partials); only the mel spectrogram is ours (:mod:`mikupal.models.melspec`, equal to the librosa call the package
makes, without librosa's numba compilation, which took 30 s on first use here). ``import resemblyzer`` still imports
librosa (a declared dependency) but never calls it.

Installation trap: resemblyzer declares ``webrtcvad``, whose 2.0.10 build fails on ``import pkg_resources``; install
``resemblyzer==0.1.4`` with ``--no-deps`` next to ``webrtcvad-wheels`` (same module name) and librosa
(``scripts/setup.sh`` does).

Measured (``reference/quality-speaker-models.md``): EER 0.44 % on 10 held-out LibriSpeech speakers; on the Debian
voices same-speaker cosine >= 0.69, different-speaker <= 0.73; about 0.01 x real time on one CPU thread.
A shared background (music under every clip) raises different-speaker similarity, so embed separated vocals.
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
N_FFT, HOP, N_MELS = 400, 160, 40  # 25 ms windows, 10 ms hop, 40 bands (resemblyzer.hparams)


class ResemblyzerEmbedder(SpeakerEmbedder):
    """Resemblyzer GE2E d-vectors (see the module docstring).

    Args:
        model: registry name (``resemblyzer``) or a path to a ``pretrained.pt`` of the same architecture.
        min_speech_seconds: speech (after silence trimming) below this is skipped as ``too_short``. Default 1.2 s
            = 75 % of the 1.6 s window, the package's own rule for keeping a partial window.
        partials_per_second: partial windows per second (package default 1.3; 0.625 = no overlap).
        min_coverage: a last partial covering less of a window than this is dropped (package default 0.75).
        silence_dbfs: audio quieter than this (RMS, dBFS) is skipped as ``silent``.
        threads: torch intra-op threads while the stage runs (restored in teardown).
        device: torch device.
    """

    window_seconds = 1.6

    def __init__(
        self,
        model: str = "resemblyzer",
        min_speech_seconds: float = 1.2,
        partials_per_second: float = 1.3,
        min_coverage: float = 0.75,
        silence_dbfs: float = -60.0,
        threads: int = 1,
        device: str = "cpu",
    ) -> None:
        if not 0.625 <= partials_per_second <= 100:
            raise ValueError(f"speakers.partials_per_second must be >= 0.625 (windows must touch), got {partials_per_second}")
        if not 0 < min_coverage <= 1:
            raise ValueError(f"speakers.min_coverage must be in (0, 1], got {min_coverage}")
        self.model = model
        self.min_speech_seconds = float(min_speech_seconds)
        self.partials_per_second = float(partials_per_second)
        self.min_coverage = float(min_coverage)
        self.silence_dbfs = float(silence_dbfs)
        self.threads = int(threads)
        self.device = device
        self._encoder: Any = None
        self._preprocess: Any = None
        self._saved_threads: int | None = None

    def setup(self) -> None:
        from mikupal.registry import resolve

        weights = resolve(self.model)
        try:
            import torch
            from resemblyzer import VoiceEncoder, preprocess_wav
        except ImportError as e:
            raise ImportError(
                f"speakers=resemblyzer cannot import resemblyzer ({e}). Fix: pip install --no-deps resemblyzer==0.1.4 "
                "&& pip install webrtcvad-wheels librosa (or bash scripts/setup.sh)"
            ) from e
        self._saved_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        self._encoder = VoiceEncoder(self.device, verbose=False, weights_fpath=weights)
        self._encoder.eval()
        self._preprocess = preprocess_wav

    def teardown(self) -> None:
        self._encoder = None
        if self._saved_threads is not None:
            import torch

            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None

    def embed(self, audio: np.ndarray, sampling_rate: int) -> Embedding:
        if self._encoder is None:
            raise RuntimeError("ResemblyzerEmbedder.setup() was not called")
        import torch

        wav = resample(np.asarray(audio, dtype=np.float32), sampling_rate, RATE)
        if level_dbfs(wav) < self.silence_dbfs:
            raise EmbeddingSkipped("silent", f"level {level_dbfs(wav):.1f} dBFS < {self.silence_dbfs:g}")
        wav = self._preprocess(wav).astype(np.float32)  # -30 dBFS, long silences trimmed (WebRTC VAD)
        speech = len(wav) / RATE
        if speech < self.min_speech_seconds:
            raise EmbeddingSkipped("too_short", f"{speech:.2f} s of speech < {self.min_speech_seconds:g} s")
        wav_slices, mel_slices = self._encoder.compute_partial_slices(len(wav), self.partials_per_second, self.min_coverage)
        end = wav_slices[-1].stop
        if end > len(wav):
            wav = np.pad(wav, (0, end - len(wav)))
        mel = mel_power_spectrogram(wav, RATE, N_FFT, HOP, N_MELS).astype(np.float32)
        batch = torch.from_numpy(np.stack([mel[s] for s in mel_slices])).to(self._encoder.device)
        with torch.inference_mode():
            partials = self._encoder(batch).cpu().numpy().astype(np.float64)
        return Embedding(vector=l2_normalize(partials.mean(axis=0)), partials=partials, speech_seconds=round(speech, 3))
