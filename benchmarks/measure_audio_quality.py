"""Measure the audio path's quality on real recordings and print the tables (issue 2, "Measured, not assumed").

Data (built at run time, nothing committed): the five LibriVox clips of Debian ``pocketsphinx-testdata`` with their
reference transcripts, and real music from Debian ``asterisk-moh-opsound-wav`` (``macroform-cold_day``) mixed in at
3 dB SNR. Definitions of WER, true speech intervals, boundary errors and SNR: :mod:`mikupal.testing.audio_eval`.

Tables:

1. **ASR, per clip** (backends called directly, each clip one utterance; faster-whisper also with the five clips
   packed into shared windows, as the asr stage does): WER of faster-whisper base (the offline
   preset's settings from ``conf/asr/faster_whisper.yaml``) and of pocketsphinx, on clean speech and on speech over
   music, with and without RNNoise; SI-SDR of the input and of RNNoise's output.
2. **Audio path end to end** (``mikupal.runner.run_pipeline`` with stages extract, separate, vad, asr, filter and
   the default ``segmentation`` rules) on the clips concatenated with 1.5 s silences (33.7 s), clean and over
   music: utterance boundary errors against the true speech intervals, and the WER of all utterance texts joined
   in time order against the joined references.

Usage::

    python benchmarks/measure_audio_quality.py [--snr 3] [--json report.json] [--no-pocketsphinx]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")

from mikupal.media import write_audio
from mikupal.testing.audio_eval import (
    boundary_errors,
    corpus_wer,
    librivox_test_set,
    mix_music,
    music_track,
    si_sdr,
)

log = logging.getLogger("measure_audio_quality")

#: Each clip gets music from a different place in the track (seconds), so the five mixes are not alike.
MUSIC_OFFSETS = (5.0, 35.0, 65.0, 95.0, 125.0)


def compose(overrides: list[str]):
    """The pipeline config as the CLI would compose it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from mikupal.paths import conf_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose("pipeline", overrides=overrides)


def asr_backend(kind: str):
    """The ASR backend exactly as configured in ``conf/asr/<kind>.yaml`` (device forced to the CPU)."""
    from hydra.utils import instantiate

    cfg = compose([f"asr={kind}", "input=x", "run_dir=x", "runner.device=cpu"])
    backend = instantiate(cfg.asr)
    backend.setup()
    return backend


def per_clip_table(snr: float, with_pocketsphinx: bool) -> tuple[list[dict], dict]:
    """Table 1 rows, and the per-clip hypotheses (for the JSON report)."""
    from mikupal.separate.rnnoise import RnnoiseSeparator

    data = librivox_test_set()
    track = music_track()
    clean = [c.audio for c in data.clips]
    noisy = [mix_music(a, track, snr, offset=o) for a, o in zip(clean, MUSIC_OFFSETS)]
    rnnoise = RnnoiseSeparator()
    rnnoise.setup()
    inputs = {
        "clean": clean,
        "clean+rnnoise": [rnnoise.separate(a, 16000) for a in clean],
        f"music {snr:g} dB": noisy,
        f"music {snr:g} dB+rnnoise": [rnnoise.separate(a, 16000) for a in noisy],
    }
    rnnoise.teardown()
    sdr = {
        f"music {snr:g} dB": np.mean([si_sdr(c, n) for c, n in zip(clean, noisy)]),
        f"music {snr:g} dB+rnnoise": np.mean([si_sdr(c, d) for c, d in zip(clean, inputs[f"music {snr:g} dB+rnnoise"])]),
    }
    rows: list[dict] = []
    hyps: dict = {}
    runs = [("faster_whisper", "one by one"), ("faster_whisper", "packed")]
    runs += [("pocketsphinx", "one by one")] if with_pocketsphinx else []
    backends = {}
    for kind, mode in runs:
        if kind not in backends:
            backends[kind] = asr_backend(kind)
        backend = backends[kind]
        for condition, audios in inputs.items():
            start = time.perf_counter()
            if mode == "packed":
                texts = [t.text for t in backend.transcribe_many(audios, 16000)]
            else:
                texts = [backend.transcribe(a, 16000).text for a in audios]
            elapsed = time.perf_counter() - start
            rows.append(
                {
                    "asr": kind,
                    "mode": mode,
                    "input": condition,
                    "wer": corpus_wer(data.references, texts),
                    "si_sdr_db": sdr.get(condition),
                    "rtf": elapsed / (sum(len(a) for a in audios) / 16000),
                }
            )
            hyps[f"{kind}/{mode}/{condition}"] = texts
    for backend in backends.values():
        backend.teardown()
    return rows, hyps


def run_audio_path(audio: np.ndarray, workdir: Path, name: str, overrides: list[str]) -> tuple[list[dict], dict]:
    """Run extract → separate → vad → asr → filter on one recording; returns (utterances, summary)."""
    from mikupal.runner import run_pipeline

    source = workdir / f"{name}.wav"
    write_audio(source, audio, 16000)
    run_dir = workdir / f"run-{name}"
    cfg = compose(
        [f"input={source}", f"run_dir={run_dir}", "stages=[extract,separate,vad,asr,filter]", "fail_fast=true"]
        + overrides
    )
    summary = run_pipeline(cfg)
    lines = (run_dir / "utterances.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()], summary


def pipeline_table(snr: float, workdir: Path, vads: list[str]) -> list[dict]:
    """Table 2 rows: every separate × vad pair with the default ASR settings, plus the offline preset's path
    (rnnoise, silero) with ASR packing off."""
    data = librivox_test_set()
    track = music_track()
    noisy = mix_music(data.audio, track, snr, intervals=data.speech_intervals)
    reference = " ".join(data.references)
    rows = []
    for condition, audio in (("clean", data.audio), (f"music {snr:g} dB", noisy)):
        variants = [(sep, vad, "packed") for sep in ("passthrough", "rnnoise") for vad in vads]
        variants.append(("rnnoise", "silero", "one by one"))
        for separate, vad, asr_mode in variants:
            tag = f"{condition.split()[0]}-{separate}-{vad}-{asr_mode.replace(' ', '')}"
            extra = ["asr.pack_seconds=null"] if asr_mode != "packed" else []
            utterances, summary = run_audio_path(
                audio, workdir, tag, [f"separate={separate}", f"vad={vad}", *extra]
            )
            spans = [(u["start"], u["end"]) for u in utterances]
            report = boundary_errors(data.speech_intervals, spans)
            text = " ".join(u["text"] or "" for u in sorted(utterances, key=lambda u: u["start"]))
            rows.append(
                {
                    "input": condition,
                    "separate": separate,
                    "vad": vad,
                    "asr": asr_mode,
                    "utterances": len(utterances),
                    "missed": report.missed,
                    "extra": report.extra,
                    "split": report.split,
                    "max_boundary_error_s": report.max_error,
                    "mean_boundary_error_s": report.mean_error,
                    "wer": corpus_wer([reference], [text]),
                    "spans": spans,
                    "wall_s": {k: v["wall_time_s"] for k, v in summary["stages"].items()},
                }
            )
    return rows


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snr", type=float, default=3.0, help="speech-to-music ratio in dB (default 3)")
    parser.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    parser.add_argument("--no-pocketsphinx", action="store_true", help="skip the pocketsphinx rows")
    parser.add_argument("--vad", nargs="+", default=["silero", "webrtc"], help="VAD backends for table 2")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    data = librivox_test_set()
    print(f"LibriVox clips: {len(data.clips)}, {sum(len(c.audio) for c in data.clips) / 16000:.1f} s, "
          f"{sum(len(r.split()) for r in data.references)} reference words; music: macroform-cold_day at {args.snr:g} dB SNR")
    print("true speech intervals (s):", ", ".join(f"{s:.2f}-{e:.2f}" for s, e in data.speech_intervals))

    rows, hyps = per_clip_table(args.snr, not args.no_pocketsphinx)
    print("\nTable 1. ASR word error rate per clip (backends called directly)")
    print(f"{'asr':<15} {'mode':<11} {'input':<22} {'WER':>7} {'SI-SDR dB':>10} {'RTF':>6}")
    for r in rows:
        print(
            f"{r['asr']:<15} {r['mode']:<11} {r['input']:<22} {r['wer']:>7.1%} {_fmt(r['si_sdr_db'], '>10.2f')} "
            f"{r['rtf']:>6.3f}"
        )

    with tempfile.TemporaryDirectory(prefix="mikupal-measure-") as tmp:
        prow = pipeline_table(args.snr, Path(tmp), args.vad)
    print("\nTable 2. Audio path end to end (extract, separate, vad, asr, filter; default segmentation) on the "
          "clips joined with 1.5 s silences")
    print(f"{'input':<14} {'separate':<12} {'vad':<8} {'asr':<11} {'utts':>5} {'miss':>5} {'extra':>5} {'split':>5} "
          f"{'max|Δ| s':>9} {'mean|Δ| s':>10} {'WER':>7}")
    for r in prow:
        print(
            f"{r['input']:<14} {r['separate']:<12} {r['vad']:<8} {r['asr']:<11} {r['utterances']:>5} {r['missed']:>5} "
            f"{r['extra']:>5} "
            f"{r['split']:>5} {r['max_boundary_error_s']:>9.3f} {r['mean_boundary_error_s']:>10.3f} {r['wer']:>7.1%}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"snr_db": args.snr, "truth": data.speech_intervals, "per_clip": rows, "hypotheses": hyps, "pipeline": prow},
                indent=2,
                default=float,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
