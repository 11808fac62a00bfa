"""Test-only vision backends, loaded through Hydra ``_target_=mikupal.testing.vision_backends.<Class>``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mikupal.asd.base import ActiveSpeakerDetector, TrackEvidence, TrackScore
from mikupal.asd.sync import SyncDetector
from mikupal.faces.base import Detection, FaceDetector


class MouthDarknessDetector(ActiveSpeakerDetector):
    """A crop-based lip-sync detector: the share of dark pixels in the mouth area of each grey face crop.

    It asks the asd stage for crops the way TalkNet does (grey, 112 px, at the analysis rate) and scores them with
    the sync detector's windowed correlation, so it only picks the speaker if the crops are cut at the right place
    and time. It also records what it was given, for the test to inspect.
    """

    needs_crops = True
    crop_size = 112
    crop_grey = True

    def __init__(self) -> None:
        self.sync = SyncDetector()
        self.seen: list[tuple[int, tuple[int, ...], int]] = []

    def score(self, tracks: Sequence[TrackEvidence], audio: np.ndarray, sampling_rate: int) -> list[TrackScore]:
        out = []
        for t in tracks:
            self.seen.append((t.track_id, t.crops.shape, len(t.times)))
            s = self.crop_size
            mouth_area = t.crops[:, int(0.62 * s) : int(0.80 * s), int(0.38 * s) : int(0.62 * s)]
            darkness = (mouth_area < 60).mean(axis=(1, 2))
            proxy = TrackEvidence(t.track_id, t.times, t.fps, t.boxes, t.detected, mouth=darkness)
            out.append(self.sync.score([proxy], audio, sampling_rate)[0])
        return out


class NeedsThirtyFps(SyncDetector):
    """A detector trained for 30 fps input (to test the frame-rate check)."""

    fps = 30.0


class ExplodingDetector(FaceDetector):
    """A face detector that fails on every call (to test that vision failures do not lose utterances)."""

    def detect(self, frames) -> list[list[Detection]]:
        raise RuntimeError("detector exploded")


class FixedVerdicts(ActiveSpeakerDetector):
    """Gives the ``i``-th scored track of every utterance ``scores[i]`` and ``evidence[i]`` (to test how the asd stage
    chooses among tracks: the threshold, ``asd.rank_by``, contested tracks). ``evidence`` null: no evidence, as
    TalkNet. ``contested``: the indices of the tracks contested by another (by the first other track)."""

    def __init__(
        self, scores: Sequence[float], evidence: Sequence[float] | None = None, contested: Sequence[int] = ()
    ) -> None:
        self.scores = [float(s) for s in scores]
        self.evidence = None if evidence is None else [float(e) for e in evidence]
        self.contested = {int(i) for i in contested}

    def score(self, tracks: Sequence[TrackEvidence], audio: np.ndarray, sampling_rate: int) -> list[TrackScore]:
        if len(tracks) != len(self.scores):
            raise ValueError(f"FixedVerdicts has {len(self.scores)} scores for {len(tracks)} tracks")
        return [
            TrackScore(
                score=s,
                evidence=None if self.evidence is None else self.evidence[i],
                contested_by=next(t.track_id for j, t in enumerate(tracks) if j != i) if i in self.contested else None,
            )
            for i, s in enumerate(self.scores)
        ]
