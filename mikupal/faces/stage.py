"""``faces`` stage adapter: face detection, mouth landmarks and tracking in each utterance's time window.

Utterance → the same Utterance, plus the artifact ``faces/tracks/<id>.json`` (:mod:`mikupal.faces.artifact`) that
the ``asd`` stage reads. Per utterance:

1. decode only the frames of ``[start, end]`` at ``faces.analysis_fps`` (25 by default, TalkNet's rate), resized so
   the longer side is at most ``faces.max_side`` by FFmpeg's scaler (:mod:`mikupal.faces.video`). One decoder per
   video goes on from one utterance to the next (no seek back to a keyframe per utterance), in a second thread
   that decodes ahead while this one runs the models;
2. detect faces batch by batch with the configured backend (``faces._target_`` and its arguments) on every
   ``faces.detect_every``-th frame and on every frame that starts a new shot; in between, each face is followed by
   its face mesh (``faces.follow_with_mesh``, as MediaPipe tracks faces: a frame's mesh crop comes from the box of
   the frame before, and the box moves with the mesh; :class:`~mikupal.faces.mesh.MeshFollower`), or keeps the box
   of the last detector frame (``false``, or without a mesh). The face mesh measures every frame; tracks mark those
   boxes as not detected.
   The last, shorter batch of a window is processed like the others (the original code dropped it, losing the end
   of every scene);
3. drop boxes smaller than ``faces.min_face_size`` pixels (of the analysed frame), keep at most ``faces.max_faces``
   (the largest) per frame — frames with more are counted as ``faces.too_many_faces``;
4. run the 468-point face mesh on each kept face and record its mouth opening (``faces.landmarks``; ``null`` skips
   it, for ASD backends that do not need it); a batch's faces are spread over ``faces.landmarks.workers``
   interpreters in parallel threads, while a detector thread already detects the next batch (so decoding,
   detection and the mesh keep both cores busy; the results are those of running them one after another);
5. split at scene cuts (:mod:`mikupal.faces.scene`) and join detections into IoU tracks
   (:mod:`mikupal.faces.tracking`); boxes are stored in source-frame pixels.

The vision half never costs an utterance its audio: an audio-only source (``faces.no_video``; cover art is not
video), a missing file (``faces.video_missing``), an utterance after the end of the video stream
(``faces.video_ended``), a window of which no frame decodes (``faces.decode_failed``) or any other failure
(``faces.error``, logged with its traceback; re-raised when ``fail_fast=true``) gives an artifact without tracks,
and the utterance passes on; ``asd`` then sets ``face: null`` and counts the reason. Corrupt video packets inside a
window are skipped and counted (``faces.corrupt_packets``), the other frames are used; a window the video stream
stops inside is analysed as far as it goes (``faces.video_ended_early``; ``asd`` judges the coverage). Frames are
placed by timestamp, so variable-frame-rate video is analysed at the right times.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from mikupal.faces.artifact import WindowTracks, tracks_path
from mikupal.faces.base import Detection, FaceDetector
from mikupal.faces.mesh import FaceMesh, MeshFollower, mouth_opening
from mikupal.faces.scene import SceneCutDetector
from mikupal.faces.tracking import IouTracker
from mikupal.faces.video import (
    AnalysisFrame,
    DecodeStats,
    OpenVideo,
    VideoDecodeError,
    analysis_size,
    prefetch,
    video_info,
)
from mikupal.media import MediaError
from mikupal.records import Utterance
from mikupal.stage import Stage, StageContext, StopStage, write_atomic

log = logging.getLogger(__name__)


class FacesStage(Stage):
    """Detect and track faces in each utterance's window (see the module docstring)."""

    name = "faces"
    input_type = output_type = Utterance
    backend_group = "faces"
    background_imports = ("scipy.optimize",)  # the tracker's assignment (1-2 s to import)
    operational_keys = ("faces.landmarks.workers",)

    @property
    def detector(self) -> FaceDetector:
        """The face detector (the stage's backend)."""
        return self.backend

    @property
    def mesh(self) -> FaceMesh | None:
        """The face mesh of ``faces.landmarks``, or ``None`` when that is null."""
        return self.backends.get("faces.landmarks")

    def build_backends(self, ctx: StageContext | None = None) -> dict[str, Any]:
        """The detector, and the face mesh when ``faces.landmarks`` is set."""
        backends = super().build_backends(ctx)
        landmarks = self.cfg.faces.get("landmarks")
        if landmarks is not None:
            backends["faces.landmarks"] = FaceMesh(**OmegaConf.to_container(landmarks, resolve=True))
        return backends

    def setup(self, ctx: StageContext) -> None:
        fc = self.cfg.faces
        self.fps = float(fc.analysis_fps)
        if self.fps <= 0:
            raise ValueError(f"faces.analysis_fps must be positive, got {self.fps}")
        self.max_side = int(fc.max_side) if fc.get("max_side") else None
        self.batch_size = max(1, int(fc.batch_size))
        self.detect_every = max(1, int(fc.get("detect_every") or 1))
        self.follow_with_mesh = bool(fc.get("follow_with_mesh", False))
        self.max_faces = int(fc.max_faces)
        self.min_face_size = float(fc.get("min_face_size") or 0)
        self.decode_threads = bool(fc.get("decode_threads", True))
        super().setup(ctx)
        tr = fc.tracking
        self.tracker_args = dict(iou_threshold=tr.iou_threshold, max_gap=tr.max_gap, min_length=tr.min_length)
        sc = fc.get("scene_cut")
        self.scene_args = None
        if sc is not None and sc.get("enabled", True):
            self.scene_args = dict(threshold=sc.threshold, bins=tuple(sc.bins), min_gap=sc.min_gap)
        self.detector_name = _describe(self.detector)
        self.paths = input_video_paths(self.cfg)
        self.video = OpenVideo(threads=self.decode_threads)  # a video's utterances are decoded on, not re-seeked
        self._detect_pool = ThreadPoolExecutor(1, thread_name_prefix="face-detect")  # one: scene cuts run in order

    def teardown(self) -> None:
        if getattr(self, "video", None) is not None:
            self.video.close()
            self.video = None
        if getattr(self, "_detect_pool", None) is not None:
            self._detect_pool.shutdown()
            self._detect_pool = None
        super().teardown()

    # ------------------------------------------------------------------------------------------------ item
    def process(self, item: Utterance, ctx: StageContext) -> Sequence[Utterance]:
        return _drive(self._process_steps(item, ctx))

    def map(
        self, items: Iterable[Utterance], ctx: StageContext
    ) -> Iterator[tuple[Utterance, Sequence[Utterance] | BaseException, dict]]:
        """:meth:`process` of each utterance in order, the next window started before the last one is finished.

        Once a window's last batch is with the detector thread, the next window starts (its frames decode, its first
        batch goes to the detector right after that last batch) before this thread finishes the last batch (the face
        mesh and the tracker) and writes the artifact: the cores do not wait for the end of one window and the start
        of the next in turn. Each window is analysed exactly as alone (its own tracker, scene-cut state and counts).
        """
        current: list | None = None  # [item, steps, its context, _Outcome]: the window under way
        try:
            for item in items:
                item_ctx = ctx.for_item()  # this item's counts alone
                steps = self._process_steps(item, item_ctx)
                before, current = current, [item, steps, item_ctx, _step(steps)]  # to its first detector batch
                if before is not None:
                    yield _finish(*before)  # the window before ends while this one's first batch is detected
                _raise_stop(current[3])
                if current[3].paused:
                    current[3] = _step(steps)  # on to its last batch
                    _raise_stop(current[3])
            if current is not None:
                before, current = current, None
                yield _finish(*before)
        finally:
            if current is not None:  # stopped early: end the window under way (its threads stop)
                current[1].close()

    def _process_steps(self, item: Utterance, ctx: StageContext) -> Generator[None, None, Sequence[Utterance]]:
        """:meth:`process` as steps (see :meth:`_analyse_steps`)."""
        try:
            result = yield from self._analyse_steps(item, ctx)
        except (StopStage, KeyboardInterrupt):
            raise
        except Exception as e:  # a vision failure must not cost the utterance its audio
            if self.cfg.get("fail_fast"):
                raise
            log.exception("faces: %s: analysis failed; the utterance passes on without faces", item.id)
            result = WindowTracks(item.id, "error", item.start, item.end, self.fps, message=f"{type(e).__name__}: {e}")
        if result.status != "ok":
            ctx.count(f"faces.{result.status}")
        write_atomic(ctx.path(tracks_path(item.id)), result.write)
        return [item]

    def video_path(self, item: Utterance) -> Path:
        """The file to decode: the resolved input path of the utterance's video (falls back to ``source``)."""
        return Path(self.paths.get(item.video_id) or item.source)

    def analyse(self, item: Utterance, ctx: StageContext) -> WindowTracks:
        """Detect, measure and track the faces of one utterance's window."""
        return _drive(self._analyse_steps(item, ctx))

    def _analyse_steps(self, item: Utterance, ctx: StageContext) -> Generator[None, None, WindowTracks]:
        """:meth:`analyse` as a generator that pauses (yields) when its first batch has gone to the detector thread
        (the window before it may finish now) and when its last has (the next window may start now); returns the
        window's tracks. A window too short for a first batch pauses once."""
        base = dict(utterance_id=item.id, start=item.start, end=item.end, fps=self.fps, detector=self.detector_name)
        path = self.video_path(item)
        if not path.is_file():
            log.warning("faces: %s: source %s not found; no faces", item.id, path)
            return WindowTracks(status="video_missing", message=f"{path} not found", **base)
        try:
            info = video_info(path)
        except MediaError as e:
            log.warning("faces: %s: %s", item.id, e)
            return WindowTracks(status="decode_failed", message=str(e), **base)
        if info is None:
            return WindowTracks(status="no_video", message=f"{path} has no video stream", **base)
        size = analysis_size(info.width, info.height, self.max_side)
        scale = np.array([info.width / size[0], info.height / size[1]] * 2)
        tracker = IouTracker(**self.tracker_args)
        scene = SceneCutDetector(**self.scene_args) if self.scene_args else None
        state = _WindowState(tracker=tracker, scene=scene, scale=scale, size=size)
        batch: list[AnalysisFrame] = []
        decode = DecodeStats()
        # Three threads work on one window: one decodes ahead (prefetch), one runs scene cuts and the detector on
        # batch k + 1 (_detect_batch) while this one runs the face mesh and the tracker on batch k (_finish_batch).
        # The first batch is a quarter of faces.batch_size, so that the mesh starts after fewer decoded frames.
        pending: tuple[list[AnalysisFrame], Future] | None = None
        batch_size = max(1, self.batch_size // 4)
        try:
            window = self.video.window(path, item.start, item.end, self.fps, size=size, stats=decode)
            with contextlib.closing(prefetch(window, depth=2 * self.batch_size)) as frames:
                for frame in frames:
                    batch.append(frame)
                    if len(batch) == batch_size:
                        first = pending is None
                        batch_size = self.batch_size
                        pending = self._next_batch(batch, state, pending)
                        batch = []
                        if first:
                            yield  # the first batch is with the detector: the window before may finish now
            if batch:  # the trailing partial batch is processed like any other
                pending = self._next_batch(batch, state, pending)
            if pending is not None:
                yield  # the last batch is with the detector: the next window may start now
                done, pending = pending, None
                self._finish_batch(*done, state)
        except VideoDecodeError as e:
            log.warning("faces: %s: %s", item.id, e)
            if decode.corrupt_packets:
                ctx.count("faces.corrupt_packets", decode.corrupt_packets)
            return WindowTracks(status="decode_failed", message=str(e), **base)
        finally:
            if pending is not None:  # the window stopped half way: let the detector thread finish its batch first
                _settle(pending[1])
        if state.n_frames == 0 and info.duration is not None and item.start >= info.duration - 0.5 / self.fps:
            message = (
                f"{path}: the video stream ends at {info.duration:.2f}s, before this utterance ({item.start:.2f}s)"
            )
            log.info("faces: %s: %s", item.id, message)
            return WindowTracks(status="video_ended", message=message, **base)
        tracks = tracker.finish()
        expected = int(math.ceil((item.end - item.start) * self.fps - 1e-6))
        if 0 < state.n_frames < expected and info.duration is not None and item.end > info.duration:
            ctx.count("faces.video_ended_early")  # the tracks cover the frames there are; asd judges coverage
        ctx.count("faces.frames", state.n_frames)
        ctx.count("faces.detector_frames", state.detector_frames)
        ctx.count("faces.frames_with_face", state.frames_with_face)
        ctx.count("faces.tracks", len(tracks))
        for key, value in (
            ("faces.scene_cuts", len(state.cuts)),
            ("faces.too_many_faces", state.capped),
            ("faces.tiny_faces", state.tiny),
            ("faces.short_tracks", tracker.discarded),
            ("faces.mesh_missed", state.mesh_missed),
            ("faces.corrupt_packets", decode.corrupt_packets),
        ):
            if value:
                ctx.count(key, value)
        if state.n_frames == 0:
            log.warning("faces: %s: no video frames in %.2f-%.2fs", item.id, item.start, item.end)
        return WindowTracks(
            status="ok",
            n_frames=state.n_frames,
            detector_frames=state.detector_frames,
            source_size=[info.width, info.height],
            analysis_size=list(size),
            frames_with_face=state.frames_with_face,
            scene_cuts=state.cuts,
            capped_frames=state.capped,
            discarded_tracks=tracker.discarded,
            tracks=tracks,
            **base,
        )

    def _next_batch(
        self, batch: list[AnalysisFrame], state: _WindowState, pending: tuple[list[AnalysisFrame], Future] | None
    ) -> tuple[list[AnalysisFrame], Future]:
        """Start detecting ``batch`` in the detector thread, then finish the batch before it (``pending``) here."""
        started = (batch, self._detect_pool.submit(self._detect_batch, batch, state))
        try:
            if pending is not None:
                self._finish_batch(*pending, state)
        except BaseException:
            _settle(started[1])  # the window stops: let the detector thread finish first
            raise
        return started

    def _detect_batch(
        self, batch: list[AnalysisFrame], state: _WindowState
    ) -> tuple[list[bool], dict[int, list[Detection]]]:
        """Scene cuts of a batch's frames and the detector's faces on its detector frames (the detector thread)."""
        # Scene cuts first: the frame after a cut is always given to the detector (carried boxes would be stale).
        cuts = [state.scene is not None and state.scene.update(f.image) for f in batch]
        to_detect = [i for i, f in enumerate(batch) if f.index % self.detect_every == 0 or cuts[i]]
        found = self.detector.detect([batch[i].image for i in to_detect]) if to_detect else []
        if len(found) != len(to_detect):
            raise RuntimeError(f"{self.detector_name}.detect returned {len(found)} results for {len(to_detect)} frames")
        return cuts, dict(zip(to_detect, found))

    def _finish_batch(self, batch: list[AnalysisFrame], detected_future: Future, state: _WindowState) -> None:
        """Boxes between detector frames, the face mesh and the tracker, for one batch in order."""
        cuts, detections = detected_future.result()
        if self.mesh is not None and self.follow_with_mesh:
            faces = self._followed_faces(batch, detections, state)
        else:
            faces = self._carried_faces(batch, detections, state)
        for i, frame in enumerate(batch):
            state.n_frames += 1
            if cuts[i]:
                state.tracker.cut()
                state.cuts.append(frame.index)
            if faces[i]:
                state.frames_with_face += 1
            boxes = np.array([box for box, _, _ in faces[i]]).reshape(-1, 4) * state.scale
            scores = np.array([score for _, score, _ in faces[i]])
            mouth = np.array([m for _, _, m in faces[i]])
            state.tracker.update(frame.index, boxes, scores, mouth, detected=np.full(len(faces[i]), i in detections))

    def _carried_faces(
        self, batch: list[AnalysisFrame], detections: dict[int, list[Detection]], state: _WindowState
    ) -> list[list[tuple[np.ndarray, float, float]]]:
        """Each frame's ``(box, score, mouth)`` faces, faces keeping the box of the last detector frame in between."""
        width, height = state.size
        kept_per_frame = []
        for i in range(len(batch)):
            if i in detections:
                state.detector_frames += 1
                state.carry = self._keep(detections[i], width, height, state)
            kept_per_frame.append(state.carry)
        # the face mesh on every kept face of the batch at once (spread over its interpreters)
        jobs = [(frame.image, d.box, d.keypoints) for frame, kept in zip(batch, kept_per_frame) for d, _ in kept]
        points = iter(self.mesh.landmarks_many(jobs) if self.mesh is not None else [])
        faces = []
        for i, kept in enumerate(kept_per_frame):
            mouth = [self._mouth(next(points)[0], state) if self.mesh is not None else np.nan for _ in kept]
            faces.append([(c, d.score if i in detections else 0.0, m) for (d, c), m in zip(kept, mouth)])
        return faces

    def _followed_faces(
        self, batch: list[AnalysisFrame], detections: dict[int, list[Detection]], state: _WindowState
    ) -> list[list[tuple[np.ndarray, float, float]]]:
        """Each frame's ``(box, score, mouth)`` faces, each face followed by its mesh from its detector frame on.

        A detector frame starts a segment of frames that lasts to the next one; each face kept there is stepped
        through the segment by a :class:`~mikupal.faces.mesh.MeshFollower` (the frames before the batch's first
        detector frame continue the followers of the batch before). The segments' faces are independent chains,
        spread over the mesh's interpreters.
        """
        width, height = state.size
        segments: list[tuple[int, list[tuple[MeshFollower, float]]]] = []  # (first frame, [(follower, score)])
        if 0 not in detections:
            segments.append((0, state.followers))
        for i in sorted(detections):
            state.detector_frames += 1
            kept = self._keep(detections[i], width, height, state)
            segments.append((i, [(MeshFollower(d.box, d.keypoints), d.score) for d, _ in kept]))
        ends = [start for start, _ in segments[1:]] + [len(batch)]
        chains = [
            (follower, [f.image for f in batch[start:end]])
            for (start, faces), end in zip(segments, ends)
            for follower, _ in faces
        ]
        steps = iter(self.mesh.follow_many(chains))
        faces: list[list[tuple[np.ndarray, float, float]]] = [[] for _ in batch]
        for start, segment in segments:
            for _follower, score in segment:
                for j, step in enumerate(next(steps)):
                    box = _clip(step.box, width, height)
                    if min(box[2] - box[0], box[3] - box[1]) < 1.0:  # followed out of the frame
                        continue
                    detected = j == 0 and start in detections
                    faces[start + j].append((box, score if detected else 0.0, self._mouth(step.points, state)))
        state.followers = segments[-1][1]
        return faces

    @staticmethod
    def _mouth(points: np.ndarray | None, state: _WindowState) -> float:
        """The mouth opening of one face's mesh points; NaN (and counted) where the mesh found no face."""
        if points is None:
            state.mesh_missed += 1
            return float("nan")
        return mouth_opening(points)

    def _keep(
        self, dets: list[Detection], width: int, height: int, state: _WindowState
    ) -> list[tuple[Detection, np.ndarray]]:
        """Clip boxes to the frame, drop tiny ones, keep the ``max_faces`` largest (counting what is dropped)."""
        kept: list[tuple[Detection, np.ndarray]] = []
        for d in dets:
            clipped = _clip(d.box, width, height)
            if min(clipped[2] - clipped[0], clipped[3] - clipped[1]) < max(self.min_face_size, 1.0):
                state.tiny += 1
                continue
            kept.append((d, clipped))
        if len(kept) > self.max_faces:
            state.capped += 1
            kept.sort(key=lambda dc: -(dc[1][2] - dc[1][0]) * (dc[1][3] - dc[1][1]))
            kept = kept[: self.max_faces]
        return kept


class _WindowState:
    def __init__(
        self, tracker: IouTracker, scene: SceneCutDetector | None, scale: np.ndarray, size: tuple[int, int]
    ) -> None:
        self.tracker = tracker
        self.scene = scene
        self.scale = scale
        self.size = size
        self.n_frames = 0
        self.detector_frames = 0
        self.frames_with_face = 0
        self.carry: list = []  # (Detection, clipped box) of the last detector frame (faces.follow_with_mesh false)
        self.followers: list = []  # (MeshFollower, score) of the faces followed at the batch's end (true)
        self.cuts: list[int] = []
        self.capped = 0
        self.tiny = 0
        self.mesh_missed = 0


def _clip(box: Sequence[float] | np.ndarray, width: int, height: int) -> np.ndarray:
    """``box`` clipped to a ``width`` × ``height`` frame."""
    return np.array([max(0.0, box[0]), max(0.0, box[1]), min(float(width), box[2]), min(float(height), box[3])])


def _drive(steps: Generator[None, None, Any]) -> Any:
    """Run a generator of steps to its end; its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


class _Outcome:
    """Where a window's steps stand: ``paused``, or ended with ``value`` or ``error``."""

    def __init__(self, paused: bool = False, value: Any = None, error: BaseException | None = None) -> None:
        self.paused, self.value, self.error = paused, value, error


def _step(steps: Generator[None, None, Any]) -> _Outcome:
    """Run a generator of steps to its next pause (or its end), catching what it raises."""
    try:
        next(steps)
        return _Outcome(paused=True)
    except StopIteration as stop:
        return _Outcome(value=stop.value)
    except BaseException as e:  # noqa: BLE001 - handed to the caller (per-item errors are yielded)
        return _Outcome(error=e)


def _raise_stop(outcome: _Outcome) -> None:
    """Raise what stops the whole stage (:class:`StopStage`, ``KeyboardInterrupt``); per-item errors stay."""
    if isinstance(outcome.error, (StopStage, KeyboardInterrupt)):
        raise outcome.error


def _finish(
    item: Utterance, steps: Generator, ctx: StageContext, outcome: _Outcome
) -> tuple[Utterance, Sequence[Utterance] | BaseException, dict]:
    """Run a window's remaining steps; ``(item, outputs or the exception it raised, its counts)``."""
    while outcome.paused:
        outcome = _step(steps)
    _raise_stop(outcome)
    if outcome.error is not None and not isinstance(outcome.error, Exception):
        raise outcome.error
    return item, outcome.error if outcome.error is not None else outcome.value, ctx.take_counts()


def _settle(future: Future) -> None:
    """Cancel a detector job, or wait until it has finished (its result or error is not wanted any more)."""
    if not future.cancel():
        future.exception()


def _describe(detector: Any) -> str:
    model = getattr(detector, "model", None) or getattr(detector, "cascade", None)
    return f"{type(detector).__name__}({model})" if model else type(detector).__name__


def input_video_paths(cfg: Any) -> dict[str, str]:
    """``video_id -> resolved path`` of the run's inputs, from the inputs manifest the runner's plan wrote.

    Empty if there is none (e.g. unit tests without a planned run directory): each utterance's source path is used.
    """
    from omegaconf import OmegaConf

    if cfg.get("run_dir") in (None, "???") or OmegaConf.is_missing(cfg, "run_dir"):
        return {}
    from mikupal.rundir import RunDir

    layout = RunDir(Path(cfg.run_dir).expanduser().resolve())
    if not layout.inputs.is_file():
        log.warning("faces: %s not found; using each utterance's source path", layout.inputs)
        return {}
    return {v.video_id: v.path for v in layout.read_inputs()}
