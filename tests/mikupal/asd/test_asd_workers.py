"""The asd stage's workers (``asd.workers``): several utterances at once give what one at a time gives."""

from __future__ import annotations

import shutil
import threading

import pytest

from mikupal.asd.stage import AsdStage
from mikupal.stage import StageContext
from mikupal.testing.config import compose_pipeline
from mikupal.testing.vision import probe_clip


def _copy_faces_run(src, dst):
    """A run directory holding what the asd stage reads: the utterances' audio and the faces stage's tracks."""
    shutil.copytree(src / "audio", dst / "audio")
    shutil.copytree(src / "faces" / "tracks", dst / "faces" / "tracks")
    return dst


def _run_asd(run_dir, utterances, *overrides, threads=None):
    """``AsdStage.map`` over ``utterances``; ``threads`` (a set) collects the names of the threads that ran them."""
    cfg = compose_pipeline(f"input={utterances[0].source}", f"run_dir={run_dir}", "fail_fast=false", *overrides)
    ctx = StageContext(run_dir=run_dir, rank=0, world_size=1, cfg=cfg)
    stage = AsdStage(cfg)
    if threads is not None:
        process = stage.process

        def recording(item, item_ctx):
            threads.add(threading.current_thread().name)
            return process(item, item_ctx)

        stage.process = recording
    stage.setup(ctx)
    try:
        return list(stage.map(utterances, ctx))
    finally:
        stage.teardown()


@pytest.fixture(scope="module")
def one_and_two_workers(two_speaker, tmp_path_factory):
    """The fixture's utterances through the asd stage with one worker and with two (blocks of 3 utterances)."""
    _clip, first = two_speaker
    utterances = first.inputs[:10]
    runs, threads = {}, {1: set(), 2: set()}
    for workers in (1, 2):
        run_dir = _copy_faces_run(first.run_dir, tmp_path_factory.mktemp(f"asd_workers_{workers}"))
        results = _run_asd(run_dir, utterances, f"asd.workers={workers}", "asd.worker_block=3", threads=threads[workers])
        runs[workers] = (run_dir, results)
    assert threads[1] == {threading.current_thread().name} and len(threads[2]) == 2, threads
    return utterances, runs


def test_two_workers_give_the_records_scores_and_counts_of_one(one_and_two_workers):
    utterances, runs = one_and_two_workers
    (dir1, res1), (dir2, res2) = runs[1], runs[2]
    assert [item.id for item, _, _ in res2] == [u.id for u in utterances]  # input order
    assert [r for _, r, _ in res2] == [r for _, r, _ in res1]
    assert [c for _, _, c in res2] == [c for _, _, c in res1]  # each item's own counts
    assert sum(c.get("asd.face", 0) for _, _, c in res2) >= 8
    for u in utterances:
        rel = f"asd/scores/{u.id}.json"
        assert (dir2 / rel).read_bytes() == (dir1 / rel).read_bytes()


def test_two_workers_write_the_same_face_clips(one_and_two_workers):
    _utterances, runs = one_and_two_workers
    (dir1, res1), (dir2, _) = runs[1], runs[2]
    clips = [out.face.clip for _, result, _ in res1 for out in result if out.face is not None]
    assert clips
    for rel in clips:
        assert probe_clip(dir2 / rel) == probe_clip(dir1 / rel)


def test_a_failing_utterance_is_reported_alone_with_two_workers(two_speaker, tmp_path):
    _clip, first = two_speaker
    utterances = first.inputs[:5]
    run_dir = _copy_faces_run(first.run_dir, tmp_path)
    (run_dir / "faces" / "tracks" / f"{utterances[2].id}.json").write_text("{not json")
    results = _run_asd(run_dir, utterances, "asd.workers=2", "asd.worker_block=2")
    assert [item.id for item, _, _ in results] == [u.id for u in utterances]
    failed = [item.id for item, result, _ in results if isinstance(result, BaseException)]
    assert failed == [utterances[2].id]
    assert all(result[0].face is not None for _, result, _ in results if not isinstance(result, BaseException))


def test_workers_are_operational(two_speaker):
    """Changing asd.workers or asd.worker_block does not change the stage hash (a run directory resumes)."""
    clip, _ = two_speaker
    configs = [
        AsdStage(compose_pipeline(f"input={clip.path}", f"asd.workers={w}", f"asd.worker_block={b}")).stage_config()
        for w, b in ((1, 1), (2, 8), (3, 5))
    ]
    assert configs[0] == configs[1] == configs[2]
    assert "workers" not in configs[0]["asd"] and "worker_block" not in configs[0]["asd"]


def test_bad_worker_count_is_refused(two_speaker, tmp_path):
    _clip, first = two_speaker
    with pytest.raises(ValueError, match="asd.workers"):
        _run_asd(tmp_path, first.inputs[:1], "asd.workers=-1")


def test_two_workers_running_talknet_at_once_give_the_scores_of_one(two_speaker, talknet_ckpt, tmp_path):
    """asd=talknet (random weights, CPU) in two threads at once: its torch model keeps no state between calls."""
    _clip, first = two_speaker
    utterances = first.inputs[:6]
    talknet = ["asd=talknet", f"asd.model={talknet_ckpt}", "asd.device=cpu", "asd.clip.enabled=false"]
    runs, threads = {}, {1: set(), 2: set()}
    for workers in (1, 2):
        run_dir = _copy_faces_run(first.run_dir, tmp_path / f"talknet_{workers}")
        results = _run_asd(run_dir, utterances, *talknet, f"asd.workers={workers}", "asd.worker_block=2",
                           threads=threads[workers])
        assert not [r for _, r, _ in results if isinstance(r, BaseException)]
        runs[workers] = (run_dir, results)
    assert len(threads[2]) == 2, threads  # the two workers did run at once
    (dir1, res1), (dir2, res2) = runs[1], runs[2]
    assert [r for _, r, _ in res2] == [r for _, r, _ in res1]
    for u in utterances:
        rel = f"asd/scores/{u.id}.json"
        assert (dir2 / rel).read_bytes() == (dir1 / rel).read_bytes()
