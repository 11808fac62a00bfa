"""Our audio path against faster-whisper's ``BatchedInferencePipeline``, whole processes, in one run (issue 15).

Both sides start a fresh Python process per run, so imports, model loading and (ours) Hydra composition count:

* **ours**: ``mikupal stages=[extract,separate,vad,asr] separate=passthrough`` (the CLI's config: PyAV extract,
  Silero VAD, faster-whisper base int8 with packed, batched windows and word timestamps);
* **batched**: ``BatchedInferencePipeline(WhisperModel(<the same whisper-base folder>, int8, 2 CPU threads))``
  ``.transcribe(audio, batch_size=8, word_timestamps=True)`` (its own Silero VAD, what a WhisperX-style user
  would run instead).

Inputs, built at run time from Debian ``pocketsphinx-testdata`` (nothing committed): the five LibriVox clips joined
with 1.5 s silences (33.7 s, :func:`mikupal.testing.audio_eval.librivox_test_set`) and that set repeated four
times (~129 s); each clean and with real music (``asterisk-moh-opsound-wav``) mixed in at ``--snr`` dB over the
speech. WER is the corpus WER of all output text joined in time order against the joined references
(:func:`mikupal.testing.audio_eval.corpus_wer`).

Times are medians of ``--runs`` runs per cell (wall clock and CPU time, user + system over all threads, of the
whole child process); the two sides alternate run by run. The machine may be shared, so absolute times are
noisy: the ratio of the two columns within one run is what counts, and CPU time is the steadier of the two. The fixed cost
and the cost per audio second are fitted from the two clip lengths (clean inputs).

Usage::

    python benchmarks/bench_asr_vs_batched.py [--runs 3] [--music-runs N] [--snr 3] [--keep DIR] [OVERRIDE ...]

Overrides are Hydra ``key=value`` pairs for our side (e.g. ``asr.batch_size=1``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("bench_asr_vs_batched")

RATE = 16000
#: The batched pipeline's settings that match the offline preset's Whisper.
BATCH_SIZE = 8
SIDES = ("ours", "batched")

THEIRS = r"""
import json, sys, time
from faster_whisper import BatchedInferencePipeline, WhisperModel
from faster_whisper.audio import decode_audio
model = WhisperModel(sys.argv[1], device="cpu", compute_type="int8", cpu_threads=2, local_files_only=True)
pipe = BatchedInferencePipeline(model)
segments, info = pipe.transcribe(decode_audio(sys.argv[2]), batch_size=int(sys.argv[3]), word_timestamps=True)
segments = list(segments)
print("BENCH_TEXT " + json.dumps([[s.start, s.text] for s in segments]))
"""


def build_inputs(work: Path, snr: float) -> dict[str, tuple[Path, float, str]]:
    """Write the four WAV inputs; returns ``name -> (path, duration s, joined reference)``."""
    from mikupal.media import write_audio
    from mikupal.testing.audio_eval import librivox_test_set, mix_music, music_track

    data = librivox_test_set()
    reference = " ".join(data.references)
    short, intervals = data.audio, data.speech_intervals
    length = len(short) / RATE
    long = np.concatenate([short] * 4)
    long_intervals = [(s + k * length, e + k * length) for k in range(4) for s, e in intervals]
    track = music_track()
    inputs = {}
    for name, audio, spans, ref in (
        ("33s", short, intervals, reference),
        ("129s", long, long_intervals, " ".join([reference] * 4)),
    ):
        for kind, signal in (("clean", audio), (f"music {snr:g} dB", mix_music(audio, track, snr, spans))):
            path = work / f"{name}-{kind.split()[0]}.wav"
            write_audio(path, signal, RATE)
            inputs[f"{name} {kind}"] = (path, len(signal) / RATE, ref)
    return inputs


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """Run ``cmd``; returns (wall s, CPU s (user + system, all threads), its peak RSS in GiB, stdout). Raises with
    its output when it fails."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read()
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[:4]} failed (exit {proc.returncode}):\n{stdout[-3000:]}\n{err.read()[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024**2, stdout


def run_ours(path: Path, run_dir: Path, overrides: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """Our CLI on ``path``; returns (wall s, CPU s, peak GiB, text joined in time order)."""
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [
        sys.executable, "-c", "from mikupal.cli import main; main()",
        f"input={path}", f"run_dir={run_dir}", "stages=[extract,separate,vad,asr]", "separate=passthrough",
        *overrides,
    ]
    wall, cpu, peak, _ = timed(cmd, env)
    rows = [json.loads(line) for line in (run_dir / "utterances.jsonl").read_text().splitlines() if line.strip()]
    text = " ".join(r["text"] or "" for r in sorted(rows, key=lambda r: r["start"]))
    return wall, cpu, peak, text


def run_theirs(model_dir: Path, path: Path, env: dict[str, str]) -> tuple[float, float, float, str]:
    """faster-whisper's batched pipeline on ``path``; returns (wall s, CPU s, peak GiB, text joined in time order)."""
    wall, cpu, peak, out = timed([sys.executable, "-c", THEIRS, str(model_dir), str(path), str(BATCH_SIZE)], env)
    line = next(ln for ln in out.splitlines() if ln.startswith("BENCH_TEXT "))
    segments = json.loads(line[len("BENCH_TEXT ") :])
    return wall, cpu, peak, " ".join(text for _, text in sorted(segments))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per clean input and side (medians; default 3)")
    parser.add_argument("--music-runs", type=int, help="runs per music input and side (default: --runs)")
    parser.add_argument("--snr", type=float, default=3.0, help="speech-to-music ratio of the music inputs (dB)")
    parser.add_argument("--keep", type=Path, help="keep inputs and run directories here")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for our side")
    args = parser.parse_args(argv)
    if args.music_runs is None:
        args.music_runs = args.runs
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from mikupal.registry import resolve
    from mikupal.testing.audio_eval import corpus_wer

    model_dir = resolve("whisper-base")
    work = args.keep or Path(tempfile.mkdtemp(prefix="mikupal-asr-vs-batched-"))
    work.mkdir(parents=True, exist_ok=True)
    inputs = build_inputs(work, args.snr)
    env = dict(os.environ, TQDM_DISABLE="1")
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    load_before = os.getloadavg()[0]
    rows = []
    for name, (path, duration, reference) in inputs.items():
        runs = args.runs if "clean" in name else args.music_runs
        if runs < 1:
            continue
        measured: dict[str, dict[str, list]] = {side: {"wall": [], "cpu": [], "peak": [], "text": []} for side in SIDES}
        for k in range(runs):  # the sides alternate run by run, so a change in machine load hits both alike
            for side in SIDES if k % 2 == 0 else SIDES[::-1]:
                if side == "ours":
                    result = run_ours(path, work / f"run-{path.stem}", args.overrides, env)
                else:
                    result = run_theirs(model_dir, path, env)
                for key, value in zip(("wall", "cpu", "peak", "text"), result):
                    measured[side][key].append(value)
                log.info("%-18s %-8s run %d: %.2f s wall, %.2f s CPU", name, side, k + 1, result[0], result[1])
        cell = {
            side: {
                "wall": statistics.median(m["wall"]),
                "cpu": statistics.median(m["cpu"]),
                "wer": corpus_wer([reference], [m["text"][-1]]),
                "peak": max(m["peak"]),
                "same_text": len(set(m["text"])) == 1,
            }
            for side, m in measured.items()
        }
        rows.append((name, duration, cell))
    load_after = os.getloadavg()[0]

    from mikupal.testing.machine import this_machine
    print(f"\nASR path, ours vs faster-whisper BatchedInferencePipeline (batch {BATCH_SIZE}, word timestamps, "
          f"whisper-base int8, 2 threads); medians of {args.runs} interleaved whole-process runs (music inputs: "
          f"{args.music_runs}); load average {load_before:.1f} before, {load_after:.1f} after; "
          f"{this_machine().describe()}. Absolute times are noisy on a shared machine: compare the ratio.\n")
    print("| input | audio s | ours s | batched s | ours / batched | ours CPU s | batched CPU s | ours WER | batched WER |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, duration, cell in rows:
        o, b = cell["ours"], cell["batched"]
        print(f"| {name} | {duration:.1f} | {o['wall']:.2f} | {b['wall']:.2f} | {o['wall'] / b['wall']:.2f} | "
              f"{o['cpu']:.2f} | {b['cpu']:.2f} | {o['wer']:.1%} | {b['wer']:.1%} |")
    for name, _, cell in rows:
        for side in SIDES:
            if not cell[side]["same_text"]:
                print(f"note: {side} gave different texts in different runs on {name} (WER of the last run)")
    clean = [(d, c) for n, d, c in rows if "clean" in n]
    if len(clean) == 2:
        (d1, c1), (d2, c2) = clean
        for side in SIDES:
            fits = []
            for key in ("wall", "cpu"):
                slope = (c2[side][key] - c1[side][key]) / (d2 - d1)
                fits.append(f"{key} {c1[side][key] - slope * d1:.2f} s + {slope:.3f} s per audio second")
            print(f"{side:>8}: fixed cost + cost per second, {'; '.join(fits)}")
    print(f"peak RSS of one process (GiB): "
          f"ours {max(c['ours']['peak'] for _, _, c in rows):.2f}, batched {max(c['batched']['peak'] for _, _, c in rows):.2f}")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
