"""The whole default pipeline against the cost of decoding its media once (issue 15, target 3).

Builds a ~129 s 1280×720, 25 fps two-face clip at run time: the known-truth clip of
:func:`mikupal.testing.talking_faces.two_speaker_clip` (the astronaut photo twice, side by side, mouths driven by
real LibriVox / CMU speech from ``pocketsphinx-testdata``, the speaker alternating, the other face still or
mouthing other words), re-rendered with each face in a 640×640 panel centred vertically in a 1280×720 frame, with
the same audio track. Nothing is committed; with ``--workdir`` the clip is kept and reused.

Then, each in a fresh Python process, interleaved ``--repeats`` times:

* **decode floor**: PyAV decodes every video frame to RGB (``to_ndarray(format="rgb24")``, PyAV's default decoder
  threading, as the issue measured it) and the audio once, resampled to 16 kHz mono
  (:func:`mikupal.media.decode_audio`): what any pipeline reading this clip pays at least;
* **pipeline**: ``mikupal input=CLIP run_dir=DIR`` with the default stages and config (the offline preset), as a
  user runs it (``python -m mikupal.cli``), in a new run directory each time.

Printed: per stage, wall and CPU seconds and the real-time factor (wall / clip duration) from the run's
``summary.json``; the whole process's wall and CPU seconds (start-up, planning and the summary included), its ratio
to the decode floor (the target is <= 3), peak memory (``ru_maxrss`` of the child, its waited-for children
included; the issue's limit is 2 GiB) and the load average, and the CPU-bound wall: the pipeline's CPU time over
the machine's cores, the least wall time that much work can take there however well the stages overlap (its ratio
to the decode floor's wall bounds the wall ratio from below). Medians over repeats. On a shared machine, wall times
include waiting for the CPU; the CPU ratio is the steadier figure.

Usage::

    python benchmarks/bench_pipeline.py                              # one repeat, temp folder
    python benchmarks/bench_pipeline.py --repeats 3 --workdir /tmp/benchpipe
    python benchmarks/bench_pipeline.py --json out.json -- annotator.max_frames=8   # Hydra overrides after --
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

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

log = logging.getLogger("bench_pipeline")

SIZE = (1280, 720)
PANEL = 640
FPS = 25
#: The issue's target: whole pipeline wall time / decode-floor wall time.
TARGET_RATIO = 3.0
TARGET_PEAK_GIB = 2.0

DECODE = r"""
import json, sys, time
import av
from mikupal.media import decode_audio
t0, c0 = time.perf_counter(), time.process_time()
frames = 0
with av.open(sys.argv[1]) as container:
    stream = container.streams.video[0]
    for frame in container.decode(stream):
        frame.to_ndarray(format="rgb24")
        frames += 1
audio, _ = decode_audio(sys.argv[1], 16000)
print("BENCH " + json.dumps({"frames": frames, "audio_s": len(audio) / 16000,
                             "inner_wall_s": time.perf_counter() - t0, "inner_cpu_s": time.process_time() - c0}))
"""


def make_clip(path: Path, duration: float) -> dict:
    """Write the 1280×720 two-face clip of about ``duration`` seconds; returns its description (cached beside it)."""
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if abs(meta["target_duration"] - duration) < 1e-6:
            return meta
    import numpy as np

    from mikupal.testing.media import write_video
    from mikupal.testing.talking_faces import (
        astronaut_face,
        faces_frame,
        speech_corpus,
        speech_pieces,
        two_speaker_clip,
    )

    sr, gap = 16000, 0.8
    # utterances needed for the duration: the clip is gap + sum(piece + gap), pieces looping over the corpus
    lengths = [len(p) / sr for p in speech_pieces(speech_corpus(sr), sampling_rate=sr)]
    n, total = 0, gap
    while total < duration:
        total += lengths[n % len(lengths)] + gap
        n += 1
    t0 = time.perf_counter()
    small = two_speaker_clip(path.with_name(path.stem + "-panels.mp4"), n_utterances=n, panel=PANEL, fps=FPS, gap=gap)
    faces = [astronaut_face(0), astronaut_face(1)]
    top = (SIZE[1] - PANEL) // 2
    boxes = [(0, top, PANEL, top + PANEL), (PANEL, top, 2 * PANEL, top + PANEL)]
    openings = small.extra["openings"]

    def frame_at(i: int, _t: float) -> np.ndarray:
        return faces_frame(faces, openings[min(i, len(openings) - 1)], SIZE, boxes)

    write_video(path, small.audio, sr, frame_at, duration=small.duration, fps=FPS)
    small.path.unlink()
    meta = {
        "path": str(path),
        "target_duration": duration,
        "duration": small.duration,
        "size": list(SIZE),
        "fps": FPS,
        "utterances": len(small.segments),
        "speech_s": round(sum(s.end - s.start for s in small.segments), 3),
        "made_s": round(time.perf_counter() - t0, 1),
    }
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


def run_child(cmd: list[str], log_path: Path) -> dict:
    """Run ``cmd`` in a fresh process; returns wall and CPU seconds, peak RSS and its ``BENCH`` line."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    with open(log_path, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        code = os.waitstatus_to_exitcode(status)
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {code}); log {log_path}:\n{tail}")
    bench = {}
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("BENCH "):
            bench = json.loads(line[len("BENCH "):])
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "maxrss_mib": usage.ru_maxrss / 1024, **bench}


def decode_floor(clip: Path, log_path: Path) -> dict:
    """The decode floor in a fresh process."""
    return run_child([sys.executable, "-c", DECODE, str(clip)], log_path)


def pipeline(clip: Path, run_dir: Path, overrides: list[str], log_path: Path) -> dict:
    """The default pipeline in a fresh process; adds the run's ``summary.json`` as ``summary``."""
    cmd = [sys.executable, "-m", "mikupal.cli", f"input={clip}", f"run_dir={run_dir}", *overrides]
    out = run_child(cmd, log_path)
    out["summary"] = json.loads((run_dir / "summary.json").read_text())
    return out


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(
    meta: dict, decodes: list[dict], runs: list[dict], loads: list[tuple[float, float, float]]
) -> tuple[str, dict]:
    """The printed table and the numbers behind it."""
    from mikupal.rundir import STAGE_ORDER

    duration = meta["duration"]
    stages = [s for s in STAGE_ORDER if s in runs[0]["summary"]["stages"]]
    per_stage = {}
    for name in stages:
        wall = _median([r["summary"]["stages"][name]["wall_time_s"] for r in runs])
        cpu = _median([r["summary"]["stages"][name]["cpu_time_s"] for r in runs])
        per_stage[name] = {"wall_s": wall, "cpu_s": cpu, "rtf_wall": wall / duration, "rtf_cpu": cpu / duration}
    total_wall = _median([r["wall_s"] for r in runs])
    total_cpu = _median([r["cpu_s"] for r in runs])
    floor_wall = _median([d["wall_s"] for d in decodes])
    floor_cpu = _median([d["cpu_s"] for d in decodes])
    stage_wall = sum(s["wall_s"] for s in per_stage.values())
    stage_cpu = sum(s["cpu_s"] for s in per_stage.values())
    peak = max(r["maxrss_mib"] for r in runs)
    from mikupal.testing.machine import this_machine

    machine = this_machine()
    # the pipeline's CPU time spread perfectly over every core: no overlap of stages can make its wall time shorter
    cpu_bound_wall = total_cpu / machine.cores
    numbers = {
        "clip": meta,
        "stages": per_stage,
        "pipeline_wall_s": total_wall,
        "pipeline_cpu_s": total_cpu,
        "outside_stages_wall_s": total_wall - stage_wall,
        "outside_stages_cpu_s": total_cpu - stage_cpu,
        "decode_wall_s": floor_wall,
        "decode_cpu_s": floor_cpu,
        "ratio_wall": total_wall / floor_wall,
        "ratio_cpu": total_cpu / floor_cpu,
        "cpu_bound_wall_s": cpu_bound_wall,
        "ratio_cpu_bound_wall": cpu_bound_wall / floor_wall,
        "peak_rss_mib": peak,
        "utterances_out": runs[0]["summary"]["utterances_out"],
        "errors": runs[0]["summary"]["errors"],
        "load_average_1min": [round(x[0], 2) for x in loads],
        "repeats": len(runs),
        "decodes": len(decodes),
    }
    lines = [
        f"clip: {duration:.1f} s, {meta['size'][0]}x{meta['size'][1]} @ {meta['fps']} fps, two faces, "
        f"{meta['utterances']} utterances ({meta['speech_s']:.1f} s speech); medians of {len(runs)} pipeline run(s) "
        f"and {len(decodes)} decode(s)",
        "",
        f"{'stage':<10} {'wall s':>8} {'CPU s':>8} {'RTF wall':>9} {'RTF CPU':>8}",
    ]
    for name, s in per_stage.items():
        lines.append(f"{name:<10} {s['wall_s']:>8.2f} {s['cpu_s']:>8.2f} {s['rtf_wall']:>9.3f} {s['rtf_cpu']:>8.3f}")
    lines += [
        f"{'(outside)':<10} {numbers['outside_stages_wall_s']:>8.2f} {numbers['outside_stages_cpu_s']:>8.2f} "
        f"{numbers['outside_stages_wall_s'] / duration:>9.3f} {numbers['outside_stages_cpu_s'] / duration:>8.3f}"
        "   start-up, planning, summary",
        f"{'total':<10} {total_wall:>8.2f} {total_cpu:>8.2f} {total_wall / duration:>9.3f} "
        f"{total_cpu / duration:>8.3f}",
        "",
        f"decode floor (PyAV, all frames to RGB + audio once): wall {floor_wall:.2f} s, CPU {floor_cpu:.2f} s",
        f"pipeline / decode floor: wall {numbers['ratio_wall']:.2f}x, CPU {numbers['ratio_cpu']:.2f}x "
        f"(target <= {TARGET_RATIO:g}x)",
        f"CPU-bound wall (pipeline CPU / {machine.cores} cores): {cpu_bound_wall:.2f} s = "
        f"{numbers['ratio_cpu_bound_wall']:.2f}x the decode floor's wall: the least this much work can take here",
        f"peak memory (ru_maxrss of the pipeline process): {peak / 1024:.2f} GiB (limit {TARGET_PEAK_GIB:g} GiB)",
        f"utterances out: {numbers['utterances_out']}, errors: {numbers['errors']}",
        f"load average (1 min) before each child: {', '.join(f'{x:.2f}' for x in numbers['load_average_1min'])} "
        f"on {machine.describe()}",
    ]
    return "\n".join(lines), numbers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=129.0, help="clip length in seconds (default 129)")
    parser.add_argument("--repeats", type=int, default=1, help="pipeline runs (each between two decode runs)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("overrides", nargs="*", help="Hydra key=value overrides for the pipeline (after --)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_pipeline_")
        workdir = Path(tmp.name)
    else:
        workdir = args.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    try:
        clip_path = workdir / "two_face_720p.mp4"
        meta = make_clip(clip_path, args.duration)
        log.info("clip %s: %.1f s (made in %.1f s)", clip_path, meta["duration"], meta["made_s"])
        decodes, runs, loads = [], [], []
        for i in range(args.repeats):
            loads.append(os.getloadavg())
            decodes.append(decode_floor(clip_path, workdir / f"decode-{i}.log"))
            log.info("decode %d: %.2f s wall, %.2f s CPU", i, decodes[-1]["wall_s"], decodes[-1]["cpu_s"])
            run_dir = workdir / f"run-{i}"
            if run_dir.exists():
                import shutil

                shutil.rmtree(run_dir)
            loads.append(os.getloadavg())
            runs.append(pipeline(clip_path, run_dir, args.overrides, workdir / f"pipeline-{i}.log"))
            log.info("pipeline %d: %.2f s wall, %.2f s CPU", i, runs[-1]["wall_s"], runs[-1]["cpu_s"])
        loads.append(os.getloadavg())
        decodes.append(decode_floor(clip_path, workdir / f"decode-{args.repeats}.log"))
        table, numbers = report(meta, decodes, runs, loads)
        print(table)  # noqa: T201 - the benchmark's result
        if args.json:
            args.json.write_text(json.dumps(numbers, indent=1))
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
