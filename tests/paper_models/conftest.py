"""Fixtures of tests/paper_models: the paper preset's torch backends and the local transformers annotator.

``models_dir`` (an empty ``$MIKUPAL_MODELS_DIR``) and ``no_network`` (any connection attempt fails the test) are
tests/paper's fixtures, shared rather than copied. Builders live in ``paper_models_kit.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_PAPER_TESTS = str(Path(__file__).resolve().parents[1] / "paper")
if _PAPER_TESTS not in sys.path:
    sys.path.insert(0, _PAPER_TESTS)

from paper_fixtures import models_dir, no_network  # noqa: F401 (fixtures)
from paper_models_kit import s3fd_checkpoint, talknet_checkpoint, tiny_omni_folder


@pytest.fixture(scope="session")
def s3fd_ckpt(tmp_path_factory) -> Path:
    """``sfd_face.pth`` layout, random trunk, heads that make every stride-8 anchor a face (see the kit)."""
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
