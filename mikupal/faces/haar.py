"""OpenCV Haar-cascade face detector: a second ``faces`` backend sharing no code or weights with BlazeFace.

Model: the Viola–Jones frontal-face cascade ``haarcascade_frontalface_default.xml`` (Rainer Lienhart's boosted
Haar cascade), shipped in ``opencv-python-headless`` < 5 under ``cv2.data.haarcascades`` and distributed under the
Intel License Agreement for the Open Source Computer Vision Library (a BSD-style licence). OpenCV 5 ships no
cascades and no ``CascadeClassifier``, hence the ``<5`` pin.

The frame is converted to grey and histogram-equalised, then scanned at ``scale_factor`` steps with
``detectMultiScale2``. The cascade has no probability: the score reported here is ``n / (n + min_neighbors)``,
where ``n`` is the number of overlapping raw windows merged into the box (more agreeing windows, higher score), so
a box that just passes ``min_neighbors`` scores 0.5. Compared with BlazeFace it is slower (about 10 ms per 640×360
frame), misses turned and partly visible faces, and gives no keypoints; it is a real alternative for frontal,
well-lit footage and a check that the stage does not depend on one model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from mikupal.faces.base import Detection, FaceDetector

log = logging.getLogger(__name__)


class HaarDetector(FaceDetector):
    """OpenCV Haar cascade (see the module docstring).

    Args:
        cascade: file name inside ``cv2.data.haarcascades`` or a path to a cascade XML.
        scale_factor: image-pyramid step (1.1 = 10 % per level).
        min_neighbors: raw detections that must agree for a box to be kept.
        min_size: smallest face searched for, in pixels of the analysed frame.
        min_score: boxes scoring below this are dropped (see the module docstring for the score).
    """

    #: Python packages setup() imports (import name -> what to install); checked before a run starts.
    requires = {"cv2": "opencv-python-headless>=4.10,<5"}

    def __init__(
        self,
        cascade: str = "haarcascade_frontalface_default.xml",
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 24,
        min_score: float = 0.0,
    ) -> None:
        self.cascade = cascade
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size = int(min_size)
        self.min_score = float(min_score)
        self._clf = None

    def setup(self) -> None:
        path = Path(self.cascade)
        if not path.is_file():
            data = getattr(cv2, "data", None)
            if data is None or not hasattr(cv2, "CascadeClassifier"):
                raise ImportError(
                    f"OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 dropped them): "
                    "pip install 'opencv-python-headless>=4.10,<5'"
                )
            path = Path(data.haarcascades) / self.cascade
        if not path.is_file():
            raise FileNotFoundError(f"Haar cascade {self.cascade!r} not found (looked at {path})")
        clf = cv2.CascadeClassifier(str(path))
        if clf.empty():
            raise ValueError(f"{path}: not a valid OpenCV cascade file")
        self._clf = clf
        log.info("Haar cascade %s loaded", path.name)

    def teardown(self) -> None:
        self._clf = None

    def _detect_one(self, frame: np.ndarray) -> list[Detection]:
        grey = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
        rects, neighbours = self._clf.detectMultiScale2(
            grey,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        out = []
        for (x, y, w, h), n in zip(np.asarray(rects).reshape(-1, 4), np.asarray(neighbours).reshape(-1)):
            score = float(n) / (float(n) + max(self.min_neighbors, 1))
            if score >= self.min_score:
                out.append(Detection(box=(float(x), float(y), float(x + w), float(y + h)), score=score))
        return out

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        if self._clf is None:
            raise RuntimeError("HaarDetector.setup() must be called before detect()")
        return [self._detect_one(f) for f in frames]
