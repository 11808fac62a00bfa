"""TalkNet active speaker detector: network, checkpoint loading, face-track crops and track scoring.

Architecture: TalkNet, "Is Someone Speaking? Exploring Long-term Temporal Features for Audio-visual Active
Speaker Detection" (Tao et al., ACM MM 2021).

* Visual temporal encoder: a 3D convolution (5x7x7, stride 1x2x2) with BatchNorm, ReLU and 1x3x3 max-pooling
  over the grey 112x112 mouth-region crops, then an 18-layer 2D ResNet applied frame by frame (512-d per
  frame), then a visual temporal network (V-TCN) of five residual depthwise-separable 1D convolution blocks
  (ReLU, BatchNorm, depthwise conv k=3, PReLU, global layer norm, pointwise conv), and a 1D convolution stack
  down to 128 dimensions.
* Audio temporal encoder: a ResNet with squeeze-and-excitation blocks (layers 3-4-6-3, widths 16-32-64-128)
  over the 13 x T MFCC image (100 frames per second), downsampled 4x in time to 25 frames per second and
  averaged over frequency (128-d per video frame).
* Audio-visual cross-attention (one transformer layer each way, d=128, 8 heads), then an audio-visual
  self-attention layer (d=256, 8 heads) on the concatenation, and a linear head with two outputs. The score of
  a frame is the "speaking" logit of that head (> 0 means speaking, as upstream).

This is our own implementation. Module and parameter names follow TalkNet-ASD
(https://github.com/TaoRuijie/TalkNet-ASD), so its checkpoint ``pretrain_TalkSet.model`` (trained on TalkSet,
MIT licence like the repository) loads unchanged. That file is the state dict of upstream's training wrapper:
keys ``model.visualFrontend.*``, ``model.visualTCN.*``, ``model.visualConv1D.*``, ``model.audioEncoder.*``,
``model.crossA2V.*``, ``model.crossV2A.*``, ``model.selfAV.*`` and the heads ``lossAV.FC.*`` (audio-visual,
used for scoring), ``lossA.FC.*`` and ``lossV.FC.*`` (auxiliary training heads). :class:`TalkNet` has the same
layout. Like upstream's ``loadParameters``, a ``module.`` prefix left by ``DataParallel`` is removed; unlike it,
a missing, unexpected or mis-shaped key is an error instead of a printed line (only the unused auxiliary heads
and BatchNorm step counters may be absent).

Pre- and post-processing follow TalkNet-ASD's ``demoTalkNet.py`` (which MIKU-PAL's ``inference.py`` copies):

* video at 25 fps, audio at 16 kHz mono (resample before calling; other rates are refused);
* face crops: box size and centre median-filtered over 13 frames, the box widened by ``cropScale`` 0.4,
  the frame padded with grey 110, the crop resized to 224x224 (:func:`crop_face_track`); then grey and the
  centre 112x112 (:func:`mouth_region`);
* audio features: :func:`mikupal.models.mfcc.talknet_mfcc` (13 MFCCs, 100 Hz, 16-bit sample scale);
* both streams cut to a common length (audio frames a multiple of 4), then scored in consecutive chunks of
  1, 2, 3, 4, 5 and 6 seconds and the six score sequences averaged. Upstream writes the durations as the
  Python *set* ``{1,1,1,2,2,2,3,3,4,5,6}``, which is ``{1,2,3,4,5,6}``: each duration counts once;
* frame scores smoothed by the mean over a window of frames ``[i-2, i+3)`` clipped to ``[0, n-1)`` (the last
  scored frame itself never enters a window, an upstream quirk kept for equivalence); the track score is the
  mean of the smoothed frame scores, MIKU-PAL's speaker-selection statistic. Upstream also rounds the averaged
  scores to one decimal; ``round_decimals=1`` reproduces that, the default keeps full precision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mikupal.models._checkpoint import load_exact, read_state_dict
from mikupal.models.mfcc import talknet_mfcc

#: Video frame rate and MFCC frame rate TalkNet was trained with.
VIDEO_FPS = 25
AUDIO_FPS = 100
#: Grey-level normalisation of the face crops (upstream: ``(x / 255 - 0.4161) / 0.1688``).
GREY_MEAN, GREY_STD = 0.4161, 0.1688
#: Chunk durations (seconds) whose scores are averaged; upstream's set literal collapses to these six.
DURATIONS = (1, 2, 3, 4, 5, 6)

WEIGHTS_HELP = (
    "Get pretrain_TalkSet.model from TalkNet-ASD (https://github.com/TaoRuijie/TalkNet-ASD, MIT licence: its "
    "demoTalkNet.py downloads it with `gdown --id 1AbN9fCf9IexMxEKXLQY2KYBlb-IhSEea`) and put it at this path."
)


# --------------------------------------------------------------------------------------------------- visual


class LipResNetStage(nn.Module):
    """Two residual units of the lip-reading ResNet-18 (the "pre-activation-after-sum" variant of deep_avsr).

    Unit a: conv-BN-ReLU-conv, plus the input (through a strided 1x1 conv when ``stride`` > 1), then BN-ReLU.
    Unit b: the same with an identity shortcut. ``downsample`` exists for every stage (also stride 1, where it
    is unused) because the checkpoint stores it.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()

        def bn() -> nn.BatchNorm2d:
            return nn.BatchNorm2d(out_channels, momentum=0.01, eps=0.001)

        self.stride = stride
        self.conv1a = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1a = bn()
        self.conv2a = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.downsample = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
        self.outbna = bn()
        self.conv1b = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1b = bn()
        self.conv2b = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.outbnb = bn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.stride == 1 else self.downsample(x)
        summed = self.conv2a(F.relu(self.bn1a(self.conv1a(x)))) + shortcut
        y = F.relu(self.outbna(summed))
        y = self.conv2b(F.relu(self.bn1b(self.conv1b(y)))) + summed
        return F.relu(self.outbnb(y))


class LipResNet18(nn.Module):
    """Four :class:`LipResNetStage` (64, 128, 256, 512 channels) and a 4x4 average pool: 28x28x64 -> 512."""

    def __init__(self) -> None:
        super().__init__()
        self.layer1 = LipResNetStage(64, 64, stride=1)
        self.layer2 = LipResNetStage(64, 128, stride=2)
        self.layer3 = LipResNetStage(128, 256, stride=2)
        self.layer4 = LipResNetStage(256, 512, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return F.avg_pool2d(x, kernel_size=4, stride=1)


class VisualFrontend(nn.Module):
    """3D conv stem + per-frame ResNet-18: ``(B, 1, T, 112, 112)`` normalised grey -> ``(B, T, 512)``.

    Each clip is convolved on its own time axis (upstream runs inference one clip at a time; batching clips
    here gives the same result per clip).
    """

    def __init__(self) -> None:
        super().__init__()
        self.frontend3D = nn.Sequential(
            nn.Conv3d(1, 64, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False),
            nn.BatchNorm3d(64, momentum=0.01, eps=0.001),
            nn.ReLU(),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        self.resnet = LipResNet18()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.frontend3D(x)  # (B, 64, T, 28, 28)
        batch, channels, frames, height, width = x.shape
        per_frame = x.transpose(1, 2).reshape(batch * frames, channels, height, width)
        return self.resnet(per_frame).reshape(batch, frames, 512)


class GlobalLayerNorm(nn.Module):
    """Layer norm over channels and time together (Conv-TasNet's gLN), with per-channel gain and bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True).mean(dim=2, keepdim=True)
        var = (x - mean).pow(2).mean(dim=1, keepdim=True).mean(dim=2, keepdim=True)
        return self.gamma * (x - mean) / torch.sqrt(var + 1e-8) + self.beta


class DepthwiseSeparableBlock(nn.Module):
    """Residual V-TCN block on ``(B, 512, T)``: ReLU, BN, depthwise conv (k=3), PReLU, gLN, pointwise conv."""

    def __init__(self, channels: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ReLU(),
            nn.BatchNorm1d(channels),
            nn.Conv1d(channels, channels, 3, padding=1, groups=channels, bias=False),
            nn.PReLU(),
            GlobalLayerNorm(channels),
            nn.Conv1d(channels, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class VisualTCN(nn.Module):
    """Five :class:`DepthwiseSeparableBlock` in sequence."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(*(DepthwiseSeparableBlock() for _ in range(5)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VisualConv1D(nn.Module):
    """Conv1d 512->256 (k=5), BN, ReLU, conv1d 256->128 (k=1), on ``(B, 512, T)``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(512, 256, 5, padding=2),
            nn.BatchNorm1d(256),
            nn.ReLU(),
            nn.Conv1d(256, 128, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# ---------------------------------------------------------------------------------------------------- audio


class SqueezeExcite(nn.Module):
    """Channel attention: global average pool, FC down by ``reduction``, ReLU, FC up, sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction),
            nn.ReLU(),
            nn.Linear(channels // reduction, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc(x.mean(dim=(2, 3)))
        return x * gate[:, :, None, None]


class SEResidualBlock(nn.Module):
    """Basic residual block with squeeze-and-excitation; note the ReLU *before* the first BatchNorm, as trained."""

    def __init__(self, in_channels: int, channels: int, stride: int | tuple[int, int] = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.se = SqueezeExcite(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn1(F.relu(self.conv1(x)))
        y = self.se(self.bn2(self.conv2(y)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(y + shortcut)


class AudioEncoder(nn.Module):
    """SE-ResNet on the MFCC image ``(B, 1, 13, T)`` -> ``(B, T / 4, 128)``.

    Stem: 7x7 conv with stride 2 in frequency only; stages of 3, 4, 6, 3 blocks with 16, 32, 64, 128 channels,
    stages 2 and 3 stride 2 in frequency and time. Stage 4 is built with stride ``(1, 1)`` and therefore, like
    upstream, has a projection shortcut (its widths differ anyway).
    """

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), widths: Sequence[int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, widths[0], kernel_size=7, stride=(2, 1), padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        strides: tuple[int | tuple[int, int], ...] = (1, (2, 2), (2, 2), (1, 1))
        in_channels = widths[0]
        for index, (count, width, stride) in enumerate(zip(layers, widths, strides, strict=True), start=1):
            blocks = [SEResidualBlock(in_channels, width, stride)]
            blocks += [SEResidualBlock(width, width) for _ in range(count - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
            in_channels = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=2).transpose(1, 2)


# ------------------------------------------------------------------------------------------------ attention


class AttentionLayer(nn.Module):
    """Post-norm transformer layer where queries come from ``target`` and keys/values from ``source``.

    ``out = LN2(h + FFN(h))`` with ``h = LN1(source + MHA(q=target, k=source, v=source))``; FFN is
    Linear(d, 4d)-ReLU-Linear(4d, d). Inputs and output are ``(B, T, d)``; dropout 0.1 (inactive in eval).
    """

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, d_model * 4)
        self.linear2 = nn.Linear(d_model * 4, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        attended = self.self_attn(target, source, source, need_weights=False)[0]
        h = self.norm1(source + self.dropout1(attended))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(h))))
        return self.norm2(h + self.dropout2(ffn))


# ---------------------------------------------------------------------------------------------------- model


class TalkNetModel(nn.Module):
    """TalkNet's encoders and attention backend (upstream ``talkNetModel``; keys without the ``model.`` prefix)."""

    def __init__(self) -> None:
        super().__init__()
        self.visualFrontend = VisualFrontend()
        self.visualTCN = VisualTCN()
        self.visualConv1D = VisualConv1D()
        self.audioEncoder = AudioEncoder()
        self.crossA2V = AttentionLayer(128, 8)
        self.crossV2A = AttentionLayer(128, 8)
        self.selfAV = AttentionLayer(256, 8)

    def encode_visual(self, faces: torch.Tensor) -> torch.Tensor:
        """``(B, T, 112, 112)`` grey crops with values 0..255 -> ``(B, T, 128)``."""
        x = (faces.unsqueeze(1) / 255 - GREY_MEAN) / GREY_STD
        x = self.visualFrontend(x).transpose(1, 2)  # (B, 512, T)
        return self.visualConv1D(self.visualTCN(x)).transpose(1, 2)

    def encode_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """``(B, 4T, 13)`` MFCC frames -> ``(B, T, 128)``."""
        return self.audioEncoder(mfcc.unsqueeze(1).transpose(2, 3))

    def fuse(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """Cross-attention both ways, then self-attention on the concatenation: ``(B, T, 256)``."""
        audio_c = self.crossA2V(source=audio, target=visual)
        visual_c = self.crossV2A(source=visual, target=audio)
        joint = torch.cat([audio_c, visual_c], dim=2)
        return self.selfAV(source=joint, target=joint)


class ScoreHead(nn.Module):
    """A two-way linear classifier (not speaking, speaking); upstream's ``lossAV``/``lossA``/``lossV`` modules."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.FC = nn.Linear(in_features, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.FC(x)


class TalkNet(nn.Module):
    """TalkNet in upstream's checkpoint layout: ``model`` plus the heads ``lossAV``, ``lossA``, ``lossV``.

    ``forward(mfcc, faces)`` takes ``(B, 4T, 13)`` MFCCs and ``(B, T, 112, 112)`` grey crops (0..255) covering
    the same time span and returns the ``(B, T)`` speaking logits of the audio-visual head.
    """

    #: Keys that a checkpoint may lack: auxiliary training heads and BatchNorm step counters.
    OPTIONAL_KEYS = ("lossA.*", "lossV.*", "*.num_batches_tracked")

    def __init__(self) -> None:
        super().__init__()
        self.model = TalkNetModel()
        self.lossAV = ScoreHead(256)
        self.lossA = ScoreHead(128)
        self.lossV = ScoreHead(128)

    def forward(self, mfcc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        if mfcc.shape[1] != 4 * faces.shape[1]:
            raise ValueError(f"need 4 MFCC frames per video frame, got {mfcc.shape[1]} and {faces.shape[1]}")
        fused = self.model.fuse(self.model.encode_audio(mfcc), self.model.encode_visual(faces))
        return self.lossAV(fused)[..., 1]

    def load_upstream_state_dict(self, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Load a state dict in upstream's layout (``module.`` prefixes removed as upstream's loader does)."""
        own = self.state_dict()
        renamed = {}
        for name, tensor in state.items():
            if name not in own and "module." in name:
                name = name.replace("module.", "")
            renamed[name] = tensor
        load_exact(self, renamed, source=source, optional=self.OPTIONAL_KEYS)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> TalkNet:
        """Build a model from ``pretrain_TalkSet.model`` (or any file in that layout), in eval mode on the CPU."""
        net = cls()
        net.load_upstream_state_dict(
            read_state_dict(path, what="TalkNet active speaker detector", how_to_get=WEIGHTS_HELP), source=str(path)
        )
        return net.eval()


# ---------------------------------------------------------------------------------------- pre-processing


def crop_face_track(
    frames: Sequence[np.ndarray], boxes: np.ndarray, crop_scale: float = 0.40, out_size: int = 224
) -> np.ndarray:
    """Face crops of one track, as TalkNet's demo cuts them.

    Box half-size ``s = max(w, h) / 2`` and centre are median-filtered over 13 frames (``scipy.signal.medfilt``,
    zero-padded at the ends like upstream); each frame is padded by ``int(s (1 + 2 crop_scale))`` with value
    110; the crop spans ``[cy - s, cy + s (1 + 2 crop_scale))`` vertically and ``cx -/+ s (1 + crop_scale)``
    horizontally (more room below the eyes: the mouth ends up in the centre), resized bilinearly to
    ``out_size`` square.

    Args:
        frames: the track's frames, ``(H, W)`` or ``(H, W, C)`` uint8, one per box.
        boxes: ``(T, 4)`` x1, y1, x2, y2 in frame pixels (interpolated where the detector missed a frame).
        crop_scale: upstream ``cropScale``.
        out_size: output side in pixels.

    Returns:
        uint8 array ``(T, out_size, out_size[, C])``.
    """
    import cv2
    from scipy.signal import medfilt

    boxes = np.asarray(boxes, dtype=np.float64)
    if len(frames) != len(boxes) or len(boxes) == 0:
        raise ValueError(f"need one box per frame and at least one frame, got {len(frames)} frames, {len(boxes)} boxes")
    half = medfilt(np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2, kernel_size=13)
    cy = medfilt((boxes[:, 1] + boxes[:, 3]) / 2, kernel_size=13)
    cx = medfilt((boxes[:, 0] + boxes[:, 2]) / 2, kernel_size=13)
    crops = []
    for frame, s, y, x in zip(frames, half, cy, cx, strict=True):
        pad = int(s * (1 + 2 * crop_scale))
        widths = ((pad, pad), (pad, pad)) + (((0, 0),) if frame.ndim == 3 else ())
        padded = np.pad(frame, widths, mode="constant", constant_values=110)
        my, mx = y + pad, x + pad
        rows = slice(int(my - s), int(my + s * (1 + 2 * crop_scale)))
        cols = slice(int(mx - s * (1 + crop_scale)), int(mx + s * (1 + crop_scale)))
        face = padded[rows, cols]
        crops.append(cv2.resize(face, (out_size, out_size)))
    return np.stack(crops)


def mouth_region(crops: np.ndarray, rgb: bool = True) -> np.ndarray:
    """TalkNet's visual input from face crops: grey, resized to 224x224, centre 112x112.

    Args:
        crops: ``(T, H, W, 3)`` colour crops (RGB if ``rgb`` else BGR) or ``(T, H, W)`` grey crops, uint8.
        rgb: channel order of colour crops.

    Returns:
        uint8 array ``(T, 112, 112)``.
    """
    import cv2

    crops = np.asarray(crops)
    out = np.empty((len(crops), 112, 112), np.uint8)
    for i, crop in enumerate(crops):
        if crop.ndim == 3:
            crop = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY if rgb else cv2.COLOR_BGR2GRAY)
        if crop.shape != (224, 224):
            crop = cv2.resize(crop, (224, 224))
        out[i] = crop[56:168, 56:168]
    return out


def smooth_scores(raw: np.ndarray, num_frames: int | None = None) -> np.ndarray:
    """TalkNet's ±2-frame smoothing: frame ``i`` gets ``mean(raw[max(i-2, 0) : min(i+3, n-1)])``.

    ``n = len(raw)``; the window's upper end is clipped to ``n - 1`` as upstream does. ``num_frames`` (default
    ``n``) may exceed ``n`` when the track has more video frames than scored frames; a frame whose upstream
    window is empty (past the end, or ``n == 1``) takes the value of the nearest frame that has one (or
    ``raw[-1]``).
    """
    raw = np.asarray(raw, dtype=np.float64)
    n = len(raw)
    num_frames = n if num_frames is None else num_frames
    out = np.empty(num_frames)
    last = raw[-1] if n else math.nan
    for i in range(num_frames):
        window = raw[max(i - 2, 0) : min(i + 3, n - 1)]
        if len(window):
            last = window.mean()
        out[i] = last
    return out


# ----------------------------------------------------------------------------------------------- scoring


@dataclass
class TalkNetScores:
    """Result of :meth:`TalkNetScorer.score`.

    Attributes:
        raw: ``(n,)`` averaged speaking logits of the scored frames (``n`` <= number of video frames: both
            streams are cut to their common length).
        frames: ``(num_video_frames,)`` smoothed per-frame scores (> 0: speaking).
        track: mean of ``frames``; MIKU-PAL picks the track with the highest value.
    """

    raw: np.ndarray
    frames: np.ndarray
    track: float


class TalkNetScorer:
    """Score face tracks with TalkNet as TalkNet-ASD's demo does (see the module docstring for each step).

    Args:
        weights: path of ``pretrain_TalkSet.model``, or ``None`` for random weights (tests), or a ready
            :class:`TalkNet` instance.
        device: torch device.
        durations: chunk lengths in seconds whose scores are averaged.
        round_decimals: round the averaged scores like upstream (1), or keep them (``None``).
        max_batch_frames: upper bound on video frames per forward pass (chunks of equal length are batched).

    Raises:
        FileNotFoundError: ``weights`` is a path that does not exist (the message says where to get the file).
        CheckpointMismatchError: the file does not fit TalkNet.
    """

    def __init__(
        self,
        weights: str | Path | TalkNet | None,
        device: str | torch.device = "cpu",
        durations: Sequence[int] = DURATIONS,
        round_decimals: int | None = None,
        max_batch_frames: int = 750,
    ) -> None:
        if isinstance(weights, TalkNet):
            self.net = weights
        elif weights is None:
            self.net = TalkNet()
        else:
            self.net = TalkNet.from_checkpoint(weights)
        self.device = torch.device(device)
        self.net.eval().to(self.device)
        self.durations = tuple(int(d) for d in durations)
        self.round_decimals = round_decimals
        self.max_batch_frames = max_batch_frames

    def to(self, device: str | torch.device) -> TalkNetScorer:
        """Move the network to ``device``; returns ``self``."""
        self.device = torch.device(device)
        self.net.to(self.device)
        return self

    @torch.inference_mode()
    def raw_scores(self, mfcc: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """Multi-duration averaged speaking logits for time-aligned features.

        Args:
            mfcc: ``(Ta, 13)`` MFCCs at 100 Hz starting at the first video frame.
            faces: ``(Tv, 112, 112)`` grey mouth-region crops at 25 fps.

        Returns:
            ``(n,)`` float64 with ``n = round(25 * min((Ta - Ta % 4) / 100, Tv / 25))``.
        """
        return self.raw_scores_many([(mfcc, faces)])[0]

    @torch.inference_mode()
    def raw_scores_many(self, tracks: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """:meth:`raw_scores` for several ``(mfcc, faces)`` tracks: the full chunks of every track for one
        duration go through the network together, at most ``max_batch_frames`` video frames per pass (a track
        batch on a GPU). Each result equals that of :meth:`raw_scores` on the track alone, up to float32
        rounding."""
        streams = []
        for mfcc, faces in tracks:
            length = min((len(mfcc) - len(mfcc) % 4) / AUDIO_FPS, len(faces) / VIDEO_FPS)
            n_audio, n_video = round(length * AUDIO_FPS), round(length * VIDEO_FPS)
            if n_video == 0:
                raise ValueError(f"clip too short to score: {len(mfcc)} audio frames, {len(faces)} video frames")
            audio = torch.as_tensor(np.asarray(mfcc[:n_audio], dtype=np.float32), device=self.device)
            video = torch.as_tensor(np.asarray(faces[:n_video]), device=self.device).float()
            streams.append((audio, video))
        per_duration = [self._score_chunks_many(streams, d) for d in self.durations]
        results = []
        for k in range(len(streams)):
            scores = np.mean(np.stack([scores[k] for scores in per_duration]), axis=0)
            if self.round_decimals is not None:
                scores = np.round(scores, self.round_decimals)
            results.append(scores.astype(np.float64))
        return results

    def _score_chunks_many(self, streams: list[tuple[torch.Tensor, torch.Tensor]], duration: int) -> list[np.ndarray]:
        """Per-frame logits of each ``(audio, video)`` stream cut into ``duration``-second chunks (the last,
        shorter one scored on its own)."""
        step = duration * VIDEO_FPS
        audio_chunks, video_chunks, owners = [], [], []
        for k, (audio, video) in enumerate(streams):
            full = len(video) // step
            if full:
                video_chunks.append(video[: full * step].reshape(full, step, *video.shape[1:]))
                audio_chunks.append(audio[: full * step * 4].reshape(full, step * 4, audio.shape[1]))
                owners += [k] * full
        pieces: list[list[torch.Tensor]] = [[] for _ in streams]
        if owners:
            videos, audios = torch.cat(video_chunks), torch.cat(audio_chunks)
            per_batch = max(1, self.max_batch_frames // step)
            outputs = [
                self.net(audios[start : start + per_batch], videos[start : start + per_batch]).reshape(-1, step)
                for start in range(0, len(owners), per_batch)
            ]
            for k, chunk in zip(owners, torch.cat(outputs), strict=True):
                pieces[k].append(chunk)
        for k, (audio, video) in enumerate(streams):
            full = len(video) // step
            if full * step < len(video):
                pieces[k].append(self.net(audio[None, full * step * 4 :], video[None, full * step :]).reshape(-1))
        return [torch.cat(p).float().cpu().numpy() for p in pieces]

    def score(self, faces: np.ndarray, audio: np.ndarray, sample_rate: int = 16000) -> TalkNetScores:
        """Score one face track.

        Args:
            faces: ``(T, 112, 112)`` uint8 grey mouth-region crops at 25 fps (see :func:`mouth_region`); larger
                grey or colour (RGB) crops are converted with :func:`mouth_region` first.
            audio: the track's audio, 16 kHz mono, starting at the first frame: int16 samples or floats in
                [-1, 1].
            sample_rate: must be 16000.

        Returns:
            :class:`TalkNetScores` with per-frame scores for all ``T`` frames and the track score.
        """
        faces = np.asarray(faces)
        if faces.ndim == 4 or faces.shape[1:] != (112, 112):
            faces = mouth_region(faces)
        raw = self.raw_scores(talknet_mfcc(audio, sample_rate), faces)
        frames = smooth_scores(raw, len(faces))
        return TalkNetScores(raw=raw, frames=frames, track=float(frames.mean()))

    def score_many(
        self, tracks: Sequence[tuple[np.ndarray, np.ndarray]], sample_rate: int = 16000
    ) -> list[TalkNetScores]:
        """:meth:`score` for several ``(faces, audio)`` tracks, their chunks batched together
        (:meth:`raw_scores_many`); one result per track, in order."""
        prepared = []
        for faces, audio in tracks:
            faces = np.asarray(faces)
            if faces.ndim == 4 or faces.shape[1:] != (112, 112):
                faces = mouth_region(faces)
            prepared.append((talknet_mfcc(audio, sample_rate), faces))
        results = []
        for (_, faces), raw in zip(prepared, self.raw_scores_many(prepared), strict=True):
            frames = smooth_scores(raw, len(faces))
            results.append(TalkNetScores(raw=raw, frames=frames, track=float(frames.mean())))
        return results
