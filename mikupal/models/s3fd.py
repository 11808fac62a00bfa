"""S3FD face detector: network, anchors, decoding, NMS and a frame-level detector.

Architecture: S3FD, "Single Shot Scale-invariant Face Detector" (Zhang et al., ICCV 2017). A VGG16 trunk
(conv1_1 .. conv5_3, then fc6 as a 3x3 convolution with dilation 6 and fc7 as a 1x1 convolution), two extra
stages (conv6, conv7), and six detection sources at strides 4, 8, 16, 32, 64 and 128 with one square anchor
each of side 16, 32, 64, 128, 256 and 512 pixels ("equal-proportion interval"). The three shallowest sources
(conv3_3, conv4_3, conv5_3) are L2-normalised channel-wise and rescaled by learnt per-channel weights
initialised to 10, 8 and 5. Each source has a 3x3 box-regression head (4 offsets) and a 3x3 classification
head; the stride-4 head predicts three background scores and one face score and keeps the maximum
background score ("max-out background label"), the others predict background and face. Boxes are decoded
SSD-style with variances (0.1, 0.2).

This is our own implementation. Module and parameter names follow the S3FD network shipped with TalkNet-ASD
(``model/faceDetector/s3fd``), so its checkpoint ``sfd_face.pth`` loads unchanged: ``vgg.{0,2,...,33}``,
``L2Norm3_3.weight``, ``L2Norm4_3.weight``, ``L2Norm5_3.weight``, ``extras.{0..3}``, ``loc.{0..5}``,
``conf.{0..5}`` (each with ``.weight`` and, for convolutions, ``.bias``).

Pre- and post-processing follow TalkNet-ASD's ``S3FD.detect_faces`` exactly, which is what TalkNet's demo and
MIKU-PAL use (``conf_th=0.9``, ``scales=[0.25]``):

* the RGB frame is resized by each scale with bilinear interpolation, converted to float, and the mean
  (R, G, B) = (123, 117, 104) is subtracted; the network sees **RGB** channel order (upstream swaps to BGR,
  subtracts the BGR mean [104, 117, 123] and swaps back);
* softmax scores, candidates with face score > 0.05, the 5000 best kept, greedy NMS at IoU 0.3, at most 750
  detections per image;
* detections above ``conf_threshold`` from all scales are scaled to source pixels and merged with a second
  greedy NMS at IoU 0.1. (Upstream raises ``IndexError`` when all 750 detections of an image pass the
  threshold; here they are simply all kept.)

Weights: ``sfd_face.pth`` as distributed by TalkNet-ASD (MIT-licensed repository,
https://github.com/TaoRuijie/TalkNet-ASD; its ``model/faceDetector/s3fd/__init__.py`` downloads the file from
Google Drive, id ``1KafnHz7ccT-3IyddBsL5yi2xGtxAKypt``). TalkNet-ASD states no separate licence or origin for
these weights (a PyTorch port of the S3FD authors' model); check that before redistributing them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mikupal.models._checkpoint import load_exact, read_state_dict

#: Per-channel mean subtracted from the RGB input (upstream's BGR mean [104, 117, 123], in RGB order).
RGB_MEAN = (123.0, 117.0, 104.0)
#: Anchor stride (pixels) of the six detection sources.
STEPS = (4, 8, 16, 32, 64, 128)
#: Anchor side (pixels) of the six detection sources.
ANCHOR_SIZES = (16, 32, 64, 128, 256, 512)
#: SSD box-encoding variances (centre, size).
VARIANCES = (0.1, 0.2)

WEIGHTS_HELP = (
    "Get sfd_face.pth as distributed by TalkNet-ASD (https://github.com/TaoRuijie/TalkNet-ASD: its "
    "model/faceDetector/s3fd/__init__.py downloads it with `gdown --id 1KafnHz7ccT-3IyddBsL5yi2xGtxAKypt`) "
    "and put it at this path."
)

# VGG16 layout as (out_channels | pooling). "M": 2x2 max-pool, "C": the same with ceil_mode (conv3 stage).
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M", 512, 512, 512, "M")


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learnt per-channel scale (ParseNet), as used on S3FD's shallow sources.

    Args:
        channels: number of input channels.
        scale: initial value of every per-channel weight.
    """

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.eps = 1e-10
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        return self.weight.view(1, -1, 1, 1) * (x / norm)


def _vgg16_trunk() -> nn.ModuleList:
    layers: list[nn.Module] = []
    channels = 3
    for item in _VGG16:
        if item in ("M", "C"):
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=item == "C"))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=True)]
            channels = item
    # fc6 / fc7 of VGG16 as convolutions (fc6 dilated), as in SSD and S3FD.
    layers += [nn.Conv2d(512, 1024, 3, padding=6, dilation=6), nn.ReLU(inplace=True)]
    layers += [nn.Conv2d(1024, 1024, 1), nn.ReLU(inplace=True)]
    return nn.ModuleList(layers)


class S3FDNet(nn.Module):
    """The S3FD network; ``forward`` returns the raw head outputs (see module docstring for the design).

    Input: float tensor ``(B, 3, H, W)``, RGB, mean-subtracted (see :func:`preprocess`), any H and W.
    """

    # Indices into ``vgg`` after which conv3_3, conv4_3 and conv5_3 (post-ReLU) are tapped.
    _TAPS: ClassVar[dict[int, str]] = {15: "L2Norm3_3", 22: "L2Norm4_3", 29: "L2Norm5_3"}

    def __init__(self) -> None:
        super().__init__()
        self.vgg = _vgg16_trunk()
        self.L2Norm3_3 = L2Norm(256, 10)
        self.L2Norm4_3 = L2Norm(512, 8)
        self.L2Norm5_3 = L2Norm(512, 5)
        # conv6_1, conv6_2 (stride 2), conv7_1, conv7_2 (stride 2); the *_2 outputs are detection sources.
        self.extras = nn.ModuleList(
            [
                nn.Conv2d(1024, 256, 1),
                nn.Conv2d(256, 512, 3, stride=2, padding=1),
                nn.Conv2d(512, 128, 1),
                nn.Conv2d(128, 256, 3, stride=2, padding=1),
            ]
        )
        source_channels = (256, 512, 512, 1024, 512, 256)
        self.loc = nn.ModuleList([nn.Conv2d(c, 4, 3, padding=1) for c in source_channels])
        # The stride-4 head scores 3 background classes + 1 face (max-out background label).
        self.conf = nn.ModuleList(
            [nn.Conv2d(c, 4 if i == 0 else 2, 3, padding=1) for i, c in enumerate(source_channels)]
        )

    def sources(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The six detection source feature maps, shallowest first."""
        out = []
        for index, layer in enumerate(self.vgg):
            x = layer(x)
            if index in self._TAPS:
                out.append(getattr(self, self._TAPS[index])(x))
        out.append(x)  # fc7
        for index, layer in enumerate(self.extras):
            x = F.relu(layer(x))
            if index % 2 == 1:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """Run the network.

        Returns:
            ``loc`` ``(B, P, 4)`` encoded box offsets, ``logits`` ``(B, P, 2)`` (background, face) class logits,
            and the ``(height, width)`` of each source map; anchors are enumerated source by source, row-major.
        """
        locs, logits, sizes = [], [], []
        for index, feature in enumerate(self.sources(x)):
            loc = self.loc[index](feature)
            conf = self.conf[index](feature)
            if index == 0:
                background = conf[:, :3].max(dim=1, keepdim=True).values
                conf = torch.cat([background, conf[:, 3:]], dim=1)
            sizes.append((int(loc.shape[2]), int(loc.shape[3])))
            locs.append(loc.permute(0, 2, 3, 1).reshape(x.shape[0], -1, 4))
            logits.append(conf.permute(0, 2, 3, 1).reshape(x.shape[0], -1, 2))
        return torch.cat(locs, dim=1), torch.cat(logits, dim=1), sizes


def prior_boxes(image_size: tuple[int, int], feature_sizes: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Anchors ``(P, 4)`` as (cx, cy, w, h), normalised by the image size, in the order of the network outputs.

    Args:
        image_size: ``(height, width)`` of the network input.
        feature_sizes: ``(height, width)`` of each source map (third output of :meth:`S3FDNet.forward`).
    """
    height, width = image_size
    parts = []
    for (rows, cols), step, size in zip(feature_sizes, STEPS, ANCHOR_SIZES, strict=True):
        cy, cx = np.meshgrid(np.arange(rows) + 0.5, np.arange(cols) + 0.5, indexing="ij")
        anchors = np.empty((rows * cols, 4))
        anchors[:, 0] = cx.reshape(-1) / (width / step)
        anchors[:, 1] = cy.reshape(-1) / (height / step)
        anchors[:, 2] = size / width
        anchors[:, 3] = size / height
        parts.append(anchors)
    return torch.from_numpy(np.concatenate(parts).astype(np.float32))


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """Decode SSD offsets ``(P, 4)`` against anchors ``(P, 4)`` into corner boxes (x1, y1, x2, y2), normalised."""
    centre = priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[:, 2:] * variances[1])
    top_left = centre - size / 2
    return torch.cat([top_left, top_left + size], dim=1)


def _descending_order(scores: np.ndarray | torch.Tensor):
    # Highest score first, as the reversal of the library's default ascending sort. Equal scores (common when
    # softmax saturates at 1.0) are thus visited in the same order as in TalkNet-ASD, whose NMS reverses
    # ``Tensor.sort`` (first stage) and numpy's ``argsort`` (cross-scale stage); the tie order decides which of
    # two overlapping, equally scored boxes survives.
    if isinstance(scores, torch.Tensor):
        return torch.flip(torch.sort(scores, dim=0).indices, dims=[0])
    return np.argsort(scores)[::-1]


def nms(
    boxes: np.ndarray | torch.Tensor,
    scores: np.ndarray | torch.Tensor,
    iou_threshold: float,
    top_k: int | None = None,
):
    """Greedy non-maximum suppression.

    Visits boxes by descending score (ties as explained in ``_descending_order``) and drops every box whose IoU
    with an already kept box exceeds ``iou_threshold``. Areas are ``(x2 - x1) * (y2 - y1)`` (no +1). Takes numpy
    arrays or torch tensors and computes in their dtype (on the CPU; float32 arithmetic is the same in both).

    Args:
        boxes: ``(N, 4)`` corner boxes.
        scores: ``(N,)``.
        iou_threshold: boxes overlapping a kept box by more than this are suppressed.
        top_k: consider only the ``top_k`` best-scoring boxes.

    Returns:
        Indices of the kept boxes, best first (same array type as ``boxes``, on its device).
    """
    is_torch = isinstance(boxes, torch.Tensor)
    order = _descending_order(scores)
    if is_torch:  # the loop is sequential: numpy on the CPU is fastest, with the same float32 arithmetic
        device = boxes.device
        order, boxes = order.cpu().numpy(), boxes.detach().cpu().numpy()
    if top_k is not None:
        order = order[:top_k]
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    keep = []
    while len(order) > 0:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        w = np.maximum(0.0, np.minimum(x2[rest], x2[best]) - np.maximum(x1[rest], x1[best]))
        h = np.maximum(0.0, np.minimum(y2[rest], y2[best]) - np.maximum(y1[rest], y1[best]))
        inter = w * h
        iou = inter / ((areas[rest] - inter) + areas[best])
        order = rest[iou <= iou_threshold]
    keep = np.asarray(keep, dtype=np.int64)
    return torch.from_numpy(keep).to(device) if is_torch else keep


def postprocess(
    loc: torch.Tensor,
    logits: torch.Tensor,
    priors: torch.Tensor,
    *,
    min_score: float = 0.05,
    nms_threshold: float = 0.3,
    nms_top_k: int = 5000,
    keep_top_k: int = 750,
) -> list[torch.Tensor]:
    """Per-image detections from raw head outputs: softmax, score filter, decode, NMS.

    Args:
        loc: ``(B, P, 4)`` from :meth:`S3FDNet.forward`.
        logits: ``(B, P, 2)`` from :meth:`S3FDNet.forward`.
        priors: ``(P, 4)`` from :func:`prior_boxes`.
        min_score: candidates need a face probability above this.
        nms_threshold: IoU above which a lower-scoring box is suppressed.
        nms_top_k: at most this many best candidates enter NMS.
        keep_top_k: at most this many detections are returned per image.

    Returns:
        One float CPU tensor ``(N, 5)`` per image: (score, x1, y1, x2, y2), coordinates normalised to [0, 1] of
        the network input, best first.
    """
    face = torch.softmax(logits, dim=-1)[..., 1]
    priors = priors.to(loc.device, loc.dtype)
    results = []
    for b in range(loc.shape[0]):
        boxes = decode_boxes(loc[b], priors)
        mask = face[b] > min_score
        # NMS is a sequential loop: run it on the CPU, where it needs no device synchronisation per kept box.
        boxes, scores = boxes[mask].cpu(), face[b][mask].cpu()
        keep = nms(boxes, scores, nms_threshold, nms_top_k)[:keep_top_k]
        results.append(torch.cat([scores[keep, None], boxes[keep]], dim=1))
    return results


def preprocess(image_rgb: np.ndarray, scale: float) -> torch.Tensor:
    """Resize an RGB uint8 frame by ``scale`` (bilinear), subtract :data:`RGB_MEAN`: float32 ``(3, h, w)``."""
    import cv2  # local import: OpenCV is needed only when detecting on frames

    resized = cv2.resize(image_rgb, dsize=(0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    chw = resized.transpose(2, 0, 1).astype(np.float32)
    chw -= np.asarray(RGB_MEAN, dtype=np.float32)[:, None, None]
    return torch.from_numpy(chw)


class S3fd:
    """Frame-level S3FD face detector with TalkNet-ASD's pre- and post-processing.

    Args:
        weights: path of ``sfd_face.pth``, or ``None`` to keep the network's random initialisation (tests).
        device: torch device to run on (``"cpu"``, ``"cuda"``, ...).

    Raises:
        FileNotFoundError: ``weights`` does not exist (the message says where to get the file).
        CheckpointMismatchError: the file does not fit the S3FD architecture.
    """

    def __init__(self, weights: str | Path | None, device: str | torch.device = "cpu") -> None:
        self.net = S3FDNet()
        if weights is not None:
            load_s3fd_weights(self.net, weights)
        self.device = torch.device(device)
        self.net.eval().to(self.device)

    def to(self, device: str | torch.device) -> S3fd:
        """Move the network to ``device``; returns ``self``."""
        self.device = torch.device(device)
        self.net.to(self.device)
        return self

    def detect(
        self, image_rgb_uint8: np.ndarray, conf_threshold: float = 0.9, scales: Sequence[float] = (0.25,)
    ) -> np.ndarray:
        """Detect faces in one frame.

        Args:
            image_rgb_uint8: ``(H, W, 3)`` uint8 RGB frame.
            conf_threshold: minimum face probability (TalkNet's demo and MIKU-PAL use 0.9).
            scales: the frame is resized by each factor and detections of all scales are merged (demo: 0.25).

        Returns:
            float64 array ``(N, 5)``: x1, y1, x2, y2 in source-frame pixels and the face probability, best first
            after the cross-scale NMS (IoU 0.1). ``N`` may be 0.
        """
        return self.detect_many([image_rgb_uint8], conf_threshold, scales)[0]

    @torch.inference_mode()
    def detect_many(
        self,
        images_rgb_uint8: Sequence[np.ndarray],
        conf_threshold: float = 0.9,
        scales: Sequence[float] = (0.25,),
        batch_size: int = 16,
    ) -> list[np.ndarray]:
        """:meth:`detect` on several frames, running frames of equal size through the network together.

        The result for each frame is that of :meth:`detect` on it alone, up to float32 rounding (batched
        convolutions may sum in another order); batching saves time on a GPU.
        """
        images = [np.asarray(image) for image in images_rgb_uint8]
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"expected (H, W, 3) RGB frames, got shape {image.shape}")
        found: list[list[np.ndarray]] = [[] for _ in images]
        for scale in scales:
            for start in range(0, len(images), batch_size):
                group = range(start, min(start + batch_size, len(images)))
                inputs = [preprocess(images[i], scale) for i in group]
                if len({tuple(x.shape) for x in inputs}) > 1:  # mixed sizes: one at a time
                    batches = [(i, x[None]) for i, x in zip(group, inputs, strict=True)]
                else:
                    batches = [(group, torch.stack(inputs))]
                for members, x in batches:
                    loc, logits, sizes = self.net(x.to(self.device))
                    priors = prior_boxes((x.shape[2], x.shape[3]), sizes)
                    members = [members] if isinstance(members, int) else members
                    for i, dets in zip(members, postprocess(loc, logits, priors), strict=True):
                        found[i].append(self._to_source_pixels(dets.numpy(), images[i].shape, conf_threshold))
        results = []
        for per_scale in found:
            merged = np.concatenate(per_scale) if per_scale else np.empty((0, 5))
            results.append(merged[nms(merged[:, :4], merged[:, 4], 0.1)] if len(merged) else np.empty((0, 5)))
        return results

    @staticmethod
    def _to_source_pixels(dets: np.ndarray, shape: tuple[int, ...], conf_threshold: float) -> np.ndarray:
        """(score, normalised box) rows above the threshold -> (x1, y1, x2, y2, score) in source pixels."""
        height, width = shape[:2]
        dets = dets[dets[:, 0] > conf_threshold]
        # Scale in float32 as upstream does, then widen.
        boxes = dets[:, 1:] * np.array([width, height, width, height], dtype=np.float32)
        return np.concatenate([boxes, dets[:, :1]], axis=1).astype(np.float64)


def load_s3fd_weights(net: S3FDNet, path: str | Path) -> None:
    """Load ``sfd_face.pth`` (a plain state dict, keys as listed in the module docstring) into ``net``, exactly."""
    state = read_state_dict(path, what="S3FD face detector", how_to_get=WEIGHTS_HELP)
    load_exact(net, state, source=str(path))
