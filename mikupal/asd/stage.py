"""``asd`` stage adapter: pick the speaking face of each utterance, fill ``face``, write ``faces/<id>.mp4``.

Utterance → the same Utterance with ``face`` set (:class:`~mikupal.records.Face`) or ``None``. Per utterance:

1. read the ``faces`` stage's tracks (``faces/tracks/<id>.json``);
2. candidates are tracks covering at least ``asd.min_coverage`` of the utterance's analysis frames (a track's span,
   gaps included; tracks end at scene cuts, so a cut in the middle of an utterance halves the coverage); at most
   ``asd.max_tracks`` of them, those with the most detected frames;
3. the backend (``asd._target_`` and its arguments) scores every candidate against the utterance audio (``audio/<id>.flac``);
4. the best candidate becomes the utterance's face if its score is at least ``asd.threshold`` — there *is* a
   threshold, unlike the original code, which always took the highest mean score, so off-screen narrators were
   assigned to a visible non-speaker;
5. its face-crop clip with the utterance audio is written to ``faces/<id>.mp4`` (:mod:`mikupal.asd.clip`).

Otherwise ``face`` is ``None`` and the reason is counted as ``asd.no_face.<reason>``: ``no_video``,
``video_missing``, ``decode_failed``, ``error`` (from the faces stage), ``missing_tracks`` (no faces artifact),
``no_face`` (no track), ``low_coverage`` (no track covers enough), ``low_asd_score`` (best score below the
threshold), ``asd_error`` (the detector failed; logged). Utterances are never dropped here: the ``filter`` stage
decides what a missing face means. Each utterance's scores are kept in ``asd/scores/<id>.json``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mikupal.asd.base import STAGE_KEYS, ActiveSpeakerDetector, TrackEvidence
from mikupal.asd.clip import collect_crops, write_face_clip
from mikupal.faces.artifact import WindowTracks, tracks_path
from mikupal.faces.stage import input_video_paths
from mikupal.faces.tracking import FaceTrack
from mikupal.faces.video import VideoDecodeError, read_window
from mikupal.media import MediaError, read_audio
from mikupal.records import Face, Utterance
from mikupal.stage import Stage, StageContext, StopStage, write_atomic

log = logging.getLogger(__name__)


def clip_path(utterance_id: str) -> str:
    """Run-directory-relative path of an utterance's face clip."""
    return f"faces/{utterance_id}.mp4"


class AsdStage(Stage):
    """Active speaker detection and face clips (see the module docstring)."""

    name = "asd"
    input_type = Utterance
    output_type = Utterance
    config_keys = ("asd",)

    def setup(self, ctx: StageContext) -> None:
        ac = self.cfg.asd
        self.threshold = float(ac.threshold)
        self.min_coverage = float(ac.min_coverage)
        self.max_tracks = int(ac.max_tracks)
        if not 0.0 <= self.threshold <= 1.0 or not 0.0 <= self.min_coverage <= 1.0:
            raise ValueError("asd.threshold and asd.min_coverage must be in [0, 1]")
        self.clip_cfg = ac.get("clip")
        self.rate = int(self.cfg.media.sampling_rate)
        # Resolve against the whole config first: backend keys may interpolate others (device: ${runner.device}).
        resolved = OmegaConf.to_container(ac, resolve=True)
        backend_config = {k: v for k, v in resolved.items() if k not in STAGE_KEYS}
        self.backend: ActiveSpeakerDetector = instantiate(backend_config)
        faces_cfg = self.cfg.get("faces")
        if faces_cfg is not None:
            if self.backend.needs_mouth and faces_cfg.get("landmarks") is None:
                raise ValueError(
                    f"asd backend {type(self.backend).__name__} needs mouth openings from the face mesh: "
                    "set faces.landmarks (e.g. faces.landmarks.model=face-mesh) or choose another asd backend"
                )
            fps = float(faces_cfg.analysis_fps)
            if self.backend.fps is not None and abs(self.backend.fps - fps) > 1e-6:
                raise ValueError(
                    f"asd backend {type(self.backend).__name__} needs frames at {self.backend.fps:g} fps but "
                    f"faces.analysis_fps={fps:g}; set faces.analysis_fps={self.backend.fps:g}"
                )
        self.backend.setup()
        self.paths = input_video_paths(self.cfg)

    def teardown(self) -> None:
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.teardown()

    # ------------------------------------------------------------------------------------------------ item
    def process(self, item: Utterance, ctx: StageContext) -> Sequence[Utterance]:
        try:
            face, reason, report = self.choose(item, ctx)
        except (StopStage, KeyboardInterrupt):
            raise
        except Exception as e:  # a vision failure must not cost the utterance its audio
            if self.cfg.get("fail_fast"):
                raise
            log.exception("asd: %s: active speaker detection failed; face set to null", item.id)
            face, reason, report = None, "asd_error", {"error": f"{type(e).__name__}: {e}"}
        if face is None:
            ctx.count(f"asd.no_face.{reason}")
        else:
            ctx.count("asd.face")
        report = {"utterance_id": item.id, "reason": reason, "face": face.to_dict() if face else None, **report}
        write_atomic(ctx.path(f"asd/scores/{item.id}.json"), lambda p: p.write_text(json.dumps(report) + "\n"))
        return [replace(item, face=face)]

    def choose(self, item: Utterance, ctx: StageContext) -> tuple[Face | None, str | None, dict[str, Any]]:
        """The utterance's face (or ``None``), the reason when ``None``, and a report of the scores."""
        artifact = ctx.path(tracks_path(item.id))
        if not artifact.is_file():
            log.warning("asd: %s: no faces artifact at %s (did the faces stage run?)", item.id, artifact)
            return None, "missing_tracks", {}
        window = WindowTracks.read(artifact)
        if window.status != "ok":
            return None, window.status, {"message": window.message}
        if not window.tracks:
            return None, "no_face", {"frames": window.n_frames}
        n_frames = window.expected_frames
        coverage = {t.track_id: len(t) / max(n_frames, 1) for t in window.tracks}
        candidates = [t for t in window.tracks if coverage[t.track_id] >= self.min_coverage]
        report: dict[str, Any] = {"coverage": {str(k): round(v, 3) for k, v in coverage.items()}}
        if not candidates:
            return None, "low_coverage", report
        if len(candidates) > self.max_tracks:
            ctx.count("asd.tracks_capped")
            candidates = sorted(candidates, key=lambda t: -t.n_detected)[: self.max_tracks]
        audio = read_audio(ctx.path(item.audio), self.rate)
        evidence = [self._evidence(t, window) for t in candidates]
        if self.backend.needs_crops:
            self._add_crops(item, window, candidates, evidence)
        scores = self.backend.score(evidence, audio, self.rate)
        if len(scores) != len(candidates):
            raise RuntimeError(f"asd backend returned {len(scores)} scores for {len(candidates)} tracks")
        report["scores"] = {
            str(t.track_id): {"score": round(s.score, 4), **s.details} for t, s in zip(candidates, scores)
        }
        best_i = int(np.argmax([s.score for s in scores]))
        best, best_score = candidates[best_i], scores[best_i]
        if best_score.score < self.threshold:
            return None, "low_asd_score", report
        clip = self._write_clip(item, window, best, audio, ctx)
        face = Face(
            track_id=best.track_id,
            box=[round(v, 1) for v in best.median_box()],
            asd_score=round(float(best_score.score), 4),
            clip=clip,
        )
        return face, None, report

    # ------------------------------------------------------------------------------------------------ helpers
    @staticmethod
    def _evidence(track: FaceTrack, window: WindowTracks) -> TrackEvidence:
        return TrackEvidence(
            track_id=track.track_id,
            times=np.asarray(track.frames, dtype=np.float64) / window.fps,
            fps=window.fps,
            boxes=track.boxes,
            detected=track.detected,
            mouth=track.mouth,
        )

    def video_path(self, item: Utterance) -> Path:
        return Path(self.paths.get(item.video_id) or item.source)

    def _add_crops(
        self, item: Utterance, window: WindowTracks, tracks: list[FaceTrack], evidence: list[TrackEvidence]
    ) -> None:
        frames = read_window(self.video_path(item), window.start, window.end, window.fps)
        crops = collect_crops(
            frames,
            tracks,
            window.expected_frames,
            int(self.backend.crop_size),
            bool(self.backend.crop_grey),
            margin=float(self.backend.crop_margin),
            offset=float(self.backend.crop_offset),
        )
        for ev, c in zip(evidence, crops):
            ev.crops = c

    def _write_clip(
        self, item: Utterance, window: WindowTracks, track: FaceTrack, audio: np.ndarray, ctx: StageContext
    ) -> str | None:
        cc = self.clip_cfg
        if cc is None or not cc.get("enabled", True):
            return None
        rel = clip_path(item.id)
        try:
            frames = read_window(self.video_path(item), window.start, window.end, window.fps)
            write_atomic(
                ctx.path(rel),
                lambda tmp: write_face_clip(
                    tmp,
                    frames,
                    track,
                    window.expected_frames,
                    audio,
                    self.rate,
                    window.fps,
                    size=int(cc.size),
                    margin=float(cc.margin),
                    smooth=int(cc.smooth),
                    crf=int(cc.crf),
                    preset=str(cc.preset),
                ),
            )
        except (VideoDecodeError, MediaError, OSError) as e:
            if self.cfg.get("fail_fast"):
                raise
            log.warning("asd: %s: face clip not written (%s); the face is kept without a clip", item.id, e)
            ctx.count("asd.clip_failed")
            return None
        return rel
