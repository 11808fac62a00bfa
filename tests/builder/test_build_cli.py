"""mikupal-build: Hydra config composition, the run() driver, push_to_hub wiring, and the console script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from hydra import compose, initialize_config_dir

from builder.cli import builder_config, run, summary
from builder.scan import BuildError
from mikupal.paths import conf_dir


def build_cfg(*overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        return compose("build", overrides=list(overrides))


def test_run_dir_list_labels_group_and_filters_reach_the_builder(make_run_dir, tmp_path):
    a = make_run_dir("a", videos=["shared-0000000a", "only-a-0000000a"], per_video=2,
                     label=lambda n: ["joy", "anger"][n % 2])
    b = make_run_dir("b", videos=["shared-0000000a", "only-b-0000000b"], per_video=2,
                     label=lambda n: ["joy", "sadness"][n % 2])
    out = tmp_path / "out"
    cfg = build_cfg(f"run_dir=[{a.path},{b.path}]", f"output_dir={out}", "labels=meld7",
                    "filters.labels_kept=[joy,anger,sadness]", "split.ratios={train:1.0,validation:0,test:0}")
    config = builder_config(cfg)
    assert config.run_dirs == [str(a.path), str(b.path)]
    assert config.resolve_label_set().name == "meld7"

    outcome = run(cfg)
    assert outcome.pushed is None
    assert outcome.export.split_rows == {"train": 6}  # 8 lines, 2 repeated ids
    assert outcome.export.report.counts == {"duplicate_id": 2}
    ds = datasets.load_dataset(str(out), split="train")
    assert ds.features["emotion"].names == ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
    text = summary(outcome)
    assert "train" in text and "duplicate_id 2" in text and "6" in text


def test_push_to_hub_goes_through_hfapi(make_run_dir, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    class RecordingApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))
            return f"https://huggingface.co/datasets/{repo_id}"

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs["repo_id"], kwargs))
            return "commit"

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    monkeypatch.setenv("MIKU_TOKEN", "secret")
    run_dir = make_run_dir("hub", videos=2, per_video=1)
    out = tmp_path / "out"
    outcome = run(build_cfg(f"run_dir={run_dir.path}", f"output_dir={out}", "push_to_hub=org/miku",
                            "hub.token_env=MIKU_TOKEN", "hub.private=false"))
    assert outcome.pushed == "commit"
    assert [c[0] for c in calls] == ["create_repo", "upload_folder"]
    assert calls[0][2]["private"] is False and calls[0][2]["token"] == "secret"
    assert Path(calls[1][2]["folder_path"]) == out.resolve()


def test_bad_config_values_are_build_errors(make_run_dir, tmp_path):
    run_dir = make_run_dir("cfgerr", videos=1, per_video=1)
    with pytest.raises(BuildError, match="give every split its ratio"):
        builder_config(build_cfg(f"run_dir={run_dir.path}", f"output_dir={tmp_path}/o", "split.ratios={train: 1.0}"))
    with pytest.raises(BuildError, match="min_duration must be a non-negative number"):
        builder_config(build_cfg(f"run_dir={run_dir.path}", f"output_dir={tmp_path}/o", "filters.min_duration=-1"))


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("mikupal-build")
    return [str(script)] if script.exists() else [sys.executable, "-m", "builder.cli"]


def test_console_script_strict_failure_then_lenient_success(make_run_dir, tmp_path):
    run_dir = make_run_dir("console", videos=3, per_video=2)
    line = run_dir.append_line('{"id": 1}')
    out = tmp_path / "out"
    env = dict(os.environ)
    strict = subprocess.run(
        [*_console_script(), f"run_dir={run_dir.path}", f"output_dir={out}"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert strict.returncode == 2, strict.stderr + strict.stdout
    log = strict.stdout + strict.stderr
    assert "malformed_line (1)" in log and f"{run_dir.manifest}:{line}" in log
    assert not (out / "data").exists()

    lenient = subprocess.run(
        [*_console_script(), f"run_dir={run_dir.path}", f"output_dir={out}", "lenient=true"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert lenient.returncode == 0, lenient.stderr + lenient.stdout
    assert "MIKU-EmoBench written to" in lenient.stdout and "malformed_line 1" in lenient.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["console", "out"])  # no Hydra outputs/ folder
    ds = datasets.load_dataset(str(out))
    assert sum(len(split) for split in ds.values()) == 6


def test_tts_settings_reach_the_builder_config(tmp_path):
    cfg = build_cfg("run_dir=r", f"output_dir={tmp_path}", "publish_source_paths=true", "annotations_only=true",
                    "split.by=speaker", f"split.speaker_map={tmp_path / 'map.json'}", "filters.min_confidence=0.6",
                    "filters.min_dnsmos_ovrl=3.0")
    config = builder_config(cfg)
    assert config.publish_source_paths and config.annotations_only
    assert config.split_by == "speaker" and config.speaker_map == str(tmp_path / "map.json")
    assert config.min_confidence == 0.6 and config.min_dnsmos_ovrl == 3.0
    defaults = builder_config(build_cfg("run_dir=r", f"output_dir={tmp_path}"))
    assert not defaults.publish_source_paths and not defaults.annotations_only and defaults.split_by == "video"
    with pytest.raises(BuildError, match="min_confidence"):
        builder_config(build_cfg("run_dir=r", f"output_dir={tmp_path}", "filters.min_confidence=2"))
