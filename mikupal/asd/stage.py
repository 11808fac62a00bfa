"""``asd`` stage adapter: pick the speaking face of each utterance, fill ``face``, write ``faces/<id>.mp4``.

Utterance → the same Utterance with ``face`` set (:class:`~mikupal.records.Face`) or ``None`` — or, when it runs
across a scene cut, its pieces. Per utterance:

1. read the ``faces`` stage's tracks (``faces/tracks/<id>.json``); if scene cuts lie inside the utterance and
   ``asd.split_at_cuts.enabled``, cut it there (:func:`split_at_cuts`): pieces ``<id>-c1``, ``<id>-c2``, ... (stable
   across reruns) with their own audio file, words and text, each going through the steps below on its own frames,
   so no utterance straddles a change of shot (and of speaker); pieces shorter than ``asd.split_at_cuts.min_piece``
   are dropped (``asd.cut_piece_dropped``). Counted: ``asd.split_at_cut`` (utterances split), ``asd.cut_pieces``;
2. candidates are tracks covering at least ``asd.min_coverage`` of the utterance's analysis frames (a track's span,
   gaps included; tracks end at scene cuts, which is why utterances are split there); at most
   ``asd.max_tracks`` of them, those with the most detected frames;
3. the backend (``asd._target_`` and its arguments) scores every candidate against the utterance audio (``audio/<id>.flac``);
4. if any candidate's score is at least ``asd.threshold``, one of those becomes the utterance's face — there *is*
   a threshold, unlike the original code, which always took the highest mean score, so off-screen narrators were
   assigned to a visible non-speaker. Which one (``asd.rank_by``): the one with the highest score, or, with
   ``evidence`` (the default), the one whose evidence of speaking this speech is strongest
   (:attr:`~mikupal.asd.base.TrackScore.evidence`; a backend without it is ranked by score); a track the
   detector marks contested by another talking face (:attr:`~mikupal.asd.base.TrackScore.contested_by`) is never
   chosen;
5. its face-crop clip with the utterance audio is written to ``faces/<id>.mp4`` (:mod:`mikupal.asd.clip`).

Otherwise ``face`` is ``None`` and the reason is counted as ``asd.no_face.<reason>``: ``no_video``,
``video_missing``, ``decode_failed``, ``error`` (from the faces stage), ``missing_tracks`` (no faces artifact),
``no_face`` (no track), ``low_coverage`` (no track covers enough), ``low_asd_score`` (best score below the
threshold), ``contested`` (every passing track is contested by another talking face), ``asd_error`` (the detector
failed; logged). Utterances are not dropped for a missing face: the ``filter`` stage decides what that means (only
pieces too short at a cut are dropped, see step 1; an utterance all of whose pieces are is dropped as
``cut_pieces_too_short``). Each utterance's scores are kept in
``asd/scores/<id>.json``.

``asd.workers`` utterances are worked on at once in threads (:meth:`AsdStage.map`), each worker taking blocks of
``asd.worker_block`` consecutive utterances with its own decoder; every utterance gets the records, scores and
counts it gets alone. Both keys only change the speed, so they are left out of the stage hash.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mikupal.asd.base import ActiveSpeakerDetector, TrackEvidence, TrackScore
from mikupal.asd.clip import collect_crops, write_face_clip
from mikupal.faces.artifact import WindowTracks, tracks_path
from mikupal.faces.stage import input_video_paths
from mikupal.faces.tracking import FaceTrack
from mikupal.faces.video import OpenVideo, VideoDecodeError, VideoReader, prefetch
from mikupal.media import MediaError, read_audio, write_audio
from mikupal.records import Face, Utterance, Word
from mikupal.stage import Drop, Stage, StageContext, StopStage, in_threads, write_atomic

log = logging.getLogger(__name__)


_PIECE_SUFFIX = re.compile(r"-c\d+$")


def _join_words(words: Sequence[Word]) -> str | None:
    """Text of a run of ASR words (no space before a sub-word piece such as ``-hearted``)."""
    text = ""
    for w in words:
        token = w.word.strip()
        text += token if not text or token[:1] in "-'.,!?;:" else " " + token
    return text or None


def split_at_cuts(
    item: Utterance, window: WindowTracks, min_piece: float
) -> tuple[list[tuple[Utterance, WindowTracks]], int]:
    """Cut an utterance at the scene cuts of its faces window, so that no piece runs across a change of speaker.

    Only cuts with a face track on both sides are used (a cut to or from a shot without faces cannot change who is
    seen speaking; the track then simply covers part of the utterance).

    A cut at analysis frame ``f`` (the first frame of the new shot) splits at ``window.start + f / fps``. Piece ``k``
    (1, 2, ... in time order, counting dropped pieces, so ids are stable across reruns) gets the id
    ``<id>-c<k>``, its own ``audio/<id>-c<k>.flac``, the words whose middle falls inside it (and the text they make;
    ``None`` without words), and the tracks of its frames (tracks already end at cuts). Pieces shorter than
    ``min_piece`` seconds are dropped.

    Returns:
        ``(pieces, n_dropped)``: ``[(utterance, window), ...]``, or ``[(item, window)]`` when no cut lies inside.
    """
    fps = window.fps
    n = window.expected_frames
    cut_frames = sorted({int(c) for c in window.scene_cuts if 0 < int(c) < n})
    # only a cut with faces on both sides can change the speaker (a face leaving the picture is low coverage)
    bounds = [0, *cut_frames, n]
    has_face = [
        any(((t.frames >= lo) & (t.frames < hi)).any() for t in window.tracks) for lo, hi in zip(bounds, bounds[1:])
    ]
    cut_frames = [c for i, c in enumerate(cut_frames) if has_face[i] and has_face[i + 1]]
    if not cut_frames:
        return [(item, window)], 0
    edges = [0, *cut_frames, n]
    pieces: list[tuple[Utterance, WindowTracks]] = []
    dropped = 0
    for k, (f0, f1) in enumerate(zip(edges[:-1], edges[1:]), start=1):
        start = window.start + f0 / fps
        end = min(item.end, window.start + f1 / fps) if f1 < n else item.end
        if end - start < min_piece:
            dropped += 1
            continue
        pid = f"{item.id}-c{k}"
        words = None
        if item.words is not None:
            words = [w for w in item.words if start <= (w.start + w.end) / 2 < end]
        piece = replace(
            item,
            id=pid,
            start=round(start, 4),
            end=round(end, 4),
            audio=f"audio/{pid}.flac",
            words=words,
            text=_join_words(words) if words is not None else None,
            face=None,
        )
        pieces.append((piece, _sub_window(window, pid, f0, f1, piece.start, piece.end)))
    return pieces, dropped


def _sub_window(window: WindowTracks, uid: str, f0: int, f1: int, start: float, end: float) -> WindowTracks:
    """The frames ``[f0, f1)`` of a faces window as a window of their own (frame indices from 0)."""
    tracks = []
    for t in window.tracks:
        keep = (t.frames >= f0) & (t.frames < f1)
        if keep.any():
            tracks.append(
                FaceTrack(
                    track_id=t.track_id,
                    frames=t.frames[keep] - f0,
                    boxes=t.boxes[keep],
                    scores=t.scores[keep],
                    detected=t.detected[keep],
                    mouth=t.mouth[keep],
                )
            )
    n_frames = max(0, min(window.n_frames, f1) - f0)
    covered = set()
    for t in tracks:
        covered.update(int(f) for f in t.frames)
    return replace(
        window,
        utterance_id=uid,
        start=start,
        end=end,
        n_frames=n_frames,
        scene_cuts=[],
        frames_with_face=len(covered),
        tracks=tracks,
    )


def _word_spans(item: Utterance) -> np.ndarray | None:
    """The utterance's word spans in seconds from its audio start (``(k, 2)``), or ``None`` without words."""
    if not item.words:
        return None
    spans = [(w.start - item.start, w.end - item.start) for w in item.words if w.end > w.start]
    return np.asarray(spans, dtype=np.float64).reshape(-1, 2) if spans else None


def _clip_frame_format(reader: VideoReader) -> str:
    """``yuv420p`` for a source of even size in yuv420p (most videos), whose face clip is cropped from the decoded
    planes and encoded as it is (no full-frame RGB conversion, 1.1 -> 0.3 ms a 720p frame, and no RGB->YUV one
    before the encoder); ``rgb24`` (the general path) for any other."""
    width, height = reader.size
    even = width % 2 == 0 and height % 2 == 0
    rgb_coded = reader.colour["colorspace"] == 0  # AVCOL_SPC_RGB: planes hold G, B, R
    return "yuv420p" if even and reader.pix_fmt == "yuv420p" and not rgb_coded else "rgb24"


def clip_path(utterance_id: str) -> str:
    """Run-directory-relative path of an utterance's face clip."""
    return f"faces/{utterance_id}.mp4"


class AsdStage(Stage):
    """Active speaker detection and face clips (see the module docstring)."""

    name = "asd"
    input_type = output_type = Utterance
    config_keys = ("asd",)
    operational_keys = ("asd.workers", "asd.worker_block")

    backend_group = "asd"
    background_imports = ("scipy.signal",)  # clip smoothing and the sync detector's filters (1-2 s)
    backend: ActiveSpeakerDetector

    def build_backends(self, ctx: StageContext | None = None) -> dict[str, Any]:
        """The detector, checked against the faces stage's settings (face mesh, analysis frame rate)."""
        backends = super().build_backends(ctx)
        backend = backends["asd"]
        faces_cfg = self.cfg.get("faces")
        if faces_cfg is not None:
            if backend.needs_mouth and faces_cfg.get("landmarks") is None:
                raise ValueError(
                    f"asd backend {type(backend).__name__} needs mouth openings from the face mesh: "
                    "set faces.landmarks (e.g. faces.landmarks.model=face-mesh) or choose another asd backend"
                )
            fps = float(faces_cfg.analysis_fps)
            if backend.fps is not None and abs(backend.fps - fps) > 1e-6:
                raise ValueError(
                    f"asd backend {type(backend).__name__} needs frames at {backend.fps:g} fps but "
                    f"faces.analysis_fps={fps:g}; set faces.analysis_fps={backend.fps:g}"
                )
        return backends

    def setup(self, ctx: StageContext) -> None:
        ac = self.cfg.asd
        self.threshold = float(ac.threshold)
        self.min_coverage = float(ac.min_coverage)
        self.max_tracks = int(ac.max_tracks)
        self.rank_by = str(ac.get("rank_by") or "score")
        if self.rank_by not in ("score", "evidence"):
            raise ValueError(f"asd.rank_by must be score or evidence, got {self.rank_by!r}")
        if not 0.0 <= self.threshold <= 1.0 or not 0.0 <= self.min_coverage <= 1.0:
            raise ValueError("asd.threshold and asd.min_coverage must be in [0, 1]")
        self.clip_cfg = ac.get("clip")
        self.split_cfg = ac.get("split_at_cuts")
        self.rate = int(self.cfg.media.sampling_rate)
        self.workers = self.worker_count("asd.workers")
        self.worker_block = max(1, int(ac.get("worker_block") or 1))
        super().setup(ctx)
        self.paths = input_video_paths(self.cfg)
        # one open video per thread: a video's utterances are decoded on, not re-seeked
        self._local = threading.local()
        self._videos: list[OpenVideo] = []
        self._videos_lock = threading.Lock()

    def _rank(self, score: TrackScore) -> tuple[float, float]:
        """What orders the passing tracks (``asd.rank_by``): the detector's evidence, then the score."""
        if self.rank_by == "evidence" and score.evidence is not None:
            return float(score.evidence), float(score.score)
        return float(score.score), 0.0

    def teardown(self) -> None:
        for video in getattr(self, "_videos", []):
            video.close()
        self._videos = []
        super().teardown()

    @property
    def video(self) -> OpenVideo:
        """This thread's open video (each worker of :meth:`map` decodes with its own, in one thread: the workers
        keep the cores busy, and FFmpeg's frame threads would only add their overhead, about 15 % of the CPU)."""
        video = getattr(self._local, "video", None)
        if video is None:
            video = self._local.video = OpenVideo(threads=self.workers <= 1)
            with self._videos_lock:
                self._videos.append(video)
        return video

    # ------------------------------------------------------------------------------------------------ item
    @staticmethod
    def parent_key(output: Utterance) -> str:
        """A piece ``<id>-c<k>`` of an utterance split at a scene cut comes from ``<id>``."""
        return _PIECE_SUFFIX.sub("", output.id)

    def map(
        self, items: Iterable[Utterance], ctx: StageContext
    ) -> Iterator[tuple[Utterance, Sequence[Utterance] | Drop | BaseException, dict]]:
        """``asd.workers`` utterances at once, in threads; results (and counts) come in input order.

        Each worker takes a block of ``asd.worker_block`` consecutive utterances and works through it in order with
        its own decoder, which reads on from one utterance to the next (consecutive utterances are near each other
        in their video) instead of decoding the other worker's windows too. The work releases the GIL for most of
        its time (FFmpeg decoding, libx264, OpenCV's crops, numpy's filters), so two workers keep two cores busy.
        Each utterance's result is the one it gets alone: its counts are its own and its errors are yielded for it.
        """
        if self.workers <= 1:
            yield from super().map(items, ctx)
            return
        items = list(items)
        blocks = [items[i : i + self.worker_block] for i in range(0, len(items), self.worker_block)]

        def run_block(block: list[Utterance]) -> list[tuple[Sequence[Utterance] | Drop | BaseException, dict]]:
            return [self.outcome(item, ctx.for_item()) for item in block]

        for block, done in zip(blocks, in_threads(run_block, blocks, self.workers, "asd")):
            for item, (result, counts) in zip(block, done):
                yield item, result, counts

    def process(self, item: Utterance, ctx: StageContext) -> Sequence[Utterance] | Drop:
        window = self._read_window(item, ctx)
        pieces = self._split_at_cuts(item, window, ctx) if window is not None else [(item, window)]
        if not pieces:
            return Drop("cut_pieces_too_short")
        return [self._process_piece(piece, sub, ctx) for piece, sub in pieces]

    def _process_piece(self, item: Utterance, window: WindowTracks | None, ctx: StageContext) -> Utterance:
        try:
            face, reason, report = self.choose(item, ctx, window)
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
        return replace(item, face=face)

    def _read_window(self, item: Utterance, ctx: StageContext) -> WindowTracks | None:
        artifact = ctx.path(tracks_path(item.id))
        return WindowTracks.read(artifact) if artifact.is_file() else None

    def _split_at_cuts(
        self, item: Utterance, window: WindowTracks, ctx: StageContext
    ) -> list[tuple[Utterance, WindowTracks]]:
        """The utterance cut at the scene cuts inside it (see :func:`split_at_cuts`), with audio written per piece."""
        sc = self.split_cfg
        if sc is None or not sc.get("enabled", True) or window.status != "ok" or not window.scene_cuts:
            return [(item, window)]
        pieces, dropped = split_at_cuts(item, window, float(sc.get("min_piece", 0.5)))
        if dropped:
            ctx.count("asd.cut_piece_dropped", dropped)
        if len(pieces) == 1 and pieces[0][0].id == item.id:
            return pieces
        ctx.count("asd.split_at_cut")
        ctx.count("asd.cut_pieces", len(pieces))
        if item.words is None and item.text:
            ctx.count("asd.cut_piece_without_text", len(pieces))
        audio = read_audio(ctx.path(item.audio), self.rate)
        for piece, _ in pieces:
            lo = int(round((piece.start - item.start) * self.rate))
            hi = int(round((piece.end - item.start) * self.rate))
            write_atomic(ctx.path(piece.audio), lambda p, a=audio[lo:hi]: write_audio(p, a, self.rate))
        log.info("asd: %s runs across %d scene cut(s): split into %s", item.id, len(window.scene_cuts),
                 [p.id for p, _ in pieces])
        return pieces

    def choose(
        self, item: Utterance, ctx: StageContext, window: WindowTracks | None = None
    ) -> tuple[Face | None, str | None, dict[str, Any]]:
        """The utterance's face (or ``None``), the reason when ``None``, and a report of the scores.

        ``window`` is the utterance's faces artifact (read from ``faces/tracks/<id>.json`` when not given).
        """
        if window is None:
            window = self._read_window(item, ctx)
        if window is None:
            log.warning("asd: %s: no faces artifact at %s (did the faces stage run?)", item.id, tracks_path(item.id))
            return None, "missing_tracks", {}
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
        speech = _word_spans(item)
        evidence = [self._evidence(t, window, speech) for t in candidates]
        if self.backend.needs_crops:
            self._add_crops(item, window, candidates, evidence)
        scores = self.backend.score(evidence, audio, self.rate)
        if len(scores) != len(candidates):
            raise RuntimeError(f"asd backend returned {len(scores)} scores for {len(candidates)} tracks")
        report["scores"] = {
            str(t.track_id): {"score": round(s.score, 4), **s.details} for t, s in zip(candidates, scores)
        }
        passing = [i for i, s in enumerate(scores) if s.score >= self.threshold]
        if not passing:
            return None, "low_asd_score", report
        eligible = [i for i in passing if scores[i].contested_by is None]
        if not eligible:
            return None, "contested", report
        best_i = max(eligible, key=lambda i: self._rank(scores[i]))  # the first of equals, as argmax
        best, best_score = candidates[best_i], scores[best_i]
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
    def _evidence(track: FaceTrack, window: WindowTracks, speech: np.ndarray | None = None) -> TrackEvidence:
        return TrackEvidence(
            track_id=track.track_id,
            times=np.asarray(track.frames, dtype=np.float64) / window.fps,
            fps=window.fps,
            boxes=track.boxes,
            detected=track.detected,
            mouth=track.mouth,
            speech=speech,
        )

    def video_path(self, item: Utterance) -> Path:
        return Path(self.paths.get(item.video_id) or item.source)

    def _add_crops(
        self, item: Utterance, window: WindowTracks, tracks: list[FaceTrack], evidence: list[TrackEvidence]
    ) -> None:
        frames = self.video.window(self.video_path(item), window.start, window.end, window.fps)
        with contextlib.closing(prefetch(frames)) as frames:  # decoded in a second thread
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
            # decoded in a second thread while this one crops and encodes; a yuv420p source is cropped as decoded
            path = self.video_path(item)
            reader = self.video.reader(path)
            fmt = _clip_frame_format(reader)
            frames = self.video.window(path, window.start, window.end, window.fps, fmt=fmt)
            with contextlib.closing(prefetch(frames)) as frames:
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
                        encoder_threads=cc.get("encoder_threads"),
                        x264_params=cc.get("x264_params"),
                        fmt=fmt,
                        colour=reader.colour,
                    ),
                )
        except (VideoDecodeError, MediaError, OSError) as e:
            if self.cfg.get("fail_fast"):
                raise
            log.warning("asd: %s: face clip not written (%s); the face is kept without a clip", item.id, e)
            ctx.count("asd.clip_failed")
            return None
        return rel
