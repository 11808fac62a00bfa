"""Benchmark the TTS metadata stages: speaker clustering purity, DNSMOS on clean vs music-mixed speech, and cost.

All media are real recordings from Debian packages, read at run time (:mod:`mikupal.testing.voices`): the LibriVox
reader (``pocketsphinx-testdata``), Allison's IVR prompts (``asterisk-core-sounds-en-wav``), the ALSA announcements
(``alsa-utils``) and, for the mixes, real music (``asterisk-moh-opsound-wav``). Nothing is committed.

1. **Purity.** The three speakers' clips, alternating (round robin), joined with 1.2 s pauses into one WAV, go
   through the pipeline as the CLI composes it (``stages=[extract,separate,vad,speakers,quality]``,
   ``separate=passthrough``): Silero VAD cuts the utterances, the ``speakers`` stage clusters them. Each utterance's
   true speaker is the clip it overlaps most. Purity = share of embedded utterances in their cluster's majority
   speaker; inverse purity = share in their speaker's majority cluster.
2. **DNSMOS.** Every LibriVox and Allison clip, clean and with the music mixed in at 10 dB and 3 dB SNR
   (``mikupal.testing.audio_eval.mix_music``, a different offset in the track per clip).
3. **Cost.** The utterances of (1), embedded (Resemblyzer) and scored (DNSMOS) by ``--workers`` processes with one
   thread each (the models' setup excluded); RTF = wall time of the slowest worker / seconds of utterance audio.
   CPU seconds per audio second (user + sys of the workers) is given too. The machine's load average is printed:
   other jobs on a shared machine inflate wall time.

Usage::

    python benchmarks/bench_tts_meta.py [--workers 2] [--repeat 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

RATE = 16000
TARGET_RTF = 0.15
TARGET_PURITY = 0.95


def purity(truth: list[str], predicted: list[str]) -> tuple[float, float]:
    """``(purity, inverse purity)`` (see the module docstring)."""

    def majority_share(a: list[str], b: list[str]) -> float:
        groups: dict[str, Counter] = {}
        for x, y in zip(a, b):
            groups.setdefault(x, Counter())[y] += 1
        return sum(c.most_common(1)[0][1] for c in groups.values()) / max(len(a), 1)

    return majority_share(predicted, truth), majority_share(truth, predicted)


def run_purity(workdir: Path) -> dict:
    from mikupal.media import write_audio
    from mikupal.runner import run_pipeline
    from mikupal.testing.config import compose_pipeline
    from mikupal.testing.media import concat_with_silences
    from mikupal.testing.voices import interleave, known_voices

    clips = interleave(known_voices())
    audio, spans = concat_with_silences([c.audio for c in clips], gap=1.2)
    source = workdir / "voices.wav"
    write_audio(source, audio)
    run_dir = workdir / "run"
    cfg = compose_pipeline(
        f"input={source}", f"run_dir={run_dir}", "stages=[extract,separate,vad,speakers,quality]",
        "separate=passthrough",
    )
    summary = run_pipeline(cfg)
    utterances = [json.loads(line) for line in (run_dir / "utterances.jsonl").read_text().splitlines()]

    def speaker_at(u: dict) -> str:
        overlap = [max(0.0, min(u["end"], e) - max(u["start"], s)) for s, e in spans]
        return clips[int(np.argmax(overlap))].speaker

    embedded = [u for u in utterances if u["speaker"] is not None]
    truth = [speaker_at(u) for u in embedded]
    predicted = [u["speaker"]["id"] for u in embedded]
    p, inverse = purity(truth, predicted)
    return {
        "clips": len(clips),
        "speakers": dict(Counter(c.speaker for c in clips)),
        "audio_s": round(len(audio) / RATE, 1),
        "utterances": len(utterances),
        "embedded": len(embedded),
        "skipped": {k: v for k, v in summary["counters"].items() if k.startswith("speakers.skipped")},
        "clusters": len(set(predicted)),
        "purity": round(p, 4),
        "inverse_purity": round(inverse, 4),
        "stage_wall_s": {k: summary["stages"][k]["wall_time_s"] for k in ("speakers", "quality")},
        "utterance_audio": [str(run_dir / u["audio"]) for u in utterances],
    }


def run_dnsmos() -> dict:
    from mikupal.quality.dnsmos import DnsmosScorer
    from mikupal.testing.audio_eval import mix_music, music_track
    from mikupal.testing.voices import allison_clips
    from mikupal.testing.media import librivox_clips

    scorer = DnsmosScorer()
    scorer.setup()
    music = music_track()
    sets = {"librivox": [c.audio for c in librivox_clips()], "allison": [c.audio for c in allison_clips()]}
    out: dict = {}
    for name, clips in sets.items():
        rows = {}
        for condition, snr in (("clean", None), ("music 10 dB", 10.0), ("music 3 dB", 3.0)):
            scores = []
            for i, clip in enumerate(clips):
                x = clip if snr is None else mix_music(clip, music, snr, offset=5.0 + 30.0 * i)
                q = scorer.score(x, RATE)
                scores.append([q.dnsmos_ovrl, q.dnsmos_sig, q.dnsmos_bak, q.dnsmos_p808])
            s = np.array(scores)
            rows[condition] = {"n": len(clips), "mean": s.mean(0).round(3).tolist(), "sd": s.std(0).round(3).tolist(),
                               "ovrl_min": round(float(s[:, 0].min()), 3), "ovrl_max": round(float(s[:, 0].max()), 3)}
        out[name] = rows
    scorer.teardown()
    return out


def _worker(paths: list[str]) -> dict:
    """Embed and score ``paths`` in this process with one thread per model; timing excludes setup."""
    from mikupal.media import read_audio
    from mikupal.quality.dnsmos import DnsmosScorer
    from mikupal.speakers.base import EmbeddingSkipped
    from mikupal.speakers.resemblyzer import ResemblyzerEmbedder

    t = time.perf_counter()
    embedder, scorer = ResemblyzerEmbedder(threads=1), DnsmosScorer(threads=1)
    embedder.setup()
    scorer.setup()
    setup_s = time.perf_counter() - t
    audios = [read_audio(p, RATE) for p in paths]
    c0, w0 = time.process_time(), time.perf_counter()
    spk_cpu = 0.0
    for a in audios:
        s0 = time.process_time()
        try:
            embedder.embed(a, RATE)
        except EmbeddingSkipped:
            pass
        spk_cpu += time.process_time() - s0
        if len(a) >= RATE:
            scorer.score(a, RATE)
    return {
        "setup_s": setup_s,
        "wall_s": time.perf_counter() - w0,
        "cpu_s": time.process_time() - c0,
        "speaker_cpu_s": spk_cpu,
        "audio_s": sum(len(a) for a in audios) / RATE,
    }


def run_cost(paths: list[str], workers: int) -> dict:
    shards = [paths[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_worker, shards))
    audio = sum(r["audio_s"] for r in results)
    cpu = sum(r["cpu_s"] for r in results)
    return {
        "workers": workers,
        "utterances": len(paths),
        "audio_s": round(audio, 1),
        "wall_rtf": round(max(r["wall_s"] for r in results) / audio, 4),
        "cpu_rtf": round(cpu / audio, 4),
        "speaker_cpu_rtf": round(sum(r["speaker_cpu_s"] for r in results) / audio, 4),
        "quality_cpu_rtf": round((cpu - sum(r["speaker_cpu_s"] for r in results)) / audio, 4),
        "setup_s": round(max(r["setup_s"] for r in results), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes for the cost measurement (cores)")
    parser.add_argument("--repeat", type=int, default=1, help="process the utterances this many times (cost)")
    parser.add_argument("--keep", type=Path, help="keep the run directory here")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import logging

    logging.basicConfig(level=logging.WARNING)
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="bench_tts_meta_"))
    workdir.mkdir(parents=True, exist_ok=True)
    from mikupal.testing.machine import machine_line
    print(f"machine: {machine_line()}")
    p = run_purity(workdir)
    print("\n1. Speaker clustering on one file joining real voices")
    print(f"   {p['clips']} clips {p['speakers']}, {p['audio_s']} s -> {p['utterances']} utterances, "
          f"{p['embedded']} embedded, skipped {p['skipped'] or 0}")
    print(f"   clusters {p['clusters']}  purity {p['purity']:.3f} (target >= {TARGET_PURITY})  "
          f"inverse purity {p['inverse_purity']:.3f}")
    print(f"   stage wall time incl. model load: {p['stage_wall_s']}")
    d = run_dnsmos()
    print("\n2. DNSMOS (mean ± sd; OVRL min..max)")
    print(f"   {'set':<9} {'condition':<12} {'n':>3} {'OVRL':>12} {'SIG':>12} {'BAK':>12} {'P.808':>12}  OVRL range")
    for name, rows in d.items():
        for condition, r in rows.items():
            cells = " ".join(f"{m:>6.2f} ± {s:<4.2f}" for m, s in zip(r["mean"], r["sd"]))
            print(f"   {name:<9} {condition:<12} {r['n']:>3} {cells}  {r['ovrl_min']:.2f}..{r['ovrl_max']:.2f}")
    c = run_cost(p["utterance_audio"] * args.repeat, args.workers)
    print(f"\n3. Cost: speaker + quality models, {c['workers']} worker process(es) x 1 thread, "
          f"{c['utterances']} utterances, {c['audio_s']} s of audio (setup {c['setup_s']} s excluded)")
    print(f"   wall RTF {c['wall_rtf']:.3f} (target <= {TARGET_RTF})   CPU RTF {c['cpu_rtf']:.3f} "
          f"(speakers {c['speaker_cpu_rtf']:.3f}, quality {c['quality_cpu_rtf']:.3f})")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    report = {"purity": {k: v for k, v in p.items() if k != "utterance_audio"}, "dnsmos": d, "cost": c}
    (workdir / "bench_tts_meta.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nreport: {workdir / 'bench_tts_meta.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
