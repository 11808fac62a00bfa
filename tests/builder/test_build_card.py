"""The committed dataset card stays in sync with the builder, the label set and the config defaults."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from builder.card import (
    CardOptions,
    blocks,
    default_template,
    duration_histogram,
    fields_table,
    read_stage_configs,
    render_categories,
    replace_block,
    size_category,
    split_front_matter,
)
from builder.features import FIELD_NAMES, build_features, feature_type_name
from builder.miku_emobench import MikuEmoBenchConfig
from builder.scan import BuildError
from mikupal.labels import load_label_set
from mikupal.paths import conf_dir

CARD = default_template().read_text(encoding="utf-8")


def test_card_field_table_equals_builder_features():
    features = build_features(load_label_set("emobench26"))
    rows = fields_table(CARD)
    assert [name for name, _ in rows] == list(FIELD_NAMES) == list(features)
    for name, type_name in rows:
        assert type_name == feature_type_name(features[name]), name


def test_fields_table_parser_sees_a_missing_field():
    damaged = CARD.replace("| `face_box` |", "| face_box_removed |")
    assert "face_box" not in [name for name, _ in fields_table(damaged)]


def test_card_categories_block_is_the_rendered_label_set():
    label_set = load_label_set("emobench26")
    assert blocks(CARD)["categories"].strip() == render_categories(label_set).strip(), (
        "dataset_card.md is out of date with conf/labels/emobench26.yaml: run `python -m builder.card`"
    )
    assert len(label_set) == 26
    for label in label_set.labels:
        assert f"| {label.name} | {label.description} | {label.meld7} |" in CARD


def test_card_has_the_sections_users_need():
    meta, body = split_front_matter(CARD)
    assert meta["pretty_name"] == "MIKU-EmoBench" and meta["license"] == "other"
    assert {"audio-classification", "text-to-speech"} <= set(meta["task_categories"])
    for heading in ("## Loading", "### Data fields", "### Emotion categories", "## Statistics",
                    "## How the dataset was made", "## Intended uses", "## Known biases and limitations",
                    "## Licensing", "## Citation"):
        assert heading in body
    assert set(blocks(CARD)) == {"categories", "statistics", "pipeline"}
    for stage in ("extract", "separate", "vad", "asr", "faces", "asd", "annotate", "filter"):
        assert f"**{stage}**" in body
    assert "Cheng, Yifan and Zhang, Ruoyi and Shi, Jiatong" in body and "2505.15772" in body
    assert "Interspeech 2025" in body


def test_replace_block_requires_the_markers():
    assert "X" in blocks(replace_block(CARD, "statistics", "X"))["statistics"]
    with pytest.raises(BuildError, match="lacks the block 'statistics'"):
        replace_block(CARD.replace("mikupal-build:begin statistics", "gone"), "statistics", "X")


def test_build_yaml_defaults_equal_the_code_defaults():
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        cfg = compose("build", overrides=["run_dir=x", "output_dir=y"])
    code = MikuEmoBenchConfig()
    assert cfg.labels.name == code.labels
    assert cfg.lenient == code.lenient and cfg.max_reported_problems == code.max_reported_problems
    for key in ("min_asd_score", "min_duration", "max_duration", "labels_kept", "min_confidence", "min_dnsmos_ovrl"):
        assert cfg.filters[key] == getattr(code, key), key
    assert cfg.publish_source_paths == code.publish_source_paths and cfg.annotations_only == code.annotations_only
    assert cfg.split.by == code.split_by and cfg.split.speaker_map == code.speaker_map
    assert OmegaConf.to_container(cfg.split.ratios) == code.split_ratios
    assert cfg.split.seed == code.split_seed and cfg.export.chunk_size == code.chunk_size
    card = CardOptions()
    for f in dataclasses.fields(CardOptions):
        value = cfg.card[f.name]
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        expected = getattr(card, f.name)
        assert (list(value) if isinstance(expected, list) else value) == expected, f.name


def test_duration_histogram_bins_and_size_categories():
    hist = duration_histogram([0.2, 1.0, 1.9, 2.0, 31.0, 30.0], [0, 1, 2, 30])
    assert hist == [("0–1", 1), ("1–2", 2), ("2–30", 1), ("≥ 30", 2)]
    assert [size_category(n) for n in (0, 999, 1000, 89_428, 2_000_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "1M<n<10M"
    ]
    with pytest.raises(BuildError, match="increasing"):
        CardOptions(duration_bins=[0, 2, 1])


def test_stage_json_summaries_are_ordered_and_tolerant(tmp_path):
    (tmp_path / "annotate").mkdir()
    (tmp_path / "annotate" / "stage.json").write_text(json.dumps({
        "config": {"annotator": {"_target_": "mikupal.annotate.gemini.Gemini", "model": "gemini-2.0-flash"}},
        "hash": "abc", "mikupal_version": "0.2.0"}))
    (tmp_path / "vad").mkdir()
    (tmp_path / "vad" / "stage.json").write_text("{broken")
    (tmp_path / "extract").mkdir()
    (tmp_path / "extract" / "stage.json").write_text(json.dumps({"stage": "extract", "config": {"sr": 16000}}))
    summaries = read_stage_configs(tmp_path)
    assert [s.stage for s in summaries] == ["extract", "vad", "annotate"]
    assert summaries[2].backends == ["mikupal.annotate.gemini.Gemini"]
    assert (summaries[2].config_hash, summaries[2].version) == ("abc", "0.2.0")
    assert summaries[1].config is None and summaries[0].backends == []
