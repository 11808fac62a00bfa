"""DNSMOS P.835 and P.808 as the default ``quality`` backend (our own inference code for the shipped ONNX models).

Models: Microsoft's DNSMOS (Reddy, Gopal, Cutler: "DNSMOS P.835: a non-intrusive perceptual objective speech
quality metric to evaluate noise suppressors", ICASSP 2022; "DNSMOS: a non-intrusive perceptual objective speech
quality metric", ICASSP 2021), as shipped in the PyPI wheel ``speechmos==0.0.1.1`` (``speechmos/dnsmos_models/``,
MIT; byte-identical to microsoft/DNS-Challenge ``DNSMOS/DNSMOS/``). Registry name ``dnsmos`` (sha256 pinned).
Only the ONNX files are used; ``speechmos``' own code needs librosa and requests and is not imported.

Facts of the reference code (``speechmos/dnsmos.py`` = DNS-Challenge ``dnsmos_local.py``) that this module keeps:

* input: 16 kHz mono float in [-1, 1]; windows of ``int(9.01 * 16000) = 144160`` samples; a clip shorter than a
  window is repeated until it fills one;
* P.835 (``sig_bak_ovr.onnx``): input ``[N, 144160]`` raw samples, output ``[N, 3]`` raw SIG, BAK, OVRL, each
  mapped by a fixed quadratic (``np.polyval`` with the coefficients below) to the 1..5 MOS scale;
* P.808 (``model_v8.onnx``): input ``[N, 900, 120]``, the window without its last 160 samples as a 120-band mel
  power spectrogram (321-point FFT, 160-sample hop, librosa >= 0.10 defaults), in dB relative to its maximum
  floored at -80, then ``(dB + 40) / 40``; output ``[N, 1]`` MOS, used as is;
* a clip's score is the mean over its windows.

What differs on purpose:

* **Every window is scored.** The reference slides 9.01 s windows by 1 s and computes their ends in floating point
  (``int((i + 9.01) * 16000)``), which rounds one sample short for some ``i``; it then silently skips those
  windows (17 of the 51 windows of a 60 s clip). Here window bounds are integer sample offsets: windows start every
  ``hop_seconds`` and a last window is aligned to the clip's end when the regular ones stop short of it, so every
  sample is scored and no window is dropped.
* **Default hop 9.01 s** (non-overlapping windows) instead of 1 s: about 9x cheaper on long clips, and within
  0.05 OVRL of the overlapping score on 60 s clips (measured in ``reference/quality-speaker-models.md``).
  ``hop_seconds: 1.0`` gives the reference's overlap. Clips up to 9.01 s get exactly one window either way.
* The mel front end is numpy (:mod:`mikupal.models.melspec`), not librosa; ``tests/mikupal/models`` checks it matches
  librosa and that :func:`reference_windows` + this module reproduce ``speechmos.dnsmos.run`` to about 1e-6.

Cost: one window costs about 0.45 CPU-seconds on one thread (P.835; P.808 adds about 5 %). Utterances shorter
than 9.01 s still cost one full window, so the real-time factor is highest on short utterances
(``benchmarks/bench_tts_meta.py``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mikupal.models.melspec import mel_power_spectrogram, power_to_db
from mikupal.quality.base import QualityScorer
from mikupal.records import Quality

log = logging.getLogger(__name__)

SAMPLING_RATE = 16000
#: Samples per window: ``int(9.01 * 16000)``, as in the reference.
WINDOW = 144160
#: Calibration of the raw P.835 outputs to MOS (``np.polyval`` order: highest power first), from the reference.
POLY_SIG = (-0.08397278, 1.22083953, 0.0052439)
POLY_BAK = (-0.13166888, 1.60915514, -0.39604546)
POLY_OVRL = (-0.06766283, 1.11546468, 0.04602535)
#: P.808 front end.
P808_N_FFT, P808_HOP, P808_N_MELS = 321, 160, 120


def fill_window(audio: np.ndarray, length: int = WINDOW) -> np.ndarray:
    """Repeat a clip shorter than a window until it fills one (longer clips are returned unchanged)."""
    if len(audio) >= length:
        return audio
    if len(audio) == 0:
        raise ValueError("cannot score an empty clip")
    return np.resize(audio, length)


def window_starts(n_samples: int, length: int = WINDOW, hop: int = WINDOW) -> list[int]:
    """Start offsets (samples) of the windows that cover all ``n_samples`` (``n_samples >= length``).

    Windows start every ``hop`` samples; if the last of them ends before the clip does, one more window is aligned
    to the clip's end, so every sample is scored.
    """
    if n_samples < length:
        raise ValueError(f"{n_samples} samples is shorter than one window ({length}); call fill_window first")
    if hop <= 0:
        raise ValueError(f"hop must be positive, got {hop}")
    starts = list(range(0, n_samples - length + 1, hop))
    if starts[-1] + length < n_samples:
        starts.append(n_samples - length)
    return starts


def reference_windows(audio: np.ndarray, rate: int = SAMPLING_RATE) -> list[np.ndarray]:
    """The windows ``speechmos.dnsmos.run`` scores, including its dropped ones; for comparison tests only.

    Doubling until a window fits, 1 s hop over ``floor(seconds) - 9.01`` hops, float-rounded ends, and windows that
    come out one sample short skipped.
    """
    x = np.asarray(audio, dtype=np.float32)
    while len(x) < WINDOW:
        x = np.append(x, x)
    n_hops = int(np.floor(len(x) / rate) - 9.01) + 1
    segments = [x[int(i * rate) : int((i + 9.01) * rate)] for i in range(n_hops)]
    return [s for s in segments if len(s) >= WINDOW]


def p808_features(window: np.ndarray) -> np.ndarray:
    """P.808 model input for one 9.01 s window: ``[900, 120]`` float32 (see the module docstring)."""
    mel = mel_power_spectrogram(window[:-P808_HOP], SAMPLING_RATE, P808_N_FFT, P808_HOP, P808_N_MELS)
    return ((power_to_db(mel) + 40.0) / 40.0).astype(np.float32)


class DnsmosScorer(QualityScorer):
    """DNSMOS P.835 (SIG, BAK, OVRL) and P.808 with onnxruntime (see the module docstring).

    Args:
        model: registry name (``dnsmos``) or a folder holding ``dnsmos_models/sig_bak_ovr.onnx`` and
            ``dnsmos_models/model_v8.onnx``.
        hop_seconds: distance between window starts; 9.01 = non-overlapping (default), 1.0 = the reference's overlap.
        threads: onnxruntime intra-op threads per session (1 is fastest on a shared 2-core machine; run more
            worker processes instead).
        batch_size: windows per ONNX call.
    """

    def __init__(self, model: str = "dnsmos", hop_seconds: float = 9.01, threads: int = 1, batch_size: int = 4) -> None:
        if hop_seconds <= 0:
            raise ValueError(f"quality.hop_seconds must be positive, got {hop_seconds}")
        self.model = model
        self.hop = int(round(hop_seconds * SAMPLING_RATE))
        self.threads = int(threads)
        self.batch_size = max(1, int(batch_size))
        self._p835: Any = None
        self._p808: Any = None

    def setup(self) -> None:
        from pathlib import Path

        import onnxruntime as ort

        from mikupal.registry import resolve

        root = Path(resolve(self.model))
        paths = [root / "dnsmos_models" / "sig_bak_ovr.onnx", root / "dnsmos_models" / "model_v8.onnx"]
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(
                    f"quality=dnsmos: {path} not found. Fix: pip install --no-deps speechmos==0.0.1.1 "
                    "(or bash scripts/setup.sh), or point quality.model at a folder with dnsmos_models/"
                )
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self._p835 = ort.InferenceSession(str(paths[0]), options, providers=providers)
        self._p808 = ort.InferenceSession(str(paths[1]), options, providers=providers)

    def teardown(self) -> None:
        self._p835 = self._p808 = None

    def windows(self, audio: np.ndarray) -> list[np.ndarray]:
        """The 9.01 s windows this scorer averages over for ``audio`` (16 kHz)."""
        x = fill_window(np.asarray(audio, dtype=np.float32))
        return [x[s : s + WINDOW] for s in window_starts(len(x), WINDOW, self.hop)]

    def score_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        """``[n, 4]`` MOS per window: SIG, BAK, OVRL (calibrated) and P.808."""
        if self._p835 is None:
            raise RuntimeError("DnsmosScorer.setup() was not called")
        rows = []
        for i in range(0, len(windows), self.batch_size):
            batch = np.stack(windows[i : i + self.batch_size]).astype(np.float32)
            raw = self._p835.run(None, {"input_1": batch})[0]
            features = np.stack([p808_features(w) for w in batch])
            p808 = self._p808.run(None, {"input_1": features})[0][:, 0]
            rows.append(
                np.stack(
                    [np.polyval(POLY_SIG, raw[:, 0]), np.polyval(POLY_BAK, raw[:, 1]), np.polyval(POLY_OVRL, raw[:, 2]), p808],
                    axis=1,
                )
            )
        return np.concatenate(rows).astype(np.float64)

    def score(self, audio: np.ndarray, sampling_rate: int) -> Quality:
        if sampling_rate != SAMPLING_RATE:
            raise ValueError(f"DNSMOS needs {SAMPLING_RATE} Hz audio, got {sampling_rate} Hz")
        windows = self.windows(audio)
        sig, bak, ovrl, p808 = self.score_windows(windows).mean(axis=0)
        return Quality(
            dnsmos_sig=round(float(sig), 4),
            dnsmos_bak=round(float(bak), 4),
            dnsmos_ovrl=round(float(ovrl), 4),
            dnsmos_p808=round(float(p808), 4),
            dnsmos_windows=len(windows),
        )
