"""TTS-ready columns: speaker, DNSMOS, confidence and the face video; source names, annotations-only exports,
speaker-disjoint splits and the card's per-speaker and quality statistics."""

from __future__ import annotations

import io
import json
from pathlib import Path

import av
import datasets
import pyarrow.parquet as pq
import pytest

from builder.card import CardOptions, render_statistics
from builder.export import export_dataset
from builder.features import MEDIA_FIELDS, build_features, field_names
from builder.miku_emobench import MikuEmoBench, MikuEmoBenchConfig, source_name
from builder.scan import BuildError, assign_split, scan_runs, validate_split_ratios
from mikupal.labels import load_label_set
from mikupal.testing.records import make_utterance, write_audio


def speaker_and_quality(n: int, utt) -> dict:
    """``speaker`` and ``quality`` objects in the shape of the pipeline's speakers and quality stages."""
    return {
        "speaker": {"id": f"{utt.video_id}-spk{n % 2}", "similarity": 0.8, "n_speakers": 1},
        "quality": {"dnsmos_sig": 3.5, "dnsmos_bak": 3.9, "dnsmos_ovrl": 2.0 + 0.25 * n, "dnsmos_p808": 3.6,
                    "dnsmos_windows": 1},
    }


def scan(*runs, **kwargs):
    config = MikuEmoBenchConfig(run_dirs=[str(r.path) for r in runs], **kwargs)
    return scan_runs(config, config.resolve_label_set())


def test_export_has_speaker_quality_confidence_and_a_decodable_face_video(make_run_dir, tmp_path):
    run = make_run_dir("tts", videos=3, per_video=2, extras=speaker_and_quality, confidence=lambda n: 0.1 * (n + 1))
    noface = make_utterance("tts-noface-0000000f", 0, label="Joy", asd_score=None, confidence=0.5)
    write_audio(run.path / noface.audio, 1.2, 300, seed=9)
    run.append(noface)  # no speaker or quality keys at all: an older manifest line
    out = tmp_path / "out"
    export_dataset(MikuEmoBenchConfig(run_dirs=[str(run.path)], split_ratios={"train": 1.0}), out)

    ds = datasets.load_dataset(str(out), split="train", download_mode="force_redownload")
    assert ds.features == build_features(load_label_set("emobench26"))
    rows = {row["id"]: row for row in ds}
    for n, utt in enumerate(run.utterances[:6]):
        row = rows[utt.id]
        extra = speaker_and_quality(n, utt)
        assert row["speaker_id"] == extra["speaker"]["id"]
        assert row["dnsmos_ovrl"] == pytest.approx(extra["quality"]["dnsmos_ovrl"])
        assert row["dnsmos_sig"] == pytest.approx(3.5) and row["dnsmos_p808"] == pytest.approx(3.6)
        assert row["confidence"] == pytest.approx(0.1 * (n + 1))
        assert row["source"] == f"{utt.video_id}.mp4"
    plain = rows[noface.id]
    assert plain["speaker_id"] is None and plain["dnsmos_ovrl"] is None and plain["face_video"] is None
    assert plain["confidence"] == pytest.approx(0.5)

    # the face clip is embedded and decodes offline (torchcodec VideoDecoder), its audio track included
    utt = run.utterances[1]
    decoder = rows[utt.id]["face_video"]
    assert decoder.metadata.num_frames == 4 and tuple(decoder[0].shape) == (3, 64, 64)
    raw = ds.cast_column("face_video", datasets.Video(decode=False))
    clip = next(r["face_video"] for r in raw if r["id"] == utt.id)
    assert clip["bytes"] == (run.path / utt.face.clip).read_bytes()
    with av.open(io.BytesIO(clip["bytes"])) as container:
        assert {s.type for s in container.streams} == {"video", "audio"}


def test_source_paths_are_published_only_when_asked(make_run_dir, tmp_path):
    run = make_run_dir("src", videos=1, per_video=2)
    for publish, expected in ((False, "src-video0-00000000.mp4"), (True, "videos/src-video0-00000000.mp4")):
        builder = MikuEmoBench(run_dirs=[str(run.path)], split_ratios={"train": 1.0}, publish_source_paths=publish,
                               cache_dir=str(tmp_path / f"c{publish}"))
        builder.download_and_prepare()
        assert set(builder.as_dataset(split="train")["source"]) == {expected}
    assert source_name(r"C:\videos\talk show.mp4") == "talk show.mp4" and source_name("a/b/c.mkv") == "c.mkv"


def test_annotations_only_export_carries_no_media_bytes(make_run_dir, tmp_path, monkeypatch):
    import builder.export

    run = make_run_dir("anno", videos=2, per_video=2, extras=speaker_and_quality)
    monkeypatch.setattr(builder.export, "_require_torchcodec", lambda: pytest.fail("no media: torchcodec not needed"))
    out = tmp_path / "out"
    result = export_dataset(MikuEmoBenchConfig(run_dirs=[str(run.path)], split_ratios={"train": 1.0},
                                               annotations_only=True), out)
    [shard] = list((out / "data").iterdir())
    schema = pq.read_schema(shard)
    assert tuple(schema.names) == field_names(annotations_only=True)
    assert not set(MEDIA_FIELDS) & set(schema.names)
    media_bytes = sum(p.stat().st_size for p in run.path.rglob("*") if p.suffix in (".flac", ".mp4"))
    assert result.parquet_bytes < media_bytes / 4
    ds = datasets.load_dataset(str(out), split="train")
    rows = {row["id"]: row for row in ds}
    for utt in run.utterances:  # start and end in the source locate the utterance
        assert rows[utt.id]["start"] == utt.start and rows[utt.id]["end"] == utt.end
        assert rows[utt.id]["source"] == Path(utt.source).name
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "`annotations_only` | `true`" in card


def test_speaker_map_keeps_videos_that_share_a_speaker_in_one_split(make_run_dir, tmp_path):
    videos = [f"show-ep{i}-{i:08x}" for i in range(12)]
    ratios = validate_split_ratios({"train": 0.5, "validation": 0.25, "test": 0.25})
    by_video = {v: assign_split(v, ratios, 0) for v in videos}
    assert len({by_video[v] for v in videos[:4]}) > 1  # the host's episodes would be split apart
    run = make_run_dir("show", videos=videos, per_video=2, extras=speaker_and_quality)
    plain = scan(run, split_ratios=ratios)
    assert {u: s for u, s in _video_splits(plain).items()} == by_video
    assert _video_splits(scan(run, split_ratios=ratios, split_by="speaker")) == by_video  # ids alone are per video

    speaker_map = tmp_path / "speakers.json"
    speaker_map.write_text(json.dumps({f"{v}-spk0": "host" for v in videos[:4]}))
    linked = scan(run, split_ratios=ratios, split_by="speaker", speaker_map=str(speaker_map))
    splits = _video_splits(linked)
    assert len({splits[v] for v in videos[:4]}) == 1
    assert all(splits[v] == by_video[v] for v in videos[4:])  # the other videos keep their split
    assert linked.accepted == plain.accepted == 24

    with pytest.raises(BuildError, match="speaker_map"):
        scan(run, split_by="speaker", speaker_map=str(tmp_path / "missing.json"))
    with pytest.raises(BuildError, match="split_by"):
        MikuEmoBenchConfig(run_dirs=[str(run.path)], split_by="person")


def _video_splits(report) -> dict[str, str]:
    return {video: split for split, ids in report.stats.split_videos.items() for video in ids}


def test_confidence_and_quality_filters_and_bad_speaker_lines(make_run_dir):
    run = make_run_dir("filt", videos=2, per_video=2, extras=speaker_and_quality,
                       confidence=lambda n: [0.9, 0.3, None, 0.8][n])
    bad = make_utterance("filt-bad-0000000b", 0)
    write_audio(run.path / bad.audio, 1.0, 220, seed=3)
    line = run.append(bad, speaker={"similarity": 0.5})
    report = scan(run, lenient=True, min_confidence=0.5, min_dnsmos_ovrl=2.2)
    # n=0: ovrl 2.0 < 2.2; n=1: confidence 0.3; n=2: no confidence; n=3 kept
    assert dict(report.counts) == {"low_quality": 1, "low_confidence": 2, "malformed_line": 1}
    assert report.accepted == 1
    [problem] = report.problems["malformed_line"]
    assert problem.line == line and "speaker must be null or an object with a non-empty string id" in problem.detail


def test_card_has_statistics_per_speaker_and_quality_and_confidence_histograms(make_run_dir):
    run = make_run_dir("card", videos=2, per_video=4, extras=speaker_and_quality, confidence=0.7)
    report = scan(run, split_ratios={"train": 1.0})
    text = render_statistics(report, CardOptions(), {"train": report.accepted})
    assert "### Speakers" in text and "4 speakers" in text and "8 utterances have one" in text
    assert "Speakers in more than one split: 0." in text
    first = run.utterances[0].video_id
    # spk0 of the first video holds utterances n=0 and n=2: OVRL 2.0 and 2.5
    assert f"| `{first}-spk0` | 2 | 0.00 | train | 2.25 |" in text
    assert "### Speech quality (DNSMOS)" in text and "means: SIG 3.50, BAK 3.90, OVRL 2.88, P808 3.60" in text
    # OVRL 2.0, 2.25, ..., 3.75: two per half-point bin from 2.0 up
    for label in ("2–2.5", "2.5–3", "3–3.5", "3.5–4"):
        assert f"| {label} | 2 | 25.0% |" in text
    assert "| 1–1.5 | 0 | 0.0% |" in text
    assert "### Label confidence" in text and "| 0.6–0.8 | 8 | 100.0% |" in text

    bare = make_run_dir("bare", videos=1, per_video=2)
    text = render_statistics(scan(bare, split_ratios={"train": 1.0}), CardOptions(), {"train": 2})
    assert "`speakers` stage did not run" in text and "`quality` stage did not run" in text
    assert "No label carries a confidence" in text


def test_a_missing_face_clip_is_bad_input_unless_the_export_has_no_media(make_run_dir):
    run = make_run_dir("clips", videos=1, per_video=3)
    gone = run.utterances[1]
    (run.path / gone.face.clip).unlink()
    report = scan(run)
    assert dict(report.counts) == {"face_clip_missing": 1}
    assert f"{gone.id}: faces/{gone.id}.mp4 not found" in report.problems["face_clip_missing"][0].detail
    assert scan(run, annotations_only=True).accepted == 3
