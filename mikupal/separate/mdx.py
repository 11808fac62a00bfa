"""MDX-Net vocal separation through ``audio-separator`` (the paper's ``separate`` backend, ``preset=paper``).

Model: MDX-Net (Kim et al., "KUIELab-MDX-Net", ISMIR MDX workshop 2021) as trained by the Ultimate Vocal Remover
(UVR) project: a U-Net over a complex STFT (4 input planes: real and imaginary parts of a stereo 44.1 kHz mixture,
``dim_f`` frequency bins × ``dim_t`` frames) exported to ONNX. The default is ``UVR-MDX-NET-Inst_HQ_3.onnx``, the
model Emilia-Pipe uses; it predicts the *instrumental* stem, so the vocals are the mixture minus ``compensate`` ×
instrumental (audio-separator's and UVR's waveform inversion). A vocals model (``Kim_Vocal_2.onnx``) is used
directly. Licence: MIT (UVR models). Weights: not downloadable here; the user places them (registry name
``mdx-net``, see :mod:`mikupal.registry` and ``mikupal-models list --preset paper``).

Runtime: ``audio-separator==0.47.1`` (MIT). Its :class:`audio_separator.separator.Separator` is given our
model folder as ``model_file_dir``; every file it would fetch goes through ``download_file_if_not_exists``, so
with the four files in place (model, ``download_checks.json``, ``mdx_model_data.json``, ``vr_model_data.json``) it
never reaches for the network. This backend checks those files with the registry *before* constructing it, and also
replaces that download method on the instance with one that raises, so a missing file can never turn into a
download. The MDX parameters (``compensate``, ``mdx_dim_f_set``, ``mdx_dim_t_set``, ``mdx_n_fft_scale_set``,
``primary_stem``) are looked up by the MD5 of the model file (of its last 10,240,000 bytes for large files) in
``mdx_model_data.json`` merged with audio-separator's bundled ``model-data.json``.

Expected input: mono float32 at any rate (the pipeline passes 16 kHz). The audio is processed in chunks of
``chunk_seconds`` that overlap by ``crossfade_seconds``: each chunk is resampled to 44.1 kHz (soxr), duplicated to
stereo, separated with the loaded model's ``demix`` (the call audio-separator's own ``separate`` makes, minus its
file round trip), averaged back to mono and resampled to the input rate; neighbouring chunks are joined with a
raised-cosine crossfade whose weights sum to one. Peak memory therefore depends on ``chunk_seconds``, not on the
length of the recording: on a 10-minute input (CPU, 60 s chunks) the peak was 239 MB above the input, of which
35 MB is the output, against 1.72 GB in one pass (``mikupal/testing/mdx_memory_probe.py``). Output: the vocals, same
rate and length as the input.

Note: the ``extract`` stage decodes audio at 16 kHz, so the model sees band-limited audio (nothing above 8 kHz),
unlike UVR's full-band training material. Speech lies below 8 kHz, but separation quality can be lower than on the
original 44.1 kHz track.

Devices: ``auto`` uses CUDA when torch sees a GPU. The STFTs run in torch on that device; the ONNX network runs
with onnxruntime's CUDA provider when ``onnxruntime-gpu`` is installed, else on the CPU (a warning says so).

Install (CPU machines: ``pip install audio-separator`` would replace torch 2.13.0+cpu by a CUDA build)::

    pip install torch==2.13.0 "diffq>=0.2" "julius>=0.2" "rotary-embedding-torch>=0.6.1,<0.7.0" "librosa>=0.10" \\
        samplerate==0.1.0 "resampy>=0.4" "pydub>=0.25" ml_collections "beartype>=0.18.5,<0.19.0" onnx-weekly \\
        "einops>=0.7" "six>=1.16"
    pip install --no-deps audio-separator==0.47.1 onnx2torch-py313==1.6.0

``onnx2torch`` imports torchvision, which is not installed on CPU machines; it is only needed when the segment size
differs from the model's ``dim_t`` (audio-separator then converts the ONNX graph to torch). This backend always uses
the model's ``dim_t`` unless told otherwise, so the ONNX Runtime path is taken and ``onnx2torch`` is never called.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import logging
import os
import sys
import types
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mikupal.media import resample
from mikupal.separate.base import Separator

log = logging.getLogger(__name__)

#: MDX-Net models are trained on 44.1 kHz stereo.
MDX_RATE = 44100
#: audio-separator's metadata files, looked for beside the model file.
METADATA_FILES = ("download_checks.json", "mdx_model_data.json", "vr_model_data.json")
#: Keys of one ``mdx_model_data.json`` entry that the MDX architecture reads.
MDX_KEYS = ("compensate", "mdx_dim_f_set", "mdx_dim_t_set", "mdx_n_fft_scale_set")
INSTALL_HINT = (
    'pip install torch==2.13.0 "diffq>=0.2" "julius>=0.2" "rotary-embedding-torch>=0.6.1,<0.7.0" "librosa>=0.10" '
    'samplerate==0.1.0 "resampy>=0.4" "pydub>=0.25" ml_collections "beartype>=0.18.5,<0.19.0" onnx-weekly '
    '"einops>=0.7" "six>=1.16" && pip install --no-deps audio-separator==0.47.1 onnx2torch-py313==1.6.0 '
    "(or bash scripts/setup.sh)"
)


class DownloadRefused(FileNotFoundError):
    """audio-separator asked for a file that is not in the model folder; this backend never downloads."""


class MdxSeparator(Separator):
    """Vocals from MDX-Net through audio-separator, chunked with crossfades (see the module docstring).

    Args:
        model: registry name (``mdx-net``: files under ``$MIKUPAL_MODELS_DIR/mdx-net/``) or a local folder holding
            the model file and the three metadata JSONs.
        model_filename: ONNX file in that folder; ``None`` means the registry entry's (``UVR-MDX-NET-Inst_HQ_3.onnx``).
            It must be listed in ``download_checks.json`` and its MD5 in ``mdx_model_data.json``, as in UVR's files.
        device: ``auto`` (CUDA if torch sees a GPU), ``cpu``, ``cuda`` or ``cuda:N``.
        chunk_seconds: length of the pieces the recording is separated in (bounds memory).
        crossfade_seconds: overlap of neighbouring chunks, crossfaded; at most half of ``chunk_seconds``.
        overlap: overlap of MDX's own 5.9 s prediction windows inside a chunk (audio-separator's ``mdx_overlap``).
        hop_length: STFT hop of the model (1024 for UVR MDX-Net models).
        segment_size: STFT frames per prediction window; ``None`` uses the model's ``dim_t`` (the ONNX Runtime path).
        enable_denoise: run the model on the spectrum and its negation and average (UVR's "denoise"; 2× slower).
        normalization_threshold: a chunk whose peak exceeds this is scaled down to it before the model and scaled
            back after (audio-separator's default 0.9).
        progress: show audio-separator's per-window progress bars.
    """

    #: Python packages setup() imports (import name -> what to install); checked before a run starts.
    requires = {"audio_separator": "audio-separator==0.47.1 --no-deps (scripts/setup.sh)", "onnxruntime": "onnxruntime"}
    #: Attributes holding a model-registry name or path; their files are checked before a run starts.
    model_keys = ("model",)

    def __init__(
        self,
        model: str = "mdx-net",
        model_filename: str | None = None,
        device: str = "auto",
        chunk_seconds: float = 60.0,
        crossfade_seconds: float = 3.0,
        overlap: float = 0.25,
        hop_length: int = 1024,
        segment_size: int | None = None,
        enable_denoise: bool = False,
        normalization_threshold: float = 0.9,
        progress: bool = False,
    ) -> None:
        if chunk_seconds <= 0:
            raise ValueError(f"separate.chunk_seconds must be positive, got {chunk_seconds}")
        if crossfade_seconds < 0 or 2 * crossfade_seconds > chunk_seconds:
            raise ValueError(
                f"separate.crossfade_seconds must be between 0 and half of chunk_seconds ({chunk_seconds}), "
                f"got {crossfade_seconds}"
            )
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"separate.overlap must be in [0, 1), got {overlap}")
        if hop_length <= 0 or (segment_size is not None and segment_size < 2):
            raise ValueError(f"separate.hop_length must be > 0 and segment_size >= 2, got {hop_length}, {segment_size}")
        if not 0.0 < normalization_threshold <= 1.0:
            raise ValueError(f"separate.normalization_threshold must be in (0, 1], got {normalization_threshold}")
        _parse_device(device)  # validate early, without importing torch
        self.model = model
        self.model_filename = model_filename
        self.device = device
        self.chunk_seconds = float(chunk_seconds)
        self.crossfade_seconds = float(crossfade_seconds)
        self.overlap = float(overlap)
        self.hop_length = int(hop_length)
        self.segment_size = segment_size
        self.enable_denoise = bool(enable_denoise)
        self.normalization_threshold = float(normalization_threshold)
        self.progress = bool(progress)
        self._separator: Any = None
        self._instance: Any = None
        self._vocals_primary = True
        self._compensate = 1.0
        self._torch_device: Any = None

    # ------------------------------------------------------------------------------------------ lifecycle
    def setup(self) -> None:
        """Check the model files, then load the model with audio-separator (never downloading anything).

        Raises:
            ModelNotFoundError: a model or metadata file is missing (the message says what to place where), or the
                metadata does not describe the model file.
            ImportError: audio-separator or one of its dependencies is not installed (the message has the fix).
        """
        model_dir, filename = self._check_files()
        model_path = model_dir / filename
        _check_metadata(model_dir)
        try:
            import torch
            from audio_separator.separator import Separator as AudioSeparator
        except ImportError as e:
            raise ImportError(f"separate=mdx needs audio-separator ({e}). Fix: {INSTALL_HINT}") from e
        mdx_module = _import_mdx_architecture()

        torch_device, providers = self._devices(torch)
        with _quiet_audio_separator():
            separator = AudioSeparator(
                log_level=logging.WARNING,
                model_file_dir=str(model_dir),
                output_single_stem=None,
                normalization_threshold=self.normalization_threshold,
                info_only=True,  # skip its device probing and ffmpeg check: this backend sets the device itself
            )
        separator.model_file_dir = str(model_dir)  # even when AUDIO_SEPARATOR_MODEL_DIR is set
        separator.torch_device_cpu = torch.device("cpu")
        separator.torch_device = torch_device
        separator.onnx_execution_provider = providers
        if torch_device.type == "cuda" and hasattr(separator, "preload_onnxruntime_dependencies"):
            separator.preload_onnxruntime_dependencies()
        separator.download_file_if_not_exists = functools.partial(_refuse_download, model_dir)

        with _quiet_audio_separator():
            model_data = self._model_data(separator, model_path)
        segment_size = self.segment_size or 2 ** int(model_data["mdx_dim_t_set"])
        separator.arch_specific_params["MDX"] = {
            "hop_length": self.hop_length,
            "segment_size": segment_size,
            "overlap": self.overlap,
            "batch_size": 1,
            "enable_denoise": self.enable_denoise,
        }
        try:
            with _quiet_audio_separator():
                separator.load_model(model_filename=filename)
        except ValueError as e:
            if "not found in supported model files" in str(e):
                raise _metadata_error(
                    model_dir / "download_checks.json",
                    f"does not list {filename} (audio-separator only loads models named there)",
                    f'use UVR\'s download_checks.json, or add "MDX-Net Model: {Path(filename).stem}": "{filename}" '
                    'to its "mdx_download_list"',
                ) from e
            raise
        except KeyError as e:
            raise _metadata_error(
                model_dir / "download_checks.json",
                f"lacks the key {e} that audio-separator reads",
                "place UVR's filelists/download_checks.json there unchanged",
            ) from e
        instance = separator.model_instance
        if not isinstance(instance, mdx_module.MDXSeparator):
            raise ValueError(
                f"{model_path}: audio-separator loaded it as {type(instance).__name__}; separate=mdx runs MDX-Net "
                "ONNX models only"
            )
        primary = str(instance.primary_stem_name)
        if primary.lower() not in {"vocals", "instrumental"}:
            raise ValueError(
                f"{model_path}: primary stem {primary!r} is neither Vocals nor Instrumental; pick a vocal separation "
                "model (e.g. UVR-MDX-NET-Inst_HQ_3.onnx or Kim_Vocal_2.onnx)"
            )
        mdx_module.tqdm = _tqdm(self.progress)
        self._separator, self._instance, self._torch_device = separator, instance, torch_device
        self._vocals_primary = primary.lower() == "vocals"
        self._compensate = float(instance.compensate)
        log.info(
            "MDX-Net %s on %s (ONNX providers %s): primary stem %s, compensate %.3f, n_fft %d, dim_f %d, dim_t %d; "
            "chunks of %.0f s with %.1f s crossfades",
            model_path,
            torch_device,
            providers,
            primary,
            self._compensate,
            instance.n_fft,
            instance.dim_f,
            instance.dim_t,
            self.chunk_seconds,
            self.crossfade_seconds,
        )

    def teardown(self) -> None:
        """Drop the ONNX session and torch state; empty the CUDA cache when the model ran on a GPU."""
        on_cuda = self._torch_device is not None and self._torch_device.type == "cuda"
        self._separator = None
        self._instance = None
        self._torch_device = None
        gc.collect()
        if on_cuda:
            import torch

            torch.cuda.empty_cache()

    # ------------------------------------------------------------------------------------------ inference
    def separate(self, audio: np.ndarray, sampling_rate: int) -> np.ndarray:
        """Return the vocals of ``audio`` (mono, any rate) as mono float32 of the same rate and length."""
        if self._instance is None:
            raise RuntimeError("MdxSeparator.setup() must be called before separate()")
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        if not np.isfinite(x).all():
            raise ValueError("separate=mdx: the audio contains NaN or infinite samples")
        n = len(x)
        out = np.zeros(n, dtype=np.float32)
        if n == 0:
            return out
        chunk = max(1, int(round(self.chunk_seconds * sampling_rate)))
        fade = min(int(round(self.crossfade_seconds * sampling_rate)), chunk // 2)
        starts = chunk_starts(n, chunk, fade)
        for k, start in enumerate(starts):
            end = min(start + chunk, n)
            vocals = self._separate_chunk(x[start:end], sampling_rate)
            weights = crossfade_weights(end - start, fade, fade_in=k > 0, fade_out=k < len(starts) - 1)
            out[start:end] += vocals * weights
            log.debug("separate=mdx: chunk %d/%d (%.1f-%.1f s)", k + 1, len(starts), start / sampling_rate,
                      end / sampling_rate)
        return out

    def _separate_chunk(self, piece: np.ndarray, sampling_rate: int) -> np.ndarray:
        """Vocals of one chunk: to 44.1 kHz stereo, MDX demix (+ inversion for instrumental models), back to mono."""
        up = resample(piece, sampling_rate, MDX_RATE)
        peak = float(np.abs(up).max()) if len(up) else 0.0
        if peak == 0.0:
            return np.zeros_like(piece)
        mix = np.stack([up, up])
        gain = self.normalization_threshold / peak if peak > self.normalization_threshold else 1.0
        # demix divides by the sum of its window weights, which is 0 at the padded edges it cuts off afterwards;
        # torch warns (once) about its deprecated real-valued STFT and list-to-tensor conversion.
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"(stft with return_complex=False|Creating a tensor from a list)")
            primary = self._instance.demix(mix * gain) / gain
        stem = primary if self._vocals_primary else mix - self._compensate * primary
        mono = resample(np.asarray(stem, dtype=np.float32).mean(axis=0), MDX_RATE, sampling_rate)
        return _fit_length(mono, len(piece))

    # ------------------------------------------------------------------------------------------ helpers
    def _check_files(self) -> tuple[Path, str]:
        """Folder and model file name, after checking every file audio-separator would otherwise download."""
        from mikupal import registry

        if str(self.model) in registry.REGISTRY:
            entry = registry.get(str(self.model))
            filename = self.model_filename or entry.files[0]
            if filename != entry.files[0]:
                entry = dataclasses.replace(entry, files=(filename, *(f for f in entry.files if f in METADATA_FILES)))
            return registry.check(entry), filename
        folder = Path(str(self.model)).expanduser()
        filename = self.model_filename or registry.get("mdx-net").files[0]
        for name in (filename, *METADATA_FILES):
            if not (folder / name).is_file():
                raise registry.ModelNotFoundError(
                    f"separate=mdx: {folder / name} is missing. Fix: place {filename}, {', '.join(METADATA_FILES)} in "
                    f"{folder}/ (from {registry.get('mdx-net').source})"
                )
        return folder, filename

    def _devices(self, torch: Any) -> tuple[Any, list[Any]]:
        """torch device for the STFTs and onnxruntime providers for the network, from ``device``."""
        kind, index = _parse_device(self.device)
        if kind == "auto":
            kind = "cuda" if torch.cuda.is_available() else "cpu"
        if kind == "cpu":
            return torch.device("cpu"), ["CPUExecutionProvider"]
        if not torch.cuda.is_available():
            raise RuntimeError(f"separate.device={self.device} but torch sees no CUDA device; use device=auto or cpu")
        if index >= torch.cuda.device_count():
            raise RuntimeError(f"separate.device={self.device}: torch sees {torch.cuda.device_count()} CUDA device(s)")
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            provider: Any = "CUDAExecutionProvider" if index == 0 else ("CUDAExecutionProvider", {"device_id": index})
            return torch.device("cuda", index), [provider, "CPUExecutionProvider"]
        log.warning(
            "separate=mdx: onnxruntime has no CUDAExecutionProvider, so the MDX network runs on the CPU (the STFTs "
            "run on the GPU). Fix: pip install onnxruntime-gpu (instead of onnxruntime)"
        )
        return torch.device("cuda", index), ["CPUExecutionProvider"]

    def _model_data(self, separator: Any, model_path: Path) -> dict[str, Any]:
        """The model's MDX parameters, found by its MD5 as audio-separator does; clear errors when absent."""
        from mikupal.registry import ModelNotFoundError

        metadata = model_path.parent / "mdx_model_data.json"
        try:
            data = separator.load_model_data_using_hash(str(model_path))
        except ValueError as e:
            if "Unsupported Model File" not in str(e):
                raise
            model_hash = separator.get_model_hash(str(model_path))
            raise ModelNotFoundError(
                f"separate=mdx: {metadata} has no entry for {model_path.name} (MD5 of its "
                f"{'last 10,240,000 bytes' if model_path.stat().st_size >= 10_240_000 else 'content'}: {model_hash}): "
                "the model file is corrupt, a different release, or the metadata is not UVR's. Fix: place UVR's "
                "mdx_model_data/model_data_new.json as mdx_model_data.json, or add "
                f'"{model_hash}": {{"compensate": ..., "mdx_dim_f_set": ..., "mdx_dim_t_set": ..., '
                '"mdx_n_fft_scale_set": ..., "primary_stem": "Vocals" or "Instrumental"}'
            ) from e
        missing = [key for key in MDX_KEYS if key not in data]
        if missing:
            raise ValueError(
                f"separate=mdx: {model_path.name} is described in the metadata without {', '.join(missing)}: it is "
                "not an MDX-Net model (VR, Demucs and MDX23C/Roformer models are not supported by separate=mdx)"
            )
        return data


# ---------------------------------------------------------------------------------------------- chunking
def chunk_starts(n: int, chunk: int, fade: int) -> list[int]:
    """Start samples of chunks of ``chunk`` samples overlapping by ``fade`` that cover ``n`` samples.

    Every chunk but the last is full; each later chunk starts ``chunk - fade`` after the previous one and is
    longer than ``fade``, so each crossfade lies inside both chunks it joins.
    """
    if chunk <= fade:
        raise ValueError(f"chunk ({chunk} samples) must be longer than the crossfade ({fade})")
    starts = [0]
    while starts[-1] + chunk < n:
        starts.append(starts[-1] + chunk - fade)
    return starts


def crossfade_weights(length: int, fade: int, fade_in: bool, fade_out: bool) -> np.ndarray:
    """Per-sample weights of one chunk: raised-cosine ramps of ``fade`` samples that sum to one across a join."""
    weights = np.ones(length, dtype=np.float32)
    if fade <= 0:
        return weights
    ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)).astype(np.float32)
    if fade_in:
        weights[:fade] = ramp
    if fade_out:
        weights[length - fade :] *= ramp[::-1]
    return weights


def _fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    if len(audio) >= length:
        return audio[:length]
    return np.pad(audio, (0, length - len(audio)))


def _parse_device(device: str) -> tuple[str, int]:
    text = str(device or "auto").strip().lower()
    if text in {"auto", "cpu", "cuda"}:
        return text, 0
    if text.startswith("cuda:") and text[5:].isdigit():
        return "cuda", int(text[5:])
    raise ValueError(f"separate.device must be auto, cpu, cuda or cuda:N, got {device!r}")


# ---------------------------------------------------------------------------------------------- audio-separator glue
def _refuse_download(model_dir: Path, url: str, output_path: str) -> None:
    """Stands in for ``Separator.download_file_if_not_exists``: a present file is used, a missing one is an error."""
    if os.path.isfile(output_path):
        return
    raise DownloadRefused(
        f"separate=mdx: audio-separator asked for {output_path}, which is not in {model_dir}; this backend never "
        f"downloads. Fix: place that file there (audio-separator would fetch it from {url})"
    )


def _check_metadata(model_dir: Path) -> None:
    """Each metadata file must be a JSON object (audio-separator's own errors would not name the file)."""
    import json

    for name in METADATA_FILES:
        path = model_dir / name
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise _metadata_error(path, f"is not readable JSON ({e})", f"place UVR's {name} there again") from e
        if not isinstance(content, dict):
            raise _metadata_error(path, "is not a JSON object", f"place UVR's {name} there again")


def _metadata_error(path: Path, problem: str, fix: str) -> Exception:
    from mikupal.registry import ModelNotFoundError

    return ModelNotFoundError(f"separate=mdx: {path} {problem}. Fix: {fix}")


def _onnx2torch_unavailable(reason: str):
    def convert(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(
            f"separate=mdx: audio-separator wants onnx2torch (segment_size differs from the model's dim_t) but it "
            f"cannot be imported ({reason}; onnx2torch imports torchvision). Fix: leave separate.segment_size=null "
            "so the model's dim_t and ONNX Runtime are used"
        )

    return convert


def _import_mdx_architecture() -> types.ModuleType:
    """Import audio-separator's MDX architecture, with a stand-in for ``onnx2torch`` when that cannot be imported.

    ``mdx_separator`` imports ``onnx2torch`` at module level, and ``onnx2torch`` imports torchvision (absent on CPU
    machines). It is only called on the segment-size-mismatch path, which this backend avoids; the stand-in raises a
    clear error there. The stand-in lives in ``sys.modules`` only while ``mdx_separator`` is imported.
    """
    name = "audio_separator.separator.architectures.mdx_separator"
    if name in sys.modules:
        return sys.modules[name]
    with warnings.catch_warnings():
        # pydub (imported by audio-separator) imports the deprecated audioop module
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pydub\.")
        return _import_with_onnx2torch_stand_in(name)


def _import_with_onnx2torch_stand_in(name: str) -> types.ModuleType:
    import importlib

    before = set(sys.modules)
    try:
        import onnx2torch  # noqa: F401
    except ImportError as e:
        for leftover in [m for m in set(sys.modules) - before if m.split(".")[0] == "onnx2torch"]:
            del sys.modules[leftover]  # submodules of the failed import
        stand_in = types.ModuleType("onnx2torch")
        stand_in.convert = _onnx2torch_unavailable(str(e))  # type: ignore[attr-defined]
        previous = sys.modules.get("onnx2torch")
        sys.modules["onnx2torch"] = stand_in
        try:
            return importlib.import_module(name)
        except ImportError as e2:
            raise ImportError(f"separate=mdx: cannot import {name} ({e2}). Fix: {INSTALL_HINT}") from e2
        finally:
            if previous is None:
                sys.modules.pop("onnx2torch", None)
            else:
                sys.modules["onnx2torch"] = previous
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ImportError(f"separate=mdx: cannot import {name} ({e}). Fix: {INSTALL_HINT}") from e


@contextlib.contextmanager
def _quiet_audio_separator() -> Iterator[None]:
    """Undo audio-separator's process-wide side effects: it calls ``warnings.filterwarnings("ignore")`` when its
    log level is above DEBUG, and it would use ``$AUDIO_SEPARATOR_MODEL_DIR`` instead of the checked folder."""
    saved_env = os.environ.pop("AUDIO_SEPARATOR_MODEL_DIR", None)
    if saved_env is not None:
        log.info("separate=mdx: ignoring AUDIO_SEPARATOR_MODEL_DIR=%s (the config gives the model folder)", saved_env)
    try:
        with warnings.catch_warnings():
            # importlib.resources.open_text, used for its bundled JSONs, is deprecated (a warning per model load)
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"audio_separator\.")
            yield
    finally:
        if saved_env is not None:
            os.environ["AUDIO_SEPARATOR_MODEL_DIR"] = saved_env


def _tqdm(progress: bool) -> Any:
    """``tqdm`` for audio-separator's MDX module: disabled unless asked for (one bar per chunk floods the logs)."""
    from tqdm import tqdm

    return tqdm if progress else functools.partial(tqdm, disable=True)
