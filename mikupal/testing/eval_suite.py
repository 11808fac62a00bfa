"""Helpers for the evaluation-suite tests: config composition, run directories, a fake annotator."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, OmegaConf, open_dict

from mikupal.records import Emotion, Utterance
from mikupal.testing.config import compose_pipeline

_REPO = Path(__file__).resolve().parents[2]


def _meld_dir() -> Path:
    """MELD label CSVs: ``$MIKUPAL_MELD_DIR``, else ``data/meld`` in the repository, else ``../shared/data/meld``."""
    if os.environ.get("MIKUPAL_MELD_DIR"):
        return Path(os.environ["MIKUPAL_MELD_DIR"])
    for candidate in (_REPO / "data" / "meld", _REPO.parent / "shared" / "data" / "meld"):
        if candidate.is_dir():
            return candidate
    return _REPO / "data" / "meld"


MELD_DIR = _meld_dir()


def compose_eval(*overrides: str, annotator: dict | None = None) -> DictConfig:
    """``conf/eval.yaml`` composed as ``mikupal-eval`` would, with overrides (and an inline annotator node)."""
    cfg = compose_pipeline(*overrides, config_name="eval")
    if annotator is not None:
        with open_dict(cfg):
            cfg.annotator = OmegaConf.create(annotator)
    return cfg


def utterance(uid: str, label: str | None, *, votes: list[str] | None = None, source: str | None = None,
              start: float = 0.0, end: float = 2.0, text: str = "hello", clip: str | None = None) -> Utterance:
    """A finished utterance record with an emotion (or none when ``label`` is None), from the one factory."""
    from mikupal.records import Face
    from mikupal.testing.records import make_emotion, make_utterance

    emotion = None
    if label is not None:
        emotion = make_emotion(label, intensity=0.5, rationale=f"because {label}",
                               votes=votes if votes is not None else [label], annotator="test-model")
    face = Face(track_id=0, box=[0, 0, 10, 10], asd_score=0.9, clip=clip) if clip else None
    return make_utterance(uid.rsplit("-", 1)[0], uid=uid, source=source or f"videos/{uid}.mp4", start=start, end=end,
                          text=text, words=None, face=face, emotion=emotion)


def write_run(run_dir: Path, utterances: Iterable[Utterance], summary: dict | None = None) -> Path:
    """A minimal run directory: ``utterances.jsonl`` (+ ``summary.json``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "utterances.jsonl", "w", encoding="utf-8") as f:
        for utt in utterances:
            f.write(json.dumps(utt.to_dict()) + "\n")
    if summary is not None:
        (run_dir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return run_dir


# --- a fake annotator and pipeline entry point for task=predict -------------------------------------------------

CALLS: list[dict[str, Any]] = []
FAIL_IDS: set[str] = set()

_KEYWORDS = {"joy": ("great", "love", "happy", "!"), "anger": ("hate", "stupid"), "sadness": ("sorry", "sad"),
             "surprise": ("what?", "really?"), "fear": ("scared",), "disgust": ("gross", "ew")}


class KeywordAnnotator:
    """A deterministic text-only stand-in for an annotator backend: keyword rules over the transcript."""

    def __init__(self, modalities: list[str], rollouts: int = 1, tag: str = "a") -> None:
        self.modalities = list(modalities)
        self.rollouts = rollouts
        self.tag = tag

    def label(self, text: str) -> str:
        low = text.lower()
        for label, words in _KEYWORDS.items():
            if any(w in low for w in words):
                return label
        return "neutral"


def annotate_utterances(utterances, *, annotator_cfg, labels, modalities, work_dir, cfg):
    """The ``predict.annotate_fn`` contract (see eval/predict.py), recording each call; ``FAIL_IDS`` fail."""
    from hydra.utils import instantiate

    annotator = instantiate(annotator_cfg)
    CALLS.append({"ids": [u.id for u in utterances], "modalities": list(modalities), "labels": labels.name,
                  "annotator_modalities": list(annotator.modalities), "work_dir": str(work_dir),
                  "texts": [u.text for u in utterances], "sources": [u.source for u in utterances],
                  "video_ids": [u.video_id for u in utterances], "audio": [u.audio for u in utterances]})
    for utt in utterances:
        if utt.id in FAIL_IDS:
            yield utt, RuntimeError(f"cannot label {utt.id}")
            continue
        label = annotator.label(utt.text or "")
        yield utt, Utterance(**{**utt.__dict__, "emotion": Emotion(
            label=label, intensity=0.5, rationale="keywords", scores=None, votes=[label] * annotator.rollouts,
            annotator=f"keyword-{annotator.tag}", prompt_version=None)})


def annotate_then_crash(utterances, *, annotator_cfg, labels, modalities, work_dir, cfg):
    """Labels ten utterances, then fails the way a lost connection would."""
    gen = annotate_utterances(utterances, annotator_cfg=annotator_cfg, labels=labels, modalities=modalities,
                              work_dir=work_dir, cfg=cfg)
    for k, pair in enumerate(gen):
        if k == 10:
            raise ConnectionError("connection lost")
        yield pair
