"""The offline fusion annotator's confidence on calm read speech (prints a table; no assertions).

The five LibriVox "Sense and Sensibility" utterances of Debian's ``pocketsphinx-testdata`` (calm narration, no
face) go through ``annotator=fusion`` with their transcripts and audio (text + prosody channels), for both label
sets; the table shows the label, its fused probability and ``emotion.confidence`` (calibrated on MELD train, see
``conf/calibration/fusion-v1.yaml``), next to the mean confidence of the same annotator on MELD dev transcripts as
recorded in the calibration file.

Usage::

    python benchmarks/measure_confidence.py
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from mikupal.annotate.fusion import FusionAnnotator
    from mikupal.paths import load_conf_yaml
    from mikupal.testing.media import LIBRIVOX_DIR, librivox_clips

    fusion = FusionAnnotator.from_config()
    fusion.setup()
    dev = {name: entry["dev"] for name, entry in load_conf_yaml("calibration", fusion.calibration)["label_sets"].items()}
    clips = librivox_clips()
    print("fusion annotator on LibriVox calm read speech (text + prosody, no face)")
    print(f"{'clip':<6} {'label set':<11} {'label':<16} {'p':>6} {'confidence':>11}")
    means = {}
    for name in ("emobench26", "meld7"):
        confidences = []
        for clip in clips:
            wav = LIBRIVOX_DIR / f"{clip.name}.wav"
            e = fusion.annotate_media(name, text=clip.transcript, audio=wav, modalities=("audio", "text"))
            confidences.append(e.confidence)
            print(f"{clip.name[-4:]:<6} {name:<11} {e.label:<16} {e.scores[e.label]:>6.3f} {e.confidence:>11.3f}")
        means[name] = confidences
    for name, values in means.items():
        print(f"confidence {name}: LibriVox mean {np.mean(values):.3f} (range {min(values):.3f}-{max(values):.3f}); "
              f"MELD dev mean {dev[name]['mean_confidence']:.3f} at accuracy {dev[name]['accuracy']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
