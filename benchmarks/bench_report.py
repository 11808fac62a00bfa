"""Benchmark of mikupal-report: time to write the site of a large run, and how fast the page renders in Chromium.

Generates a synthetic finished run directory of ``--n`` annotated utterances (25 per video; a short FLAC per
utterance and a face clip for most; the fields of every stage, ``speaker``, ``quality`` and ``emotion.confidence``
included), then measures:

* write: wall time of ``build_report`` in a fresh Python process (imports included, as the CLI pays them), with
  ``media=link`` (the default) into a new folder, and again with ``media=copy``;
* first page: headless system Chromium opens ``index.html`` from ``file://``; time from navigation start until the
  frame after the first page of utterance cards went into the DOM (the page's ``miku-first-paint`` performance
  mark), best and median of ``--repeats`` fresh page loads;
* filter and search: time for a label filter, and for the first transcript search (which loads every chunk).

Targets (issue 13): write <= 10 s and first page <= 2 s for 10,000 utterances. The CPU time is printed next to the
wall time, and the load average with it: on a shared machine wall time depends on what else runs.

Usage::

    python benchmarks/bench_report.py                 # 10,000 utterances in a temp folder
    python benchmarks/bench_report.py --n 2000 --workdir /tmp/bench-report
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SR = 16000
PER_VIDEO = 25
LABELS = ["Calmness", "Interest", "Joy", "Amusement", "Anger", "Sadness", "Surprise", "Confusion", "Excitement",
          "Boredom", "Fear", "Awkwardness"]
WORDS = "well I did not expect that to happen today at all but here we are again talking about it".split()


def generate_run(run_dir: Path, n: int, seed: int = 0) -> None:
    """A finished run directory with ``n`` utterances. Media files are hard links to a few distinct files each
    (the report's cost per file is the same; the benchmark's disk use stays small)."""
    import soundfile as sf

    from mikupal.testing.media import face_photo, write_video

    rng = np.random.default_rng(seed)
    protos = run_dir / "_protos"
    protos.mkdir(parents=True)
    audio_protos, clip_protos = [], []
    photo = face_photo()[::4, ::4]
    for k in range(8):
        t = np.arange(int(1.0 * SR)) / SR
        signal = (0.2 * np.sin(2 * np.pi * (150 + 20 * k) * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
        sf.write(protos / f"a{k}.flac", signal, SR, format="FLAC", subtype="PCM_16")
        audio_protos.append(protos / f"a{k}.flac")
        write_video(protos / f"c{k}.mp4", signal, SR, lambda i, tt: photo, duration=1.0, fps=10)
        clip_protos.append(protos / f"c{k}.mp4")
    (run_dir / "audio").mkdir()
    (run_dir / "faces").mkdir()
    with open(run_dir / "utterances.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            video = f"video{i // PER_VIDEO:05d}-{i // PER_VIDEO:08x}"
            uid = f"{video}-{i % PER_VIDEO:05d}"
            start = 6.0 * (i % PER_VIDEO) + float(rng.uniform(0, 2))
            end = start + float(rng.uniform(1.0, 4.0))
            label = LABELS[int(rng.integers(len(LABELS)))]
            os.link(audio_protos[i % 8], run_dir / "audio" / f"{uid}.flac")
            has_face = i % 10 != 0
            if has_face:
                os.link(clip_protos[i % 8], run_dir / "faces" / f"{uid}.mp4")
            text = " ".join(rng.choice(WORDS, size=int(rng.integers(5, 16))))
            record = {
                "id": uid, "video_id": video, "source": f"/data/videos/{video}.mp4", "start": start, "end": end,
                "audio": f"audio/{uid}.flac", "text": text, "language": "en",
                "words": [{"word": w, "start": start + 0.3 * j, "end": start + 0.3 * j + 0.25, "score": 0.9}
                          for j, w in enumerate(text.split())],
                "face": {"track_id": 1, "box": [10.0, 20.0, 110.0, 140.0], "asd_score": float(rng.uniform(0.3, 1.0)),
                         "clip": f"faces/{uid}.mp4"} if has_face else None,
                "emotion": {"label": label, "intensity": float(rng.uniform(0, 1)), "confidence": float(rng.uniform(0, 1)),
                            "rationale": f"The voice and the face suggest {label.lower()}: " + text[:60],
                            "scores": None, "votes": [label, label, LABELS[int(rng.integers(len(LABELS)))]],
                            "annotator": "fusion-v1", "prompt_version": None},
                "speaker": {"id": f"{video}-spk{int(rng.integers(3))}", "similarity": float(rng.uniform(0.5, 1))},
                "quality": {"dnsmos_sig": float(rng.uniform(2, 4.5)), "dnsmos_bak": float(rng.uniform(2, 4.5)),
                            "dnsmos_ovrl": float(rng.uniform(1.5, 4)), "dnsmos_p808": float(rng.uniform(2, 4.5))},
            }
            f.write(json.dumps(record) + "\n")
    shutil.rmtree(protos)
    stages = {s: {"items_done": n // PER_VIDEO, "outputs": n, "dropped": 0, "errors": 0, "wall_time_s": 10.0}
              for s in ("extract", "separate", "vad", "asr", "faces", "asd", "annotate", "filter")}
    summary = {"complete": True, "stopped": None, "videos": n // PER_VIDEO, "hours_in": n * 6 / 3600,
               "utterances_out": n, "hours_out": n * 2.5 / 3600, "drops": {"vad.too_short": n // 10}, "errors": 0,
               "stages": stages, "counters": {}, "cost_usd": 0.0}
    (run_dir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    (run_dir / "errors.jsonl").write_text("", encoding="utf-8")


def time_write(run_dir: Path, out: Path, media: str) -> tuple[float, float, str]:
    """Wall and CPU time (user + system, its child process included) of a fresh process that imports mikupal.report
    and writes the site; returns (wall, cpu, its log line)."""
    code = (
        "import logging, sys, time; t = time.perf_counter(); logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "from mikupal.report import ReportOptions, build_report\n"
        f"r = build_report({str(run_dir)!r}, {str(out)!r}, ReportOptions(media={media!r}))\n"
        "import resource; u = resource.getrusage(resource.RUSAGE_SELF); c = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print('CPU', u.ru_utime + u.ru_stime + c.ru_utime + c.ru_stime)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - t0
    detail = next((line for line in proc.stderr.splitlines() if "written to" in line), "")
    cpu = float(next(line for line in proc.stdout.splitlines() if line.startswith("CPU")).split()[1])
    return wall, cpu, detail


def time_page(out: Path, repeats: int) -> dict[str, list[float]]:
    from mikupal.report.browser import chromium_page

    first, filt, search = [], [], []
    with chromium_page() as page:
        for _ in range(repeats):
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(out.joinpath("index.html").as_uri())
            page.wait_for_selector("#rows[data-ready=yes] article.utt", timeout=60000)
            # the page marks the frame after the first page of cards went into the DOM (see assets/report.js)
            page.wait_for_function("performance.getEntriesByName('miku-first-paint').length > 0", timeout=60000)
            first.append(page.evaluate("performance.getEntriesByName('miku-first-paint')[0].startTime") / 1000)
            assert not errors, errors
            t = page.evaluate("""() => new Promise(resolve => {
                const rows = document.getElementById('rows');
                const t0 = performance.now();
                const sel = document.getElementById('f-label');
                sel.value = '1'; sel.dispatchEvent(new Event('change'));
                const check = () => rows.getAttribute('data-ready') === 'yes' ? resolve(performance.now() - t0)
                                                                               : setTimeout(check, 5);
                setTimeout(check, 0);
            })""")
            filt.append(t / 1000)
            t = page.evaluate("""() => new Promise(resolve => {
                const rows = document.getElementById('rows');
                const t0 = performance.now();
                const box = document.getElementById('f-text');
                box.value = 'expect today'; box.dispatchEvent(new Event('input'));
                rows.setAttribute('data-ready', 'stale');
                const check = () => rows.getAttribute('data-ready') === 'yes' ? resolve(performance.now() - t0 - 200)
                                                                               : setTimeout(check, 5);
                setTimeout(check, 0);
            })""")  # minus the 200 ms typing debounce
            search.append(t / 1000)
    return {"first page": first, "label filter": filt, "first search (all chunks)": search}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="utterances")
    parser.add_argument("--repeats", type=int, default=3, help="page loads")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the run and sites here")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-report-"))
    run_dir = work / f"run-{args.n}"
    try:
        if not (run_dir / "utterances.jsonl").exists():
            t = time.perf_counter()
            generate_run(run_dir, args.n)
            print(f"generated {args.n:,} utterances in {time.perf_counter() - t:.1f} s: {run_dir}")
        rows = []
        for media in ("link", "copy"):
            out = work / f"site-{media}"
            shutil.rmtree(out, ignore_errors=True)
            wall, cpu, detail = time_write(run_dir, out, media)
            rows.append((f"write, media={media} (fresh process): wall", f"{wall:.2f} s", "<= 10 s"))
            rows.append((f"write, media={media}: CPU time (user+sys, both processes)", f"{cpu:.2f} s", ""))
            print(f"  {detail}")
        size = sum(p.stat().st_size for p in (work / "site-link").rglob("*") if p.is_file() and "media" not in p.parts)
        chunks = len(list((work / "site-link" / "data").glob("chunk-*.js")))
        page = time_page(work / "site-link", args.repeats)
        for name, values in page.items():
            target = "<= 2 s" if name == "first page" else ""
            rows.append((f"{name} (best / median of {len(values)})",
                         f"{min(values):.3f} / {statistics.median(values):.3f} s", target))
        from mikupal.testing.machine import this_machine
        print(f"\nload average while measuring: {' / '.join(f'{x:.1f}' for x in os.getloadavg())} "
              f"on {this_machine().describe()}")
        print(f"mikupal-report, {args.n:,} utterances ({chunks} data chunks, site without media {size / 1e6:.1f} MB)")
        width = max(len(r[0]) for r in rows)
        print(f"{'measure':<{width}}  {'value':>20}  target")
        for name, value, target in rows:
            print(f"{name:<{width}}  {value:>20}  {target}")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
