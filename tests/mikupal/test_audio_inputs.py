"""Audio files as inputs: found by a folder scan (which says what it skipped), run through the audio path and the
annotator with audio and text, ``face: null`` counted as ``faces.no_video`` — never an error.

Media: real LibriVox speech encoded with PyAV to each audio format (MP3 and FLAC with cover art, which FFmpeg shows
as a video stream but is not video).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from mikupal.extract.pyav import PyAvExtractor
from mikupal.faces.video import video_info
from mikupal.runner import resolve_inputs, run_pipeline
from mikupal.testing.config import compose_pipeline
from mikupal.testing.decode_media import encode
from mikupal.testing.media import concat_with_silences, face_photo, write_video

SR = 16000
#: name -> (container, codec, rate, layout): every extension of media.audio_extensions
FORMATS = {
    "speech.wav": ("wav", "pcm_s16le", 16000, "mono"),
    "speech.flac": ("flac", "flac", 44100, "stereo"),
    "speech.mp3": ("mp3", "libmp3lame", 44100, "mono"),
    "speech.m4a": ("ipod", "aac", 44100, "mono"),
    "speech.aac": ("adts", "aac", 44100, "mono"),
    "speech.ogg": ("ogg", "libopus", 48000, "stereo"),
    "speech.opus": ("opus", "libopus", 48000, "mono"),
}


@pytest.fixture(scope="module")
def speech(librivox) -> np.ndarray:
    audio, _ = concat_with_silences([c.audio for c in librivox[:2]], gap=1.0, lead=0.5)
    return audio


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory, speech) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("audio_files")
    out = {
        name: encode(root / name, speech, SR, fmt=f, codec=c, rate=r, layout=lay)
        for name, (f, c, r, lay) in FORMATS.items()
    }
    cover = face_photo()[::4, ::4].copy()  # a face on the cover must not become a "speaker"
    out["cover.mp3"] = encode(root / "cover.mp3", speech, SR, fmt="mp3", codec="libmp3lame", rate=44100, layout="mono",
                              cover=cover)
    out["cover.flac"] = encode(root / "cover.flac", speech, SR, fmt="flac", codec="flac", rate=44100, layout="mono",
                               cover=cover)
    return out


@pytest.mark.parametrize("name", [*FORMATS, "cover.mp3", "cover.flac"])
def test_each_audio_format_extracts_as_audio_only(audio_files, speech, name):
    extracted = PyAvExtractor().extract(str(audio_files[name]), SR)
    assert not extracted.info.has_video and extracted.corrupt_packets == 0
    assert video_info(audio_files[name]) is None  # cover art is not video
    assert abs(len(extracted.audio) - len(speech)) < 0.08 * SR
    n = min(len(speech), len(extracted.audio))
    # the right signal, in place (lossy codecs: correlation, not equality; raw ADTS AAC cannot signal its 48 ms of
    # encoder priming, so it comes out that much late, as from ffmpeg)
    lags = range(-160, 161, 4) if name != "speech.aac" else range(0, 1000, 2)
    best = max(float(np.corrcoef(np.roll(extracted.audio[:n], -lag), speech[:n])[0, 1]) for lag in lags)
    assert best > 0.9


def test_folder_scan_takes_audio_files_and_says_what_it_skipped(tmp_path, audio_files, caplog):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name, path in audio_files.items():
        (folder / "sub" / name.upper() if name == "speech.wav" else folder / name).write_bytes(path.read_bytes())
    (folder / "talk.mp4").write_bytes(b"")  # a video extension: taken (extract judges the content)
    for junk in ("notes.txt", "readme.txt", "cover.jpg", "Makefile", "._talk.mp4", ".hidden/x.mp4"):
        (folder / junk).parent.mkdir(parents=True, exist_ok=True)
        (folder / junk).write_text("x")
    cfg = compose_pipeline(f"input={folder}", f"run_dir={tmp_path / 'run'}")
    with caplog.at_level(logging.WARNING, logger="mikupal.runner"):
        videos = resolve_inputs(folder, cfg.media.video_extensions, cfg.media.list_extensions,
                                cfg.media.audio_extensions)
    names = sorted(Path(v.source).name for v in videos)
    assert names == sorted([n for n in audio_files if n != "speech.wav"] + ["SPEECH.WAV", "talk.mp4"])
    messages = [r.getMessage() for r in caplog.records]
    other = next(m for m in messages if "not a video or audio extension" in m)
    assert "skipped 4 file(s)" in other and "2 .txt" in other and "1 .jpg" in other and "1 (no extension)" in other
    assert "media.audio_extensions" in other  # says how to include them
    hidden = next(m for m in messages if "hidden" in m)
    assert "skipped 2 file(s)" in hidden and "2 .mp4" in hidden
    # without audio extensions the audio files are skipped, and the scan says so
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mikupal.runner"):
        videos = resolve_inputs(folder, cfg.media.video_extensions, cfg.media.list_extensions)
    assert [Path(v.source).name for v in videos] == ["talk.mp4"]
    assert "1 .m4a" in caplog.text and "2 .mp3" in caplog.text


def test_audio_files_run_the_audio_path_and_the_annotator_with_audio_and_text(tmp_path, audio_files, speech):
    """extract → vad → asr → faces → asd → annotate (Gemini stub) → filter on an .m4a, an .mp3 with a face on
    its cover, and a video beside them: the audio files' utterances get text, face null, and an annotation made
    from their audio; nothing is an error."""
    from mikupal.testing.servers import GeminiStub

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("speech.m4a", "cover.mp3"):
        (folder / name).write_bytes(audio_files[name].read_bytes())
    photo = face_photo()[::4, ::4]
    write_video(folder / "talk.mp4", speech, SR, lambda i, t: photo, duration=len(speech) / SR, fps=5)
    retry = "max_attempts:2,initial_delay:0.001,max_delay:0.01,multiplier:2.0,jitter:0.0,max_server_delay:1.0"
    with GeminiStub(max_lifetime=300) as stub:
        overrides = [
            f"input={folder}", f"run_dir={tmp_path / 'run'}", "separate=passthrough", "vad=energy", "asr=pocketsphinx",
            "annotator=gemini", "labels=meld7", f"annotator.base_url={stub.url}",
            "annotator.api_key_env=MIKUPAL_TEST_AUDIO_KEY", f"annotator.retry={{{retry}}}", "annotator.timeout=5",
            "stages=[extract,separate,vad,asr,faces,asd,annotate,filter]", "fail_fast=true",
        ]
        import os

        os.environ["MIKUPAL_TEST_AUDIO_KEY"] = "sk-test-audio-only"
        try:
            summary = run_pipeline(compose_pipeline(*overrides))
        finally:
            os.environ.pop("MIKUPAL_TEST_AUDIO_KEY", None)
        requests = list(stub.generate_requests)
        parts = [set(m for m, _ in stub.inline_parts(r)) for r in requests]
        texts = [r.first_user_text for r in requests]
    assert summary["complete"] and summary["errors"] == 0, summary
    run = tmp_path / "run"
    utterances = [json.loads(line) for line in (run / "utterances.jsonl").read_text().splitlines() if line.strip()]
    audio_only = [u for u in utterances if not u["source"].endswith(".mp4")]
    assert {Path(u["source"]).name for u in audio_only} == {"speech.m4a", "cover.mp3"}
    assert len(audio_only) >= 4  # two LibriVox sentences in each
    for u in audio_only:
        assert u["face"] is None and u["text"] and u["emotion"] is not None
        assert (run / u["audio"]).is_file()
    counters = summary["counters"]
    n_audio_utts = len(audio_only)
    assert counters["faces.no_video"] == n_audio_utts
    assert counters["asd.no_face.no_video"] == n_audio_utts
    assert "faces.error" not in counters and "asd.no_face.asd_error" not in counters
    # the annotator got each audio-only utterance's audio (never a video) and its transcript
    for u in audio_only:
        i = next(k for k, t in enumerate(texts) if u["text"] in t)
        assert parts[i] == {"audio/flac"}
