"""The tests' one Utterance factory (:func:`make_utterance`) and synthetic MIKU-PAL run directories.

A run directory here is what the pipeline leaves behind (DESIGN §2): ``utterances.jsonl`` (one Utterance per line,
written through :meth:`Utterance.to_dict`), ``audio/<id>.flac`` (16 kHz mono FLAC: a tone plus noise) and
``<stage>/stage.json`` for a few stages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from mikupal.ids import utterance_id
from mikupal.records import Emotion, Face, Utterance, Word

SR = 16000
LABELS = ["Joy", "Anger", "Calmness", "Interest", "Sadness", "Surprise"]


def write_audio(path: Path, seconds: float, freq: float, seed: int, samplerate: int = SR, channels: int = 1) -> None:
    """A tone with a little noise, as FLAC (16-bit)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * samplerate)) / samplerate
    signal = 0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)
    if channels > 1:
        signal = np.stack([signal] * channels, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), signal.astype(np.float32), samplerate, format="FLAC", subtype="PCM_16")


@dataclass
class RunDir:
    """A synthetic run directory.

    Attributes:
        path: the directory. utterances: the records written, in manifest order.
        face_clip: bytes of a face clip that :meth:`append` writes for an utterance whose ``face.clip`` is missing.
    """

    path: Path
    utterances: list[Utterance] = field(default_factory=list)
    face_clip: bytes | None = None

    @property
    def manifest(self) -> Path:
        return self.path / "utterances.jsonl"

    def append_line(self, line: str) -> int:
        """Append a raw manifest line; returns its 1-based line number."""
        with open(self.manifest, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        return len(self.manifest.read_text(encoding="utf-8").splitlines())

    def append(self, utt: Utterance, **extra_fields: Any) -> int:
        """Append one record (plus ``extra_fields``, e.g. ``speaker``, ``quality``), writing its face clip when
        :attr:`face_clip` is set and the file is missing; returns its line number."""
        if self.face_clip is not None and utt.face is not None and utt.face.clip:
            clip = self.path / utt.face.clip
            if not clip.exists():
                clip.parent.mkdir(parents=True, exist_ok=True)
                clip.write_bytes(self.face_clip)
        self.utterances.append(utt)
        return self.append_line(json.dumps({**utt.to_dict(), **extra_fields}))


#: "not given": the factory fills the field in its consistent default way (``None`` is a value of its own)
DEFAULT: Any = object()


def make_emotion(
    label: str,
    *,
    intensity: float = 0.7,
    rationale: str | None = None,
    votes: list[str] | None = None,
    annotator: str = "fusion-v1",
    prompt_version: str | None = "v1",
    confidence: float | None = None,
) -> Emotion:
    """An annotator's answer: ``label`` with its votes (three agreeing rollouts unless given) and a rationale."""
    return Emotion(
        label=label,
        intensity=intensity,
        rationale=rationale if rationale is not None else f"The speaker sounds like {label.lower()}.",
        scores=None,
        votes=votes if votes is not None else [label, label, label],
        annotator=annotator,
        prompt_version=prompt_version,
        confidence=confidence,
    )


def make_utterance(
    video: str,
    index: int = 0,
    *,
    label: str | None = "Joy",
    seconds: float = 1.5,
    asd_score: float | None = 0.9,
    annotator: str = "fusion-v1",
    prompt_version: str | None = "v1",
    start: float | None = None,
    confidence: float | None = None,
    uid: str | None = None,
    end: float | None = None,
    source: str = DEFAULT,
    text: str | None = DEFAULT,
    language: str | None = "en",
    words: list[Word] | None = DEFAULT,
    face: Face | None = DEFAULT,
    emotion: Emotion | None = DEFAULT,
) -> Utterance:
    """The one Utterance factory of the tests: a record whose id, times, paths, words and face are consistent.

    By default: id ``<video>-<index:05d>``, ``start = 10 * index``, ``end = start + seconds``, audio
    ``audio/<id>.flac``, two words inside the span, a face (track 1, clip ``faces/<id>.mp4``, ``asd_score``; none
    when ``asd_score`` is None) and an emotion of ``label`` (:func:`make_emotion`; none when ``label`` is None).
    Any field can be given instead (``uid``, ``end``, ``source``, ``text``, ``language``, ``words``, ``face``,
    ``emotion``; ``None`` leaves it empty), so the other test helpers build their records here too.
    """
    uid = utterance_id(video, index) if uid is None else uid
    start = 10.0 * index if start is None else start
    end = start + seconds if end is None else end
    if words is DEFAULT:
        words = [Word("hello", start + 0.1, start + 0.5, 0.97),
                 Word("there", start + 0.6, start + min(seconds, 1.2), None)]
    if face is DEFAULT:
        face = (Face(track_id=1, box=[10.0, 20.0, 110.0, 140.0], asd_score=asd_score, clip=f"faces/{uid}.mp4")
                if asd_score is not None else None)
    if emotion is DEFAULT:
        emotion = (make_emotion(label, annotator=annotator, prompt_version=prompt_version, confidence=confidence)
                   if label is not None else None)
    return Utterance(
        id=uid,
        video_id=video,
        source=f"videos/{video}.mp4" if source is DEFAULT else source,
        start=start,
        end=end,
        audio=f"audio/{uid}.flac",
        text=f"hello there from {video} number {index}" if text is DEFAULT else text,
        language=language,
        words=words,
        face=face,
        emotion=emotion,
    )


def write_stage_json(path: Path, stage: str, config: dict[str, Any]) -> None:
    (path / stage).mkdir(parents=True, exist_ok=True)
    (path / stage / "stage.json").write_text(
        json.dumps(
            {
                "stage": stage,
                "config": config,
                "config_hash": f"{stage}-hash-1234",
                "mikupal_version": "0.1.0",
                "upstream_hash": "upstream-hash",
                "schema_version": 1,
            }
        ),
        encoding="utf-8",
    )
