"""Builders and fixtures (a pytest plugin) for the paper-model tests: upstream-layout checkpoints, a tiny
Qwen2.5-Omni folder, media with known timing.

Nothing is downloaded. Checkpoints are our own modules' state dicts, whose keys are the upstream layout (proved
equal to upstream's in tests/mikupal/models), saved with ``torch.save`` as TalkNet-ASD saves ``sfd_face.pth`` and
``pretrain_TalkSet.model``. The tiny Qwen2.5-Omni folder holds what the real one holds for the thinker
(``config.json`` + ``model.safetensors`` from ``save_pretrained``, ``tokenizer.json`` + ``tokenizer_config.json``,
``preprocessor_config.json``), built from a config with random weights and a byte-level BPE tokenizer trained here
on a few strings with Qwen's chat and media special tokens; the real tokenizer is a byte-level BPE too, so any text
(including a canned JSON answer) encodes and decodes exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

#: Special tokens of Qwen2.5-Omni's tokenizer that the annotator and the model config refer to.
QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|AUDIO|>",
    "<|IMAGE|>",
    "<|VIDEO|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|vision_bos|>",
    "<|vision_eos|>",
)

#: Frame-level layout of the S3FD detection sources: stride (pixels of the network input) and anchor side.
S3FD_LEVELS = ((4, 16), (8, 32), (16, 64), (32, 128), (64, 256), (128, 512))


def s3fd_checkpoint(path: Path, face_level: int = 1, seed: int = 0) -> Path:
    """``sfd_face.pth`` layout with a random trunk and fixed heads: every anchor of ``face_level`` is a face.

    Box-regression heads output 0 (each box is its anchor); classification heads score face with logit +10 on
    ``face_level`` (probability 0.99995) and -10 elsewhere (below the 0.05 candidate floor). Every image thus yields
    the anchors of that level (after NMS), so box sizes and positions in frame pixels are known exactly.
    """
    import torch

    from mikupal.models.s3fd import S3FDNet

    torch.manual_seed(seed)
    state = S3FDNet().state_dict()
    for key, value in state.items():
        if key.startswith(("loc.", "conf.")):
            value.zero_()
    for level in range(6):
        bias = state[f"conf.{level}.bias"]
        bias[-1] = 10.0 if level == face_level else -10.0  # last channel: face; the others: background
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def talknet_checkpoint(path: Path, seed: int = 0) -> Path:
    """``pretrain_TalkSet.model`` layout (``model.*``, ``lossAV.*``, ``lossA.*``, ``lossV.*``) with random weights."""
    import torch

    from mikupal.models.talknet import TalkNet

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(TalkNet().state_dict(), path)
    return path


def tiny_omni_folder(folder: Path, seed: int = 0, mel_bins: int = 20) -> Path:
    """A randomly initialised Qwen2.5-Omni thinker in the Hugging Face folder layout (about 0.2 M parameters)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2_5OmniThinkerConfig,
        Qwen2_5OmniThinkerForConditionalGeneration,
        WhisperFeatureExtractor,
    )

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=list(QWEN_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(
        [
            '{"label": "joy", "intensity": 0.7, "rationale": "a smile and a bright voice"}',
            "system user assistant Emotion categories transcript speaker utterance",
        ],
        trainer,
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIALS}
    config = Qwen2_5OmniThinkerConfig(
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 4, "patch_size": 14,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": 32, "in_channels": 3,
                       "fullatt_block_indexes": [1], "window_size": 56},
        audio_config={"d_model": 32, "encoder_attention_heads": 4, "encoder_ffn_dim": 32, "encoder_layers": 2,
                      "num_mel_bins": mel_bins, "max_source_positions": 1500, "n_window": 100, "output_dim": 32},
        text_config={"vocab_size": bpe.get_vocab_size(), "hidden_size": 32, "intermediate_size": 37,
                     "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                     "max_position_embeddings": 8192,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [1, 1, 2]}},
        audio_token_index=ids["<|AUDIO|>"],
        image_token_index=ids["<|IMAGE|>"],
        video_token_index=ids["<|VIDEO|>"],
        audio_start_token_id=ids["<|audio_bos|>"],
        audio_end_token_id=ids["<|audio_eos|>"],
        vision_start_token_id=ids["<|vision_bos|>"],
        vision_end_token_id=ids["<|vision_eos|>"],
        user_token_id=ids["<|im_start|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5OmniThinkerForConditionalGeneration(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=mel_bins).save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "qwen2_5_omni_thinker"
    return folder


def patterned_frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A fixed, textured RGB frame (smooth colour ramps plus blocks), so video coding keeps it stable."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack([(x * 255 // max(1, width - 1)), (y * 255 // max(1, height - 1)), np.full_like(x, 90)], axis=-1)
    blocks = rng.integers(0, 60, size=(height // 16 + 1, width // 16 + 1, 1))
    frame = frame + np.kron(blocks, np.ones((16, 16, 1), dtype=np.int64))[:height, :width]
    return np.clip(frame, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def s3fd_ckpt(tmp_path_factory) -> Path:
    """``sfd_face.pth`` layout, random trunk, heads that make every stride-8 anchor a face (see above)."""
    return s3fd_checkpoint(tmp_path_factory.mktemp("s3fd") / "sfd_face.pth")


@pytest.fixture(scope="session")
def talknet_ckpt(tmp_path_factory) -> Path:
    """``pretrain_TalkSet.model`` layout with random weights."""
    return talknet_checkpoint(tmp_path_factory.mktemp("talknet") / "pretrain_TalkSet.model")


@pytest.fixture(scope="session")
def tiny_omni(tmp_path_factory) -> Path:
    """A tiny random Qwen2.5-Omni thinker folder (config, safetensors, tokenizer, preprocessor config)."""
    pytest.importorskip("tokenizers")
    return tiny_omni_folder(tmp_path_factory.mktemp("omni") / "qwen2.5-omni")
