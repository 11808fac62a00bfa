"""Benchmark the offline audio path: real-time factor per stage, whole-path RTF and peak memory.

Input: a multi-minute MP4 (H.264 still frame of a real face photo, AAC audio) of real read and spoken speech from
Debian ``pocketsphinx-testdata`` (the five LibriVox clips, the five ``cards`` utterances, ``goforward``,
``numbers``, ``something``), joined in a shuffled order with pauses of 0.3-1.5 s and repeated up to
``--minutes``. It is built at run time; nothing is committed.

The pipeline runs through :func:`mikupal.runner.run_pipeline` in a fresh child process, with the config the CLI
composes (``preset=offline``: extract=pyav, separate=rnnoise, vad=silero, asr=faster_whisper; plus filter), so
the timings include model loading and every file the stages write. Per-stage wall time comes from
``summary.json`` (``stages.*.wall_time_s``); RTF = wall time / audio duration. Peak memory is the child's
``ru_maxrss``. The machine's load average is printed too: other processes on a shared 2-core machine inflate wall
times, and CPU time (user + sys of the child) is given alongside as a check.

Usage::

    python benchmarks/bench_audio.py [--minutes 4] [--keep DIR] [OVERRIDE ...]

Overrides are Hydra ``key=value`` pairs passed to the pipeline (e.g. ``asr.beam_size=5`` or ``separate=passthrough``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path("/usr/share/pocketsphinx/test/data")
TARGET_RTF = 0.25
TARGET_PEAK_GIB = 2.0


def speech_pieces(rate: int = 16000) -> list[np.ndarray]:
    """Every 16 kHz speech recording of ``pocketsphinx-testdata`` (LibriVox, cards, goforward, numbers, something)."""
    from mikupal.media import read_audio
    from mikupal.testing.media import TestDataMissing

    if not DATA.is_dir():
        raise TestDataMissing(f"{DATA} not found: apt-get install pocketsphinx-testdata (or bash scripts/setup.sh)")
    pieces = [read_audio(p, rate) for p in sorted((DATA / "librivox").glob("*.wav"))]
    pieces += [read_audio(p, rate) for p in sorted((DATA / "cards").glob("*.wav"))]
    for name in ("goforward.raw", "numbers.raw", "something.raw"):
        pcm = np.fromfile(DATA / name, dtype="<i2").astype(np.float32) / 32768.0
        pieces.append(pcm)
    return pieces


def build_input(path: Path, minutes: float, seed: int = 0) -> float:
    """Write the benchmark MP4; returns its audio duration in seconds."""
    from mikupal.testing.media import face_photo, write_video

    rng = np.random.default_rng(seed)
    pieces = speech_pieces()
    target = minutes * 60 * 16000
    parts: list[np.ndarray] = [np.zeros(8000, np.float32)]
    total = len(parts[0])
    while total < target:
        for i in rng.permutation(len(pieces)):
            gap = np.zeros(int(rng.uniform(0.3, 1.5) * 16000), np.float32)
            parts += [pieces[i], gap]
            total += len(pieces[i]) + len(gap)
            if total >= target:
                break
    audio = np.concatenate(parts)
    photo = face_photo()[::2, ::2]
    write_video(path, audio, 16000, lambda i, t: photo, duration=len(audio) / 16000, fps=5)
    return len(audio) / 16000


def child(input_path: str, run_dir: str, overrides: list[str]) -> None:
    """Run the pipeline in this process and print a JSON line with the summary and resource use."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    from hydra import compose, initialize_config_dir

    from mikupal.paths import conf_dir
    from mikupal.runner import PipelineRunner

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(
            "pipeline",
            overrides=[f"input={input_path}", f"run_dir={run_dir}", "stages=[extract,separate,vad,asr,filter]", *overrides],
        )
    start = time.perf_counter()
    summary = PipelineRunner(cfg).run()  # the summary has each stage's wall and CPU time
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        "BENCH_RESULT "
        + json.dumps(
            {
                "summary": summary,
                "wall_s": wall,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "maxrss_kib": usage.ru_maxrss,
                "config": {k: str(cfg[k]._target_) if "_target_" in cfg[k] else None for k in ("separate", "vad", "asr")},
                "asr": {k: cfg.asr.get(k) for k in ("model", "compute_type", "cpu_threads", "beam_size", "language")},
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="length of the input (default 4 minutes)")
    parser.add_argument("--keep", type=Path, help="keep the input and run directory here")
    parser.add_argument("--input", type=Path, help="benchmark this media file instead of building one")
    parser.add_argument("--child", nargs=2, metavar=("INPUT", "RUN_DIR"), help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the pipeline")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], args.overrides)
        return 0

    work = args.keep or Path(tempfile.mkdtemp(prefix="mikupal-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.input:
        from mikupal.media import probe

        media, duration = args.input, float(probe(args.input).audio_duration or probe(args.input).duration or 0)
    else:
        media = work / "bench_speech.mp4"
        t = time.perf_counter()
        duration = build_input(media, args.minutes)
        print(f"built {media} ({duration:.1f} s of audio) in {time.perf_counter() - t:.1f} s")
    run_dir = work / "run"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    load_before = os.getloadavg()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(media), str(run_dir), *args.overrides],
        capture_output=True,
        text=True,
        check=False,
    )
    load_after = os.getloadavg()
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if proc.returncode != 0 or line is None:
        sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-5000:])
        print(f"benchmark run failed (exit {proc.returncode})")
        return 1
    result = json.loads(line[len("BENCH_RESULT ") :])
    summary = result["summary"]
    duration = summary["hours_in"] * 3600 or duration

    from mikupal.testing.machine import this_machine
    print(f"\nAudio path benchmark: {duration:.1f} s of real speech ({media.name}); "
          f"{this_machine().describe()}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"backends: {result['config']}; asr {result['asr']}")
    print(f"utterances out: {summary['utterances_out']}; drops: {summary['drops']}; errors: {summary['errors']}\n")
    print(f"{'stage':<10} {'wall s':>8} {'RTF':>7} {'CPU s':>8} {'CPU-RTF':>8}")
    total = total_cpu = 0.0
    for name, stage in summary["stages"].items():
        wall = stage["wall_time_s"] or 0.0
        cpu = stage["cpu_time_s"] or 0.0
        total += wall
        total_cpu += cpu
        print(f"{name:<10} {wall:>8.2f} {wall / duration:>7.3f} {cpu:>8.2f} {cpu / duration:>8.3f}")
    peak_gib = result["maxrss_kib"] / 1024**2
    print(f"{'audio path':<10} {total:>8.2f} {total / duration:>7.3f} {total_cpu:>8.2f} {total_cpu / duration:>8.3f}"
          f"   (target: RTF <= {TARGET_RTF})")
    print(f"process wall {result['wall_s']:.2f} s (RTF {result['wall_s'] / duration:.3f}); "
          f"CPU time {result['cpu_s']:.2f} s (CPU-RTF {result['cpu_s'] / duration:.3f})")
    print(f"peak memory (maxrss) {peak_gib:.2f} GiB   (target <= {TARGET_PEAK_GIB} GiB)")
    ok = total / duration <= TARGET_RTF and peak_gib <= TARGET_PEAK_GIB
    print("targets met" if ok else "TARGETS MISSED")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
