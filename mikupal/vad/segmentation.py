"""Turn raw VAD spans into utterance spans within duration bounds (config ``segmentation``).

Rules, in order:

1. pad every span by ``pad`` seconds on both sides (clipped to the recording), so word onsets and final
   consonants are not cut;
2. merge neighbours whose gap is at most ``merge_gap`` seconds, as long as the merged span stays within
   ``max_duration``;
3. split spans longer than ``max_duration`` at the quietest ``split_window`` of audio (RMS energy) inside the
   part of the span that leaves both halves at least ``min_duration`` long, repeatedly;
4. drop spans shorter than ``min_duration`` (counted as ``vad.too_short``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SegmentationRules:
    """Bounds and merge/split rules for utterances (seconds)."""

    min_duration: float = 1.0
    max_duration: float = 30.0
    merge_gap: float = 0.3
    pad: float = 0.1
    split_window: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.min_duration < self.max_duration:
            raise ValueError(
                f"segmentation: need 0 < min_duration < max_duration, got {self.min_duration} and {self.max_duration}"
            )
        if self.max_duration < 2 * self.min_duration:
            raise ValueError("segmentation: max_duration must be at least 2 × min_duration so long spans can be split")


def _quietest_split(audio: np.ndarray, rate: int, start: float, end: float, rules: SegmentationRules) -> float:
    lo = start + rules.min_duration
    hi = min(end - rules.min_duration, start + rules.max_duration)
    win = max(1, int(rules.split_window * rate))
    a, b = int(lo * rate), int(hi * rate)
    region = audio[a:b]
    if len(region) < win:
        return (lo + hi) / 2
    energy = np.convolve(region.astype(np.float64) ** 2, np.ones(win) / win, mode="valid")
    return (a + int(np.argmin(energy)) + win // 2) / rate


def segment(
    spans: list[tuple[float, float]], audio: np.ndarray, rate: int, rules: SegmentationRules
) -> tuple[list[tuple[float, float]], int]:
    """Apply the rules to VAD spans. Returns ``(utterance spans, number dropped as too short)``."""
    total = len(audio) / rate
    padded = [(max(0.0, s - rules.pad), min(total, e + rules.pad)) for s, e in sorted(spans) if e > s]
    merged: list[tuple[float, float]] = []
    for s, e in padded:
        if merged and s - merged[-1][1] <= rules.merge_gap and max(e, merged[-1][1]) - merged[-1][0] <= rules.max_duration:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        elif merged and s < merged[-1][1]:
            # Padding made neighbours overlap but merging would exceed max_duration: meet in the middle.
            mid = (s + merged[-1][1]) / 2
            merged[-1] = (merged[-1][0], mid)
            merged.append((mid, e))
        else:
            merged.append((s, e))
    out: list[tuple[float, float]] = []
    for s, e in merged:
        while e - s > rules.max_duration:
            cut = _quietest_split(audio, rate, s, e, rules)
            out.append((s, cut))
            s = cut
        out.append((s, e))
    kept = [(round(s, 3), round(e, 3)) for s, e in out if e - s >= rules.min_duration]
    return kept, len(out) - len(kept)
