"""Benchmark the executors: wall time of the local executor against ``runner=ray`` with 1 and 2 workers.

Input: ``--videos`` MP4s (still frame of a real face photo, AAC audio) of real read speech from Debian
``pocketsphinx-testdata`` (the five LibriVox clips, each video a different rotation of them, ~``--seconds`` long),
built at run time; nothing is committed.

Pipeline: extract (PyAV) -> separate=passthrough -> vad=energy -> asr=faster_whisper (Whisper base, int8,
``asr.cpu_threads=1``) -> filter, so ASR is the work that scales. Each configuration runs as the ``mikupal`` command
in a fresh child process on a fresh run directory, and its wall time is the whole command (Ray start-up included):

* ``local``: ``runner=local`` (one process, one thread: ``OMP_NUM_THREADS=1``);
* ``ray 1 worker``: ``runner=ray runner.num_cpus=1`` (one task slot; each task gets ``OMP_NUM_THREADS=1`` from Ray);
* ``ray 2 workers``: ``runner=ray runner.num_cpus=2``.

The Ray runs use ``runner.world_size`` = workers x ``--ranks-per-worker`` (default 1; more ranks than slots balance
videos between the workers, at the price of one model load per rank and stage). The output of every run is compared byte for byte with the local one. Targets: Ray at most 10% over local
with 1 worker; 2 workers at least 1.6x as fast as 1. The load average is printed: other processes on a shared
2-core machine inflate wall times.

Usage::

    python benchmarks/bench_scale.py [--videos 6] [--seconds 20] [--ranks-per-worker 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TARGET_RAY_OVERHEAD = 0.10
TARGET_SPEEDUP = 1.6


def build_inputs(folder: Path, n_videos: int, seconds: float) -> float:
    """Write ``n_videos`` speech MP4s; returns their total audio duration in seconds."""
    from mikupal.testing.media import concat_with_silences, face_photo, librivox_clips, write_video

    clips = [c.audio for c in librivox_clips()]
    photo = face_photo()[::4, ::4]
    total = 0.0
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_videos):
        order = clips[i % len(clips):] + clips[: i % len(clips)]
        pieces, length = [], 0.0
        while length < seconds:
            piece = order[len(pieces) % len(order)]
            pieces.append(piece)
            length += len(piece) / 16000 + 1.0
        audio, _ = concat_with_silences(pieces, gap=1.0, lead=0.5)
        write_video(folder / f"talk{i:02d}.mp4", audio, 16000, lambda k, t: photo, duration=len(audio) / 16000, fps=5)
        total += len(audio) / 16000
    return total


def run(name: str, overrides: list[str], inputs: Path, run_dir: Path) -> dict:
    """One ``mikupal`` command in a child process; returns its wall time and summary."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "mikupal.cli", f"input={inputs}", f"run_dir={run_dir}", "separate=passthrough",
           "vad=energy", "asr=faster_whisper", "asr.cpu_threads=1", "runner.device=cpu",
           "stages=[extract,separate,vad,asr,filter]", *overrides]
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{name} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"name": name, "wall": wall, "summary": summary, "utterances": (run_dir / "utterances.jsonl").read_bytes()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=20.0, help="approximate audio length of each video")
    parser.add_argument("--ranks-per-worker", type=int, default=1, help="runner.world_size per Ray worker")
    parser.add_argument("--keep", type=Path, help="keep inputs and run directories here")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    audio_s = build_inputs(root / "videos", args.videos, args.seconds)
    print(f"input: {args.videos} videos, {audio_s:.1f} s of audio; load average before: {os.getloadavg()}")
    configs = [
        ("local", ["runner=local"]),
        ("ray 1 worker", ["runner=ray", "runner.num_cpus=1", f"runner.world_size={args.ranks_per_worker}"]),
        ("ray 2 workers", ["runner=ray", "runner.num_cpus=2", f"runner.world_size={2 * args.ranks_per_worker}"]),
    ]
    results = [run(name, o, root / "videos", root / name.replace(" ", "_")) for name, o in configs]
    local, ray1, ray2 = results

    print(f"\n{'executor':<14} {'wall s':>8} {'vs local':>9} {'Ray start s':>12} {'stage waves s':>14} "
          f"{'utterances':>11} {'asr CPU s':>10} {'asr h/CPU-h':>12} {'same output':>12}")
    for r in results:
        asr = r["summary"]["stages"]["asr"]
        ex = r["summary"].get("executor") or {}
        start = f"{ex['connect_s']:.1f}" if ex else "-"
        waves = f"{sum(ex['waves_s'].values()):.1f}" if ex else "-"
        print(f"{r['name']:<14} {r['wall']:>8.1f} {r['wall'] / local['wall']:>8.2f}x {start:>12} {waves:>14} "
              f"{r['summary']['utterances_out']:>11} {asr['cpu_time_s']:>10.1f} {asr['audio_hours_per_cpu_hour']:>12.1f} "
              f"{str(r['utterances'] == local['utterances']):>12}")
    overhead = ray1["wall"] / local["wall"] - 1
    speedup = ray1["wall"] / ray2["wall"]
    print(f"\nRay overhead at 1 worker: {overhead * 100:+.1f}% (target <= {TARGET_RAY_OVERHEAD * 100:.0f}%): "
          f"{'met' if overhead <= TARGET_RAY_OVERHEAD else 'NOT met'}")
    waves = [sum(r["summary"]["executor"]["waves_s"].values()) for r in (ray1, ray2)]
    print(f"stage waves only (Ray start-up excluded): 2 workers vs 1: {waves[0] / waves[1]:.2f}x faster")
    print(f"2 workers vs 1: {speedup:.2f}x faster (target >= {TARGET_SPEEDUP}x): "
          f"{'met' if speedup >= TARGET_SPEEDUP else 'NOT met'}")
    print(f"load average after: {os.getloadavg()}")
    if not all(r["utterances"] == local["utterances"] for r in results):
        sys.exit("outputs differ between executors")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
