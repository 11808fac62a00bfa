"""Shot-boundary (scene cut) detection from colour-histogram differences between consecutive analysed frames.

Each frame is subsampled to a thumbnail (about ``thumb`` pixels wide), converted to HSV, and summarised by a
normalised 2-D hue–saturation histogram plus a value (brightness) histogram. A cut is declared between two
consecutive frames when the Bhattacharyya distance between their histograms (0 = identical, 1 = disjoint) exceeds
``threshold``, and at least ``min_gap`` frames have passed since the previous cut (so a flash or a fast pan does not
split a track many times).

Face tracks are split at cuts (a track never runs across a cut): the original MIKU-PAL code treated every ASR
sentence as one "scene", so tracks ran across shot changes and a box could jump from one person to another.
This plays the role of PySceneDetect's ``ContentDetector`` in TalkNet's demo, without the extra dependency.
"""

from __future__ import annotations

import cv2
import numpy as np


class SceneCutDetector:
    """Online cut detector (see the module docstring).

    Args:
        threshold: Bhattacharyya distance above which consecutive frames are in different shots (0..1).
        bins: ``(hue, saturation, value)`` histogram bins.
        min_gap: minimum number of frames between two cuts.
        thumb: width of the thumbnail the histograms are computed on.
    """

    def __init__(
        self, threshold: float = 0.35, bins: tuple[int, int, int] = (16, 8, 16), min_gap: int = 5, thumb: int = 96
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"faces.scene_cut.threshold must be in (0, 1), got {threshold}")
        self.threshold = float(threshold)
        self.bins = tuple(int(b) for b in bins)
        self.min_gap = int(min_gap)
        self.thumb = int(thumb)
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (call at the start of each window)."""
        self._prev: tuple[np.ndarray, np.ndarray] | None = None
        self._since_cut = 10**9
        self.last_distance = 0.0

    def _hists(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        step = max(1, frame.shape[1] // self.thumb)  # subsampling is enough for a histogram
        small = np.ascontiguousarray(frame[::step, ::step])
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
        hs = cv2.calcHist([hsv], [0, 1], None, list(self.bins[:2]), [0, 180, 0, 256])
        v = cv2.calcHist([hsv], [2], None, [self.bins[2]], [0, 256])
        cv2.normalize(hs, hs, 1.0, 0.0, cv2.NORM_L1)
        cv2.normalize(v, v, 1.0, 0.0, cv2.NORM_L1)
        return hs, v

    def distance(self, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
        """Histogram distance between two frames' histograms: the larger of the colour and brightness distances."""
        d_hs = cv2.compareHist(a[0], b[0], cv2.HISTCMP_BHATTACHARYYA)
        d_v = cv2.compareHist(a[1], b[1], cv2.HISTCMP_BHATTACHARYYA)
        return float(max(d_hs, d_v))

    def update(self, frame: np.ndarray) -> bool:
        """Feed the next frame (RGB uint8); returns whether a cut lies between the previous frame and this one."""
        hists = self._hists(frame)
        cut = False
        if self._prev is not None:
            self.last_distance = self.distance(self._prev, hists)
            self._since_cut += 1
            if self.last_distance > self.threshold and self._since_cut >= self.min_gap:
                cut = True
                self._since_cut = 0
        self._prev = hists
        return cut
