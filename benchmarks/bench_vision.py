"""Benchmark of the vision path (``faces`` + ``asd`` stages): real-time factor and peak memory.

Makes a multi-minute 1280×720, 25 fps clip at run time (the astronaut photo, a real face, centred in the frame, its
mouth animated by real LibriVox / CMU speech from ``pocketsphinx-testdata``, muxed with that speech), cuts it into
utterances at the known speech segments (what the ``vad`` stage would give, without running it), and runs the
``faces`` stage (decode at 25 fps, BlazeFace, face mesh, tracking) and the ``asd`` stage (lip-sync scoring, 224×224
face clip encoding) over every utterance, in a fresh process so its peak memory is the vision path's alone.

Reported:

* RTF (wall): wall time of the two stages (model loading included) / duration — per video second and per second
  of analysed utterances (the vision path only decodes utterance windows);
* RTF (CPU): the same with the process's CPU time (user + system), which does not depend on other load on the
  machine (on a busy shared machine wall time overstates the cost);
* per-stage milliseconds per analysed frame, peak resident memory (``ru_maxrss``), and whether the face was found.

Targets: RTF (wall, per video second) <= 0.25 (issue 15) and peak memory <= 2 GiB on 2 CPU cores. ``--layout two``
times the two-face 1280×720 clip of issue 15 (:func:`~mikupal.testing.talking_faces.two_speaker_clip`, the speaker
alternating, the other face still or mouthing other speech) and also counts the correct face per utterance;
``--repeats N`` times the stages N times on the same clip and prints medians, with the load average.

With ``--two-speaker N`` it also measures active speaker detection accuracy on known-truth two-face clips
(:func:`mikupal.testing.talking_faces.two_speaker_clip`, one clip of N utterances per ``--seeds`` value): the share
of utterances whose chosen face is the speaking one, split by what the other face does (keeps still, or mouths a
different speech piece), and the score distributions. Target: >= 95 % correct.

With ``--real`` it prints the decision table on real footage next to it (:mod:`mikupal.testing.real_asd`): real
talking heads (psychopy's testMovie and jwpIntro, fetched from their PyPI wheels at run time) and voice-over
composites (LibriVox speech under a still, smiling, laughing or other-words-talking real face), run through the
default pipeline (``extract → separate → vad → asr → faces → asd``) as a user would. Targets: every talking head
assigned, every voice-over rejected, >= 90 % right. The re-enacted dub (the same man saying the same sentence in
another recording) is listed as a limit, not counted.

Usage::

    python benchmarks/bench_vision.py                         # 150 s clip in a temp folder
    python benchmarks/bench_vision.py --duration 180 --workdir /tmp/benchv --keep
    python benchmarks/bench_vision.py --duration 0 --two-speaker 40 --seeds 1 2 --real
    python benchmarks/bench_vision.py --layout two --duration 129 --repeats 3   # issue 15's two-face 720p clip
    # --workdir DIR --keep reuses the clip that an earlier run with the same options left in DIR
    python benchmarks/bench_vision.py --duration 0 --two-speaker 40 --seeds 1 2 --real --set "faces.detect_every=10"
    # --set: config overrides for every measurement (a fresh --workdir for each setting: the real-footage run resumes)
    python benchmarks/bench_vision.py --duration 0 --two-speaker 40 --seeds 1 2 --two-speaker-frame 1280x720
    # the same faces in 1280x720 frames, which the analysis shrinks to 640x360: measures the frame shrinking too
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SR = 16000


def make_inputs(workdir: Path, duration: float, size: tuple[int, int], fps: int, layout: str = "single") -> dict:
    """Write the clip, the utterance audio files and the utterance list; returns a description.

    ``layout="single"``: one talking face centred in the frame (:func:`~mikupal.testing.talking_faces.single_face_clip`);
    ``"two"``: two faces side by side, the speaker alternating, the other face still or mouthing other speech
    (:func:`~mikupal.testing.talking_faces.two_speaker_clip`, as many utterances as make about ``duration`` seconds).
    """
    from mikupal.media import write_audio
    from mikupal.testing.talking_faces import single_face_clip, speech_corpus, speech_pieces, two_speaker_clip

    video = workdir / ("talk720.mp4" if layout == "single" else "two720.mp4")
    t0 = time.perf_counter()
    if layout == "single":
        clip = single_face_clip(video, duration=duration, size=size, face_height=int(size[1] * 2 / 3), fps=fps)
    else:
        gap = 0.8
        lengths = [len(p) / SR for p in speech_pieces(speech_corpus(SR), sampling_rate=SR)]
        n, total = 0, gap
        while total < duration:
            total += lengths[n % len(lengths)] + gap
            n += 1
        panel = min(size[0] // 2, size[1]) * 5 // 9
        clip = two_speaker_clip(video, n_utterances=max(n, 1), panel=panel, fps=fps, gap=gap, seed=1, size=size)
    made = time.perf_counter() - t0
    run = workdir / "run"
    (run / "audio").mkdir(parents=True, exist_ok=True)
    utterances = []
    for i, seg in enumerate(clip.segments):
        uid = f"{video.stem}-{i:05d}"
        audio = clip.audio[int(round(seg.start * SR)) : int(round(seg.end * SR))]
        write_audio(run / "audio" / f"{uid}.flac", audio, SR)
        utterances.append(
            {
                "id": uid,
                "video_id": video.stem,
                "source": str(video),
                "start": round(seg.start, 4),
                "end": round(seg.end, 4),
                "audio": f"audio/{uid}.flac",
                "text": None,
                "language": None,
                "words": None,
                "face": None,
                "emotion": None,
                "speaker": None,
                "quality": None,
            }
        )
    (workdir / "utterances.json").write_text(json.dumps(utterances))
    # which face speaks each utterance (the side of the frame its box lies on), to check the decisions
    truth = [None if layout == "single" else seg.speaker for seg in clip.segments]
    (workdir / "truth.json").write_text(json.dumps({"width": clip.size[0], "speaker": truth}))
    return {
        "video": str(video),
        "layout": layout,
        "duration": clip.duration,
        "generation_s": made,
        "n": len(utterances),
        "speech_s": sum(u["end"] - u["start"] for u in utterances),
        "face_boxes": clip.face_boxes,
    }


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and of its children that have been waited for."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def folder_digest(folder: Path) -> str:
    """SHA-256 (first 16 hex digits) of a folder's files, names and bytes: equal digests, byte-identical files."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted(folder.glob("*.json")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def run_stages(workdir: Path, overrides: Sequence[str] = ()) -> dict:
    """Run faces + asd over the utterances (called in a fresh process) with config ``overrides``; returns timings
    and peak memory."""
    import logging
    from collections import Counter

    from hydra import compose, initialize_config_dir

    from mikupal.asd.stage import AsdStage
    from mikupal.faces.stage import FacesStage
    from mikupal.paths import conf_dir
    from mikupal.records import Utterance
    from mikupal.stage import StageContext, import_in_background

    logging.basicConfig(level=logging.WARNING)
    run = workdir / "run"
    utterances = [Utterance.from_dict(u) for u in json.loads((workdir / "utterances.json").read_text())]
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        cfg = compose(
            "pipeline",
            overrides=[f"input={utterances[0].source}", f"run_dir={run}", "fail_fast=true", *overrides],
        )
    ctx = StageContext(run_dir=run, rank=0, world_size=1, cfg=cfg)
    out: dict = {}
    cpu0 = _cpu_s()
    wall0 = time.perf_counter()
    # as the runner's host does when the run starts (runner.prefetch): both stages' slow imports begin in a thread
    import_in_background([*FacesStage.background_imports, *AsdStage.background_imports])
    faces = FacesStage(cfg)
    t = time.perf_counter()
    faces.setup(ctx)
    out["faces_setup_s"] = time.perf_counter() - t
    t = time.perf_counter()
    counts: Counter = Counter()
    for _item, result, item_counts in faces.map(utterances, ctx):  # as the runner drives a stage
        if isinstance(result, BaseException):
            raise result
        counts.update(item_counts)
    out["faces_s"] = time.perf_counter() - t
    faces.teardown()
    out["faces_wall_s"] = time.perf_counter() - wall0
    out["faces_cpu_s"] = _cpu_s() - cpu0
    cpu1, wall1 = _cpu_s(), time.perf_counter()
    asd = AsdStage(cfg)
    t = time.perf_counter()
    asd.setup(ctx)
    out["asd_setup_s"] = time.perf_counter() - t
    t = time.perf_counter()
    results = []
    for _item, result, item_counts in asd.map(utterances, ctx):  # asd.workers utterances at once
        if isinstance(result, BaseException):
            raise result
        results.append(result[0])
        counts.update(item_counts)
    out["asd_s"] = time.perf_counter() - t
    asd.teardown()
    out["asd_wall_s"] = time.perf_counter() - wall1
    out["asd_cpu_s"] = _cpu_s() - cpu1
    out["wall_s"] = time.perf_counter() - wall0
    out["cpu_s"] = _cpu_s() - cpu0
    out["counts"] = dict(counts)
    out["faces_found"] = sum(r.face is not None for r in results)
    out["clips"] = sum(
        r.face is not None and r.face.clip is not None and (run / r.face.clip).is_file() for r in results
    )
    out["mean_score"] = sum(r.face.asd_score for r in results if r.face) / max(1, out["faces_found"])
    truth = json.loads((workdir / "truth.json").read_text())
    if any(s is not None for s in truth["speaker"]):
        sides = [None if r.face is None else int((r.face.box[0] + r.face.box[2]) / 2 >= truth["width"] / 2)
                 for r in results]
        out["correct"] = sum(side == s for side, s in zip(sides, truth["speaker"]))
        out["decisions"] = sides
    out["digest"] = {name: folder_digest(run / name) for name in ("faces/tracks", "asd/scores")}
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["peak_rss_children_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return out


def _outputs(result):
    """A stage's outputs for one item from its ``map``; the item's error raised."""
    if isinstance(result, BaseException):
        raise result
    return result


def two_speaker_accuracy(
    workdir: Path, n: int, seeds: list[int], overrides: Sequence[str] = (), frame: tuple[int, int] | None = None
) -> dict:
    """Correct-face rate of the faces + asd stages (default config plus ``overrides``) on two-speaker clips with
    known truth: 640×320 frames with two 320-pixel face panels, or ``frame`` = ``(width, height)`` with panels as
    large as its halves allow (1280×720: two 640-pixel panels, shrunk to 320 pixels by the analysis at 640×360, as
    large as in the default clips, so what the shrinking itself changes is measured)."""
    import logging

    import numpy as np
    from hydra import compose, initialize_config_dir

    from mikupal.asd.stage import AsdStage
    from mikupal.faces.stage import FacesStage
    from mikupal.media import write_audio
    from mikupal.paths import conf_dir
    from mikupal.records import Utterance
    from mikupal.stage import StageContext
    from mikupal.testing.talking_faces import two_speaker_clip

    logging.basicConfig(level=logging.WARNING)
    rows = []
    for seed in seeds:
        root = workdir / f"two_speaker_{seed}"
        shape = dict(panel=min(frame[0] // 2, frame[1]), size=frame) if frame else {}
        clip = two_speaker_clip(root / "two.mp4", n_utterances=n, seed=seed, **shape)
        run = root / "run"
        (run / "audio").mkdir(parents=True, exist_ok=True)
        utts = []
        for i, seg in enumerate(clip.segments):
            uid = f"two{seed}-{i:05d}"
            write_audio(
                run / "audio" / f"{uid}.flac", clip.audio[int(round(seg.start * SR)) : int(round(seg.end * SR))], SR
            )
            utts.append(Utterance(uid, f"two{seed}", str(clip.path), seg.start, seg.end, f"audio/{uid}.flac"))
        with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
            cfg = compose(
                "pipeline", overrides=[f"input={clip.path}", f"run_dir={run}", "fail_fast=true", *overrides]
            )
        ctx = StageContext(run_dir=run, rank=0, world_size=1, cfg=cfg)
        faces, asd = FacesStage(cfg), AsdStage(cfg)
        faces.setup(ctx)
        mids = [_outputs(result)[0] for _, result, _ in faces.map(utts, ctx)]  # as the runner drives them
        faces.teardown()
        asd.setup(ctx)
        outs = [_outputs(result)[0] for _, result, _ in asd.map(mids, ctx)]
        asd.teardown()
        for u, seg in zip(outs, clip.segments):
            report = json.loads((run / "asd" / "scores" / f"{u.id}.json").read_text())
            side = None if u.face is None else int((u.face.box[0] + u.face.box[2]) / 2 >= clip.size[0] / 2)
            scores = sorted((v["score"] for v in report.get("scores", {}).values()), reverse=True)
            rows.append(
                {
                    "seed": seed,
                    "correct": side == seg.speaker,
                    "other": "still" if seg.distractor is None else "mouthing",
                    "best": scores[0] if scores else None,
                    "second": scores[1] if len(scores) > 1 else None,
                }
            )
    out = {"n": len(rows), "correct": sum(r["correct"] for r in rows)}
    for kind in ("still", "mouthing"):
        sub = [r for r in rows if r["other"] == kind]
        out[kind] = {
            "n": len(sub),
            "correct": sum(r["correct"] for r in sub),
            "speaker_score_median": float(np.median([r["best"] for r in sub if r["correct"]] or [float("nan")])),
            "other_score_median": float(
                np.median([r["second"] for r in sub if r["second"] is not None] or [float("nan")])
            ),
        }
    return out


def real_footage(workdir: Path, overrides: Sequence[str] = ()) -> tuple[str, dict]:
    """The decision table of the default pipeline (plus config ``overrides``) on the real-footage cases, and its
    numbers."""
    import logging

    from mikupal.testing.real_asd import build_cases, decision_table, decisions, run_cases

    logging.basicConfig(level=logging.WARNING)
    cases = build_cases(workdir / "real_clips", limits=True)
    t0 = time.perf_counter()
    run_cases(cases, workdir / "real_run", *overrides)
    rows = decisions(cases, workdir / "real_run")
    counted = [d for d in rows if not d.limit]
    numbers = {
        "n": len(counted),
        "correct": sum(d.correct for d in counted),
        "talking_heads_assigned": sum(d.face for d in counted if d.expect_face),
        "talking_heads": sum(d.expect_face for d in counted),
        "voice_overs_rejected": sum(not d.face for d in counted if not d.expect_face),
        "voice_overs": sum(not d.expect_face for d in counted),
        "rows": [
            {"case": d.case, "start": d.start, "end": d.end, "face": d.face, "score": d.score, **d.evidence}
            for d in rows
        ],
        "wall_s": time.perf_counter() - t0,
    }
    return decision_table(rows), numbers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=150.0, help="clip length in seconds (default 150)")
    parser.add_argument("--size", default="1280x720", help="frame size WxH (default 1280x720)")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument(
        "--layout",
        choices=("single", "two"),
        default="single",
        help="timing clip: one centred talking face, or two faces side by side with the speaker alternating",
    )
    parser.add_argument("--repeats", type=int, default=1, help="time the stages this many times (medians printed)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the workdir")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--two-speaker", type=int, default=0, help="also measure ASD accuracy on N-utterance clips")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="one two-speaker clip per seed")
    parser.add_argument("--two-speaker-frame", default=None, metavar="WxH",
                        help="render the two-speaker clips at this frame size (e.g. 1280x720; see two_speaker_accuracy)")
    parser.add_argument("--real", action="store_true", help="also print the decision table on real footage")
    parser.add_argument(
        "--compare",
        default=None,
        help="also time the stages with these config overrides (space-separated, e.g. 'asd.workers=1'), "
        "alternating with the default settings in each repeat; both tables are printed",
    )
    parser.add_argument(
        "--set",
        dest="settings",
        default="",
        help="config overrides for every measurement (space-separated, e.g. 'faces.detect_every=10'): the two-speaker "
        "clips, the real footage and the timed runs (--compare adds its own on top)",
    )
    parser.add_argument("--_run-stages", dest="run_stages", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_overrides", dest="overrides", nargs="*", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.run_stages is not None:  # child process
        print(json.dumps(run_stages(args.run_stages, args.overrides)))
        return 0

    width, height = (int(v) for v in args.size.lower().split("x"))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_vision_"))
    workdir.mkdir(parents=True, exist_ok=True)
    numbers: dict = {}
    settings = args.settings.split()
    label = f"; {args.settings}" if settings else ""
    try:
        if args.two_speaker:
            frame = tuple(int(v) for v in args.two_speaker_frame.split("x")) if args.two_speaker_frame else None
            acc = two_speaker_accuracy(workdir, args.two_speaker, args.seeds, settings, frame)
            numbers["two_speaker"] = acc
            print(f"active speaker detection on two-speaker clips (faces=blazeface, asd=sync{label})")
            print(
                f"  correct face           {acc['correct']}/{acc['n']} = {acc['correct'] / acc['n']:.1%}"
                "  (target >= 95%)"
            )
            for kind in ("still", "mouthing"):
                a = acc[kind]
                print(
                    f"  other face {kind:<9}   {a['correct']}/{a['n']} correct; median score speaker "
                    f"{a['speaker_score_median']:.3f} vs other face {a['other_score_median']:.3f}"
                )
        if args.real:
            table, real = real_footage(workdir, settings)
            numbers["real"] = real
            print(
                f"active speaker detection on real footage (default pipeline: silero, whisper-base, blazeface, sync{label})"
            )
            print("  " + table.replace("\n", "\n  "))
        if args.duration <= 0:
            if args.json:
                args.json.write_text(json.dumps(numbers, indent=2))
            return 0
        key = {"duration": args.duration, "size": [width, height], "fps": args.fps, "layout": args.layout}
        saved = workdir / "inputs.json"
        if args.keep and saved.is_file() and json.loads(saved.read_text()).get("key") == key:
            info = json.loads(saved.read_text())["info"]  # the clip of an earlier --keep run with the same options
        else:
            info = make_inputs(workdir, args.duration, (width, height), args.fps, args.layout)
            saved.write_text(json.dumps({"key": key, "info": info}))
        variants = {args.settings or "default settings": settings}
        if args.compare:
            variants[" ".join([args.settings, args.compare]).strip()] = [*settings, *args.compare.split()]
        load_before = os.getloadavg()
        all_runs: dict[str, list[dict]] = {name: [] for name in variants}
        for _ in range(max(1, args.repeats)):
            for name, overrides in variants.items():  # alternating, so both see the same load
                shutil.rmtree(workdir / "run" / "faces", ignore_errors=True)
                shutil.rmtree(workdir / "run" / "asd", ignore_errors=True)
                proc = subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "--_run-stages", str(workdir),
                     "--_overrides", *overrides],
                    capture_output=True,
                    text=True,
                    cwd=str(REPO),
                )
                if proc.returncode != 0:
                    sys.stderr.write(proc.stderr)
                    return proc.returncode
                all_runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        load_after = os.getloadavg()
        for name, runs in all_runs.items():
            res = _table(runs, info, args, (width, height), load_before, load_after, name)
            numbers.setdefault("results", {})[name] = res
        if args.json:
            numbers.update({"clip": info, "result": numbers["results"][args.settings or "default settings"]})
            args.json.write_text(json.dumps(numbers, indent=2))
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _table(runs: list[dict], info: dict, args: argparse.Namespace, size: tuple[int, int],
           load_before: tuple[float, ...], load_after: tuple[float, ...], settings: str) -> dict:
    """Print the table of one setting's runs (medians) and return its numbers."""
    width, height = size

    def med(key: str) -> float:
        return float(statistics.median(r[key] for r in runs))

    res = dict(runs[-1])
    for key in ("faces_s", "asd_s", "faces_setup_s", "asd_setup_s", "faces_wall_s", "faces_cpu_s", "asd_wall_s",
                "asd_cpu_s", "wall_s", "cpu_s", "peak_rss_mib", "peak_rss_children_mib"):
        res[key] = med(key) if key != "peak_rss_mib" else max(r[key] for r in runs)
    res["peak_rss_children_mib"] = max(r["peak_rss_children_mib"] for r in runs)
    frames = res["counts"].get("faces.frames", 0)
    video_s, speech_s = info["duration"], info["speech_s"]
    layout = "one face" if args.layout == "single" else "two faces"
    from mikupal.testing.machine import this_machine
    rows = [
        (
            "clip",
            f"{width}x{height} @ {args.fps} fps, {layout}, {video_s:.1f} s, {info['n']} utterances "
            f"({speech_s:.1f} s)",
        ),
        (
            "machine",
            f"{this_machine().describe()}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
            f"({len(runs)} run(s), medians)",
        ),
        (
            "faces stage",
            f"{res['faces_s']:.1f} s ({1000 * res['faces_s'] / max(frames, 1):.1f} ms/frame, "
            f"{frames:.0f} frames) + setup {res['faces_setup_s']:.2f} s",
        ),
        (
            "asd stage",
            f"{res['asd_s']:.1f} s ({1000 * res['asd_s'] / max(frames, 1):.1f} ms/frame) "
            f"+ setup {res['asd_setup_s']:.2f} s",
        ),
        ("RTF wall / video", f"faces {res['faces_wall_s'] / video_s:.3f}, asd {res['asd_wall_s'] / video_s:.3f}, "
                             f"total {res['wall_s'] / video_s:.3f}"),
        ("RTF CPU / video", f"faces {res['faces_cpu_s'] / video_s:.3f}, asd {res['asd_cpu_s'] / video_s:.3f}, "
                            f"total {res['cpu_s'] / video_s:.3f}"),
        ("RTF wall / utterances", f"{res['wall_s'] / speech_s:.3f}"),
        ("RTF CPU / utterances", f"{res['cpu_s'] / speech_s:.3f}"),
        ("peak memory", f"{res['peak_rss_mib']:.0f} MiB (largest child process {res['peak_rss_children_mib']:.0f} MiB)"),
        (
            "faces found",
            f"{res['faces_found']}/{info['n']} (clips {res['clips']}), mean asd score {res['mean_score']:.3f}",
        ),
        ("frames with a face", f"{res['counts'].get('faces.frames_with_face', 0):.0f}/{frames:.0f}"),
    ]
    if "correct" in res:
        rows.append(("correct face", f"{res['correct']}/{info['n']}"))
    rows.append(("targets", "RTF wall / video <= 0.25 (issue 15), peak memory <= 2048 MiB"))
    digests = {json.dumps(r["digest"], sort_keys=True) for r in runs}
    rows.append(("track, score files", ", ".join(f"{k} {v}" for k, v in res["digest"].items())
                 + ("" if len(digests) == 1 else " (differ between repeats)")))
    if "decisions" in res:
        rows.append(("decisions", "".join("-" if d is None else str(d) for d in res["decisions"])))
    width_col = max(len(k) for k, _ in rows)
    print(f"vision path benchmark (faces=blazeface, asd=sync; {settings})")
    for key, value in rows:
        print(f"  {key:<{width_col}}  {value}")
    return res


if __name__ == "__main__":
    raise SystemExit(main())
