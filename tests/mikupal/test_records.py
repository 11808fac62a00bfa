from __future__ import annotations

import json

import pytest

from mikupal.ids import shard_of, slugify, utterance_id, video_id
from mikupal.manifest import ManifestError, ManifestWriter, iter_jsonl, read_manifest
from mikupal.records import (
    Emotion, Face, ItemError, Quality, Recording, RecordError, Speaker, Utterance, Video, VideoStream, Word,
)


def _utterance(**kw) -> Utterance:
    base = dict(
        id="clip-0123abcd-00001",
        video_id="clip-0123abcd",
        source="videos/clip.mp4",
        start=1.25,
        end=3.5,
        audio="audio/clip-0123abcd-00001.flac",
        text="He was not an ill disposed young man.",
        language="en",
        words=[Word("He", 1.3, 1.45, 0.9), Word("was", 1.45, 1.6, None)],
        face=Face(track_id=2, box=[10.0, 20.0, 110.0, 140.0], asd_score=0.82, clip="faces/clip-0123abcd-00001.mp4"),
        emotion=Emotion("Calmness", 0.4, "flat prosody", {"Calmness": 0.7, "Joy": 0.3}, ["Calmness", "Joy", "Calmness"], "fusion-v1", "v1"),
    )
    base.update(kw)
    return Utterance(**base)


@pytest.mark.parametrize(
    "record",
    [
        Video("a-1", "a.mp4", "/x/a.mp4"),
        Recording("a-1", "a.mp4", "extract/audio/a-1.flac", 16000, 12.5, VideoStream(640, 480, 29.97, 12.4), "raw"),
        Recording("a-1", "a.wav", "extract/audio/a-1.flac", 16000, 12.5, None, "raw"),
        _utterance(),
        _utterance(words=None, face=None, emotion=None, text=None, language=None),
        _utterance(
            speaker=Speaker("clip-0123abcd-spk1", 0.87, 1),
            quality=Quality(dnsmos_sig=3.5, dnsmos_bak=3.9, dnsmos_ovrl=3.1, dnsmos_p808=3.6, dnsmos_windows=1),
        ),
        ItemError("extract", "a-1", "MediaError", "a.mp4: file is empty", "a.mp4"),
    ],
)
def test_records_round_trip_through_json(record):
    line = json.dumps(record.to_dict())
    assert type(record).from_dict(json.loads(line)) == record


def test_utterance_json_has_every_contract_field_even_when_null():
    d = _utterance(words=None, face=None, emotion=None).to_dict()
    assert list(d) == [
        "id", "video_id", "source", "start", "end", "audio", "text", "language", "words", "face", "emotion", "speaker",
        "quality",
    ]
    assert d["face"] is None and d["emotion"] is None and d["words"] is None
    assert d["speaker"] is None and d["quality"] is None
    assert set(_utterance().to_dict()["emotion"]) == {
        "label", "intensity", "rationale", "scores", "votes", "annotator", "prompt_version", "confidence"
    }


def test_from_dict_rejects_missing_and_unknown_keys():
    d = _utterance().to_dict()
    del d["face"]
    with pytest.raises(RecordError, match="missing keys \\['face'\\]"):
        Utterance.from_dict(d)
    d = _utterance().to_dict() | {"mood": "A"}
    with pytest.raises(RecordError, match="unknown keys \\['mood'\\]"):
        Utterance.from_dict(d)


def test_video_id_is_stable_and_distinguishes_folders(tmp_path):
    a, b = tmp_path / "x" / "Talk Show (2019).mp4", tmp_path / "y" / "Talk Show (2019).mp4"
    assert video_id(a) == video_id(a)
    assert video_id(a) != video_id(b)
    assert video_id(a).startswith("talk-show-2019-") and len(video_id(a).split("-")[-1]) == 8
    assert utterance_id("talk-1", 7) == "talk-1-00007"
    assert slugify("Ünïcode — clip!") == "unicode-clip"


def test_sharding_is_deterministic_and_covers_every_rank():
    ids = [f"video-{i}" for i in range(200)]
    ranks = [shard_of(i, 4) for i in ids]
    assert ranks == [shard_of(i, 4) for i in ids]
    assert set(ranks) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="world_size"):
        shard_of("x", 0)


def test_manifest_writer_appends_and_reader_tolerates_only_a_truncated_tail(tmp_path):
    path = tmp_path / "m.jsonl"
    with ManifestWriter(path) as w:
        w.write(_utterance())
        w.write(_utterance(id="clip-0123abcd-00002"))
    with open(path, "a") as f:
        f.write('{"id": "clip-0123abcd-00003", "vid')  # what a killed writer leaves
    got = list(read_manifest(path, Utterance))
    assert [u.id for u in got] == ["clip-0123abcd-00001", "clip-0123abcd-00002"]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\nnot json\n{"b": 2}\n')
    with pytest.raises(ManifestError, match="bad.jsonl:2"):
        list(iter_jsonl(bad))


def test_manifests_older_than_the_tts_fields_still_load():
    d = _utterance().to_dict()
    del d["speaker"], d["quality"], d["emotion"]["confidence"]
    u = Utterance.from_dict(d)
    assert u.speaker is None and u.quality is None and u.emotion.confidence is None
