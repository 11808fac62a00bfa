"""S3FD face detector as a ``faces`` backend (``faces=s3fd``; the paper's detector, selected by ``preset=paper``).

Model: S3FD, "Single Shot Scale-invariant Face Detector" (Zhang et al., ICCV 2017): a VGG16 trunk with six
detection sources at strides 4-128 and one square anchor per source (16-512 pixels). The network is our own
implementation, :class:`mikupal.models.s3fd.S3fd`, whose parameter names load TalkNet-ASD's checkpoint unchanged and
whose pre- and post-processing are TalkNet-ASD's ``S3FD.detect_faces`` (equivalence with upstream was checked on
random weights: 0.0 max abs difference).

Weights: ``sfd_face.pth`` as distributed by TalkNet-ASD (https://github.com/TaoRuijie/TalkNet-ASD, MIT-licensed
repository; its ``model/faceDetector/s3fd/__init__.py`` fetches the file from Google Drive, id
``1KafnHz7ccT-3IyddBsL5yi2xGtxAKypt``). TalkNet-ASD states no separate licence for these weights (a PyTorch port of
the S3FD authors' model): check before redistributing them. The user places the file at
``$MIKUPAL_MODELS_DIR/s3fd/sfd_face.pth`` (registry name ``s3fd``; ``mikupal-models list --preset paper``); a
missing file fails in :meth:`S3fdDetector.setup` with that placement.

Expected input: RGB ``uint8`` frames ``(H, W, 3)`` as the ``faces`` stage gives them (already shrunk to
``faces.max_side``; ``conf/faces/s3fd.yaml`` sets ``max_side: null`` so that, as in TalkNet's demo, the detector sees
the source frame). Each frame is resized by ``scale`` (0.25 in TalkNet's demo and MIKU-PAL: a 1280x720 frame is
searched at 320x180, so faces smaller than about 64 source pixels, S3FD's 16-pixel smallest anchor, are missed),
mean-subtracted, and the detections above ``conf_threshold`` (0.9 upstream) are returned as boxes in pixels of the
frame given to :meth:`S3fdDetector.detect`, with the face probability (softmax, 0..1) as the score. No keypoints.

Runs on the GPU when ``device`` resolves to CUDA (``auto``: when torch sees one); frames of equal size go through the
network ``forward_batch`` at a time. On 2 CPU cores the network alone takes about 0.4 s per frame at 160x90 and
0.8 s at 320x180 (a 1280x720 frame at scale 0.25): real footage needs a GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from mikupal.faces.base import Detection, FaceDetector
from mikupal.torch_device import check_device, release_memory, resolve_torch_device

log = logging.getLogger(__name__)


class S3fdDetector(FaceDetector):
    """S3FD with TalkNet-ASD's pre- and post-processing (see the module docstring).

    Args:
        model: registry name (``s3fd``) or a path to a checkpoint in TalkNet-ASD's ``sfd_face.pth`` layout.
        conf_threshold: minimum face probability of a kept detection (TalkNet's demo: 0.9).
        scale: factor(s) the frame is resized by before detection: a number, or a list for multi-scale detection
            (detections of all scales merged by NMS at IoU 0.1, as upstream). TalkNet's demo: 0.25.
        forward_batch: frames of equal size per network forward pass (bounds GPU memory; results do not depend
            on it beyond float32 rounding).
        device: ``auto`` (CUDA when torch sees a GPU, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        ValueError: a setting out of range.
    """

    #: Python packages setup() imports (import name -> what to install); checked before a run starts.
    requires = {"torch": "torch==2.13.0 (CPU; scripts/setup.sh)"}
    #: Attributes holding a model-registry name or path; their files are checked before a run starts.
    model_keys = ("model",)

    def __init__(
        self,
        model: str = "s3fd",
        conf_threshold: float = 0.9,
        scale: float | Sequence[float] = 0.25,
        forward_batch: int = 8,
        device: str = "auto",
    ) -> None:
        scales = [float(s) for s in (scale if isinstance(scale, Sequence) and not isinstance(scale, str) else [scale])]
        if not scales or any(not 0.0 < s <= 4.0 for s in scales):
            raise ValueError(f"faces.scale must be a number (or list of numbers) in (0, 4], got {scale!r}")
        if not 0.0 <= float(conf_threshold) < 1.0:
            raise ValueError(f"faces.conf_threshold must be in [0, 1), got {conf_threshold}")
        if int(forward_batch) < 1:
            raise ValueError(f"faces.forward_batch must be >= 1, got {forward_batch}")
        self.model = str(model)
        self.conf_threshold = float(conf_threshold)
        self.scales = tuple(scales)
        self.forward_batch = int(forward_batch)
        self.device = check_device(device, "faces.device")
        self._detector = None

    def setup(self) -> None:
        """Resolve the checkpoint (a missing file raises the registry's placement message) and load it."""
        from mikupal.models.s3fd import S3fd
        from mikupal.registry import resolve

        path = resolve(self.model)
        device = resolve_torch_device(self.device, "faces.device")
        self._detector = S3fd(path, device=device)
        log.info("S3FD %s loaded on %s (scale %s, threshold %g)", path, device, list(self.scales), self.conf_threshold)

    def teardown(self) -> None:
        if self._detector is not None:
            self._detector = None
            release_memory()

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        if self._detector is None:
            raise RuntimeError("S3fdDetector.setup() must be called before detect()")
        if len(frames) == 0:
            return []
        found = self._detector.detect_many(
            [np.ascontiguousarray(f) for f in frames], self.conf_threshold, self.scales, batch_size=self.forward_batch
        )
        return [
            [Detection(box=(float(x1), float(y1), float(x2), float(y2)), score=float(s)) for x1, y1, x2, y2, s in dets]
            for dets in found
        ]
