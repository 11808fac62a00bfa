"""The builder's first pass: line checks, strict vs lenient, filters, duplicates, split assignment."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from builder.miku_emobench import MikuEmoBenchConfig
from builder.scan import (
    BadInputError,
    BuildError,
    assign_split,
    audio_path_is_inside,
    scan_runs,
    validate_split_ratios,
)
from mikupal.labels import load_label_set
from mikupal.testing.records import make_utterance, write_audio

EMOBENCH = load_label_set("emobench26")


def scan(*runs, **kwargs):
    config = MikuEmoBenchConfig(run_dirs=[str(r.path) for r in runs], **kwargs)
    return scan_runs(config, config.resolve_label_set())


def add_bad_lines(run, tmp_path):
    """Append one line of every bad-input kind; returns {reason: line number}."""
    lines = {}
    lines["malformed_line"] = run.append_line('{"id": "broken", "video_id": ')  # truncated JSON
    missing = make_utterance("badvid", 1, label="Joy")
    lines["audio_missing"] = run.append(missing)  # no audio file written
    unreadable = make_utterance("badvid", 2, label="Joy")
    (run.path / unreadable.audio).write_bytes(b"this is not a FLAC file at all" * 10)
    lines["audio_unreadable"] = run.append(unreadable)
    wrong_label = make_utterance("badvid", 3, label="Happiness")
    write_audio(run.path / wrong_label.audio, 1.0, 220, seed=3)
    lines["label_outside_set"] = run.append(wrong_label)
    outside = make_utterance("badvid", 4, label="Joy")
    write_audio(tmp_path / "elsewhere.flac", 1.0, 220, seed=4)  # exists, but outside the run directory
    outside_dict = outside.to_dict() | {"audio": "../elsewhere.flac"}
    lines["audio_outside_run_dir"] = run.append_line(json.dumps(outside_dict))
    stereo = make_utterance("badvid", 5, label="Joy")
    write_audio(run.path / stereo.audio, 1.0, 220, seed=5, samplerate=44100, channels=2)
    lines["audio_format"] = run.append(stereo)
    no_keys = make_utterance("badvid", 6, label="Joy").to_dict()
    del no_keys["words"]
    lines["malformed_line_keys"] = run.append_line(json.dumps(no_keys))
    return lines


def test_clean_run_is_fully_accepted_and_counted(make_run_dir):
    run = make_run_dir("clean", videos=4, per_video=3)
    report = scan(run)
    assert report.lines == 12 and report.accepted == 12
    assert not report.counts
    assert report.stats.total_seconds == pytest.approx(12 * 1.5)
    report.raise_for_bad_input()  # nothing to raise


def test_strict_mode_fails_with_counts_and_first_offending_lines(make_run_dir, tmp_path):
    run = make_run_dir("bad", videos=2, per_video=2)
    lines = add_bad_lines(run, tmp_path)
    report = scan(run)
    assert report.accepted == 4
    assert report.counts == Counter(
        malformed_line=2, audio_missing=1, audio_unreadable=1, label_outside_set=1, audio_outside_run_dir=1,
        audio_format=1,
    )
    with pytest.raises(BadInputError) as err:
        report.raise_for_bad_input()
    message = str(err.value)
    assert message.startswith("7 bad manifest line(s)")
    for reason, count in report.counts.items():
        assert f"{reason} ({count})" in message
    for line in lines.values():
        assert f"{run.manifest}:{line}:" in message
    assert "lenient=true" in message
    assert "44100 Hz with 2 channel(s)" in message


def test_label_near_miss_gets_a_hint(make_run_dir):
    run = make_run_dir("hint", videos=1, per_video=1)
    utt = make_utterance("hintvid", 0, label="joy")  # wrong case: not the label's exact name
    write_audio(run.path / utt.audio, 1.0, 300, seed=0)
    run.append(utt)
    report = scan(run)
    [problem] = report.problems["label_outside_set"]
    assert "did you mean 'Joy'" in problem.detail


def test_vote_outside_the_set_is_bad_input(make_run_dir):
    run = make_run_dir("votes", videos=1, per_video=1)
    utt = make_utterance("votevid", 0, label="Joy")
    data = utt.to_dict()
    data["emotion"]["votes"] = ["Joy", "Joy", "neutral"]
    write_audio(run.path / utt.audio, 1.0, 300, seed=0)
    run.append_line(json.dumps(data))
    report = scan(run)
    assert report.counts == Counter(label_outside_set=1)
    assert "vote 'neutral'" in report.problems["label_outside_set"][0].detail


def test_unannotated_utterances_are_skipped_not_errors(make_run_dir):
    run = make_run_dir("noemo", videos=2, per_video=3, label=lambda n: None if n % 3 == 0 else "Joy")
    report = scan(run)
    assert report.counts == Counter(no_emotion=2)
    assert report.accepted == 4
    report.raise_for_bad_input()  # skipped lines are not bad input


def test_duplicate_ids_across_runs_keep_the_first(make_run_dir):
    first = make_run_dir("first", videos=["shared-00000001"], per_video=2, label="Joy")
    second = make_run_dir("second", videos=["shared-00000001", "other-00000002"], per_video=2, label="Anger")
    report = scan(first, second)
    assert report.counts == Counter(duplicate_id=2)
    assert report.accepted == 4
    # the shared video's utterances keep the first run's label
    assert report.stats.emotion_split_counts.total() == 4
    joy = sum(n for (label, _), n in report.stats.emotion_split_counts.items() if label == "Joy")
    anger = sum(n for (label, _), n in report.stats.emotion_split_counts.items() if label == "Anger")
    assert (joy, anger) == (2, 2)
    # chunks never mix run directories
    for chunks in report.plan.values():
        for chunk in chunks:
            assert chunk["run_dir"] in (str(first.path.resolve()), str(second.path.resolve()))


def test_filters_drop_with_their_reasons(make_run_dir):
    durations = [0.5, 1.5, 2.5, 3.5]
    labels = ["Joy", "Joy", "Anger", "Joy"]
    run = make_run_dir("filt", videos=1, per_video=4, seconds=lambda n: durations[n], label=lambda n: labels[n])
    noface = make_utterance("filtvid", 9, label="Joy", asd_score=None)
    write_audio(run.path / noface.audio, 1.5, 300, seed=9)
    run.append(noface)
    low = make_utterance("filtvid", 10, label="Joy", asd_score=0.2)
    write_audio(run.path / low.audio, 1.5, 300, seed=10)
    run.append(low)

    report = scan(run, min_duration=1.0, max_duration=3.0, min_asd_score=0.5, labels_kept=["Joy"])
    assert report.counts == Counter(too_short=1, too_long=1, label_not_kept=1, no_face=1, asd_below_min=1)
    assert report.accepted == 1
    assert list(report.stats.durations) == [1.5]

    report = scan(run)  # no filters: all six kept
    assert report.accepted == 6


def test_config_errors_name_the_setting(make_run_dir):
    run = make_run_dir("cfg", videos=1, per_video=1)
    with pytest.raises(BuildError, match="labels_kept names \\['Happy'\\]"):
        MikuEmoBenchConfig(run_dirs=[str(run.path)], labels_kept=["Happy"]).resolve_label_set()
    with pytest.raises(BuildError, match="min_duration"):
        MikuEmoBenchConfig(run_dirs=[str(run.path)], min_duration=5, max_duration=1)
    with pytest.raises(BuildError, match="sum to 1"):
        MikuEmoBenchConfig(run_dirs=[str(run.path)], split_ratios={"train": 0.5, "test": 0.1})
    with pytest.raises(BuildError, match="has no utterances.jsonl"):
        scan_runs(MikuEmoBenchConfig(run_dirs=[str(run.path.parent)]), EMOBENCH)
    with pytest.raises(BuildError, match="does not exist"):
        scan_runs(MikuEmoBenchConfig(run_dirs=[str(run.path / "nope")]), EMOBENCH)


def test_split_assignment_is_stable_by_video_and_follows_ratios():
    ratios = validate_split_ratios({"train": 0.8, "validation": 0.1, "test": 0.1})
    videos = [f"video-{i:05d}" for i in range(20000)]
    splits = [assign_split(v, ratios, seed=0) for v in videos]
    assert splits == [assign_split(v, ratios, seed=0) for v in videos]  # deterministic
    shares = Counter(splits)
    assert shares["train"] / len(videos) == pytest.approx(0.8, abs=0.015)
    assert shares["validation"] / len(videos) == pytest.approx(0.1, abs=0.01)
    assert shares["test"] / len(videos) == pytest.approx(0.1, abs=0.01)
    reseeded = [assign_split(v, ratios, seed=1) for v in videos]
    assert sum(a != b for a, b in zip(splits, reseeded)) > 2000  # the seed reshuffles
    only_train = validate_split_ratios({"train": 1.0})
    assert {assign_split(v, only_train, 0) for v in videos[:500]} == {"train"}


def test_utterances_of_one_video_share_a_split(make_run_dir):
    run = make_run_dir("many", videos=12, per_video=2, seconds=0.3)
    report = scan(run)
    seen: dict[str, str] = {}
    for split, videos in report.stats.split_videos.items():
        for video in videos:
            assert seen.setdefault(video, split) == split
    assert len(seen) == 12
    assert sum(len(v) for v in report.stats.split_videos.values()) == 12


@pytest.mark.parametrize(
    "path, inside",
    [
        ("audio/x.flac", True),
        ("audio/../audio/x.flac", True),
        ("../x.flac", False),
        ("audio/../../x.flac", False),
        ("/etc/passwd", False),
        ("..", False),
        ("", False),
        ("C:\\audio\\x.flac", False),
    ],
)
def test_audio_path_guard(path, inside):
    assert audio_path_is_inside(path) is inside
