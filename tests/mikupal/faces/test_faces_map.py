"""``FacesStage.map`` starts each window before the last one is finished: the same artifacts and counts as one by one."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from mikupal.faces.artifact import tracks_path
from mikupal.faces.stage import FacesStage
from mikupal.stage import StageContext
from mikupal.testing.config import compose_pipeline


def _map_faces(run_dir, utterances, *overrides):
    cfg = compose_pipeline(f"input={utterances[0].source}", f"run_dir={run_dir}", "fail_fast=false", *overrides)
    ctx = StageContext(run_dir=run_dir, rank=0, world_size=1, cfg=cfg)
    stage = FacesStage(cfg)
    stage.setup(ctx)
    try:
        return list(stage.map(utterances, ctx))
    finally:
        stage.teardown()


def test_overlapped_windows_give_the_artifacts_of_one_by_one(two_speaker, tmp_path):
    """The fixture ran the utterances through ``process`` one by one; ``map`` gives byte-identical tracks."""
    _clip, first = two_speaker
    utterances = first.inputs[:8]
    results = _map_faces(tmp_path, utterances)
    assert [item.id for item, _, _ in results] == [u.id for u in utterances]
    assert all(result == [item] for item, result, _ in results)
    for u in utterances:
        assert (tmp_path / tracks_path(u.id)).read_bytes() == (first.run_dir / tracks_path(u.id)).read_bytes()
    frames = [counts["faces.frames"] for _, _, counts in results]  # each item's own counts
    assert frames == [first.tracks(u.id).n_frames for u in utterances]
    total = Counter()
    for _, _, counts in results:
        total.update(counts)
    assert total["faces.tracks"] == 2 * len(utterances)


def test_a_failing_window_is_reported_alone_and_the_others_are_unchanged(two_speaker, tmp_path):
    _clip, first = two_speaker
    utterances = list(first.inputs[:4])
    utterances[1] = replace(utterances[1], source=str(tmp_path / "missing.mp4"), video_id="missing")
    tiny = replace(utterances[2], end=utterances[2].start + 0.1)  # fewer frames than the first batch
    utterances[2] = tiny
    results = _map_faces(tmp_path / "run", utterances, "fail_fast=true")  # the runner raises per-item errors
    assert [item.id for item, _, _ in results] == [u.id for u in utterances]
    assert results[1][2] == {"faces.video_missing": 1}
    assert results[2][2]["faces.frames"] == 3
    for i in (0, 3):
        rel = tracks_path(utterances[i].id)
        assert (tmp_path / "run" / rel).read_bytes() == (first.run_dir / rel).read_bytes()


def test_an_error_inside_a_window_is_yielded_for_its_item(two_speaker, tmp_path, monkeypatch):
    _clip, first = two_speaker
    utterances = first.inputs[:3]
    bad = utterances[1]
    original = FacesStage._finish_batch

    def failing(self, batch, detected, state):  # the face mesh fails on the second utterance's frames
        if bad.start <= batch[0].time < bad.end:
            raise RuntimeError("mesh failed")
        return original(self, batch, detected, state)

    monkeypatch.setattr(FacesStage, "_finish_batch", failing)
    results = _map_faces(tmp_path, utterances, "fail_fast=true")  # raised, and yielded for its item
    assert [item.id for item, _, _ in results] == [u.id for u in utterances]
    assert isinstance(results[1][1], RuntimeError)
    assert results[0][1] == [utterances[0]] and results[2][1] == [utterances[2]]
    for i in (0, 2):
        rel = tracks_path(utterances[i].id)
        assert (tmp_path / rel).read_bytes() == (first.run_dir / rel).read_bytes()
    # without fail_fast the window gets an error artifact and the utterance passes on
    results = _map_faces(tmp_path / "b", utterances)
    assert [result for _, result, _ in results] == [[u] for u in utterances]
    assert results[1][2] == {"faces.error": 1}
