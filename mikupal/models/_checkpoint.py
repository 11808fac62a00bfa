"""Loading upstream checkpoints into our own modules, with errors that say what is wrong.

Shared by :mod:`mikupal.models.s3fd` and :mod:`mikupal.models.talknet`. Checkpoints are read with
``torch.load(..., weights_only=True)``, so a file can only hold tensors and plain containers, never code.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn


class CheckpointMismatchError(ValueError):
    """A state dict does not fit the architecture it is being loaded into (missing, unexpected or mis-shaped keys)."""


def read_state_dict(path: str | Path, *, what: str, how_to_get: str) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` onto the CPU.

    Args:
        path: checkpoint file.
        what: human name of the model, used in messages (e.g. ``"S3FD face detector"``).
        how_to_get: one or two sentences telling the user where the file comes from.

    Returns:
        The mapping of parameter names to tensors stored in the file.

    Raises:
        FileNotFoundError: the file does not exist; the message names it and says where to get it.
        CheckpointMismatchError: the file does not hold a mapping of names to tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} weights not found: {path}. {how_to_get}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointMismatchError(f"{path} does not hold a state dict (a mapping of parameter names to tensors)")
    return dict(state)


def _preview(names: Iterable[str], limit: int = 8) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > limit else shown


def load_exact(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    optional: Iterable[str] = (),
) -> None:
    """Copy ``state`` into ``module``, refusing anything but an exact fit.

    Args:
        module: the module to fill.
        state: parameter and buffer tensors by name.
        source: where ``state`` came from (a path or a short description), used in messages.
        optional: glob patterns of the module's keys that may be absent from ``state`` (for example
            BatchNorm ``num_batches_tracked`` counters, which old checkpoints lack and inference never reads);
            such keys keep their current values.

    Raises:
        CheckpointMismatchError: a required key is missing, a key is unexpected, or a shape differs. The
            message lists the offending names, so a renamed parameter shows up as one missing and one
            unexpected key.
    """
    own = module.state_dict()
    optional = tuple(optional)
    missing = [k for k in own if k not in state and not any(fnmatch.fnmatchcase(k, p) for p in optional)]
    unexpected = [k for k in state if k not in own]
    mis_shaped = [
        f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mis_shaped:
        parts = []
        if missing:
            parts.append(f"missing keys: {_preview(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_preview(unexpected)}")
        if mis_shaped:
            parts.append(f"shape mismatches: {_preview(mis_shaped, 4)}")
        raise CheckpointMismatchError(f"{source} does not match {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(dict(state), strict=False)
