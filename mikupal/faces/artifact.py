"""The ``faces`` stage's per-utterance artifact: ``faces/tracks/<utterance id>.json``.

One JSON object per utterance, written by the ``faces`` stage and read by the ``asd`` stage::

    {"utterance_id": "talk-1a2b3c4d-00003", "status": "ok", "message": null,
     "start": 12.48, "end": 15.9, "fps": 25.0, "n_frames": 86, "detector_frames": 43,
     "source_size": [1280, 720], "analysis_size": [640, 360], "detector": "BlazeFaceDetector(blazeface-short)",
     "frames_with_face": 86, "scene_cuts": [], "capped_frames": 0, "discarded_tracks": 0,
     "tracks": [{"track_id": 0, "frames": [0, 1, ...], "boxes": [[x1, y1, x2, y2], ...], "scores": [...],
                 "detected": [true, ...], "mouth": [0.12, null, ...]}]}

``status`` is ``ok`` when frames were analysed (tracks may still be empty), else why not: ``no_video`` (audio-only
source), ``video_missing`` (the source file is gone), ``video_ended`` (the video stream ends before the utterance
starts), ``decode_failed`` (no frame of the window decodes; ``message`` says why), ``error`` (an unexpected
failure, logged with its traceback). Frame ``k`` of a window is at ``start + k / fps`` seconds (source time line);
boxes are in source-frame pixels; ``scene_cuts`` lists the frames that start a new shot; ``detector_frames`` counts
the frames the detector ran on (``faces.detect_every``), ``capped_frames`` those of them with more than
``faces.max_faces`` faces.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mikupal.faces.tracking import FaceTrack

TRACKS_DIR = "faces/tracks"
STATUSES = ("ok", "no_video", "video_missing", "video_ended", "decode_failed", "error")


def tracks_path(utterance_id: str) -> str:
    """Run-directory-relative path of an utterance's track artifact."""
    return f"{TRACKS_DIR}/{utterance_id}.json"


def _num(v: float, digits: int) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), digits)


@dataclass
class WindowTracks:
    """Face tracks of one utterance's time window (the artifact; see the module docstring)."""

    utterance_id: str
    status: str
    start: float
    end: float
    fps: float
    n_frames: int = 0
    detector_frames: int = 0
    message: str | None = None
    source_size: list[int] | None = None
    analysis_size: list[int] | None = None
    detector: str | None = None
    frames_with_face: int = 0
    scene_cuts: list[int] = field(default_factory=list)
    capped_frames: int = 0
    discarded_tracks: int = 0
    tracks: list[FaceTrack] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown faces status {self.status!r}; expected one of {STATUSES}")

    @property
    def expected_frames(self) -> int:
        """Analysis frames the window spans."""
        return max(0, int(math.ceil((self.end - self.start) * self.fps - 1e-6)))

    def time_of(self, frames: np.ndarray | int) -> np.ndarray | float:
        """Source time (seconds) of analysis frame indices."""
        return self.start + np.asarray(frames) / self.fps

    def to_dict(self) -> dict:
        return {
            "utterance_id": self.utterance_id,
            "status": self.status,
            "message": self.message,
            "start": self.start,
            "end": self.end,
            "fps": self.fps,
            "n_frames": self.n_frames,
            "detector_frames": self.detector_frames,
            "source_size": self.source_size,
            "analysis_size": self.analysis_size,
            "detector": self.detector,
            "frames_with_face": self.frames_with_face,
            "scene_cuts": list(self.scene_cuts),
            "capped_frames": self.capped_frames,
            "discarded_tracks": self.discarded_tracks,
            "tracks": [
                {
                    "track_id": t.track_id,
                    "frames": [int(f) for f in t.frames],
                    "boxes": [[_num(v, 1) for v in b] for b in t.boxes],
                    "scores": [_num(s, 4) for s in t.scores],
                    "detected": [bool(d) for d in t.detected],
                    "mouth": [_num(m, 4) for m in t.mouth],
                }
                for t in self.tracks
            ],
        }

    @classmethod
    def from_dict(cls, data: dict) -> WindowTracks:
        tracks = [
            FaceTrack(
                track_id=int(t["track_id"]),
                frames=np.asarray(t["frames"], dtype=np.int64),
                boxes=np.asarray(t["boxes"], dtype=np.float64).reshape(-1, 4),
                scores=np.asarray(t["scores"], dtype=np.float64),
                detected=np.asarray(t["detected"], dtype=bool),
                mouth=np.asarray([np.nan if m is None else m for m in t["mouth"]], dtype=np.float64),
            )
            for t in data.get("tracks", [])
        ]
        fields = {k: v for k, v in data.items() if k != "tracks"}
        return cls(**fields, tracks=tracks)

    def write(self, path: Path) -> None:
        """Write as JSON (use with :func:`mikupal.stage.write_atomic`)."""
        Path(path).write_text(json.dumps(self.to_dict(), separators=(",", ":")) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> WindowTracks:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
