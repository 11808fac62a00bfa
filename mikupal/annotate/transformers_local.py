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
for this torch; the inputs are built by :mod:`mikupal.models.qwen_inputs`, and the token ids assembled directly):

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mikupal.annotate.api import APIAnnotator, APIFailure, Meter, Prepared, Reply
from mikupal.annotate.base import AnnotationError, AnnotatorConfigError, MediaPart
from mikupal.annotate.retry import Failure
from mikupal.models.qwen_inputs import (
    CLIP_MEAN,
    CLIP_STD,
    audio_features,
    audio_token_count,
    chat_token_ids,
    read_clip_frames,
    video_patches,
)
from mikupal.torch_device import check_device, release_memory, resolve_torch_device

log = logging.getLogger(__name__)

#: ``model_type`` values of ``config.json`` this backend loads: a full Qwen2.5-Omni checkpoint or a thinker alone.
SUPPORTED_MODEL_TYPES = ("qwen2_5_omni", "qwen2_5_omni_thinker")
_DTYPES = ("auto", "float32", "bfloat16", "float16")


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
    ) -> None:
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

        exchanges = []
        if correction is not None:
            previous, error = correction
            exchanges.append((previous or "(empty)", self.prompt.correction_text(error, prepared.request.label_set)))
        return chat_token_ids(text, c.im_start, c.im_end, prepared.system, prepared.user, media.placeholders,
                              exchanges)

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
