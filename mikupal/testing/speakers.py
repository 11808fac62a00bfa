"""Helpers of the speaker tests: a stage over hand-made utterances in a temporary run directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mikupal.records import Utterance
from mikupal.stage import StageContext
from mikupal.testing.config import compose_pipeline
from mikupal.testing.rundirs import write_utterances


def make_utterances(run_dir: Path, video_id: str, clips: list[np.ndarray], gap: float = 1.0) -> list[Utterance]:
    """Write each clip to ``audio/<id>.flac`` and return utterances placed one after another in time."""
    spans, t = [], 0.0
    for clip in clips:
        end = t + len(clip) / 16000
        spans.append((round(t, 3), round(end, 3)))
        t = end + gap
    return write_utterances(run_dir, video_id, f"{video_id}.mp4", clips, spans)


def run_stage(stage_cls, run_dir: Path, items: list[Utterance], *overrides: str):
    """Set up the stage from the composed config, map the items, tear down; returns ``(results, counts)`` by id."""
    cfg = compose_pipeline(f"input={run_dir}", f"run_dir={run_dir}", *overrides)
    stage = stage_cls(cfg)
    ctx = StageContext(run_dir=run_dir, rank=0, world_size=1, cfg=cfg)
    stage.setup(ctx)
    try:
        results, counts = {}, {}
        for item, result, c in stage.map(items, ctx):
            results[item.id] = result
            counts[item.id] = c
    finally:
        stage.teardown()
    return results, counts
