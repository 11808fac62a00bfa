"""Benchmark the executors: wall time of the local executor against ``runner=ray`` with 1 and 2 workers.

Inputs (built at run time, nothing committed): MP4s (still frame of a real face photo, AAC audio) of real read
speech from Debian ``pocketsphinx-testdata`` (the five LibriVox clips, each video a different rotation of them).
Two sizes run by default, so that fixed costs (Ray's start-up) are seen for what they are: the small input of the
issue (``--small 6x20``: 6 videos of ~20 s) and a realistic larger one (``--large 8x60``: 8 videos of ~60 s).

Pipeline: extract (PyAV) -> separate=passthrough -> vad=energy -> asr=faster_whisper (Whisper base, int8,
``asr.cpu_threads=1``) -> filter, so ASR is the work that scales. Each configuration runs as the ``mikupal`` command
in a fresh child process on a fresh run directory, and its wall time is the whole command (Ray start-up included).
Every configuration uses one thread per worker (``OMP_NUM_THREADS=1``, ``asr.cpu_threads=1``), the local one too:

* ``local``: ``runner=local`` (one process, one thread);
* ``ray 1 worker``: ``runner=ray runner.num_cpus=1`` (one task slot);
* ``ray 2 workers``: ``runner=ray runner.num_cpus=2``.

Both Ray runs use the same ``runner.world_size`` (``--world-size``, default 12): more ranks than workers, so that
Ray balances videos between the workers (videos go to ranks by a hash of their path, which is uneven over 2 ranks);
a worker loads Whisper once for all the ranks it runs (``runner.keep_backends``), and the table counts the loads.
The configurations are interleaved (local, ray 1, ray 2, then again for each repeat) and the table gives medians.
The output of every run is compared byte for byte with the local one. Targets: Ray at most 10% over local with 1
worker; 2 workers at least 1.6x as fast as 1. The load average is printed: other processes on a shared 2-core
machine inflate wall times.

Usage (the README's table)::

    python benchmarks/bench_scale.py                      # both inputs, 1 repeat
    python benchmarks/bench_scale.py --repeats 3 --sizes 6x20 8x60 [--world-size 12] [--keep DIR]
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


def run_size(root: Path, n_videos: int, seconds: float, world_size: int, repeats: int) -> list[dict]:
    """Build one input and run the three configurations ``repeats`` times, interleaved; returns their medians."""
    folder = root / f"{n_videos}x{seconds:g}"
    audio_s = build_inputs(folder / "videos", n_videos, seconds)
    configs = [
        ("local", ["runner=local"]),
        ("ray 1 worker", ["runner=ray", "runner.num_cpus=1", f"runner.world_size={world_size}"]),
        ("ray 2 workers", ["runner=ray", "runner.num_cpus=2", f"runner.world_size={world_size}"]),
    ]
    runs: dict[str, list[dict]] = {name: [] for name, _ in configs}
    for repeat in range(repeats):
        for name, overrides in configs:
            run_dir = folder / f"{name.replace(' ', '_')}-{repeat}"
            runs[name].append(run(name, overrides, folder / "videos", run_dir))
            print(f"  {n_videos}x{seconds:g} {name} #{repeat + 1}: {runs[name][-1]['wall']:.1f} s "
                  f"(load average {os.getloadavg()[0]:.2f})", flush=True)
    reference = runs["local"][0]["utterances"]
    rows = []
    for name, _ in configs:
        walls = [r["wall"] for r in runs[name]]
        ex = [r["summary"].get("executor") for r in runs[name]]
        tasks = ex[0]["tasks"] if ex[0] else []
        rows.append({
            "input": f"{n_videos} x {seconds:g} s ({audio_s:.0f} s audio)",
            "name": name,
            "wall": float(np.median(walls)),
            "walls": walls,
            "connect": float(np.median([e["connect_s"] for e in ex])) if ex[0] else None,
            "asr_loads": sum(t["built"] for t in tasks if t["stage"] == "asr") if ex[0] else 1,
            "utterances": runs[name][0]["summary"]["utterances_out"],
            "same": all(r["utterances"] == reference for r in runs[name]),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["6x20", "8x60"], help="inputs as VIDEOSxSECONDS")
    parser.add_argument("--world-size", type=int, default=12, help="runner.world_size of both Ray runs")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each configuration (median reported)")
    parser.add_argument("--keep", type=Path, help="keep inputs and run directories here")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    load_before = os.getloadavg()
    from mikupal.testing.machine import this_machine
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}; "
          f"{this_machine().describe()}; runner.world_size={args.world_size} for Ray; {args.repeats} repeat(s)",
          flush=True)
    rows = []
    for size in args.sizes:
        n, _, sec = size.partition("x")
        rows += run_size(root, int(n), float(sec), args.world_size, args.repeats)
    load_after = os.getloadavg()

    print(f"\nAll runs one thread per worker (OMP_NUM_THREADS=1, asr.cpu_threads=1), local included; wall = median "
          f"of {args.repeats}, whole mikupal command.")
    print(f"{'input':<26} {'executor':<14} {'wall s':>8} {'vs local':>9} {'vs 1 worker':>12} {'Ray start s':>12} "
          f"{'Whisper loads':>14} {'utterances':>11} {'same output':>12}")
    verdicts = []
    for i in range(0, len(rows), 3):
        local, ray1, ray2 = rows[i : i + 3]
        for r in (local, ray1, ray2):
            vs1 = f"{ray1['wall'] / r['wall']:.2f}x" if r is not local else "-"
            start = f"{r['connect']:.1f}" if r["connect"] is not None else "-"
            print(f"{r['input']:<26} {r['name']:<14} {r['wall']:>8.1f} {r['wall'] / local['wall']:>8.2f}x {vs1:>12} "
                  f"{start:>12} {r['asr_loads']:>14} {r['utterances']:>11} {str(r['same']):>12}")
        overhead = ray1["wall"] / local["wall"] - 1
        speedup = ray1["wall"] / ray2["wall"]
        verdicts.append(
            f"{local['input']}: Ray at 1 worker {overhead * 100:+.1f}% over local (target <= "
            f"{TARGET_RAY_OVERHEAD * 100:.0f}%: {'met' if overhead <= TARGET_RAY_OVERHEAD else 'NOT met'}); "
            f"2 workers {speedup:.2f}x as fast as 1 (target >= {TARGET_SPEEDUP}x: "
            f"{'met' if speedup >= TARGET_SPEEDUP else 'NOT met'})"
        )
    print("\n" + "\n".join(verdicts))
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1-minute; "
          f"5-minute after {load_after[1]:.2f})")
    if not all(r["same"] for r in rows):
        sys.exit("outputs differ between executors")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
