"""Builders and fixtures for the paper-preset tests: ``preset=paper`` composed, stand-in model folders with the real
file layout and random/fixed weights, an empty models folder and a network guard (a pytest plugin: see
``tests/conftest.py``).

Nothing here downloads: an MDX-Net stand-in is a tiny ONNX graph with the UVR MDX-Net interface (``input``
``[batch, 4, dim_f, dim_t]`` → same shape) plus audio-separator's three metadata JSONs in the shapes it reads; a
Whisper stand-in is a randomly initialised 128-mel Whisper converted to CTranslate2 (the large-v3 layout).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig


def compose_paper(*overrides: str) -> DictConfig:
    """``conf/pipeline.yaml`` composed with ``preset=paper`` (and ``overrides``), as the CLI would."""
    from hydra import compose, initialize_config_dir

    from mikupal.paths import conf_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        return compose("pipeline", overrides=["input=in", "run_dir=run", "preset=paper", *overrides])


def paper_model_nodes(cfg: DictConfig) -> list[tuple[str, DictConfig]]:
    """(config path, node) of every backend node whose ``model`` is a registry entry of the paper preset."""
    from mikupal import registry

    found = []

    def walk(node, path):
        if isinstance(node, DictConfig):
            model = node.get("model") if "_target_" in node else None
            if isinstance(model, str) and model in registry.REGISTRY and registry.REGISTRY[model].preset == "paper":
                found.append((path, node))
            for key in node:
                if key != "hydra":
                    walk(node._get_node(key), f"{path}.{key}" if path else str(key))

    walk(cfg, "")
    return found


class NetworkUsed(AssertionError):
    """Raised by :func:`no_network` when code tries to reach the network."""


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection or resolve a name fails the test."""

    def refuse(*args, **kwargs):
        raise NetworkUsed(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """An empty ``$MIKUPAL_MODELS_DIR`` for the test."""
    folder = tmp_path / "models"
    monkeypatch.setenv("MIKUPAL_MODELS_DIR", str(folder))
    return folder


#: UVR's parameters for the MDX-Net "Inst HQ" family (n_fft 6144, 3072 bins kept, 2**8 = 256 frames).
HQ_PARAMS = {"compensate": 1.0, "mdx_dim_f_set": 3072, "mdx_dim_t_set": 8, "mdx_n_fft_scale_set": 6144}
MDX_FILE = "UVR-MDX-NET-Inst_HQ_3.onnx"

#: Empty lists for every key audio-separator's ``list_supported_model_files`` indexes in ``download_checks.json``.
_DOWNLOAD_LIST_KEYS = (
    "vr_download_list",
    "mdx_download_list",
    "mdx_download_vip_list",
    "demucs_download_list",
    "mdx23c_download_list",
    "mdx23c_download_vip_list",
    "roformer_download_list",
)


def mask_model_bytes(scale: float, dim_f: int = 3072, dim_t: int = 256) -> bytes:
    """ONNX model multiplying the complex spectrogram by ``scale`` (1.0: identity) with the MDX-Net interface."""
    import onnx
    from onnx import TensorProto, helper

    shape = ["batch", 4, dim_f, dim_t]
    graph = helper.make_graph(
        [helper.make_node("Mul", ["input", "scale"], ["output"])],
        f"mdx_mask_{scale}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
        initializer=[helper.make_tensor("scale", TensorProto.FLOAT, [], [float(scale)])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="mikupal-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def uvr_md5(data: bytes) -> str:
    """The hash audio-separator looks parameters up by (whole-file MD5 below 10,240,000 bytes)."""
    assert len(data) < 10_240_000
    return hashlib.md5(data).hexdigest()


def make_mdx_folder(
    folder: Path,
    scale: float = 1.0,
    primary_stem: str = "Vocals",
    compensate: float = 1.0,
    filename: str = MDX_FILE,
    listed: bool = True,
) -> Path:
    """Write a stand-in MDX-Net model and the three metadata JSONs into ``folder`` (as ``mdx-net`` expects)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = mask_model_bytes(scale)
    (folder / filename).write_bytes(data)
    checks = {key: {} for key in _DOWNLOAD_LIST_KEYS}
    if listed:
        checks["mdx_download_list"] = {f"MDX-Net Model: {Path(filename).stem}": filename}
    (folder / "download_checks.json").write_text(json.dumps(checks))
    params = {**HQ_PARAMS, "compensate": compensate, "primary_stem": primary_stem}
    (folder / "mdx_model_data.json").write_text(json.dumps({uvr_md5(data): params}))
    (folder / "vr_model_data.json").write_text(json.dumps({}))
    return folder


def tiled_speech(seconds: float, rate: int = 16000) -> np.ndarray:
    """Real LibriVox speech (pocketsphinx-testdata), the five clips with 0.5 s gaps, repeated to ``seconds``."""
    from mikupal.testing.media import librivox_clips

    gap = np.zeros(rate // 2, dtype=np.float32)
    unit = np.concatenate([piece for clip in librivox_clips(rate) for piece in (clip.audio, gap)])
    reps = int(np.ceil(seconds * rate / len(unit)))
    return np.tile(unit, reps)[: int(seconds * rate)].astype(np.float32)


def make_tiny_whisper_ct2(folder: Path, tokenizer_json: Path, mel_bins: int = 128) -> Path:
    """A randomly initialised Whisper with ``mel_bins`` mel bins, converted to CTranslate2 in the large-v3 layout.

    Files: ``model.bin``, ``config.json``, ``vocabulary.json`` from the converter, ``tokenizer.json`` (Whisper's
    multilingual BPE, taken from the whisper-base files) and ``preprocessor_config.json`` as Systran's
    faster-whisper-large-v3 ships it.
    """
    import ctranslate2
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=51865,
        num_mel_bins=mel_bins,
        d_model=64,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=50258,
        pad_token_id=50257,
        bos_token_id=50257,
        eos_token_id=50257,
    )
    hf_dir = folder.parent / f"{folder.name}-hf"
    WhisperForConditionalGeneration(config).save_pretrained(hf_dir)
    shutil.copy(tokenizer_json, hf_dir / "tokenizer.json")
    (hf_dir / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "WhisperTokenizer"}))
    ctranslate2.converters.TransformersConverter(str(hf_dir)).convert(str(folder), force=True)
    shutil.copy(tokenizer_json, folder / "tokenizer.json")
    preprocessor = {
        "chunk_length": 30,
        "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": mel_bins,
        "hop_length": 160,
        "n_fft": 400,
        "n_samples": 480000,
        "nb_max_frames": 3000,
        "padding_side": "right",
        "padding_value": 0.0,
        "processor_class": "WhisperProcessor",
        "return_attention_mask": False,
        "sampling_rate": 16000,
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    shutil.rmtree(hf_dir)
    return folder
