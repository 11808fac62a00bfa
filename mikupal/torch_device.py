"""The torch device of a backend from its ``device`` setting (``${runner.device}``: auto, cpu, cuda, cuda:N).

Shared by the torch backends of the paper preset (``faces=s3fd``, ``asd=talknet``, ``annotator=transformers``).
``auto`` means the first CUDA GPU when torch sees one, else the CPU. Backends move their model there in ``setup()``
and call :func:`release_memory` after dropping it in ``teardown()``, so that stage-major execution holds one stage's
model on the GPU at a time.
"""

from __future__ import annotations

import gc
import logging
import re
from typing import Any

log = logging.getLogger(__name__)

_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def check_device(device: str | None, key: str) -> str:
    """Validate a ``device`` setting without importing torch; returns it normalised (lower case, ``auto`` if empty).

    Args:
        device: the setting.
        key: the config key, for the message (e.g. ``faces.device``).

    Raises:
        ValueError: not one of auto, cpu, cuda, cuda:N.
    """
    text = str(device or "auto").strip().lower()
    if not _DEVICE.match(text):
        raise ValueError(f"{key} must be auto, cpu, cuda or cuda:N, got {device!r}")
    return text


def resolve_torch_device(device: str | None, key: str) -> Any:
    """The ``torch.device`` for a ``device`` setting.

    Raises:
        ValueError: an unknown setting.
        RuntimeError: CUDA was asked for but torch sees no (such) GPU; the message says what to set instead.
    """
    import torch

    text = check_device(device, key)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"{key}={device} but torch sees no CUDA device (torch {torch.__version__}); set {key}=auto or cpu, "
            "or install a CUDA build of torch"
        )
    index = int(text.split(":")[1]) if ":" in text else 0
    if index >= torch.cuda.device_count():
        raise RuntimeError(f"{key}={device}: torch sees only {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", index)


def release_memory() -> None:
    """Collect garbage and return cached CUDA blocks to the driver (call after dropping a model)."""
    gc.collect()
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of every caller
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
