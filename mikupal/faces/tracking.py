"""IoU face tracking: detections of consecutive frames joined into tracks.

An online tracker in the style of TalkNet's ``track_shot`` (IoU matching, a tolerated run of missed frames, a
minimum length, linear interpolation of the missed boxes), with three differences: detections are matched to
tracks by an optimal assignment (Hungarian, on IoU) instead of greedily, so two faces close together do not swap;
several tracks are followed at once in one pass; and :meth:`IouTracker.cut` closes every open track at a scene cut,
so no track spans two shots.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` ``(N, 4)`` with every box in ``b`` ``(M, 4)`` (``x1, y1, x2, y2``)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


@dataclass
class FaceTrack:
    """One face followed over consecutive analysis frames of a window.

    All arrays are dense over ``frames`` (every analysis frame from the first to the last box); frames where the face
    was missed hold a linearly interpolated box, score 0, ``detected`` False and mouth NaN; frames between detector
    runs (``faces.detect_every`` > 1) hold the box followed with the face mesh (``faces.follow_with_mesh``) or carried
    from the last detector frame, score 0, ``detected`` False and a measured mouth.

    Attributes:
        track_id: id, unique within the window (0, 1, ... by first frame).
        frames: analysis frame indices ``(n,)``.
        boxes: ``(n, 4)`` boxes ``x1, y1, x2, y2`` in source-frame pixels.
        scores: ``(n,)`` detector scores.
        detected: ``(n,)`` whether the box was detected (True) or interpolated, followed or carried (False).
        mouth: ``(n,)`` mouth opening from the face mesh (NaN where unknown).
    """

    track_id: int
    frames: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    detected: np.ndarray
    mouth: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def n_detected(self) -> int:
        return int(self.detected.sum())

    def median_box(self) -> list[float]:
        """Median of the detected boxes, ``[x1, y1, x2, y2]``."""
        boxes = self.boxes[self.detected] if self.detected.any() else self.boxes
        return [float(v) for v in np.median(boxes, axis=0)]


@dataclass
class _OpenTrack:
    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    mouth: list[float] = field(default_factory=list)
    detected: list[bool] = field(default_factory=list)

    @property
    def last(self) -> int:
        return self.frames[-1]

    def dense(self, track_id: int) -> FaceTrack:
        first, last = self.frames[0], self.frames[-1]
        frames = np.arange(first, last + 1)
        n = len(frames)
        pos = np.asarray(self.frames) - first
        known = np.asarray(self.boxes, dtype=np.float64)
        boxes = np.empty((n, 4))
        for c in range(4):
            boxes[:, c] = np.interp(frames, self.frames, known[:, c])
        scores = np.zeros(n)
        scores[pos] = self.scores
        detected = np.zeros(n, dtype=bool)
        detected[pos] = self.detected
        mouth = np.full(n, np.nan)
        mouth[pos] = self.mouth
        return FaceTrack(track_id, frames, boxes, scores, detected, mouth)


class IouTracker:
    """Joins per-frame detections into tracks.

    Args:
        iou_threshold: minimum IoU between a track's last box and a detection for them to match.
        max_gap: a track survives at most this many consecutive frames without a detection; the missed boxes are
            interpolated when the face is found again.
        min_length: tracks with boxes (detected or carried) in fewer frames than this are discarded at the end
            (counted in :attr:`discarded`).
    """

    def __init__(self, iou_threshold: float = 0.3, max_gap: int = 10, min_length: int = 10) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"faces.tracking.iou_threshold must be in (0, 1], got {iou_threshold}")
        self.iou_threshold = float(iou_threshold)
        self.max_gap = int(max_gap)
        self.min_length = int(min_length)
        self.reset()

    def reset(self) -> None:
        """Start a new window."""
        self._open: list[_OpenTrack] = []
        self._closed: list[_OpenTrack] = []
        self.discarded = 0

    def _close(self, track: _OpenTrack) -> None:
        if len(track.frames) >= self.min_length:
            self._closed.append(track)
        else:
            self.discarded += 1

    def cut(self) -> None:
        """A scene cut: close every open track (the next detections start new tracks)."""
        for track in self._open:
            self._close(track)
        self._open = []

    def update(
        self,
        frame: int,
        boxes: np.ndarray,
        scores: np.ndarray,
        mouth: np.ndarray | None = None,
        detected: np.ndarray | None = None,
    ) -> list[int]:
        """Add one frame's face boxes.

        Args:
            frame: analysis frame index (increasing between calls).
            boxes: ``(M, 4)`` boxes. scores: ``(M,)``. mouth: ``(M,)`` mouth openings (NaN where unknown).
            detected: ``(M,)`` whether each box comes from the detector (default) or was followed or carried from
                an earlier detector frame; such boxes extend tracks like detections but are marked in
                ``FaceTrack.detected``.

        Returns:
            For each detection, the index of the open track it joined (new tracks included), in input order.
        """
        from scipy.optimize import linear_sum_assignment

        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        mouth = np.full(len(boxes), np.nan) if mouth is None else np.asarray(mouth, dtype=np.float64).reshape(-1)
        detected = np.ones(len(boxes), bool) if detected is None else np.asarray(detected, dtype=bool).reshape(-1)
        # end tracks that have missed too many frames
        still = []
        for track in self._open:
            if frame - track.last - 1 > self.max_gap:
                self._close(track)
            else:
                still.append(track)
        self._open = still
        assigned = [-1] * len(boxes)
        if self._open and len(boxes):
            last = np.stack([t.boxes[-1] for t in self._open])
            iou = iou_matrix(last, boxes)
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                if iou[r, c] >= self.iou_threshold:
                    assigned[c] = r
        for c, r in enumerate(assigned):
            if r < 0:
                self._open.append(_OpenTrack())
                r = len(self._open) - 1
                assigned[c] = r
            track = self._open[r]
            track.frames.append(frame)
            track.boxes.append(boxes[c])
            track.scores.append(float(scores[c]))
            track.mouth.append(float(mouth[c]))
            track.detected.append(bool(detected[c]))
        return assigned

    def finish(self) -> list[FaceTrack]:
        """Close all tracks and return the kept ones, ids in order of their first frame."""
        self.cut()
        kept = sorted(self._closed, key=lambda t: (t.frames[0], t.boxes[0][0]))
        tracks = [t.dense(i) for i, t in enumerate(kept)]
        self._closed = []
        return tracks
