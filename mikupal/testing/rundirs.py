"""Run directories for tests: utterance audio written as ``vad`` writes it, and runner state (stages marked done,
or undone as a killed run leaves them) written through the rundir API.

The done logs (``<stage>/part-RRRRR-of-WWWWW.done.jsonl``) and rank markers are the runner's private files: tests
never write them by hand but through these helpers, which use :class:`mikupal.rundir.StageStore`,
:class:`mikupal.rundir.DoneEntry` and :class:`mikupal.manifest.ManifestWriter` exactly as the runner does, so a
change of the format changes them too.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from mikupal.manifest import ManifestWriter, iter_jsonl
from mikupal.records import Utterance
from mikupal.rundir import DoneEntry, RunDir, atomic_write_jsonl
from mikupal.testing.records import make_utterance


def write_utterances(
    run_dir: Path, video: str, source: str, clips: list[np.ndarray], spans: list[tuple[float, float]],
    sampling_rate: int = 16000,
) -> list[Utterance]:
    """Write each clip to ``audio/<id>.flac`` under ``run_dir``; its utterance spans ``spans[i]`` of ``source``.

    Bare records, as the ``vad`` stage writes them (no text, words, face or emotion).
    """
    from mikupal.media import write_audio as write_samples

    (run_dir / "audio").mkdir(parents=True, exist_ok=True)
    out = []
    for i, (clip, (start, end)) in enumerate(zip(clips, spans)):
        utt = make_utterance(video, i, start=start, end=end, source=source, text=None, language=None, words=None,
                             face=None, emotion=None)
        write_samples(run_dir / utt.audio, clip, sampling_rate)
        out.append(utt)
    return out


def mark_done(run_dir: str | Path, stage: str, items: Iterable[tuple[str, str, Sequence[Any]]], rank: int = 0,
              world_size: int = 1) -> None:
    """Record ``items`` as finished by ``stage`` (rank ``rank`` of ``world_size``), as the runner does.

    Each item is ``(key, video_id, outputs)``: its output records go to the stage's part file and one
    :class:`~mikupal.rundir.DoneEntry` (``n_out = len(outputs)``, no drop, no counters) to its done log.
    """
    store = RunDir(run_dir).store(stage, rank, world_size)
    with ManifestWriter(store.outputs_path) as out, ManifestWriter(store.done_path) as done_log:
        for key, video_id, outputs in items:
            for record in outputs:
                out.write(record)
            done_log.write(asdict(DoneEntry(key=key, video_id=video_id, n_out=len(outputs), drop=None)))


def forget_done(run_dir: str | Path, stage: str, keep: int = 0, rank: int = 0, world_size: int = 1) -> int:
    """Keep only the first ``keep`` done entries of ``stage``'s done log, as if the run was killed after ``keep``
    items (their output lines stay, as a killed run leaves them). Returns how many entries were dropped."""
    store = RunDir(run_dir).store(stage, rank, world_size)
    entries = list(iter_jsonl(store.done_path))
    atomic_write_jsonl(store.done_path, entries[:keep])
    return max(0, len(entries) - keep)


def drop_finish(run_dir: str | Path) -> None:
    """Remove what ``finish`` and the ranks' completion markers wrote (the merged ``utterances.jsonl``,
    ``summary.json``, ``errors.jsonl``, ``ranks/``), as a run killed before its end leaves the directory."""
    layout = RunDir(run_dir)
    for path in (layout.utterances, layout.summary, layout.errors):
        path.unlink(missing_ok=True)
    ranks = layout.rank_marker(0, 1).parent
    for marker in ranks.glob("rank-*.json") if ranks.is_dir() else []:
        marker.unlink()


def seed_run_dir(run_dir: Any, source: Any, utterances: Any) -> list[str]:
    """Prepare a run directory whose ``extract`` and ``asr`` stages are already done, holding ``utterances``.

    Running the pipeline with ``stages=[extract, vad, asr, annotate]`` (and ``input=source``) then goes straight to the
    annotate stage through the real runner: resume skips the seeded stages, and the annotate stage reads the
    seeded ``asr`` manifest. The utterances' media paths must already exist under ``run_dir``.

    Args:
        run_dir: the run directory.
        source: the input video path (it must exist; its :func:`~mikupal.ids.video_id` must be the utterances').
        utterances: :class:`~mikupal.records.Utterance` records.

    Returns:
        The video ids seeded.
    """
    from mikupal.ids import video_id

    vids = sorted({u.video_id for u in utterances})
    expected = video_id(source)
    if vids != [expected]:
        raise ValueError(f"seed_run_dir: utterances must all belong to video_id {expected!r} of {source}, got {vids}")
    mark_done(run_dir, "extract", [(expected, expected, [])])
    mark_done(run_dir, "asr", [(u.id, u.video_id, [u]) for u in utterances])
    return vids
