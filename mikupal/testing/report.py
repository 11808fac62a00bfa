"""Helpers of the report tests: run directories for reports (reusing the one Utterance factory of
:mod:`mikupal.testing.records`), real pipeline output cut short, and readers of the site's data files.

``write_report_run`` writes a finished run directory through :mod:`mikupal.testing.records`, with the fields that later
stages add (``emotion.confidence``, ``speaker``, ``quality``), real H.264/AAC face clips (the scikit-image astronaut
photo), one missing face clip, one missing audio file, a hostile transcript and rationale, and absolute paths in
sources and error messages.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mikupal.testing.records import LABELS, RunDir, make_utterance, write_audio, write_stage_json
from mikupal.testing.rundirs import drop_finish

HOSTILE_TEXT = '<script>alert("x")</script> "><img src=x onerror=alert(1)> & more'
HOSTILE_RATIONALE = '</p><script>alert(2)</script><b onmouseover="alert(3)">bold</b>'
SECRET_DIR = "/home/alice/secret-videos"


@dataclass
class ReportRun:
    """A run directory for the report tests and what is known about it."""

    path: Path
    records: list[dict]
    missing_clip: str  # id of the utterance whose face clip file is missing
    missing_audio: str  # id of the utterance whose audio file is missing
    no_face: str  # id of the utterance without a face
    hostile: str  # id of the utterance with the hostile transcript


def write_report_run(path: Path, videos: int = 3, per_video: int = 5, clips: bool = True) -> ReportRun:
    """Write a finished run directory (see the module docstring)."""
    from mikupal.testing.media import face_photo, write_video

    run = RunDir(path)
    path.mkdir(parents=True, exist_ok=True)
    run.manifest.touch()
    photo = face_photo()[::4, ::4]  # 128x128 real face
    records = []
    n = 0
    for v in range(videos):
        video = f"talk{v}-{v:08x}"
        for i in range(per_video):
            record = make_utterance(video, i, label=LABELS[n % len(LABELS)], seconds=1.0 + 0.25 * (n % 3)).to_dict()
            record["source"] = f"{SECRET_DIR}/{video}.mp4"
            record["emotion"]["confidence"] = round(0.05 + 0.9 * n / (videos * per_video), 3)
            record["emotion"]["intensity"] = round(0.2 + 0.05 * (n % 10), 3)
            record["speaker"] = {"id": f"{video}-spk{i % 2}", "similarity": 0.7 + 0.01 * i} if v < 2 else None
            if n % 4:
                record["quality"] = {"dnsmos_sig": 3.0 + 0.1 * (n % 5), "dnsmos_bak": 3.8, "dnsmos_ovrl": 2.7 + 0.1 * (n % 4),
                                     "dnsmos_p808": 3.3}
            else:
                record["quality"] = None
            seconds = record["end"] - record["start"]
            write_audio(path / record["audio"], seconds, freq=220.0 + 30 * n, seed=n)
            if clips and record["face"] is not None:
                t = np.arange(int(seconds * 16000)) / 16000
                audio = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
                write_video(path / record["face"]["clip"], audio, 16000, lambda k, t: photo, duration=seconds, fps=10)
            records.append(record)
            n += 1
    hostile, missing_clip, missing_audio, no_face = records[1], records[2], records[3], records[4]
    hostile["text"] = HOSTILE_TEXT
    hostile["emotion"]["rationale"] = HOSTILE_RATIONALE
    if clips:
        (path / missing_clip["face"]["clip"]).unlink()
    (path / missing_audio["audio"]).unlink()
    no_face["face"] = None
    for record in records:
        run.append_line(json.dumps(record))
    summary = {
        "complete": True, "stopped": None, "videos": videos + 1, "hours_in": 0.05,
        "utterances_out": len(records), "hours_out": sum(r["end"] - r["start"] for r in records) / 3600,
        "drops": {"vad.too_short": 4, "filter.asd_below_min": 2}, "errors": 1, "errors_by_stage": {"extract": 1},
        "stages": {name: {"items_done": videos, "outputs": len(records), "dropped": 0, "errors": int(name == "extract"),
                          "wall_time_s": 2.5} for name in ("extract", "separate", "vad", "asr", "annotate", "filter")},
        "counters": {}, "cost_usd": 0.0, "shard": {"rank": 0, "world_size": 1}, "mikupal_version": "0.1.0",
    }
    (path / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    error = {"stage": "extract", "item_id": "broken-00000bad", "error_type": "InvalidDataError",
             "message": f"{SECRET_DIR}/broken.mp4: Invalid data found <b>when</b> processing input",
             "source": f"{SECRET_DIR}/broken.mp4"}
    (path / "errors.jsonl").write_text(json.dumps(error) + "\n", encoding="utf-8")
    write_stage_json(path, "annotate", {"labels": "emobench26"})
    return ReportRun(path, records, missing_clip["id"], missing_audio["id"], no_face["id"], hostile["id"])


def fast_pipeline(video: Path, run: Path) -> dict:
    from mikupal.runner import run_pipeline
    from mikupal.testing.config import compose_pipeline

    return run_pipeline(compose_pipeline(
        f"input={video}", f"run_dir={run}", "separate=passthrough", "vad=energy",
        "stages=[extract,separate,vad,filter]", "filter.require_text=false", "fail_fast=true"))


def make_in_progress(run: Path, keep_stages: set[str]) -> None:
    """What a run killed before the stages outside ``keep_stages`` started leaves behind."""
    drop_finish(run)
    for stage in ("extract", "separate", "vad", "filter"):
        if stage not in keep_stages:
            shutil.rmtree(run / stage, ignore_errors=True)
    for audio in (run / "audio").glob("*") if "vad" not in keep_stages else []:
        audio.unlink()




def read_call(path: Path, function: str) -> list:
    """The JSON arguments of the one ``function(...)`` call a data file makes."""
    text = path.read_text(encoding="utf-8").strip()
    assert text.startswith(function + "(") and text.endswith(");"), text[:80]
    return json.loads("[" + text[len(function) + 1:-2] + "]")


def site_rows(out: Path) -> tuple[dict, list[dict]]:
    """The index and every row of a written site, read back from its data files."""
    (index,) = read_call(out / "data" / "index.js", "MIKU.setIndex")
    rows = []
    for k in range(1, index["chunks"] + 1):
        n, chunk = read_call(out / "data" / f"chunk-{k:04d}.js", "MIKU.addChunk")
        assert n == k
        rows += chunk
    return index, rows
