"""Where the project's configuration and caches live."""

from __future__ import annotations

import os
from pathlib import Path


def conf_dir() -> Path:
    """The Hydra config directory: ``$MIKUPAL_CONF_DIR`` or ``conf/`` beside the package (editable install)."""
    env = os.environ.get("MIKUPAL_CONF_DIR")
    path = Path(env) if env else Path(__file__).resolve().parent.parent / "conf"
    if not path.is_dir():
        raise FileNotFoundError(
            f"config directory {path} not found: install MIKU-PAL from a checkout (pip install -e .) "
            "or set MIKUPAL_CONF_DIR to the repository's conf/ folder"
        )
    return path


def models_dir() -> Path:
    """Where model files are assembled and looked up: ``$MIKUPAL_MODELS_DIR`` or ``~/.cache/mikupal/models``."""
    env = os.environ.get("MIKUPAL_MODELS_DIR")
    return Path(env) if env else Path.home() / ".cache" / "mikupal" / "models"
