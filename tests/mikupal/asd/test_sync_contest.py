"""asd=sync's contest across the tracks of one utterance: a track that another talking face follows the loudness
clearly closer than it is marked contested (and the stage never chooses it; see test_asd.py for the selection)."""

from __future__ import annotations

import numpy as np
import pytest

from mikupal.asd.base import TrackEvidence, TrackScore
from mikupal.asd.sync import SyncDetector


def _tracks(n: int) -> list[TrackEvidence]:
    times = np.arange(50) / 25.0
    return [
        TrackEvidence(track_id=10 + i, times=times, fps=25.0, boxes=np.zeros((50, 4)), detected=np.ones(50, bool))
        for i in range(n)
    ]


def _scores(*evidence: tuple[float | None, float]) -> list[TrackScore]:
    """One TrackScore per ``(follow_r, depth)``, as :meth:`SyncDetector.score` leaves them before the contest."""
    return [TrackScore(score=0.9, details={"follow_r": f, "depth": d}) for f, d in evidence]


def test_a_track_another_talking_face_follows_clearly_closer_is_contested_by_it():
    detector = SyncDetector(contest_margin=0.15, min_articulation=0.02)
    # the real composite's numbers: a face talking other words (chosen on z) against the speaker beside it
    scores = _scores((0.14, 0.044), (0.39, 0.038))
    detector.mark_contested(_tracks(2), scores)
    assert scores[0].contested_by == 11 and scores[0].details["contested_by"] == 11
    assert scores[1].contested_by is None and "contested_by" not in scores[1].details


def test_the_closest_follower_is_named_when_several_contest():
    detector = SyncDetector(contest_margin=0.15)
    scores = _scores((0.10, 0.03), (0.30, 0.03), (0.45, 0.03))
    detector.mark_contested(_tracks(3), scores)
    assert [s.contested_by for s in scores] == [12, 12, None]


@pytest.mark.parametrize(
    ("rival", "why"),
    [
        ((0.49, 0.009), "a laughing face follows the loudness (0.49 under a real voice-over) but does not articulate"),
        ((0.28, 0.05), "a margin under contest_margin (0.14) is not a contradiction"),
        ((None, 0.05), "a rival without a close-follow measure"),
    ],
)
def test_no_contest_without_a_clearly_closer_talking_rival(rival, why):
    detector = SyncDetector(contest_margin=0.15, min_articulation=0.02)
    scores = _scores((0.14, 0.04), rival)
    detector.mark_contested(_tracks(2), scores)
    assert scores[0].contested_by is None, why


def test_contest_margin_null_turns_the_check_off():
    detector = SyncDetector(contest_margin=None)
    scores = _scores((0.0, 0.04), (0.9, 0.04))
    detector.mark_contested(_tracks(2), scores)
    assert all(s.contested_by is None for s in scores)
