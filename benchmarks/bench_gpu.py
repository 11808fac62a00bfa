"""GPU throughput of ``preset=paper``'s batched models: audio-hours per GPU-hour per stage (issue 15, item 4).

One command, run on a machine with a CUDA GPU::

    python benchmarks/bench_gpu.py [--max-seconds 120] [--device cuda] [--random-weights] [--asr-model NAME]

Stages, each with the batch sizes of the paper preset's config (``preset=paper``):

* **faces**: S3FD (:class:`mikupal.models.s3fd.S3fd`) over batches of ``faces.batch_size`` 1280x720 frames at
  25 fps, ``faces.forward_batch`` frames per forward pass, at ``faces.scale`` (a real face photo, scikit-image's
  astronaut, moving across a grey frame);
* **asd**: TalkNet (:class:`mikupal.models.talknet.TalkNetScorer`) over a batch of 6 s face tracks
  (:meth:`~mikupal.models.talknet.TalkNetScorer.score_many`, ``asd.max_batch_frames`` video frames per pass, the
  config's ``durations``), mouth crops of the same photo with LibriVox audio;
* **asr**: Whisper large-v3 through faster-whisper (``conf/asr/whisper_large_v3.yaml``: ``batch_size`` windows
  per batched generation, beam 5, word timestamps) on LibriVox utterances from Debian ``pocketsphinx-testdata``.

Each stage processes ``--max-seconds`` of media after a short warm-up (CUDA start, cuDNN autotuning); its figure is
media seconds / wall seconds, i.e. audio-hours per GPU-hour (for asd: face-track hours, one track per speaker).
Weights are those placed for the paper preset (``mikupal-models list --preset paper``); ``--random-weights`` runs
S3FD and TalkNet with a random initialisation when their files are absent (the speed is the same, the outputs are
meaningless), and ``--asr-model whisper-base`` swaps the Whisper weights (for a smoke run on a CPU).

Without CUDA the command prints why and exits 0 without measuring, unless ``--device cpu`` asks for a CPU run.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger("bench_gpu")

VIDEO_FPS = 25
RATE = 16000
TRACK_SECONDS = 6


def paper_config(device: str):
    """The pipeline config of ``preset=paper`` as the CLI composes it."""
    from mikupal.testing.config import compose_pipeline

    return compose_pipeline("preset=paper", "input=x", "run_dir=x", f"runner.device={device}")


def timed(run: Callable[[], object], device: str) -> float:
    """Wall seconds of ``run()``, waiting for queued CUDA work before and after."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    run()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def torch_weights(name: str, random_ok: bool) -> Path | None:
    """The placed checkpoint of registry entry ``name``; ``None`` (random init) when absent and allowed."""
    from mikupal.registry import resolve

    try:
        return resolve(name)
    except FileNotFoundError as e:
        if not random_ok:
            raise SystemExit(f"{e}\nPlace the file (mikupal-models list --preset paper) or pass --random-weights") from e
        log.warning("%s weights not placed: random initialisation (speed only)", name)
        return None


def moving_face_frames(count: int, size: tuple[int, int], start: int = 0) -> list[np.ndarray]:
    """``count`` RGB frames of ``size`` (width, height) with the astronaut photo moving right."""
    import cv2

    from mikupal.testing.media import face_photo

    width, height = size
    side = min(height * 2 // 3, 512)
    photo = cv2.resize(face_photo(), (side, side))
    frames = []
    for i in range(start, start + count):
        frame = np.full((height, width, 3), 90, np.uint8)
        x = (i * 4) % max(1, width - side)
        y = (height - side) // 2
        frame[y : y + side, x : x + side] = photo
        frames.append(frame)
    return frames


def bench_faces(cfg, device: str, seconds: float, size: tuple[int, int], random_ok: bool) -> dict:
    """S3FD over frame batches: ``faces.batch_size`` frames per call, ``faces.forward_batch`` per forward pass."""
    from omegaconf import ListConfig

    from mikupal.models.s3fd import S3fd

    faces = cfg.faces
    scales = [float(s) for s in faces.scale] if isinstance(faces.scale, ListConfig | list) else [float(faces.scale)]
    detector = S3fd(torch_weights(str(faces.model), random_ok), device=device)
    batch, forward = int(faces.batch_size), int(faces.forward_batch)
    frames_total = max(1, round(seconds * VIDEO_FPS))

    def run(total: int) -> int:
        found = 0
        for start in range(0, total, batch):
            frames = moving_face_frames(min(batch, total - start), size, start)
            found += sum(len(d) for d in detector.detect_many(frames, float(faces.conf_threshold), scales, forward))
        return found

    timed(lambda: run(min(forward, frames_total)), device)  # warm-up
    wall = timed(lambda: run(frames_total), device)
    return {"stage": "faces", "model": f"S3FD x{scales} {size[0]}x{size[1]}", "batch": f"{batch} frames, {forward}/pass",
            "media_s": frames_total / VIDEO_FPS, "wall_s": wall}


def speech(seconds: float) -> list[np.ndarray]:
    """LibriVox utterances (the five clips, repeated) adding up to at least ``seconds`` (at least one)."""
    from mikupal.testing.media import librivox_clips

    clips = [c.audio for c in librivox_clips(RATE)]
    out: list[np.ndarray] = []
    while not out or sum(len(a) for a in out) < seconds * RATE:
        out.append(clips[len(out) % len(clips)])
    return out


def bench_asd(cfg, device: str, seconds: float, random_ok: bool) -> dict:
    """TalkNet over a batch of face tracks (:meth:`TalkNetScorer.score_many`)."""
    from mikupal.models.talknet import TalkNetScorer, mouth_region

    asd = cfg.asd
    scorer = TalkNetScorer(
        torch_weights(str(asd.model), random_ok), device=device, durations=list(asd.durations),
        max_batch_frames=int(asd.max_batch_frames),
    )
    audio = np.concatenate(speech(seconds))
    track_s = min(TRACK_SECONDS, seconds)
    n_tracks = max(1, int(np.ceil(seconds / track_s)))
    frames = round(track_s * VIDEO_FPS)
    crops = mouth_region(np.stack(moving_face_frames(frames, (224, 224))))
    tracks = []
    for k in range(n_tracks):
        piece = np.resize(audio[k * frames * 640 :], frames * 640).astype(np.float32)
        tracks.append((crops, piece))
    timed(lambda: scorer.score_many(tracks[:1]), device)  # warm-up
    wall = timed(lambda: scorer.score_many(tracks), device)
    return {"stage": "asd", "model": "TalkNet", "batch": f"{n_tracks} tracks, {int(asd.max_batch_frames)} frames/pass",
            "media_s": n_tracks * frames / VIDEO_FPS, "wall_s": wall}


def bench_asr(cfg, device: str, seconds: float, model: str | None) -> dict:
    """Whisper (large-v3 unless ``model``) through faster-whisper, windows in batches of ``asr.batch_size``."""
    from hydra.utils import instantiate

    overrides = {"model": model} if model else {}
    backend = instantiate(cfg.asr, **overrides)
    backend.setup()
    utterances = speech(seconds)
    try:
        timed(lambda: backend.transcribe_many(utterances[:1], RATE), device)  # warm-up
        wall = timed(lambda: backend.transcribe_many(utterances, RATE), device)
    finally:
        backend.teardown()
    return {"stage": "asr", "model": f"Whisper {backend.model}", "batch": f"{backend.batch_size} windows",
            "media_s": sum(len(a) for a in utterances) / RATE, "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (a smoke run; default cuda)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="media seconds per stage (default 120)")
    parser.add_argument("--frame-size", default="1280x720", help="faces: frame size WxH (default 1280x720)")
    parser.add_argument("--stages", default="faces,asd,asr", help="comma-separated subset of faces,asd,asr")
    parser.add_argument("--random-weights", action="store_true", help="S3FD/TalkNet: random init if not placed")
    parser.add_argument("--asr-model", help="Whisper registry name or folder instead of the preset's large-v3")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("TQDM_DISABLE", "1")

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu: CUDA is not available on this machine (no GPU lent): nothing measured. "
              "Run it where a GPU is, or with --device cpu for a smoke run.")
        return 0
    width, height = (int(v) for v in args.frame_size.lower().split("x"))
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(stages) - {"faces", "asd", "asr"}
    if unknown:
        parser.error(f"--stages: unknown {sorted(unknown)}; use faces, asd, asr")
    cfg = paper_config(args.device)
    rows = []
    for stage in stages:
        if stage == "faces":
            rows.append(bench_faces(cfg, args.device, args.max_seconds, (width, height), args.random_weights))
        elif stage == "asd":
            rows.append(bench_asd(cfg, args.device, args.max_seconds, args.random_weights))
        else:
            rows.append(bench_asr(cfg, args.device, args.max_seconds, args.asr_model))
        log.info("%s done: %.1f s of media in %.2f s", stage, rows[-1]["media_s"], rows[-1]["wall_s"])
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    name = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else "CPU"
    print(f"\npreset=paper models on {name} ({args.device}); {args.max_seconds:g} s of media per stage\n")
    print("| stage | model | batch | media s | wall s | audio-h per GPU-h |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['stage']} | {r['model']} | {r['batch']} | {r['media_s']:.1f} | {r['wall_s']:.2f} | "
              f"{r['media_s'] / r['wall_s']:.1f} |")
    if args.device.startswith("cuda"):
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 1024**3:.2f} GiB (torch stages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
