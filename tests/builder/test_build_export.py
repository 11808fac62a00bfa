"""Parquet export + dataset card, reloaded offline with datasets.load_dataset, and Hub publishing."""

from __future__ import annotations

import fnmatch
import inspect
import re
import shutil
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from huggingface_hub import HfApi

from builder.card import split_front_matter
from builder.export import export_dataset, push_folder
from builder.features import build_features
from builder.miku_emobench import MikuEmoBenchConfig
from builder.scan import BadInputError, BuildError
from mikupal.labels import load_label_set
from mikupal.testing.records import make_utterance, write_audio

FEATURES = build_features(load_label_set("emobench26"))
SHARD = re.compile(r"^(train|validation|test)-(\d{5})-of-(\d{5})\.parquet$")


def load(out: Path) -> datasets.DatasetDict:
    return datasets.load_dataset(str(out), download_mode="force_redownload")


def test_export_reloads_offline_with_same_features_rows_and_audio(make_run_dir, tmp_path):
    run = make_run_dir("exp", videos=10, per_video=3, seconds=lambda n: 1.0 + (n % 4) * 0.3)
    out = tmp_path / "out"
    result = export_dataset(
        MikuEmoBenchConfig(run_dirs=[str(run.path)]), out, max_shard_size="1KB", writer_batch_size=2
    )

    # Hub-style shard names, numbered per split, several shards per split
    names = sorted(p.name for p in (out / "data").iterdir())
    assert names == sorted(Path(f).name for files in result.files.values() for f in files)
    per_split: dict[str, list[tuple[int, int]]] = {}
    for name in names:
        m = SHARD.match(name)
        assert m, name
        per_split.setdefault(m.group(1), []).append((int(m.group(2)), int(m.group(3))))
    for split, shards in per_split.items():
        n = len(shards)
        assert shards == [(i, n) for i in range(n)]
    assert max(len(s) for s in per_split.values()) > 1

    # the audio is embedded: bytes in the Parquet, only the file name as path; works without the run directory
    table = pq.read_table(out / "data" / names[0], columns=["id", "audio"])
    for uid, audio in zip(table.column("id").to_pylist(), table.column("audio").to_pylist()):
        assert audio["path"] == f"{uid}.flac"
        assert audio["bytes"] == (run.path / "audio" / f"{uid}.flac").read_bytes()
    moved = tmp_path / "moved-away"
    shutil.move(run.path, moved)

    dsd = load(out)
    assert set(dsd) == set(result.split_rows)
    assert {split: len(ds) for split, ds in dsd.items()} == result.split_rows
    for ds in dsd.values():
        assert ds.features == FEATURES
    rows = {row["id"]: row for ds in dsd.values() for row in ds}
    assert set(rows) == {u.id for u in run.utterances}

    utt = run.utterances[7]
    row = rows[utt.id]
    assert FEATURES["emotion"].int2str(row["emotion"]) == utt.emotion.label
    assert row["duration"] == pytest.approx(utt.end - utt.start)
    samples = row["audio"].get_all_samples()
    expected, _ = sf.read(moved / utt.audio, dtype="float32")
    assert samples.sample_rate == 16000
    np.testing.assert_allclose(samples.data.numpy()[0], expected, atol=1e-6)

    # no video in two splits
    videos = {split: set(ds["video_id"]) for split, ds in dsd.items()}
    splits = list(videos)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not videos[a] & videos[b]

    # YAML header: configs point at the shards, dataset_info matches what was written
    meta, _ = split_front_matter((out / "README.md").read_text(encoding="utf-8"))
    [config] = meta["configs"]
    assert config["config_name"] == "default"
    assert {d["split"]: d["path"] for d in config["data_files"]} == {s: f"data/{s}-*" for s in result.split_rows}
    assert {s["name"]: s["num_examples"] for s in meta["dataset_info"]["splits"]} == result.split_rows
    assert [f["name"] for f in meta["dataset_info"]["features"]] == list(FEATURES)
    assert meta["license"] == "other" and "audio-classification" in meta["task_categories"]
    assert meta["language"] == ["en"] and meta["size_categories"] == ["n<1K"]
    assert meta["dataset_info"]["download_size"] == result.parquet_bytes


def test_card_statistics_lenient_skips_and_plot(make_run_dir, tmp_path):
    run = make_run_dir("card", videos=6, per_video=2, label=lambda n: ["Joy", "Anger", "Calmness"][n % 3])
    missing = make_utterance("cardbad", 0, label="Joy")
    run.append(missing)  # audio never written
    run.append_line("{ nope")
    unannotated = make_utterance("cardbad", 1, label=None)
    write_audio(run.path / unannotated.audio, 1.5, 300, seed=1)
    run.append(unannotated)

    out = tmp_path / "out"
    with pytest.raises(BadInputError):
        export_dataset(MikuEmoBenchConfig(run_dirs=[str(run.path)]), out)
    assert not (out / "data").exists()

    result = export_dataset(MikuEmoBenchConfig(run_dirs=[str(run.path)], lenient=True), out)
    assert sum(result.split_rows.values()) == 12
    text = (out / "README.md").read_text(encoding="utf-8")
    _, body = split_front_matter(text)

    assert "template-note" not in text and "Filled in by `mikupal-build`" not in text
    assert "| Utterances | 12 |" in body
    assert "| Hours | 0.01 |" in body  # 12 x 1.5 s
    for label in ("Joy", "Anger", "Calmness"):
        assert re.search(rf"^\| {label} \| 4 \| 0\.00 \| 33\.3% \|", body, re.M), label
    assert re.search(r"^\| Horror \| 0 \| 0\.00 \| 0\.0% \|", body, re.M)  # empty categories listed too
    stats = result.report.stats
    for split, n in result.split_rows.items():
        assert re.search(rf"^\| {split} \| {n} \| ", body, re.M)
        assert stats.split_counts[split] == n
    assert "| 1–2 | 12 | 100.0% |" in body
    assert "| `fusion-v1` | `v1` | 12 | 100.0% |" in body
    assert "| `audio_missing` | bad input | 1 |" in body
    assert "| `malformed_line` | bad input | 1 |" in body
    assert "| `no_emotion` | skipped | 1 |" in body
    assert "`card/utterances.jsonl:13` (audio_missing)" in body
    assert str(tmp_path) not in body  # no local paths in the card
    # pipeline block from stage.json, and the build settings
    assert "| `card` | asr | `mikupal.asr.faster_whisper.FasterWhisper` | `asr-hash-1234` | 0.1.0 |" in body
    assert "| `lenient` | `true` |" in body
    # all 26 categories with their descriptions
    labels = load_label_set("emobench26")
    for label in labels.labels:
        assert f"| {label.name} | {label.description} |" in body

    png = out / "emotion_distribution.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](emotion_distribution.png)" in body


def test_reexport_replaces_shards_and_failed_export_keeps_previous(make_run_dir, tmp_path):
    run = make_run_dir("re", videos=6, per_video=3)
    out = tmp_path / "out"
    export_dataset(MikuEmoBenchConfig(run_dirs=[str(run.path)]), out, max_shard_size="1KB", writer_batch_size=2)
    many = sorted(p.name for p in (out / "data").iterdir())
    assert len(many) > 3

    export_dataset(MikuEmoBenchConfig(run_dirs=[str(run.path)], labels_kept=["Joy", "Anger"]), out)
    few = sorted(p.name for p in (out / "data").iterdir())
    assert len(few) <= 3 and all(name.endswith("-00000-of-00001.parquet") for name in few)
    assert sum(len(ds) for ds in load(out).values()) == 6  # 18 cycling over 6 labels: 3 Joy + 3 Anger

    run.append_line("garbage")
    with pytest.raises(BadInputError):
        export_dataset(MikuEmoBenchConfig(run_dirs=[str(run.path)]), out)
    assert sorted(p.name for p in (out / "data").iterdir()) == few
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "data", "emotion_distribution.png"]


def test_missing_torchcodec_is_explained_before_building(make_run_dir, tmp_path, monkeypatch):
    import sys

    run = make_run_dir("nocodec", videos=1, per_video=1)
    monkeypatch.setitem(sys.modules, "torchcodec.encoders", None)  # import fails as if not installed
    with pytest.raises(BuildError, match=r"torchcodec==0\.13\.0.*apt-get install ffmpeg"):
        export_dataset(MikuEmoBenchConfig(run_dirs=[str(run.path)]), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_refuses_a_foreign_non_empty_output_dir(make_run_dir, tmp_path):
    run = make_run_dir("foreign", videos=1, per_video=1)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(BuildError, match="not empty and was not written by mikupal-build"):
        export_dataset(MikuEmoBenchConfig(run_dirs=[str(run.path)]), out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


class FakeHubApi:
    """Stand-in for ``huggingface_hub.HfApi``: checks each call against the real signatures, applies it to a folder.

    ``upload_folder`` copies the files matching ``allow_patterns`` into ``remote`` and deletes remote files
    matching ``delete_patterns`` that the commit does not upload (the Hub's documented semantics).
    """

    def __init__(self, remote: Path) -> None:
        self.remote = remote
        self.calls: list[tuple[str, dict]] = []
        self.repos: dict[str, dict] = {}

    def _check(self, name: str, *args, **kwargs) -> None:
        inspect.signature(getattr(HfApi, name)).bind(None, *args, **kwargs)  # TypeError if the real API differs
        self.calls.append((name, kwargs | {"args": args}))

    def create_repo(self, repo_id, **kwargs):
        self._check("create_repo", repo_id, **kwargs)
        self.repos.setdefault(repo_id, {"private": kwargs.get("private"), "type": kwargs.get("repo_type")})
        return f"https://huggingface.co/datasets/{repo_id}"

    def upload_folder(self, **kwargs):
        self._check("upload_folder", **kwargs)
        assert kwargs["repo_id"] in self.repos, "upload before create_repo"
        folder = Path(kwargs["folder_path"])
        uploaded = set()
        for path in folder.rglob("*"):
            rel = path.relative_to(folder).as_posix()
            if path.is_file() and any(fnmatch.fnmatch(rel, p) for p in kwargs["allow_patterns"]):
                (self.remote / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, self.remote / rel)
                uploaded.add(rel)
        for path in list(self.remote.rglob("*")):
            rel = path.relative_to(self.remote).as_posix()
            deletable = any(fnmatch.fnmatch(rel, p) for p in kwargs["delete_patterns"])
            if path.is_file() and rel not in uploaded and deletable:
                path.unlink()
        return "commit-1"


def test_push_uploads_the_export_through_the_hub_api(make_run_dir, tmp_path, monkeypatch):
    run = make_run_dir("push", videos=5, per_video=2)
    out = tmp_path / "out"
    export_dataset(MikuEmoBenchConfig(run_dirs=[str(run.path)]), out)
    remote = tmp_path / "remote"
    (remote / "data").mkdir(parents=True)
    (remote / "data" / "train-00003-of-00009.parquet").write_bytes(b"stale shard of an older upload")
    (remote / ".gitattributes").write_text("*.parquet filter=lfs")
    api = FakeHubApi(remote)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")

    assert push_folder(out, "miku-org/emobench-test", api=api) == "commit-1"

    [(name1, create), (name2, upload)] = api.calls
    assert (name1, name2) == ("create_repo", "upload_folder")
    assert create["args"] == ("miku-org/emobench-test",)
    assert create["repo_type"] == "dataset" and create["private"] is True and create["exist_ok"] is True
    assert create["token"] == upload["token"] == "hf_test_token"
    assert upload["repo_type"] == "dataset" and upload["repo_id"] == "miku-org/emobench-test"
    assert not (remote / "data" / "train-00003-of-00009.parquet").exists()  # stale shard removed
    assert (remote / ".gitattributes").exists()  # not ours: untouched
    assert sorted(p.name for p in remote.iterdir()) == [
        ".gitattributes", "README.md", "data", "emotion_distribution.png"
    ]
    reloaded = load(remote)
    assert sum(len(ds) for ds in reloaded.values()) == 10
    assert next(iter(reloaded.values())).features == FEATURES

    push_folder(out, "miku-org/emobench-test", private=False, token="explicit", api=api)
    assert api.calls[-2][1]["private"] is False and api.calls[-1][1]["token"] == "explicit"


def test_push_refuses_without_token_bad_repo_or_non_export(make_run_dir, tmp_path, monkeypatch):
    import huggingface_hub

    run = make_run_dir("pushfail", videos=1, per_video=1)
    out = tmp_path / "out"
    export_dataset(MikuEmoBenchConfig(run_dirs=[str(run.path)]), out)
    api = FakeHubApi(tmp_path / "remote")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("MY_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(BuildError, match="no Hugging Face token: set the environment variable MY_TOKEN"):
        push_folder(out, "org/name", token_env="MY_TOKEN", api=api)
    with pytest.raises(BuildError, match="not a Hub repository id"):
        push_folder(out, "just-a-name", token="t", api=api)
    with pytest.raises(BuildError, match="not a mikupal-build export"):
        push_folder(tmp_path, "org/name", token="t", api=api)
    assert api.calls == []
