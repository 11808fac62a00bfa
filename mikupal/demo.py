"""``mikupal-demo``: build a short sample video from real media and run the pipeline on it, offline.

The sample is made at run time from data that registry packages ship: LibriVox read speech (Debian
``pocketsphinx-testdata``) over a real face photo (scikit-image's ``astronaut``) whose mouth opens with the
speech envelope, with a soft bed of real music (Debian ``asterisk-moh-opsound-wav``) under it. Then the
default configuration (``preset=offline``) runs on it, exactly as ``mikupal input=... run_dir=...`` would.

    mikupal-demo [run_dir=demo_run] [any mikupal override, e.g. vad=webrtc]
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger("mikupal.demo")


def speech_envelope(audio: np.ndarray, sampling_rate: int, fps: float) -> np.ndarray:
    """RMS envelope of ``audio`` at ``fps`` frames per second, scaled to 0..1 (for animating a mouth)."""
    hop = int(sampling_rate / fps)
    n = len(audio) // hop
    rms = np.sqrt(np.mean(audio[: n * hop].reshape(n, hop) ** 2, axis=1))
    return np.clip(rms / (np.percentile(rms, 95) + 1e-9), 0, 1)


def talking_face_frame(photo: np.ndarray, opening: float, mouth_box: tuple[int, int, int, int]) -> np.ndarray:
    """The photo with a dark mouth gap whose height follows ``opening`` (0..1), inside ``mouth_box`` (x1, y1, x2, y2)."""
    frame = photo.copy()
    x1, y1, x2, y2 = mouth_box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half_w, half_h = (x2 - x1) / 2, max(0.5, opening * (y2 - y1) / 2)
    yy, xx = np.mgrid[y1:y2, x1:x2]
    inside = ((xx - cx) / half_w) ** 2 + ((yy - cy) / half_h) ** 2 <= 1
    frame[y1:y2, x1:x2][inside] = (frame[y1:y2, x1:x2][inside] * 0.25).astype(np.uint8)
    return frame


#: Mouth region of scikit-image's astronaut photo (512×512), in pixels.
ASTRONAUT_MOUTH = (204, 137, 246, 157)


def make_demo_video(path: str | Path, fps: int = 25) -> Path:
    """Write the demo sample (about 40 s) to ``path``."""
    from mikupal.testing.media import concat_with_silences, face_photo, librivox_clips, mix_at_snr, music, write_video

    clips = librivox_clips()
    speech, _ = concat_with_silences([c.audio for c in clips], gap=1.2, lead=0.8)
    audio = mix_at_snr(speech, music("manolo_camp-morning_coffee"), snr_db=15.0)
    photo = face_photo()
    envelope = speech_envelope(speech, 16000, fps)

    def frame_at(index: int, _t: float) -> np.ndarray:
        opening = float(envelope[min(index, len(envelope) - 1)])
        return talking_face_frame(photo, opening, ASTRONAUT_MOUTH)

    return write_video(path, audio, 16000, frame_at, duration=len(audio) / 16000, fps=fps)


def main(argv: list[str] | None = None) -> int:
    """Build the sample under ``<run_dir>/input/`` and run the pipeline on it; print the summary and utterances."""
    from hydra import compose, initialize_config_dir

    from mikupal.paths import conf_dir
    from mikupal.runner import format_summary, run_pipeline

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = list(sys.argv[1:] if argv is None else argv)
    run_dir = Path(next((o.split("=", 1)[1] for o in overrides if o.startswith("run_dir=")), "demo_run"))
    overrides = [o for o in overrides if not o.startswith("run_dir=")]
    sample = run_dir / "input" / "librivox_astronaut.mp4"
    if not sample.exists():
        log.info("building the demo sample %s from LibriVox speech, real music and a real face photo", sample)
        make_demo_video(sample)
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        cfg = compose("pipeline", overrides=[f"input={sample}", f"run_dir={run_dir}", *overrides])
    summary = run_pipeline(cfg)
    print(format_summary(summary))  # noqa: T201 - the demo's result
    utterances = run_dir / "utterances.jsonl"
    if utterances.exists():
        print(f"\nfirst utterances of {utterances}:")  # noqa: T201
        for line in utterances.read_text().splitlines()[:3]:
            u = json.loads(line)
            emotion = u["emotion"]["label"] if u["emotion"] else None
            face = u["face"]["asd_score"] if u["face"] else None
            print(f"  {u['id']}  {u['start']:6.2f}-{u['end']:6.2f}s  text={u['text']!r}  face_asd={face}  emotion={emotion}")  # noqa: T201
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
