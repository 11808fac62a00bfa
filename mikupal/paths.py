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


def load_conf_yaml(group: str, name_or_path: str | os.PathLike[str]) -> dict:
    """Load ``conf/<group>/<name>.yaml`` by name, or any YAML file by path (used for label sets and prompts).

    Raises:
        FileNotFoundError: naming the path tried and the names available in the group.
    """
    import yaml

    path = Path(name_or_path)
    if not path.suffix:
        path = conf_dir() / group / f"{name_or_path}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))
        raise FileNotFoundError(f"{group} {str(name_or_path)!r} not found at {path}; available: {available}")
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)
