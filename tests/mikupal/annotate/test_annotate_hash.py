"""The annotate stage's config hash: operational settings (``AnnotateStage.operational_keys``, the Stage base's
mechanism) are left out, the labelling settings, label set and prompt (for API annotators) go in."""

from __future__ import annotations

import copy

import pytest
from omegaconf import OmegaConf

from mikupal.annotate.stage import AnnotateStage
from mikupal.runner import _hash
from mikupal.testing.config import compose_pipeline

#: The keys that were hashed apart by annotate's own OPERATIONAL_KEYS before they moved onto the Stage base.
OPERATIONAL = {
    "max_cost", "max_in_flight", "requests_per_minute", "rate_burst", "timeout", "retry", "base_url", "api_key_env",
    "cache_dir", "inline_max_bytes", "file_poll_interval", "file_poll_timeout", "delete_uploads", "prices",
    "text_batch_size", "threads", "workers",
}
PROMPTED = {"gemini", "openai", "transformers"}  # annotators that send the prompt (APIAnnotator subclasses)


def _config(tmp_path, option=None, *overrides):
    picked = [f"annotator={option}"] if option else []
    return compose_pipeline(f"input={tmp_path}", f"run_dir={tmp_path}", *picked, *overrides)


def _stage_hash(cfg) -> str:
    return _hash(AnnotateStage(cfg).stage_config())


def _as_before(cfg, uses_prompt: bool) -> dict:
    """The hashed config as the stage built it with its own OPERATIONAL_KEYS."""
    annotator = OmegaConf.to_container(cfg.annotator, resolve=True)
    config = {"annotator": {k: v for k, v in annotator.items() if k not in OPERATIONAL},
              "labels": OmegaConf.to_container(cfg.labels, resolve=True)}
    if uses_prompt:
        config["prompt"] = OmegaConf.to_container(cfg.prompt, resolve=True)
    return config


def test_the_operational_keys_are_those_annotate_kept_itself():
    assert {key.removeprefix("annotator.") for key in AnnotateStage.operational_keys} == OPERATIONAL
    assert all(key.startswith("annotator.") for key in AnnotateStage.operational_keys)


@pytest.mark.parametrize("option", [None, "gemini", "openai", "fusion", "transformers"])
def test_the_hash_of_each_annotator_config_is_unchanged(tmp_path, option):
    from hydra.utils import get_class

    from mikupal.annotate.api import APIAnnotator

    cfg = _config(tmp_path, option)  # None: the default config (annotator=fusion)
    expected = _as_before(cfg, uses_prompt=issubclass(get_class(cfg.annotator._target_), APIAnnotator))
    assert ("prompt" in expected) == (option in PROMPTED)
    assert AnnotateStage(cfg).stage_config() == expected
    assert _stage_hash(cfg) == _hash(expected)


@pytest.mark.parametrize("option", ["gemini", "fusion"])
def test_operational_keys_leave_the_hash_and_labelling_keys_change_it(tmp_path, option):
    cfg = _config(tmp_path, option)
    before = _stage_hash(cfg)
    for key in AnnotateStage.operational_keys:
        changed = copy.deepcopy(cfg)
        OmegaConf.update(changed, key, "something else", force_add=True)
        assert _stage_hash(changed) == before, key
    for override in ("annotator.rollouts=3", "annotator.modalities=[text]", "annotator.context_utterances=2",
                     "labels=meld7"):
        assert _stage_hash(_config(tmp_path, option, override)) != before, override
    if option == "gemini":  # the prompt is part of what an API annotator is asked; fusion uses none
        changed = copy.deepcopy(cfg)
        OmegaConf.update(changed, "prompt.system", "another prompt", force_add=True)
        assert _stage_hash(changed) != before
