"""Benchmarks of the annotate stage (prints tables; no assertions).

1. ``throughput``: the real pipeline path (Hydra config -> :func:`mikupal.runner.run_pipeline` -> the annotate stage
   -> the Gemini or OpenAI SDK -> HTTP) against a local stub server that adds a fixed latency to every generation
   request. The bound is ``max_in_flight / latency`` requests per second; the table shows the sustained rate (arrival
   rate at the server in steady state, i.e. after the first wave of ``max_in_flight`` requests and before the last),
   the overall rate (all requests / time from the first arrival to the last answer, start-up and tail included) and
   the stage's wall time (which also includes loading the SDK and creating the client), and checks
   that every utterance came out exactly once with an emotion and that the server saw each request exactly once.
2. ``meld``: the fusion annotator's text channel on MELD transcripts (``--split dev`` by default;
   ``data/meld/<split>_sent_emo.csv``, ``Emotion`` column, ``meld7`` labels) next to the majority-class rate.
3. ``tune``: how ``neutral_margin`` and ``text_temperature`` of ``conf/annotator/fusion.yaml`` were chosen, on MELD
   *train* (accuracy-maximising margin, then NLL-minimising temperature).

Usage::

    python benchmarks/bench_annotate.py throughput [--items 200] [--in-flight 16] [--latency 0.5] [--backend gemini]
    python benchmarks/bench_annotate.py meld [--split dev] [--meld-dir ../shared/data/meld]
    python benchmarks/bench_annotate.py tune [--limit 3000]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MELD = [ROOT / "data" / "meld", ROOT.parent / "shared" / "data" / "meld", Path("/work/shared/data/meld")]
KEY_ENV = "MIKUPAL_BENCH_KEY"


def _table(rows: list[tuple[str, str]], title: str) -> str:
    width = max(len(k) for k, _ in rows)
    lines = [title, "-" * max(len(title), width + 20)]
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- throughput
def bench_throughput(items: int, in_flight: int, latency: float, rollouts: int, backend: str) -> dict:
    """Run ``items`` utterances through the runner against a stub with ``latency`` seconds per request."""
    import soundfile as sf
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from mikupal.testing.rundirs import seed_run_dir
    from mikupal.testing.servers import GeminiStub, OpenAIStub, write_clip
    from mikupal.ids import utterance_id, video_id
    from mikupal.manifest import iter_jsonl
    from mikupal.paths import conf_dir
    from mikupal.records import Face, Utterance
    from mikupal.runner import run_pipeline

    os.environ[KEY_ENV] = "bench-key"
    with tempfile.TemporaryDirectory(prefix="bench-annotate-") as tmp:
        tmp_path = Path(tmp)
        source = write_clip(tmp_path / "video.mp4", seconds=1.0)
        speech = tmp_path / "speech.flac"
        t = np.arange(16000) / 16000
        sf.write(speech, (0.2 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16000)
        run_dir = tmp_path / "run"
        vid = video_id(source)
        utterances = []
        clip_bytes, audio_bytes = source.read_bytes(), speech.read_bytes()
        for i in range(items):
            uid = utterance_id(vid, i)
            (run_dir / "audio").mkdir(parents=True, exist_ok=True)
            (run_dir / "faces").mkdir(parents=True, exist_ok=True)
            (run_dir / "audio" / f"{uid}.flac").write_bytes(audio_bytes)
            (run_dir / "faces" / f"{uid}.mp4").write_bytes(clip_bytes)
            utterances.append(Utterance(
                id=uid, video_id=vid, source=str(source), start=float(i), end=float(i) + 1.0,
                audio=f"audio/{uid}.flac", text=f"utterance number {i}", language="en", words=None,
                face=Face(track_id=0, box=[0.0, 0.0, 64.0, 64.0], asd_score=0.9, clip=f"faces/{uid}.mp4")))
        seed_run_dir(run_dir, source, utterances)
        stub = (GeminiStub if backend == "gemini" else OpenAIStub)(latency=latency, max_lifetime=600)
        with stub:
            base_url = stub.url if backend == "gemini" else stub.url + "/v1"
            overrides = [
                f"input={source}", f"run_dir={run_dir}", "stages=[extract,vad,asr,annotate]",
                f"annotator={'gemini' if backend == 'gemini' else 'openai'}", "labels=meld7",
                f"annotator.base_url={base_url}", f"annotator.api_key_env={KEY_ENV}",
                f"annotator.max_in_flight={in_flight}", f"annotator.rollouts={rollouts}",
                "annotator.requests_per_minute=null", "annotator.timeout=30",
            ]
            GlobalHydra.instance().clear()
            with initialize_config_dir(str(conf_dir()), version_base="1.3"):
                cfg = compose("pipeline", overrides=overrides)
            start = time.monotonic()
            summary = run_pipeline(cfg)
            wall = time.monotonic() - start
            requests = list(stub.generate_requests)
            first = min(r.received for r in requests)
            last_answer = max(r.received for r in requests) + latency
            max_seen = stub.max_in_flight
            # a rerun must be free: every answer comes from the cache
            before = len(stub.generate_requests)
            run_pipeline(cfg)
            rerun_requests = len(stub.generate_requests) - before
        out = list(iter_jsonl(run_dir / "utterances.jsonl"))
        ids = [o["id"] for o in out]
        expected = {u.id for u in utterances}
        per_item = Counter()
        for r in requests:
            text = r.first_user_text
            for i in range(items):
                if f'"utterance number {i}"' in text:
                    per_item[i] += 1
                    break
        n_requests = len(requests)
        overall = n_requests / (last_answer - first)
        # steady state: arrival rate between the first wave of in_flight requests and the last one; the span
        # covers a whole number of waves (j - i a multiple of in_flight), so waves do not bias it
        arrivals = sorted(r.received for r in requests)
        i, j = in_flight, in_flight + ((len(arrivals) - 2 * in_flight - 1) // in_flight) * in_flight
        sustained = (j - i) / (arrivals[j] - arrivals[i]) if j > i else float("nan")
        bound = in_flight / latency
        result = {
            "backend": backend,
            "items": items,
            "rollouts": rollouts,
            "max_in_flight": in_flight,
            "latency_s": latency,
            "bound_req_per_s": bound,
            "requests": n_requests,
            "sustained_req_per_s": sustained,
            "sustained_vs_bound": sustained / bound,
            "overall_req_per_s": overall,
            "overall_vs_bound": overall / bound,
            "stage_wall_s": summary["stages"]["annotate"]["wall_time_s"],
            "stage_req_per_s": n_requests / summary["stages"]["annotate"]["wall_time_s"],
            "pipeline_wall_s": wall,
            "server_max_in_flight": max_seen,
            "lost": len(expected - set(ids)),
            "duplicated": len(ids) - len(set(ids)),
            "without_emotion": sum(1 for o in out if o["emotion"] is None),
            "requests_per_item_min_max": (min(per_item.values(), default=0), max(per_item.values(), default=0)),
            "items_requested": len(per_item),
            "errors": summary["errors"],
            "rerun_requests": rerun_requests,
        }
    print(_table([
        ("backend", backend),
        ("items x rollouts", f"{items} x {rollouts} = {items * rollouts} requests expected"),
        ("requests in flight (config)", str(in_flight)),
        ("injected latency", f"{latency:.3f} s"),
        ("bound (in flight / latency)", f"{bound:.2f} req/s"),
        ("sustained (steady state, arrivals)", f"{sustained:.2f} req/s = {100 * sustained / bound:.1f}% of bound"),
        ("overall (first arrival..last answer)", f"{overall:.2f} req/s = {100 * overall / bound:.1f}% of bound"),
        ("stage wall time", f"{result['stage_wall_s']:.2f} s -> {result['stage_req_per_s']:.2f} req/s "
                            f"= {100 * result['stage_req_per_s'] / bound:.1f}% of bound"),
        ("max concurrent seen by server", str(max_seen)),
        ("requests received", str(n_requests)),
        ("requests per item (min, max)", str(result["requests_per_item_min_max"])),
        ("items lost / duplicated / no emotion",
         f"{result['lost']} / {result['duplicated']} / {result['without_emotion']}"),
        ("item errors", str(result["errors"])),
        ("requests on rerun (cache)", str(rerun_requests)),
    ], "annotate throughput against a stub with injected latency"))
    return result


# ---------------------------------------------------------------------------------------------- MELD
def _meld_dir(given: str | None) -> Path:
    candidates = [Path(given)] if given else DEFAULT_MELD
    for c in candidates:
        if (c / "dev_sent_emo.csv").is_file():
            return c
    raise SystemExit(f"MELD CSVs not found in {[str(c) for c in candidates]}; pass --meld-dir")


def load_meld(meld_dir: Path, split: str) -> tuple[list[str], list[str]]:
    """Transcripts and gold labels of a MELD split (the CSV's mojibake apostrophes repaired)."""
    with open(meld_dir / f"{split}_sent_emo.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    fix = {"\u0092": "'", "\u0091": "'", "\u0093": '"', "\u0094": '"', "\u0085": "...", "\u0097": "-"}
    texts = ["".join(fix.get(ch, ch) for ch in r["Utterance"]) for r in rows]
    return texts, [r["Emotion"] for r in rows]


def bench_meld(meld_dir: Path, split: str) -> dict:
    from mikupal.annotate.fusion import FusionAnnotator

    texts, gold = load_meld(meld_dir, split)
    fusion = FusionAnnotator.from_config()
    t0 = time.monotonic()
    fusion.setup()
    load_s = time.monotonic() - t0
    t0 = time.monotonic()
    emotions = fusion.annotate_texts(texts, "meld7")
    run_s = time.monotonic() - t0
    pred = [e.label for e in emotions]
    n = len(gold)
    correct = sum(p == g for p, g in zip(pred, gold))
    counts = Counter(gold)
    majority, majority_n = counts.most_common(1)[0]
    labels = sorted(counts)
    recalls = {c: sum(p == g == c for p, g in zip(pred, gold)) / counts[c] for c in labels}
    uar = float(np.mean(list(recalls.values())))
    result = {"split": split, "n": n, "accuracy": correct / n, "majority_label": majority,
              "majority_rate": majority_n / n, "uar": uar, "chance_uar": 1 / len(labels),
              "per_class_recall": recalls, "predicted": dict(Counter(pred)), "load_s": load_s, "run_s": run_s}
    rows = [("split / n", f"{split} / {n}"),
            ("fusion text-only accuracy", f"{100 * result['accuracy']:.1f}%"),
            (f"majority class ({majority})", f"{100 * result['majority_rate']:.1f}%"),
            ("UAR (mean recall)", f"{100 * uar:.1f}% (chance {100 / len(labels):.1f}%)"),
            ("time", f"load {load_s:.1f} s, {n} texts in {run_s:.1f} s")]
    rows += [(f"  recall {c}", f"{100 * recalls[c]:.1f}% (gold {counts[c]}, predicted {result['predicted'].get(c, 0)})")
             for c in labels]
    print(_table(rows, "fusion annotator, text channel only, MELD (meld7)"))
    return result


def bench_tune(meld_dir: Path, limit: int) -> dict:
    from mikupal.annotate.fusion import FusionAnnotator
    from mikupal.labels import load_label_set

    texts, gold = load_meld(meld_dir, "train")
    texts, gold = texts[:limit], gold[:limit]
    ls = load_label_set("meld7")
    fusion = FusionAnnotator.from_config()
    sims = fusion.text_similarities(texts, ls)
    names = np.array(ls.names)
    gold_arr = np.array(gold)
    accs = {}
    for m in np.round(np.arange(0.0, 0.25, 0.01), 2):
        fusion.neutral_margin = float(m)
        accs[float(m)] = float((names[fusion.text_probabilities(sims, ls).argmax(1)] == gold_arr).mean())
    margin = max(accs, key=accs.get)
    fusion.neutral_margin = margin
    idx = np.array([ls.index(g) for g in gold])
    nll = {}
    for temp in np.round(np.arange(0.02, 0.2, 0.005), 3):
        fusion.text_temperature = float(temp)
        p = fusion.text_probabilities(sims, ls)
        nll[float(temp)] = float(-np.log(p[np.arange(len(idx)), idx] + 1e-9).mean())
    temperature = min(nll, key=nll.get)
    print(_table([("train texts", str(len(texts))), ("best neutral_margin", f"{margin} (train acc {accs[margin]:.3f})"),
                  ("best text_temperature", f"{temperature} (train NLL {nll[temperature]:.4f})")],
                 "fusion text channel: tuning on MELD train"))
    return {"neutral_margin": margin, "train_accuracy": accs[margin], "text_temperature": temperature}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--items", type=int, default=400)
    t.add_argument("--in-flight", type=int, default=16)
    t.add_argument("--latency", type=float, default=0.5)
    t.add_argument("--rollouts", type=int, default=1)
    t.add_argument("--backend", choices=["gemini", "openai"], default="gemini")
    m = sub.add_parser("meld")
    m.add_argument("--split", default="dev")
    m.add_argument("--meld-dir")
    u = sub.add_parser("tune")
    u.add_argument("--limit", type=int, default=3000)
    u.add_argument("--meld-dir")
    for p in (t, m, u):
        p.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.what == "throughput":
        result = bench_throughput(args.items, args.in_flight, args.latency, args.rollouts, args.backend)
    elif args.what == "meld":
        result = bench_meld(_meld_dir(args.meld_dir), args.split)
    else:
        result = bench_tune(_meld_dir(args.meld_dir), args.limit)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
