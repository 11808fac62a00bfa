"""Prompt rendering, output schema and strict reply validation (both label sets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mikupal.annotate.base import AnnotationRequest, MediaPart
from mikupal.annotate.prompt import PromptTemplate, ReplyValidationError, parse_reply, response_schema
from mikupal.labels import load_label_set


@pytest.fixture(scope="module")
def prompt() -> PromptTemplate:
    return PromptTemplate.load("miku_pal_v1")


@pytest.mark.parametrize("set_name", ["emobench26", "meld7"])
def test_system_prompt_lists_every_label_with_its_description_and_the_output_format(prompt, set_name):
    label_set = load_label_set(set_name)
    media = [MediaPart(Path("x.mp4"), "video", "video/mp4", with_audio=True)]
    text = prompt.system_text(label_set, media, text=True)
    for label in label_set.labels:
        assert f"- {label.name}: {label.description}" in text
    assert f"({len(label_set)})" in text
    for key in ('"label"', '"intensity"', '"rationale"'):
        assert key in text
    assert "face with the original sound and its transcript" in text
    assert "{" in text and "{{" not in text  # literal braces survived formatting


def test_system_prompt_names_only_the_inputs_sent(prompt):
    label_set = load_label_set("meld7")
    audio_only = prompt.system_text(label_set, [MediaPart(Path("a.flac"), "audio", "audio/flac")], text=False)
    assert "an audio recording of the utterance" in audio_only
    assert "video" not in audio_only.split("Emotion categories")[0]
    assert "transcript" not in audio_only.split("Emotion categories")[0]
    silent = prompt.system_text(label_set, [MediaPart(Path("v.mp4"), "video", "video/mp4", False)], text=True)
    assert "a silent video of the speaker's face and its transcript" in silent


def test_user_text_carries_transcript_language_and_context(prompt):
    label_set = load_label_set("meld7")
    request = AnnotationRequest("u1", label_set, transcript='He said "no"\nagain.', language="en")
    text = prompt.user_text(request, ("first one", "second one"))
    assert "Transcript (language: en): \"He said 'no' again.\"" in text
    assert text.index("first one") < text.index("second one") < text.index("Transcript")
    no_text = AnnotationRequest("u1", label_set, modalities=frozenset({"audio"}), transcript="secret words")
    assert "secret words" not in prompt.user_text(no_text, ())
    assert "Transcript" not in prompt.user_text(no_text, ())


@pytest.mark.parametrize("set_name", ["emobench26", "meld7"])
def test_schema_enum_is_exactly_the_label_set(set_name):
    label_set = load_label_set(set_name)
    schema = response_schema(label_set)
    assert schema["properties"]["label"]["enum"] == label_set.names
    assert schema["required"] == ["label", "intensity", "rationale"]


def test_fingerprint_changes_with_the_wording(prompt, tmp_path):
    import yaml

    from mikupal.paths import conf_dir

    data = yaml.safe_load((conf_dir() / "prompt" / "miku_pal_v1.yaml").read_text())
    data["system"] = data["system"].replace("expert", "careful")
    changed = PromptTemplate.from_config(data)
    assert changed.version == prompt.version and changed.fingerprint != prompt.fingerprint
    with pytest.raises(ValueError, match="lacks"):
        PromptTemplate.from_config({k: v for k, v in data.items() if k != "correction"})


def test_parse_reply_accepts_valid_answers():
    meld = load_label_set("meld7")
    ok = parse_reply('{"label": "joy", "intensity": 0.8, "rationale": "smiles"}', meld)
    assert (ok.label, ok.intensity, ok.rationale) == ("joy", 0.8, "smiles")
    fenced = parse_reply('```json\n{"label": "anger", "intensity": 1, "rationale": "shouts"}\n```', meld)
    assert fenced.label == "anger" and fenced.intensity == 1.0
    alias = parse_reply('{"label": "Happy", "intensity": 0.5, "rationale": "r"}', meld)  # whole alias of joy
    assert alias.label == "joy"
    fine = load_label_set("emobench26")
    assert parse_reply('{"label": "Empathic pain", "intensity": 0.2, "rationale": "r"}', fine).label == "Empathic pain"


@pytest.mark.parametrize(
    "reply, message",
    [
        ("not json at all", "not valid JSON"),
        ("", "empty"),
        (None, "empty"),
        ('["joy"]', "not an object"),
        ('{"label": "joy", "intensity": 0.5}', "lacks"),
        ('{"label": "bananas", "intensity": 0.5, "rationale": "r"}', "not one of the allowed categories"),
        ('{"label": "unhappyish", "intensity": 0.5, "rationale": "r"}', "not one of the allowed"),
        ('{"label": "joy and anger", "intensity": 0.5, "rationale": "r"}', "not one of the allowed"),
        ('{"label": "joy", "intensity": 7, "rationale": "r"}', "from 0.0 to 1.0"),
        ('{"label": "joy", "intensity": true, "rationale": "r"}', "must be a number"),
        ('{"label": "joy", "intensity": "high", "rationale": "r"}', "must be a number"),
        ('{"label": "joy", "intensity": 0.5, "rationale": "  "}', "non-empty"),
        ('{"label": 3, "intensity": 0.5, "rationale": "r"}', "must be a string"),
    ],
)
def test_parse_reply_rejects_what_breaks_the_contract(reply, message):
    with pytest.raises(ReplyValidationError, match=message):
        parse_reply(reply, load_label_set("meld7"))


def test_correction_states_the_error_and_the_labels(prompt):
    text = prompt.correction_text("label 'x' is not allowed", load_label_set("meld7"))
    assert "label 'x' is not allowed" in text
    assert "anger, disgust, fear, joy, neutral, sadness, surprise" in text
    json.dumps(text)  # plain text, serialisable
