"""MikuEmoBench driven directly as a datasets builder (download_and_prepare / as_dataset)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from datasets.exceptions import DatasetGenerationError

from builder.features import FIELD_NAMES, build_features
from builder.miku_emobench import MikuEmoBench, MikuEmoBenchConfig, record_to_example
from builder.scan import BadInputError, BuildError
from mikupal.labels import load_label_set
from mikupal.testing.records import make_utterance, write_audio


def test_builder_materialises_typed_rows_with_decodable_audio(make_run_dir, tmp_path):
    run = make_run_dir("direct", videos=6, per_video=2, seconds=lambda n: 1.0 + 0.25 * n)
    builder = MikuEmoBench(run_dirs=[str(run.path)], cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare()
    dsd = builder.as_dataset()

    features = build_features(load_label_set("emobench26"))
    by_id = {}
    for split, ds in dsd.items():
        assert ds.features == features
        assert tuple(ds.column_names) == FIELD_NAMES
        for row in ds:
            by_id[row["id"]] = (split, row)
    assert set(by_id) == {u.id for u in run.utterances}

    assert tuple(record_to_example(run.utterances[0].to_dict(), run.path, 1.0)) == FIELD_NAMES
    names = features["emotion"].names
    for utt in run.utterances:
        _, row = by_id[utt.id]
        assert names[row["emotion"]] == utt.emotion.label
        assert row["votes"] == utt.emotion.votes
        assert row["text"] == utt.text and row["video_id"] == utt.video_id
        assert row["source"] == Path(utt.source).name  # publish_source_paths=false: the file name only
        assert row["start"] == utt.start and row["end"] == utt.end
        assert row["duration"] == pytest.approx(utt.end - utt.start)
        assert row["intensity"] == pytest.approx(utt.emotion.intensity)
        assert row["asd_score"] == pytest.approx(utt.face.asd_score)
        assert row["face_box"] == utt.face.box
        assert [w["word"] for w in row["words"]] == [w.word for w in utt.words]
        assert row["words"][1]["score"] is None
        assert row["prompt_version"] == "v1" and row["annotator"] == "fusion-v1"

    # audio decodes to the very samples of the run directory's FLAC
    utt = run.utterances[3]
    samples = by_id[utt.id][1]["audio"].get_all_samples()
    expected, sr = sf.read(run.path / utt.audio, dtype="float32")
    assert samples.sample_rate == sr == 16000
    np.testing.assert_allclose(samples.data.numpy()[0], expected, atol=1e-6)


def test_strict_builder_raises_before_writing(make_run_dir, tmp_path):
    run = make_run_dir("strict", videos=2, per_video=1)
    run.append_line("not json")
    builder = MikuEmoBench(run_dirs=[str(run.path)], cache_dir=str(tmp_path / "cache"))
    with pytest.raises(BadInputError, match=r"malformed_line \(1\)"):
        builder.download_and_prepare()
    assert not list((tmp_path / "cache").rglob("*.arrow"))

    lenient = MikuEmoBench(run_dirs=[str(run.path)], lenient=True, cache_dir=str(tmp_path / "cache2"))
    lenient.download_and_prepare()
    assert sum(s.num_examples for s in lenient.info.splits.values()) == 2


def test_rows_without_faces_have_null_face_columns(make_run_dir, tmp_path):
    run = make_run_dir("noface", videos=2, per_video=2, asd_score=None)
    builder = MikuEmoBench(run_dirs=[str(run.path)], split_ratios={"train": 1.0}, cache_dir=str(tmp_path / "c"))
    builder.download_and_prepare()
    ds = builder.as_dataset(split="train")
    assert ds["asd_score"] == [None] * 4 and ds["face_box"] == [None] * 4


def test_meld7_label_set_and_config_object(make_run_dir, tmp_path):
    run = make_run_dir("meld", videos=2, per_video=2, label=lambda n: ["joy", "anger"][n % 2])
    config = MikuEmoBenchConfig(run_dirs=str(run.path), labels="meld7", split_ratios={"train": 1.0})
    assert config.run_dirs == [str(run.path)]  # a single path is accepted
    builder = MikuEmoBench.from_config(config, cache_dir=str(tmp_path / "c"))
    builder.download_and_prepare()
    ds = builder.as_dataset(split="train")
    assert ds.features["emotion"].names == load_label_set("meld7").names
    assert sorted(ds.features["emotion"].int2str(ds["emotion"])) == ["anger", "anger", "joy", "joy"]


def test_manifest_changed_between_passes_is_refused(make_run_dir, tmp_path):
    run = make_run_dir("moving", videos=2, per_video=1)
    builder = MikuEmoBench(run_dirs=[str(run.path)], split_ratios={"train": 1.0}, cache_dir=str(tmp_path / "c"))
    builder.scan()
    extra = make_utterance("late-00000009", 0)
    write_audio(run.path / extra.audio, 1.0, 300, seed=1)
    run.append(extra)
    # datasets wraps errors raised while generating; the cause is ours (export_dataset unwraps it)
    with pytest.raises(DatasetGenerationError) as err:
        builder.download_and_prepare()
    assert isinstance(err.value.__cause__, BuildError)
    assert "changed since it was checked" in str(err.value.__cause__)


def test_nothing_left_is_an_error_that_says_why(make_run_dir, tmp_path):
    run = make_run_dir("empty", videos=2, per_video=2, label=None)
    builder = MikuEmoBench(run_dirs=[str(run.path)], cache_dir=str(tmp_path / "c"))
    with pytest.raises(BuildError, match=r"no utterance left(.|\n)*no_emotion \(4\)"):
        builder.download_and_prepare()
