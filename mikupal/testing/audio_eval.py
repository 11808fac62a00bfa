"""Measuring the audio path: word error rate, utterance boundaries, SI-SDR, and the test signals they run on.

Shared by the audio tests (``tests/mikupal/{separate,vad,asr}``), ``benchmarks/measure_audio_quality.py`` and
``benchmarks/bench_audio.py``. All signals are built at run time from the real recordings of
:mod:`mikupal.testing.media` (LibriVox read speech from Debian ``pocketsphinx-testdata``, music from Debian
``asterisk-moh-opsound-wav``).

Definitions (stated once, used everywhere):

* **WER** = (substitutions + deletions + insertions) / reference words, by word-level Levenshtein alignment, after
  :func:`normalize_text` on both sides. Corpus WER sums errors and reference words over all utterances.
* **True speech interval** of a clip: from the first to the last 10 ms frame whose energy is within
  ``threshold_db`` (35 dB) of the clip's loudest frame (:func:`speech_extent`), measured on the clean clip.
* **Boundary error** of an interval: ``|start of the first utterance overlapping it - true start|`` and
  ``|end of the last utterance overlapping it - true end|`` (:func:`boundary_errors`); utterances overlapping no
  interval are counted as ``extra``, intervals with no utterance as ``missed``, and intervals covered by more than
  one utterance as ``split``.
* **SNR** of a mix: mean speech power over the true speech intervals over mean music power (:func:`mix_music`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from mikupal.testing.media import SpeechClip, concat_with_silences, librivox_clips, music

# ---------------------------------------------------------------------------------------------------- text
_ABBREVIATIONS = {
    "mr": "mister",
    "mrs": "missus",
    "dr": "doctor",
    "st": "saint",
    "ms": "miss",
}
_KEEP = re.compile(r"[^a-z0-9' ]+")


def normalize_text(text: str) -> list[str]:
    """Words for scoring: lower case, hyphens and other punctuation to spaces, apostrophes kept inside words,
    and the title abbreviations ``mr``, ``mrs``, ``dr``, ``st``, ``ms`` spelled out (``Mr.`` = ``mister``, as
    LibriVox references write them). Nothing else is changed (no number or spelling normalisation).
    """
    text = text.lower().replace("’", "'")
    text = _KEEP.sub(" ", text)
    words = []
    for word in text.split():
        word = word.strip("'")
        if word:
            words.append(_ABBREVIATIONS.get(word, word))
    return words


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """``(errors, reference words)`` of one utterance after normalisation."""
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    return edit_distance(ref, hyp), len(ref)


def corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER: total errors over total reference words."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    errors = words = 0
    for ref, hyp in zip(references, hypotheses):
        e, n = word_errors(ref, hyp)
        errors += e
        words += n
    return errors / max(words, 1)


# ---------------------------------------------------------------------------------------------------- signals
def speech_extent(audio: np.ndarray, rate: int = 16000, threshold_db: float = 35.0) -> tuple[float, float]:
    """``(start, end)`` seconds of the speech in a clean clip: first/last 10 ms frame within ``threshold_db`` of
    the loudest frame."""
    hop = rate // 100
    n = len(audio) // hop
    if n == 0:
        return 0.0, len(audio) / rate
    frames = audio[: n * hop].reshape(n, hop).astype(np.float64)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    active = np.flatnonzero(level > level.max() - threshold_db)
    return float(active[0] * hop / rate), float(min((active[-1] + 1) * hop / rate, len(audio) / rate))


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019), zero-mean signals."""
    n = min(len(reference), len(estimate))
    ref = reference[:n].astype(np.float64) - np.mean(reference[:n])
    est = estimate[:n].astype(np.float64) - np.mean(estimate[:n])
    alpha = np.dot(est, ref) / (np.dot(ref, ref) + 1e-12)
    target = alpha * ref
    noise = est - target
    return float(10 * np.log10((np.dot(target, target) + 1e-12) / (np.dot(noise, noise) + 1e-12)))


def mix_music(
    speech: np.ndarray,
    noise: np.ndarray,
    snr_db: float,
    intervals: list[tuple[float, float]] | None = None,
    rate: int = 16000,
    offset: float = 0.0,
) -> np.ndarray:
    """Mix ``noise`` (from ``offset`` seconds, looped) under ``speech`` at ``snr_db``.

    The speech power is measured over ``intervals`` (default: the whole signal), so silences between clips do
    not make the mix look cleaner than it is. The result is scaled down if it would clip.
    """
    start = int(offset * rate) % len(noise)
    noise = np.roll(noise, -start)
    noise = np.tile(noise, int(np.ceil(len(speech) / len(noise))))[: len(speech)].astype(np.float64)
    if intervals:
        active = np.concatenate([speech[int(s * rate) : int(e * rate)] for s, e in intervals])
    else:
        active = speech
    p_speech = np.mean(active.astype(np.float64) ** 2)
    p_noise = np.mean(noise**2) + 1e-12
    gain = np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))
    mixed = speech.astype(np.float64) + gain * noise
    peak = np.max(np.abs(mixed))
    if peak > 0.99:
        mixed *= 0.9 / peak
    return mixed.astype(np.float32)


@dataclass
class SpeechTestSet:
    """The LibriVox clips, concatenated with silences, with the truth the measurements need.

    Attributes:
        clips: the five clips (name, audio, reference transcript).
        audio: the clips concatenated with ``gap`` seconds of digital silence between (and before/after).
        clip_intervals: each clip's ``(start, end)`` in ``audio``.
        speech_intervals: each clip's true speech interval in ``audio`` (see :func:`speech_extent`).
        rate: sampling rate.
    """

    clips: list[SpeechClip]
    audio: np.ndarray
    clip_intervals: list[tuple[float, float]]
    speech_intervals: list[tuple[float, float]]
    rate: int = 16000
    references: list[str] = field(default_factory=list)


def librivox_test_set(gap: float = 1.5, rate: int = 16000) -> SpeechTestSet:
    """Build the concatenated LibriVox signal and its truth (raises ``TestDataMissing`` without the Debian data)."""
    clips = librivox_clips(rate)
    audio, clip_intervals = concat_with_silences([c.audio for c in clips], gap=gap, sampling_rate=rate)
    speech = []
    for clip, (s, _) in zip(clips, clip_intervals):
        a, b = speech_extent(clip.audio, rate)
        speech.append((round(s + a, 3), round(s + b, 3)))
    return SpeechTestSet(clips, audio, clip_intervals, speech, rate, [c.transcript for c in clips])


def music_track(name: str = "macroform-cold_day", rate: int = 16000) -> np.ndarray:
    """A real music track (Debian ``asterisk-moh-opsound-wav``), resampled."""
    return music(name, rate)


# ---------------------------------------------------------------------------------------------------- boundaries
@dataclass
class BoundaryReport:
    """Result of :func:`boundary_errors`."""

    start_errors: list[float]
    end_errors: list[float]
    missed: int
    extra: int
    split: int

    @property
    def max_error(self) -> float:
        errors = self.start_errors + self.end_errors
        return max(errors) if errors else float("inf")

    @property
    def mean_error(self) -> float:
        errors = self.start_errors + self.end_errors
        return float(np.mean(errors)) if errors else float("inf")

    def within(self, tolerance: float) -> bool:
        """Every true interval found as one utterance, nothing extra, every boundary within ``tolerance``."""
        return self.missed == 0 and self.extra == 0 and self.split == 0 and self.max_error <= tolerance


def boundary_errors(truth: list[tuple[float, float]], spans: list[tuple[float, float]]) -> BoundaryReport:
    """Compare utterance spans with true speech intervals (see the module docstring)."""
    start_errors: list[float] = []
    end_errors: list[float] = []
    used: set[int] = set()
    missed = split = 0
    for ts, te in truth:
        hits = [i for i, (s, e) in enumerate(spans) if s < te and e > ts]
        if not hits:
            missed += 1
            continue
        used.update(hits)
        if len(hits) > 1:
            split += 1
        start_errors.append(abs(spans[hits[0]][0] - ts))
        end_errors.append(abs(spans[hits[-1]][1] - te))
    extra = len(spans) - len(used)
    return BoundaryReport(start_errors, end_errors, missed, extra, split)
