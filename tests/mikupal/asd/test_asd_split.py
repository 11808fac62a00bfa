"""split_at_cuts: an utterance across a scene cut with faces on both sides becomes pieces with stable ids."""

from __future__ import annotations

import numpy as np

from mikupal.asd.stage import AsdStage, split_at_cuts
from mikupal.faces.artifact import WindowTracks
from mikupal.faces.tracking import FaceTrack
from mikupal.records import Utterance, Word


def _track(tid, frames):
    frames = np.asarray(frames)
    n = len(frames)
    return FaceTrack(tid, frames, np.tile([10.0, 10.0, 50.0, 50.0], (n, 1)), np.ones(n), np.ones(n, bool),
                     np.full(n, 0.1))


def _window(cuts, tracks, start=10.0, end=14.0):
    return WindowTracks("v-00001", "ok", start, end, 25.0, n_frames=100, scene_cuts=cuts, tracks=tracks)


def _utterance(words=True):
    ws = [Word("hello", 10.1, 10.5, 0.9), Word("there", 11.8, 12.1, 0.9), Word("-ish", 12.1, 12.3, 0.9),
          Word("friend", 13.0, 13.5, 0.9)]
    return Utterance("v-00001", "v", "v.mp4", 10.0, 14.0, "audio/v-00001.flac", text="hello there-ish friend",
                     words=ws if words else None)


def test_split_at_a_cut_between_two_faces():
    window = _window([50], [_track(0, range(0, 50)), _track(1, range(50, 100))])
    pieces, dropped = split_at_cuts(_utterance(), window, 0.5)
    assert dropped == 0 and [p.id for p, _ in pieces] == ["v-00001-c1", "v-00001-c2"]
    (a, wa), (b, wb) = pieces
    assert (a.start, a.end, b.start, b.end) == (10.0, 12.0, 12.0, 14.0)
    assert [w.word for w in a.words] == ["hello", "there"] and a.text == "hello there"
    assert b.text == "-ish friend" and b.audio == "audio/v-00001-c2.flac"
    assert [t.track_id for t in wa.tracks] == [0] and [t.track_id for t in wb.tracks] == [1]
    assert wb.tracks[0].frames[0] == 0 and wb.expected_frames == 50 and wb.scene_cuts == []
    assert AsdStage.parent_key(a) == AsdStage.parent_key(b) == "v-00001"


def test_a_cut_to_a_shot_without_faces_does_not_split():
    window = _window([50], [_track(0, range(0, 50))])
    pieces, dropped = split_at_cuts(_utterance(), window, 0.5)
    assert dropped == 0 and len(pieces) == 1 and pieces[0][0].id == "v-00001"


def test_short_pieces_are_dropped_and_ids_keep_their_place():
    window = _window([10, 60], [_track(0, range(0, 10)), _track(1, range(10, 60)), _track(2, range(60, 100))])
    pieces, dropped = split_at_cuts(_utterance(words=False), window, 0.5)
    assert dropped == 1  # 0.4 s before the first cut
    assert [p.id for p, _ in pieces] == ["v-00001-c2", "v-00001-c3"]
    assert all(p.words is None and p.text is None for p, _ in pieces)
