"""Our PyTorch implementations of the paper's vision models, loading the upstream checkpoints unchanged.

* :mod:`mikupal.models.s3fd` — S3FD face detector (``sfd_face.pth``), with TalkNet-ASD's pre/post-processing.
* :mod:`mikupal.models.talknet` — TalkNet active speaker detector (``pretrain_TalkSet.model``), face-track
  crops and the demo's multi-duration scoring.
* :mod:`mikupal.models.mfcc` — TalkNet's 100 Hz, 13-coefficient MFCC features (numpy/scipy only).
* :mod:`mikupal.models.qwen_inputs` — Qwen2.5-Omni's video, audio and chat-token inputs built without its processor
  (numpy and Pillow; used by ``annotator=transformers``).

Importing this package is cheap: torch is imported only when a submodule or one of the names below is used.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "S3fd": "mikupal.models.s3fd",
    "S3FDNet": "mikupal.models.s3fd",
    "TalkNet": "mikupal.models.talknet",
    "TalkNetScorer": "mikupal.models.talknet",
    "TalkNetScores": "mikupal.models.talknet",
    "CheckpointMismatchError": "mikupal.models._checkpoint",
    "talknet_mfcc": "mikupal.models.mfcc",
}

__all__ = ["CheckpointMismatchError", "S3FDNet", "S3fd", "TalkNet", "TalkNetScorer", "TalkNetScores", "talknet_mfcc"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
