"""The vision stages in the real pipeline (run_pipeline): extract → separate → vad → asr → faces → asd → filter."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mikupal.media import read_audio
from mikupal.runner import run_pipeline
from mikupal.testing.config import compose_pipeline
from mikupal.testing.media import write_video
from mikupal.testing.talking_faces import two_speaker_clip
from mikupal.testing.vision import probe_clip


def _audio_backends() -> list[str]:
    """Silero VAD + PocketSphinx ASR (real models); the model-free energy VAD without ASR if they are not installed."""
    import importlib.util

    if importlib.util.find_spec("mikupal.vad.silero") and importlib.util.find_spec("mikupal.asr.pocketsphinx"):
        return ["vad=silero", "asr=pocketsphinx", "stages=[extract,separate,vad,asr,faces,asd,filter]"]
    return ["vad=energy", "stages=[extract,separate,vad,faces,asd,filter]", "filter.require_text=false"]


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, speech_data):
    root = tmp_path_factory.mktemp("pipeline")
    videos = root / "videos"
    clip = two_speaker_clip(videos / "talk.mp4", n_utterances=6, panel=256, gap=1.0)
    # an audio-only source in the same run: its utterances must come through with face null
    write_video(videos / "radio.mp4", clip.audio[: 8 * 16000], 16000, None, duration=8.0)
    overrides = [f"input={videos}", f"run_dir={root / 'run'}", "separate=passthrough", "fail_fast=true"]
    overrides += _audio_backends()
    summary = run_pipeline(compose_pipeline(*overrides))
    return clip, root / "run", summary, overrides


def _utterances(run):
    return [json.loads(line) for line in (run / "utterances.jsonl").read_text().splitlines() if line.strip()]


def test_pipeline_assigns_the_speaking_face(pipeline_run):
    clip, run, summary, _ = pipeline_run
    assert summary["complete"] and summary["errors"] == 0
    talk = [u for u in _utterances(run) if u["source"].endswith("talk.mp4")]
    assert len(talk) >= 6
    correct = 0
    for u in talk:
        mid = (u["start"] + u["end"]) / 2
        seg = next((s for s in clip.segments if s.start - 0.2 <= mid <= s.end + 0.2), None)
        assert seg is not None, u
        face = u["face"]
        if face is not None:
            side = int((face["box"][0] + face["box"][2]) / 2 >= clip.size[0] / 2)
            correct += side == seg.speaker
            assert face["clip"] == f"faces/{u['id']}.mp4" and (run / face["clip"]).is_file()
            info = probe_clip(run / face["clip"])
            assert info["size"] == (224, 224) and abs(info["duration"] - (u["end"] - u["start"])) < 0.2
    assert correct >= len(talk) - 1


def test_audio_only_source_keeps_its_utterances(pipeline_run):
    clip, run, summary, _ = pipeline_run
    radio = [u for u in _utterances(run) if u["source"].endswith("radio.mp4")]
    assert len(radio) >= 2
    with_asr = "asr" in summary["stages"]
    for u in radio:
        assert u["face"] is None and (u["text"] or not with_asr)
        assert np.abs(read_audio(run / u["audio"])).max() > 0.05
    counters = summary["counters"]
    assert counters["faces.no_video"] == len(radio) and counters["asd.no_face.no_video"] == len(radio)
    assert counters["asd.face"] >= 5
    assert summary["stages"]["faces"]["errors"] == 0 and summary["stages"]["asd"]["errors"] == 0
    assert (run / "faces" / "stage.json").is_file() and (run / "asd" / "stage.json").is_file()


def test_rerun_resumes_without_redoing_vision_work(pipeline_run):
    clip, run, summary, overrides = pipeline_run

    def artifacts():
        paths = [
            *(run / "faces" / "tracks").glob("*.json"),
            *(run / "faces").glob("*.mp4"),
            *(run / "asd" / "scores").glob("*"),
        ]
        return {p: p.stat().st_mtime_ns for p in paths}

    before = artifacts()
    assert len(before) > 20
    again = run_pipeline(compose_pipeline(*overrides))
    assert again["stages"]["faces"]["items_done"] == summary["stages"]["faces"]["items_done"]
    assert again["utterances_out"] == summary["utterances_out"]
    assert artifacts() == before  # no track artifact, clip or score rewritten
