"""Benchmark of mikupal-build: build time and peak memory against the time to read the audio once.

Generates a synthetic run directory (2–4 s of 16 kHz mono FLAC per utterance: tones with noise; realistic
Utterance records), then for each size builds the Parquet export in a fresh process and measures:

* read: time to read every audio file's bytes once (the floor for any export that embeds the audio),
* decode: time to decode every file once with soundfile (what "reading the audio" costs a training loader),
* build: wall time of ``export_dataset`` (scan + checks + Parquet with embedded audio + card),
* peak memory: the build process's maximum resident set size (``ru_maxrss``, worker processes included),
* CPU time (user + system, workers included) of decode and build: unlike wall time, it does not depend on
  what else runs on the machine.

Targets (issue 5): build <= 3 x read, peak memory <= 1 GiB and flat in the number of utterances.
The page cache is warm for every measurement (an untimed pass over the files comes first); each measurement
runs ``--repeats`` times in a fresh process and the fastest run is reported.

Usage::

    python benchmarks/bench_build.py                      # sizes 2500 and 10000, in a temp folder
    python benchmarks/bench_build.py --sizes 1000 --num-proc 1 2 --workdir /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SR = 16000
LABELS = ["Calmness", "Interest", "Joy", "Amusement", "Anger", "Sadness", "Surprise", "Confusion", "Excitement"]
PER_VIDEO = 25


def _write_one(args: tuple[str, int, float]) -> None:
    import soundfile as sf

    path, seed, seconds = args
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 80 * rng.random()
    # a voiced-like signal: harmonics with a slow pitch wobble and an amplitude envelope, plus noise
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / SR
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t + rng.random() * 6) ** 2
    signal = 0.2 * voice * envelope + 0.01 * rng.standard_normal(t.size)
    sf.write(path, signal.astype(np.float32), SR, format="FLAC", subtype="PCM_16")


def generate_run(run_dir: Path, n: int, seed: int = 0) -> None:
    """A run directory with ``n`` annotated utterances (2–4 s each), PER_VIDEO per video."""
    from mikupal.records import Emotion, Face, Utterance, Word

    (run_dir / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    durations = rng.uniform(2.0, 4.0, n)
    jobs = []
    with open(run_dir / "utterances.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            video = f"video{i // PER_VIDEO:05d}-{i // PER_VIDEO:08x}"
            uid = f"{video}-{i % PER_VIDEO:05d}"
            start = 5.0 * (i % PER_VIDEO)
            end = start + float(durations[i])
            label = LABELS[int(rng.integers(len(LABELS)))]
            utt = Utterance(
                id=uid, video_id=video, source=f"videos/{video}.mp4", start=start, end=end,
                audio=f"audio/{uid}.flac", text="well I did not expect that to happen today at all", language="en",
                words=[Word(w, start + 0.2 * k, start + 0.2 * k + 0.15, 0.9) for k, w in
                       enumerate("well I did not expect that to happen today at all".split())],
                # no face clip file is written (the benchmark measures the audio path), so none is named
                face=Face(track_id=0, box=[100.0, 80.0, 260.0, 260.0], asd_score=0.8, clip=None),
                emotion=Emotion(label=label, intensity=0.6, rationale="Raised pitch and a wide smile while laughing.",
                                scores=None, votes=[label] * 3, annotator="gemini-2.0-flash", prompt_version="v1"),
            )
            f.write(json.dumps(utt.to_dict()) + "\n")
            jobs.append((str(run_dir / utt.audio), seed * 1_000_003 + i, float(durations[i])))
    with mp.Pool(os.cpu_count() or 1) as pool:
        pool.map(_write_one, jobs, chunksize=64)


def subset_run(full: Path, run_dir: Path, n: int) -> None:
    """A run directory with the first ``n`` lines of ``full``, sharing its audio folder (symlink)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(full / "utterances.jsonl", encoding="utf-8") as src, open(run_dir / "utterances.jsonl", "w") as dst:
        for i, line in enumerate(src):
            if i >= n:
                break
            dst.write(line)
    link = run_dir / "audio"
    if not link.exists():
        link.symlink_to(full / "audio", target_is_directory=True)


_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time, logging
    sys.path.insert(0, {repo!r})
    mode, run_dir, out, num_proc = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    def cpu():
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

    if mode == "build":
        import datasets
        datasets.disable_progress_bars()
        logging.basicConfig(level=logging.WARNING)
        from builder.export import export_dataset
        from builder.miku_emobench import MikuEmoBenchConfig
        t, c = time.perf_counter(), cpu()
        r = export_dataset(MikuEmoBenchConfig(run_dirs=[run_dir]), out, num_proc=num_proc)
        seconds, cpu_seconds = time.perf_counter() - t, cpu() - c
        extra = {{"rows": sum(r.split_rows.values()), "parquet_bytes": r.parquet_bytes,
                  "shards": sum(len(v) for v in r.files.values())}}
    else:
        import soundfile as sf
        paths = [json.loads(line)["audio"] for line in open(run_dir + "/utterances.jsonl")]
        t, c = time.perf_counter(), cpu()
        total = 0
        for p in paths:
            if mode == "read":
                with open(run_dir + "/" + p, "rb") as f:
                    total += len(f.read())
            else:
                total += sf.read(run_dir + "/" + p, dtype="float32")[0].size
        seconds, cpu_seconds = time.perf_counter() - t, cpu() - c
        extra = {{"total": total}}
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({{"seconds": seconds, "cpu_seconds": cpu_seconds, "maxrss_kib": max(self_kb, child_kb),
                      **extra}}))
    """
)


def child(mode: str, run_dir: Path, out: Path | None = None, num_proc: int = 1) -> dict:
    """Run one measurement in a fresh Python process; returns its JSON report."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD.format(repo=str(REPO)), mode, str(run_dir), str(out or ""), str(num_proc)],
        capture_output=True, text=True, env=env, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def best(runs: list[dict]) -> dict:
    """The fastest of repeated runs (the least disturbed by other load on the machine)."""
    return min(runs, key=lambda r: r["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2500, 10000])
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1])
    parser.add_argument("--workdir", type=Path, default=None, help="where to generate (default: a temp folder)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the fastest is reported")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="mikupal-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    full = work / f"run_full_{max(args.sizes)}"
    load = os.getloadavg()[0]
    try:
        if not (full / "utterances.jsonl").exists():
            t = time.perf_counter()
            generate_run(full, max(args.sizes))
            print(f"generated {max(args.sizes):,} utterances in {time.perf_counter() - t:.1f} s under {full}",
                  file=sys.stderr)
        header = (
            f"{'utterances':>10} {'proc':>4} {'audio h':>7} {'audio MB':>8} | {'read s':>6} {'decode s':>8} "
            f"{'build s':>7} {'build/read':>10} {'build/decode':>12} | {'build cpu s':>11} {'cpu/decode cpu':>14} | "
            f"{'peak MiB':>8} {'parquet MB':>10} {'shards':>6}"
        )
        rows = []
        for n in sorted(args.sizes):
            run_dir = work / f"run_{n}"
            subset_run(full, run_dir, n)
            child("read", run_dir)  # warm the page cache (untimed)
            read = best([child("read", run_dir) for _ in range(args.repeats)])
            decode = best([child("decode", run_dir) for _ in range(args.repeats)])
            hours = decode["total"] / SR / 3600
            for num_proc in args.num_proc:
                out = work / f"out_{n}_{num_proc}"
                builds = []
                for _ in range(args.repeats):
                    shutil.rmtree(out, ignore_errors=True)
                    builds.append(child("build", run_dir, out, num_proc))
                    assert builds[-1]["rows"] == n, builds[-1]
                build = best(builds)
                peak = max(b["maxrss_kib"] for b in builds)
                rows.append(
                    f"{n:>10,} {num_proc:>4} {hours:>7.2f} {read['total'] / 1e6:>8.1f} | {read['seconds']:>6.2f} "
                    f"{decode['seconds']:>8.2f} {build['seconds']:>7.2f} {build['seconds'] / read['seconds']:>10.1f} "
                    f"{build['seconds'] / decode['seconds']:>12.2f} | {build['cpu_seconds']:>11.2f} "
                    f"{build['cpu_seconds'] / decode['cpu_seconds']:>14.2f} | {peak / 1024:>8.0f} "
                    f"{build['parquet_bytes'] / 1e6:>10.1f} {build['shards']:>6}"
                )
                shutil.rmtree(out, ignore_errors=True)
        from mikupal.testing.machine import this_machine
        print(
            f"mikupal-build benchmark: {this_machine().describe()}, load average at start {load:.1f}, warm page cache, "
            f"best of {args.repeats} runs (wall and CPU time), peak = largest max RSS of the build process and workers"
        )
        print(header)
        for row in rows:
            print(row)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
