"""Qwen2.5-Omni's model inputs built with numpy and Pillow, without ``Qwen2_5OmniProcessor``.

The official processor's video part needs torchvision, which has no CPU build for the pinned torch, so the local
annotator (:mod:`mikupal.annotate.transformers_local`, which documents what the model is given) builds the inputs
with the functions here:

* video: :func:`read_clip_frames` samples a face clip's frames (:func:`sample_frame_indices`, the sampling rule of
  transformers' Qwen2-VL video processor), :func:`video_patches` resizes them (:func:`smart_resize`, Pillow bicubic),
  normalises them with the CLIP mean and standard deviation and cuts them into the vision encoder's patch rows
  (:func:`patchify`);
* audio: :func:`audio_features` (the folder's Whisper feature extractor, padded as the processor pads) and
  :func:`audio_token_count` (placeholder tokens the audio encoder produces);
* text: :func:`chat_token_ids`, the token ids of Qwen's chat format around the media placeholders.

Nothing here loads a model; torch is not imported.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: CLIP normalisation, Qwen2-VL's default when ``preprocessor_config.json`` names none.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ---------------------------------------------------------------------------------------------- video preprocessing
def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Target ``(height, width)``: multiples of ``factor``, area within ``[min_pixels, max_pixels]``, aspect kept.

    The rule of Qwen2-VL's processors: round each side to the nearest multiple of ``factor``; if the area is then
    above ``max_pixels`` shrink both sides by the same ratio (rounding down), if below ``min_pixels`` grow them
    (rounding up).
    """
    if min(height, width) < 1:
        raise ValueError(f"empty frame {width}x{height}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"frame aspect ratio {width}x{height} exceeds 200")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        ratio = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / ratio / factor) * factor)
        w = max(factor, math.floor(width / ratio / factor) * factor)
    elif h * w < min_pixels:
        ratio = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * ratio / factor) * factor
        w = math.ceil(width * ratio / factor) * factor
    return h, w


def sample_frame_indices(
    total: int, video_fps: float, fps: float, min_frames: int, max_frames: int, temporal_patch_size: int
) -> np.ndarray:
    """Indices of the frames to keep from a clip of ``total`` frames at ``video_fps`` (Qwen2-VL's sampling rule).

    ``total / video_fps * fps`` frames, at least ``min_frames``, at most ``max_frames`` and ``total``, rounded down
    to a multiple of ``temporal_patch_size``, evenly spaced from the first frame. A clip shorter than one temporal
    patch keeps all its frames (the patch is completed by repeating the last one).
    """
    if total < 1:
        raise ValueError("the clip has no frames")
    tps = temporal_patch_size
    cap = math.floor(min(max_frames, total) / tps) * tps
    wanted = total / max(video_fps, 1e-6) * fps
    n = math.floor(min(max(wanted, min_frames), cap, total) / tps) * tps
    if n < tps:
        return np.arange(total)
    return np.floor(np.arange(n) * (total / n)).astype(np.int64)


def patchify(
    frames: np.ndarray, patch_size: int, temporal_patch_size: int, merge_size: int
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Flatten normalised frames ``(T, C, H, W)`` into the vision encoder's patch rows.

    Rows are ordered by temporal patch, then by ``merge_size x merge_size`` block (row-major over the frame), then
    within the block row-major; each row holds ``C x temporal_patch_size x patch_size x patch_size`` values ordered
    channel, frame, pixel row, pixel column. ``T`` is padded to a multiple of ``temporal_patch_size`` by repeating
    the last frame; ``H`` and ``W`` must be multiples of ``patch_size * merge_size``.

    Returns:
        ``(rows, (grid_t, grid_h, grid_w))`` with ``rows`` of shape ``(grid_t * grid_h * grid_w, C * tps * P * P)``.
    """
    t, c, h, w = frames.shape
    p, tps, m = patch_size, temporal_patch_size, merge_size
    if h % (p * m) or w % (p * m):
        raise ValueError(f"frame size {w}x{h} is not a multiple of {p * m}")
    if t % tps:
        frames = np.concatenate([frames, np.repeat(frames[-1:], tps - t % tps, axis=0)])
        t = frames.shape[0]
    gt, gh, gw = t // tps, h // p, w // p
    x = frames.reshape(gt, tps, c, gh // m, m, p, gw // m, m, p)
    # -> (gt, block row, block col, row in block, col in block, channel, frame, pixel row, pixel col)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return np.ascontiguousarray(x.reshape(gt * gh * gw, c * tps * p * p)), (gt, gh, gw)


def video_patches(
    frames: Sequence[np.ndarray],
    *,
    patch_size: int,
    temporal_patch_size: int,
    merge_size: int,
    min_pixels: int,
    max_pixels: int,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """RGB ``uint8`` frames ``(H, W, 3)`` of one clip -> float32 patch rows and ``(grid_t, grid_h, grid_w)``.

    Each frame is resized with Pillow's bicubic filter to :func:`smart_resize`'s size (factor
    ``patch_size * merge_size``), scaled to 0..1, normalised by ``mean``/``std`` per channel, and the clip is cut by
    :func:`patchify`.
    """
    from PIL import Image

    if len(frames) == 0:
        raise ValueError("no frames to preprocess")
    height, width = frames[0].shape[:2]
    th, tw = smart_resize(height, width, patch_size * merge_size, min_pixels, max_pixels)
    mean_a = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    std_a = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    out = np.empty((len(frames), 3, th, tw), dtype=np.float32)
    for i, frame in enumerate(frames):
        if frame.shape[:2] != (height, width) or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame {i}: expected ({height}, {width}, 3) RGB, got {frame.shape}")
        img = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))
        if (th, tw) != (height, width):
            img = img.resize((tw, th), resample=Image.Resampling.BICUBIC)
        chw = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) * np.float32(1 / 255)
        out[i] = (chw - mean_a) / std_a
    return patchify(out, patch_size, temporal_patch_size, merge_size)


def read_clip_frames(
    path: str | Path, fps: float, min_frames: int, max_frames: int, temporal_patch_size: int
) -> tuple[list[np.ndarray], float]:
    """Sampled RGB frames of a video file and the sampling rate actually obtained (frames per second).

    The frames :func:`sample_frame_indices` picks from the clip's frame count (stated by the container, else its
    packets counted), read by the one frame sampler (:meth:`mikupal.faces.video.VideoReader.frames_at`); when the
    stated count was too high the last frame stands in for the missing ones.

    Raises:
        MediaError: no video stream, or nothing decodable.
    """
    from mikupal.faces.video import VideoReader
    from mikupal.media import MediaError

    with VideoReader(path, threads=False) as reader:
        video_fps = reader.fps
        total = reader.frame_count()
        if total < 1:
            raise MediaError(f"{path}: the video stream holds no frames")
        keep = sample_frame_indices(total, video_fps, fps, min_frames, max_frames, temporal_patch_size)
        frames = [image for _, image in reader.frames_at(keep.tolist(), fmt="rgb24", hold_last=True)]
    duration = total / video_fps
    return frames, len(frames) / duration if duration > 0 else fps


# ---------------------------------------------------------------------------------------------- audio preprocessing
def audio_token_count(feature_frames: int) -> int:
    """Audio placeholder tokens the Qwen2.5-Omni audio encoder produces for ``feature_frames`` log-mel frames."""
    return ((feature_frames - 1) // 2 + 1 - 2) // 2 + 1


def audio_features(feature_extractor: Any, audio: np.ndarray) -> np.ndarray:
    """Log-mel features ``(n_mels, frames)`` of 16 kHz mono ``audio``, equal to the official processor's valid frames.

    The official processor pads every clip with zeros to the extractor's full window (300 s for Qwen2.5-Omni) and
    masks the padding. Whisper's log-mel floor depends only on the loudest frame, which padding never is, so padding
    just past the last analysis window (``n_fft`` zeros) gives the same valid frames at a fraction of the cost.
    Audio longer than the extractor's window is cut to it (with a warning).
    """
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    limit = int(feature_extractor.n_samples)
    if len(audio) > limit:
        log.warning("annotator=transformers: audio of %.1f s cut to the feature extractor's %.0f s window",
                    len(audio) / feature_extractor.sampling_rate, limit / feature_extractor.sampling_rate)
        audio = audio[:limit]
    pad_to = min(limit, len(audio) + int(feature_extractor.n_fft))
    out = feature_extractor(
        audio,
        sampling_rate=feature_extractor.sampling_rate,
        return_attention_mask=True,
        padding="max_length",
        max_length=pad_to,
        truncation=True,
        return_tensors="np",
    )
    valid = int(np.asarray(out["attention_mask"]).sum())
    return np.asarray(out["input_features"][0, :, :valid], dtype=np.float32)


# ---------------------------------------------------------------------------------------------- text
def chat_token_ids(
    text: Callable[[str], list[int]],
    im_start: int,
    im_end: int,
    system: str,
    user: str,
    media_ids: Sequence[int] = (),
    exchanges: Sequence[tuple[str, str]] = (),
) -> list[int]:
    """Token ids of a conversation in Qwen's chat format, ending with the assistant turn's header.

    ``<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{media}{user}<|im_end|>\n``, then for each
    ``(assistant reply, user follow-up)`` of ``exchanges`` an assistant and a user turn, then
    ``<|im_start|>assistant\n``.

    Args:
        text: tokenizes a text piece (no special tokens added, special-token text kept as text).
        im_start, im_end: the ids of ``<|im_start|>`` and ``<|im_end|>``.
        media_ids: the media placeholder ids, placed before the user text.
    """
    nl = text("\n")
    ids = [im_start] + text("system\n" + system) + [im_end] + nl
    ids += [im_start] + text("user\n") + list(media_ids) + text(user) + [im_end] + nl
    for reply, follow_up in exchanges:
        ids += [im_start] + text("assistant\n" + reply) + [im_end] + nl
        ids += [im_start] + text("user\n" + follow_up) + [im_end] + nl
    return ids + [im_start] + text("assistant\n")
