"""Compose the pipeline's Hydra config in code, exactly as the ``mikupal`` CLI would (tests, benchmarks, notebooks)."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from mikupal.paths import conf_dir


def compose_pipeline(*overrides: str, config_name: str = "pipeline") -> DictConfig:
    """The composed config for ``overrides`` such as ``"input=videos/"``, ``"run_dir=runs/x"``, ``"vad=webrtc"``."""
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        return compose(config_name, overrides=list(overrides))
