"""Local ``transformers`` annotator (``annotator=transformers``): Qwen2.5-Omni's thinker from a local folder.

Model: Qwen2.5-Omni (Qwen team, Alibaba; arXiv 2503.20215), a multimodal LLM reading text, audio (a Whisper-style
encoder over 128-bin log-mel features) and video (a ViT over 14x14 pixel patches, two frames per temporal patch,
2x2 patches merged per token). Only the *thinker* (the text-generating part) is loaded, with
``Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(folder, local_files_only=True)``; the talker and
token-to-wave parts of a full checkpoint are skipped by transformers. Licence: Apache-2.0 for Qwen2.5-Omni-7B (read
the model card of the size you use). Weights: the Hugging Face repository ``Qwen/Qwen2.5-Omni-7B`` (or ``-3B``),
downloaded on a machine with network and placed as a folder at ``$MIKUPAL_MODELS_DIR/qwen2.5-omni/`` (registry name
``qwen2.5-omni``) or given as ``annotator.model=/path/to/folder``; it must hold ``config.json``, the weights
(``*.safetensors``), the tokenizer (``tokenizer.json`` or ``vocab.json`` + ``merges.txt``, with Qwen's chat tokens
``<|im_start|>``/``<|im_end|>``) and ``preprocessor_config.json`` (the Whisper feature extractor's settings).
Nothing is ever downloaded; a missing file fails in ``setup()`` with what to place where.

Same prompt and output contract as the other annotators: the prompt of ``conf/prompt`` (system text with every
label and its description, user text with transcript and context) is rendered by
:class:`~mikupal.annotate.prompt.PromptTemplate`, each reply is validated by
:func:`~mikupal.annotate.prompt.parse_reply` (a JSON object whose ``label`` is exactly a label of the set, an
intensity in 0..1, a rationale), an invalid reply is answered once with the error stated and a second invalid
reply makes the utterance an item error (``errors.jsonl``), never a guess. The shared machinery of
:class:`~mikupal.annotate.api.APIAnnotator` does this, plus the on-disk answer cache (a resumed run regenerates
nothing). Output is validated, not constrained: decoding is free, greedy by default (``temperature: 0``).

What the model gets (no ``Qwen2_5OmniProcessor``: its video processor needs torchvision, which has no CPU build
for this torch; the inputs are built here, and the token ids assembled directly):

* token ids of Qwen's chat format, ``<|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n{media}{user
  text}<|im_end|>\\n<|im_start|>assistant\\n``, where the text pieces are tokenized with the folder's tokenizer and
  the media placeholders are the ids named in ``config.json`` (``vision_start_token_id``, ``video_token_index`` x N,
  ``vision_end_token_id``; ``audio_start_token_id``, ``audio_token_index`` x M, ``audio_end_token_id``), N and M
  computed as the model's encoders will produce them (a mismatch would fail inside the model);
* ``video`` modality with a face clip: the clip's frames sampled at ``video_fps`` (2 per second, at least
  ``min_frames``, at most ``max_frames``, a multiple of the temporal patch size; the sampling rule of transformers'
  Qwen2-VL video processor), each resized (Pillow bicubic) to a multiple of 28 pixels with its area within
  ``min_pixels``..``max_pixels`` (a 224x224 clip becomes 336x336: 144 tokens per two frames), scaled to 0..1,
  normalised with the CLIP mean and standard deviation of ``preprocessor_config.json``, and cut into flattened
  ``(3 x 2 x 14 x 14)`` patches in the model's order (temporal patch, 2x2 merge blocks row by row, channel,
  frame, row, column) with ``video_grid_thw`` and ``video_second_per_grid`` (two frames over the actual sampling
  rate). A still frame preprocessed this way equals transformers' own Qwen2-VL image preprocessing; the official
  video processor resizes with torchvision's bicubic instead of Pillow's (small pixel differences);
* ``audio`` modality: the utterance audio (16 kHz) through the folder's ``WhisperFeatureExtractor`` (numpy; 128
  log-mel bins every 10 ms) padded with zeros as the official processor pads it, then cut to the valid frames, with
  ``feature_attention_mask``. The audio is its own part, not the clip's sound track interleaved with the video
  (Qwen's ``use_audio_in_video``), as in ``annotator=openai``; the system prompt says "a silent video of the
  speaker's face, an audio recording of the utterance and its transcript";
* ``text`` modality: the transcript in the user text.

Generation: ``generate(max_new_tokens=max_output_tokens)`` until ``<|im_end|>``; ``Emotion.annotator`` is
``model_id`` (the published id of the weights you placed). Runs on the GPU when ``device`` resolves to CUDA, in
bfloat16 there (``dtype: auto``; float32 on the CPU). Memory: the 7B thinker holds about 8.9 billion parameters
(LLM, audio and vision encoders), about 18 GB of weights in bfloat16, plus activations that grow with the clip
length (``max_frames``/``max_pixels`` bound the video tokens); a 7B model on a CPU is far too slow for a dataset.
Without ``accelerate`` installed the weights are loaded in CPU memory first and then moved to the GPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mikupal.annotate.api import APIAnnotator, APIFailure, Meter, Prepared, Reply
from mikupal.annotate.base import AnnotationError, AnnotatorConfigError, MediaPart, check_stage_settings
from mikupal.annotate.retry import Failure
from mikupal.torch_device import check_device, release_memory, resolve_torch_device

log = logging.getLogger(__name__)

#: ``model_type`` values of ``config.json`` this backend loads: a full Qwen2.5-Omni checkpoint or a thinker alone.
SUPPORTED_MODEL_TYPES = ("qwen2_5_omni", "qwen2_5_omni_thinker")
#: CLIP normalisation, Qwen2-VL's default when ``preprocessor_config.json`` names none.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_DTYPES = ("auto", "float32", "bfloat16", "float16")


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

    Raises:
        MediaError: no video stream, or nothing decodable.
    """
    import av

    from mikupal.media import MediaError

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            video_fps = float(stream.average_rate or stream.guessed_rate or 25.0)
            total = int(stream.frames or 0)
            if total <= 0:  # container without a frame count: count the packets first (no decoding)
                total = sum(1 for packet in container.demux(stream) if packet.size)
                container.seek(0)
            keep = sample_frame_indices(total, video_fps, fps, min_frames, max_frames, temporal_patch_size)
            wanted = {int(i) for i in keep}
            frames: dict[int, np.ndarray] = {}
            last = None
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted:
                    frames[index] = frame.to_ndarray(format="rgb24")
                last = frame
                if index >= keep[-1]:
                    break
    except av.error.FFmpegError as e:
        raise MediaError(f"{path}: video cannot be decoded ({e})") from e
    if not frames:
        raise MediaError(f"{path}: the video stream holds no frames")
    if len(frames) < len(keep) and last is not None:  # the stated frame count was too high: repeat the last frame
        tail = last.to_ndarray(format="rgb24")
        frames.update({int(i): tail for i in keep if int(i) not in frames})
    ordered = [frames[int(i)] for i in keep]
    duration = total / video_fps
    return ordered, len(ordered) / duration if duration > 0 else fps


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


# ---------------------------------------------------------------------------------------------- the annotator
@dataclass
class _Loaded:
    """What ``setup()`` loads: the model, its tokenizer and feature extractor, and the ids the prompt needs."""

    model: Any
    tokenizer: Any
    feature_extractor: Any
    device: Any
    dtype: Any
    im_start: int
    im_end: int
    eos_ids: list[int]
    pad_id: int
    audio_ids: tuple[int, int, int]   # start, placeholder, end
    video_ids: tuple[int, int, int]   # start, placeholder, end
    patch_size: int
    temporal_patch_size: int
    merge_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass
class _Media:
    """Model inputs of one request's media: placeholder id runs (in prompt order) and tensors."""

    placeholders: list[int]
    tensors: dict[str, Any]


class TransformersAnnotator(APIAnnotator):
    """Emotion annotation with a local Qwen2.5-Omni thinker (see the module docstring for the exact inputs).

    Args:
        model: registry name (``qwen2.5-omni``) or a path to a local model folder.
        model_id: the published id of the weights, written to ``Emotion.annotator`` (e.g. ``Qwen/Qwen2.5-Omni-7B``).
        device: ``auto`` (CUDA when torch sees a GPU, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: ``auto`` (bfloat16 on a GPU that supports it, else float16; float32 on the CPU), ``bfloat16``,
            ``float16`` or ``float32``.
        attn_implementation: transformers' attention kernel (``sdpa``, ``eager``, or ``flash_attention_2`` when
            flash-attn is installed).
        video_fps: frames sampled per second of the face clip.
        min_frames, max_frames: bounds on the sampled frames (``max_frames`` bounds the video tokens).
        min_pixels, max_pixels: bounds on each resized frame's area (multiples of 28x28).
        prompt, cache_dir, temperature, seed, max_output_tokens, validation_retries: as for the API annotators
            (:class:`~mikupal.annotate.api.APIAnnotator`); ``temperature: 0`` decodes greedily (deterministic, so
            the stage asks once per utterance whatever ``rollouts`` is), a positive one samples with the seed
            ``seed + rollout``.
        **stage_settings: the stage-level keys of the annotator config.

    Raises:
        AnnotatorConfigError: a setting out of range.
    """

    #: Python packages setup() imports (import name -> what to install); checked before a run starts.
    requires = {"transformers": "transformers==5.24.*", "torch": "torch==2.13.0 (CPU; scripts/setup.sh)"}
    #: Attributes holding a model-registry name or path; their files are checked before a run starts.
    model_keys = ("model",)

    backend_name = "transformers"
    audio_in_video = False
    concurrent = False  # one model, and generate() keeps per-call state on it
    batch_size = 1      # the stage's batched path then checks its budget/stop flag between utterances

    def __init__(
        self,
        *,
        model: str = "qwen2.5-omni",
        model_id: str = "Qwen/Qwen2.5-Omni-7B",
        device: str = "auto",
        dtype: str = "auto",
        attn_implementation: str = "sdpa",
        video_fps: float = 2.0,
        min_frames: int = 4,
        max_frames: int = 64,
        min_pixels: int = 128 * 28 * 28,
        max_pixels: int = 768 * 28 * 28,
        prompt: Any = "miku_pal_v1",
        cache_dir: str | None = None,
        temperature: float | None = 0.0,
        seed: int | None = 0,
        max_output_tokens: int | None = 256,
        validation_retries: int = 1,
        **stage_settings: Any,
    ) -> None:
        check_stage_settings(stage_settings, type(self).__name__)  # before the fixed API settings below can clash
        super().__init__(
            model=model,
            prompt=prompt,
            api_key_env=None,
            base_url=None,
            retry={"max_attempts": 1},
            requests_per_minute=None,
            prices={str(model): {"input": 0.0, "output": 0.0}},  # local inference costs no API money
            cache_dir=cache_dir,
            temperature=temperature,
            seed=seed,
            max_output_tokens=max_output_tokens,
            validation_retries=validation_retries,
            **stage_settings,
        )
        if not model_id:
            raise AnnotatorConfigError("annotator.model_id is empty: name the weights (e.g. Qwen/Qwen2.5-Omni-7B)")
        if dtype not in _DTYPES:
            raise AnnotatorConfigError(f"annotator.dtype={dtype!r}: use one of {list(_DTYPES)}")
        if video_fps <= 0 or min_frames < 1 or max_frames < min_frames:
            raise AnnotatorConfigError(
                f"annotator: need video_fps > 0 and 1 <= min_frames <= max_frames (got {video_fps}, {min_frames}, "
                f"{max_frames})")
        if min_pixels < 1 or max_pixels < min_pixels:
            raise AnnotatorConfigError(f"annotator: need 1 <= min_pixels <= max_pixels (got {min_pixels}, {max_pixels})")
        if self.max_output_tokens is None or self.max_output_tokens < 1:
            raise AnnotatorConfigError("annotator.max_output_tokens must be >= 1 for a local model")
        try:
            self.device = check_device(device, "annotator.device")
        except ValueError as e:
            raise AnnotatorConfigError(str(e)) from None
        self.model_id = str(model_id)
        self.dtype = str(dtype)
        self.attn_implementation = str(attn_implementation)
        self.video_fps = float(video_fps)
        self.min_frames = int(min_frames)
        self.max_frames = int(max_frames)
        self.min_pixels = int(min_pixels)
        self.max_pixels = int(max_pixels)
        self.deterministic = not self.temperature  # greedy decoding gives the same answer every time
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------------------------------ loading
    def model_folder(self) -> Path:
        """The model folder, after checking that it holds what loading needs.

        Raises:
            ModelNotFoundError: the folder or one of its files is missing; the message says what to place where.
        """
        from mikupal.registry import ModelNotFoundError, resolve

        folder = resolve(self.model)  # a registry name without config.json raises the registry's placement message
        fix = (f"place the Hugging Face folder of {self.model_id} (config.json, *.safetensors, tokenizer.json or "
               f"vocab.json + merges.txt, tokenizer_config.json, preprocessor_config.json) in {folder}/, e.g. "
               f"`hf download {self.model_id} --local-dir <folder>` on a machine with network")
        if not folder.is_dir():
            raise ModelNotFoundError(f"annotator=transformers: {folder} is not a folder. Fix: {fix}")
        missing = [name for name in ("config.json", "preprocessor_config.json") if not (folder / name).is_file()]
        if not (folder / "tokenizer.json").is_file() and not (
            (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
        ):
            missing.append("tokenizer.json (or vocab.json + merges.txt)")
        if not any(folder.glob("*.safetensors")) and not any(folder.glob("pytorch_model*.bin")):
            missing.append("the weights (*.safetensors)")
        if missing:
            raise ModelNotFoundError(f"annotator=transformers: {folder} lacks {', '.join(missing)}. Fix: {fix}")
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise AnnotatorConfigError(
                f"annotator=transformers: {folder / 'config.json'} is a {model_type!r} model; this backend runs "
                f"Qwen2.5-Omni ({' or '.join(SUPPORTED_MODEL_TYPES)}). For other models use annotator=openai with a "
                "server that hosts them")
        return folder

    def _make_client(self, api_key: str | None) -> _Loaded:
        """Load tokenizer, feature extractor and thinker from the local folder (never from the network)."""
        folder = self.model_folder()
        from transformers import AutoTokenizer, Qwen2_5OmniThinkerForConditionalGeneration, WhisperFeatureExtractor

        device = resolve_torch_device(self.device, "annotator.device")
        dtype = _torch_dtype(self.dtype, device)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        feature_extractor = WhisperFeatureExtractor.from_pretrained(folder, local_files_only=True)
        ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in ("<|im_start|>", "<|im_end|>", "<|endoftext|>")}
        for tok in ("<|im_start|>", "<|im_end|>"):
            if ids[tok] is None or ids[tok] == tokenizer.unk_token_id:
                raise AnnotatorConfigError(
                    f"annotator=transformers: the tokenizer in {folder} has no {tok} token; it is not a Qwen chat "
                    "tokenizer (place the tokenizer files of the same Qwen2.5-Omni release)")
        kwargs: dict[str, Any] = {"local_files_only": True, "dtype": dtype,
                                  "attn_implementation": self.attn_implementation}
        if device.type == "cuda" and _has_accelerate():
            kwargs["device_map"] = str(device)  # load straight onto the GPU
        elif device.type == "cuda":
            log.info("annotator=transformers: accelerate is not installed, so the weights pass through CPU memory "
                     "(pip install accelerate to load them straight onto the GPU)")
        model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(folder, **kwargs)
        model.to(device).eval()
        cfg = model.config
        vision = cfg.vision_config
        pre = json.loads((folder / "preprocessor_config.json").read_text(encoding="utf-8"))
        eos = [ids["<|im_end|>"]]
        if ids["<|endoftext|>"] is not None and ids["<|endoftext|>"] != tokenizer.unk_token_id:
            eos.append(ids["<|endoftext|>"])
        loaded = _Loaded(
            model=model,
            tokenizer=tokenizer,
            feature_extractor=feature_extractor,
            device=device,
            dtype=dtype,
            im_start=int(ids["<|im_start|>"]),
            im_end=int(ids["<|im_end|>"]),
            eos_ids=[int(i) for i in eos],
            pad_id=int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[-1]),
            audio_ids=(int(cfg.audio_start_token_id), int(cfg.audio_token_index), int(cfg.audio_end_token_id)),
            video_ids=(int(cfg.vision_start_token_id), int(cfg.video_token_index), int(cfg.vision_end_token_id)),
            patch_size=int(vision.patch_size),
            temporal_patch_size=int(vision.temporal_patch_size),
            merge_size=int(vision.spatial_merge_size),
            mean=tuple(float(v) for v in pre.get("image_mean") or CLIP_MEAN),
            std=tuple(float(v) for v in pre.get("image_std") or CLIP_STD),
        )
        self._fingerprint = _folder_fingerprint(folder)
        n_params = sum(p.numel() for p in model.parameters())
        log.info("annotator=transformers: %s (%s, %.2fB parameters) on %s in %s", self.model_id, folder,
                 n_params / 1e9, device, str(dtype).replace("torch.", ""))
        return loaded

    def _close_client(self) -> None:
        if self.client is not None:
            self.client = None
            release_memory()

    def request_params(self, rollout: int) -> dict[str, Any]:
        return {**super().request_params(rollout), "model_id": self.model_id, "weights": self._fingerprint,
                "dtype": self.dtype, "video_fps": self.video_fps, "min_frames": self.min_frames,
                "max_frames": self.max_frames, "min_pixels": self.min_pixels, "max_pixels": self.max_pixels}

    # ------------------------------------------------------------------------------------------ inputs
    def _prepare(self, prepared: Prepared, media: list[MediaPart], meter: Meter) -> Prepared:
        """Preprocess the media into model tensors and their placeholder ids (video first, then audio)."""
        import torch

        from mikupal.annotate.mediaprep import load_audio
        from mikupal.media import MediaError

        c: _Loaded = self.client
        placeholders: list[int] = []
        tensors: dict[str, Any] = {}
        what = f"{self.backend_name} {prepared.request.item_id}"
        for part in media:
            try:
                if part.kind == "video":
                    frames, sample_fps = read_clip_frames(part.path, self.video_fps, self.min_frames,
                                                          self.max_frames, c.temporal_patch_size)
                    rows, grid = video_patches(frames, patch_size=c.patch_size,
                                               temporal_patch_size=c.temporal_patch_size, merge_size=c.merge_size,
                                               min_pixels=self.min_pixels, max_pixels=self.max_pixels,
                                               mean=c.mean, std=c.std)
                    n_tokens = grid[0] * grid[1] * grid[2] // (c.merge_size ** 2)
                    start, token, end = c.video_ids
                    placeholders += [start] + [token] * n_tokens + [end]
                    tensors["pixel_values_videos"] = torch.from_numpy(rows).to(c.device, c.dtype)
                    tensors["video_grid_thw"] = torch.tensor([grid], dtype=torch.long, device=c.device)
                    tensors["video_second_per_grid"] = torch.tensor(
                        [c.temporal_patch_size / sample_fps], dtype=torch.float32, device=c.device)
                elif part.kind == "audio":
                    feats = audio_features(c.feature_extractor, load_audio(part.path, 16000))
                    n_tokens = audio_token_count(feats.shape[1])
                    if n_tokens < 1:
                        log.warning("%s: audio too short for the audio encoder; sent without audio", what)
                        continue
                    start, token, end = c.audio_ids
                    placeholders += [start] + [token] * n_tokens + [end]
                    tensors["input_features"] = torch.from_numpy(feats[None]).to(c.device, c.dtype)
                    tensors["feature_attention_mask"] = torch.ones(1, feats.shape[1], dtype=torch.long,
                                                                   device=c.device)
            except (MediaError, ValueError) as e:
                raise AnnotationError(f"{what}: cannot prepare {part.kind} {part.path.name}: {e}") from e
        prepared.payload = _Media(placeholders, tensors)
        return prepared

    def conversation_ids(self, prepared: Prepared, correction: tuple[str, str] | None = None) -> list[int]:
        """Token ids of the whole conversation in Qwen's chat format, ending with the assistant turn's header."""
        c: _Loaded = self.client
        media: _Media = prepared.payload

        def text(s: str) -> list[int]:
            # split_special_tokens: a transcript containing "<|im_end|>" stays text and cannot end the turn
            return list(c.tokenizer(s, add_special_tokens=False, split_special_tokens=True)["input_ids"])

        nl = text("\n")
        ids = [c.im_start] + text("system\n" + prepared.system) + [c.im_end] + nl
        ids += [c.im_start] + text("user\n") + media.placeholders + text(prepared.user) + [c.im_end] + nl
        if correction is not None:
            previous, error = correction
            ids += [c.im_start] + text("assistant\n" + (previous or "(empty)")) + [c.im_end] + nl
            ids += [c.im_start] + text("user\n" + self.prompt.correction_text(error, prepared.request.label_set))
            ids += [c.im_end] + nl
        return ids + [c.im_start] + text("assistant\n")

    # ------------------------------------------------------------------------------------------ generation
    def _generate(self, prepared: Prepared, correction: tuple[str, str] | None) -> Reply:
        import torch

        c: _Loaded = self.client
        ids = self.conversation_ids(prepared, correction)
        input_ids = torch.tensor([ids], dtype=torch.long, device=c.device)
        sample = bool(self.temperature)
        kwargs: dict[str, Any] = {
            "max_new_tokens": int(self.max_output_tokens),
            "do_sample": sample,
            "eos_token_id": c.eos_ids,
            "pad_token_id": c.pad_id,
        }
        if sample:
            kwargs["temperature"] = float(self.temperature)
            if self.seed is not None:
                torch.manual_seed(self.seed + prepared.rollout)
        else:  # greedy: clear sampling defaults of the checkpoint's generation_config (avoids warnings)
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = c.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                   **prepared.payload.tensors, **kwargs)
        new = out[0, input_ids.shape[1]:].tolist()
        stopped = bool(new) and new[-1] in c.eos_ids
        return Reply(
            text=c.tokenizer.decode(new, skip_special_tokens=True),
            input_tokens=len(ids),
            output_tokens=len(new),
            model_version=self.model_id,
            finish_reason="STOP" if stopped else "MAX_TOKENS",
        )

    def _classify(self, error: BaseException) -> Failure:
        if type(error).__name__ == "OutOfMemoryError":
            release_memory()
            return APIFailure(False, f"out of GPU memory ({error}); lower annotator.max_frames or "
                                     "annotator.max_pixels, or use a GPU with more memory")
        return APIFailure(False, f"{type(error).__name__}: {error}")


def _torch_dtype(name: str, device: Any) -> Any:
    import torch

    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, name)


def _has_accelerate() -> bool:
    import importlib.util

    return importlib.util.find_spec("accelerate") is not None


def _folder_fingerprint(folder: Path) -> str:
    """Short hash of ``config.json`` and the weight files' names and sizes (part of the answer cache key)."""
    h = hashlib.sha256((folder / "config.json").read_bytes())
    for path in sorted([*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")]):
        h.update(f"{path.name}:{path.stat().st_size}".encode())
    return h.hexdigest()[:16]
