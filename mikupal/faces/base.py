"""Backend interface of the ``faces`` stage: a face detector over batches of RGB frames.

A detector is a model wrapper (arrays in, typed results out, no file plumbing; DESIGN §2). The stage adapter
(:mod:`mikupal.faces.stage`) decodes frames, resizes them, calls :meth:`FaceDetector.detect` batch by batch,
tracks the detections (:mod:`mikupal.faces.tracking`) and maps boxes back to source-frame pixels.

Backends: :class:`~mikupal.faces.blazeface.BlazeFaceDetector` (MediaPipe BlazeFace, the offline default),
:class:`~mikupal.faces.haar.HaarDetector` (OpenCV Haar cascade, a detector with no shared code or weights), and
later S3FD (the paper's detector) through the same interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

@dataclass(frozen=True)
class Detection:
    """One detected face in one frame.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in pixels of the frame given to the detector (may extend past the frame edge
            for partly visible faces; the stage clips boxes to the frame).
        score: detector confidence, 0..1 (each backend documents what it means).
        keypoints: optional ``(K, 2)`` array of facial keypoints in the same pixels. BlazeFace gives six: right
            eye, left eye, nose tip, mouth centre, right and left eye tragion (subject's right/left); other
            detectors give ``None``.
    """

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray | None = field(default=None, compare=False)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)


class FaceDetector(ABC):
    """Finds faces in RGB frames.

    Implementations load their model in :meth:`setup` (never at import or construction) and free it in
    :meth:`teardown`. :meth:`detect` takes a batch of frames of any length (the last batch of a window is usually
    shorter than the others and must be handled like any other) and returns one list per frame, in order.

    The ``faces`` config node holds the detector's arguments beside the stage-level keys, which are declared once
    in ``conf/faces/_stage.yaml`` (DESIGN §2). The stage (:class:`~mikupal.stage.Stage`) constructs the detector
    with its own arguments only, so a constructor takes just those.
    """

    def setup(self) -> None:
        """Load the model."""

    def teardown(self) -> None:
        """Free the model."""

    @abstractmethod
    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Detect faces.

        Args:
            frames: RGB ``uint8`` arrays of shape ``(H, W, 3)``; frames of one call may differ in size.

        Returns:
            One list of :class:`Detection` per input frame (same order, same length; empty where no face).
        """
