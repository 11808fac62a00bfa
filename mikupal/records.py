"""Typed records that stages exchange as JSONL manifests.

Every record is a dataclass with ``to_dict`` / ``from_dict``; ``from_dict(to_dict(x)) == x`` holds for all of
them (tested). Times are seconds (float) in the *source video's* time line. Paths inside records are relative to
the run directory, so a run directory can be moved.

The :class:`Utterance` is the public contract (DESIGN §3): one per line of ``utterances.jsonl``, optional parts
``None`` (``null`` in JSON), never missing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar


class RecordError(ValueError):
    """A manifest line does not have the shape its record type needs."""


def _check_keys(cls: type, data: dict[str, Any]) -> None:
    names = {f.name for f in fields(cls)}
    missing = [n for n in names if n not in data]
    unknown = [k for k in data if k not in names]
    if missing or unknown:
        raise RecordError(
            f"{cls.__name__}: missing keys {sorted(missing)}, unknown keys {sorted(unknown)} in {sorted(data)}"
        )


@dataclass(frozen=True)
class Video:
    """One input video: what the ``extract`` stage consumes.

    Attributes:
        video_id: stable id (slug of the file stem + short hash of the resolved path), see :mod:`mikupal.ids`.
        source: the input path exactly as the user gave it (or as listed in the input list file).
        path: the resolved absolute path that is read.
    """

    video_id: str
    source: str
    path: str

    key: ClassVar[str] = "video_id"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Video":
        _check_keys(cls, data)
        return cls(**data)


@dataclass(frozen=True)
class VideoStream:
    """Properties of a source's video stream, as read by the container demuxer.

    Attributes:
        width, height: frame size in pixels.
        fps: average frame rate (frames per second); variable-frame-rate sources report the average.
        duration: stream duration in seconds (``None`` when the container does not say).
    """

    width: int
    height: int
    fps: float
    duration: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VideoStream":
        _check_keys(cls, data)
        return cls(**data)


@dataclass(frozen=True)
class Recording:
    """The audio of one video at one processing step (extracted, then separated).

    Attributes:
        video_id, source: as in :class:`Video`.
        audio: path of the 16 kHz mono audio, relative to the run directory.
        sampling_rate: always 16000 in this pipeline; stored so readers need not assume it.
        duration: audio duration in seconds (after trimming codec padding to the stream duration).
        video: the video stream's properties, or ``None`` for an audio-only source.
        kind: ``"raw"`` after ``extract``, ``"vocals"`` after ``separate``.
    """

    video_id: str
    source: str
    audio: str
    sampling_rate: int
    duration: float
    video: VideoStream | None
    kind: str

    key: ClassVar[str] = "video_id"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Recording":
        _check_keys(cls, data)
        video = data["video"]
        return cls(**{**data, "video": VideoStream.from_dict(video) if video is not None else None})


@dataclass(frozen=True)
class Word:
    """One recognised word with its time span (source-video seconds) and recogniser confidence (0..1)."""

    word: str
    start: float
    end: float
    score: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Word":
        _check_keys(cls, data)
        return cls(**data)


@dataclass(frozen=True)
class Face:
    """The active speaker's face in an utterance.

    Attributes:
        track_id: id of the face track chosen by active speaker detection (unique within the utterance).
        box: median box ``[x1, y1, x2, y2]`` of the track in source-frame pixels.
        asd_score: active-speaker score of the track, 0..1.
        clip: path of the face-crop clip with the utterance audio (``faces/<id>.mp4``), relative to the run
            directory, or ``None`` when no clip was written.
    """

    track_id: int
    box: list[float]
    asd_score: float
    clip: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Face":
        _check_keys(cls, data)
        return cls(**{**data, "box": list(data["box"])})


@dataclass(frozen=True)
class Emotion:
    """The emotion annotation of an utterance.

    Attributes:
        label: a label of the active label set (majority of ``votes``).
        intensity: 0..1.
        rationale: the annotator's explanation, naming its evidence.
        scores: ``{label: probability}`` when the backend has them, else ``None``.
        votes: one label per rollout (for agreement statistics); ``[label]`` for a single rollout.
        annotator: exact model id (e.g. ``gemini-2.0-flash``, ``fusion-v1``).
        prompt_version: version of the prompt template used (``None`` for backends without a prompt).
        confidence: 0..1, how far to trust ``label``: the mean over rollouts of the probability each rollout gives
            the label (:func:`mikupal.annotate.base.label_confidence`). For API and local MLLMs without
            probabilities that is the share of rollouts agreeing with the label; where the model gives per-label
            probabilities, their mean; for the offline fusion annotator, a probability that the label is right,
            calibrated on MELD train (:mod:`mikupal.annotate.fusion`). ``None`` only in manifests written before the
            field existed (a line without the key reads as ``None``).
    """

    label: str
    intensity: float
    rationale: str
    scores: dict[str, float] | None
    votes: list[str]
    annotator: str
    prompt_version: str | None
    confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Emotion":
        _check_keys(cls, {"confidence": None, **data})  # manifests older than the confidence field lack the key
        return cls(**{**data, "votes": list(data["votes"])})


@dataclass(frozen=True)
class Speaker:
    """Who speaks in an utterance, from speaker clustering within its video (the ``speakers`` stage).

    Attributes:
        id: ``"<video_id>-spkN"``; N numbers the video's clusters in order of their first utterance (0-based).
            Ids are only comparable within one video.
        similarity: cosine similarity (-1..1) of the utterance's embedding to its cluster's centroid (the
            L2-normalised mean of the members' embeddings); 1.0 for a cluster of one utterance.
        n_speakers: distinct voices heard inside the utterance (clusters of its 1.6 s partial embeddings);
            ``filter.max_speakers_per_utterance`` drops utterances above a limit.
    """

    id: str
    similarity: float
    n_speakers: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Speaker":
        _check_keys(cls, data)
        return cls(**data)


@dataclass(frozen=True)
class Quality:
    """Speech quality of an utterance, predicted without a clean reference (the ``quality`` stage).

    DNSMOS (Reddy et al., ICASSP 2021/2022) on 1..5 MOS scales: ``dnsmos_sig`` speech signal, ``dnsmos_bak``
    background noise (higher = less intrusive), ``dnsmos_ovrl`` overall (ITU-T P.835 axes), ``dnsmos_p808``
    overall quality by the P.808-trained model; each the mean over ``dnsmos_windows`` 9.01 s windows.
    """

    dnsmos_sig: float
    dnsmos_bak: float
    dnsmos_ovrl: float
    dnsmos_p808: float
    dnsmos_windows: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Quality":
        _check_keys(cls, data)
        return cls(**data)


@dataclass(frozen=True)
class Utterance:
    """One utterance: the unit of the final dataset (one line of ``utterances.jsonl``).

    Utterances are created by the ``vad`` stage (times and audio) and filled in by later stages (``asr``:
    text, language, words; ``asd``: face; ``speakers``: speaker; ``quality``: quality; ``annotate``: emotion). A
    field a stage has not filled yet is ``None``.

    Attributes:
        id: ``"<video_id>-<5-digit index>"``, stable across reruns.
        video_id: stable id of the source video.
        source: the input video path as given.
        start, end: seconds in the source video.
        audio: ``audio/<id>.flac`` (16 kHz mono), relative to the run directory.
        text: transcript. language: ISO 639-1 code.
        words: recognised words with source-video times.
        face: the active speaker's face, or ``None``.
        emotion: the emotion annotation, or ``None``.
        speaker: the speaker cluster within the video, or ``None`` (stage not run, or the utterance was skipped).
        quality: DNSMOS scores, or ``None`` (stage not run, or the audio was too short or silent to score).

    Example::

        {"id": "interview-1a2b3c4d-00003", "video_id": "interview-1a2b3c4d", "source": "videos/interview.mp4",
         "start": 12.48, "end": 15.9, "audio": "audio/interview-1a2b3c4d-00003.flac", "text": "I can't believe it!",
         "language": "en", "words": [{"word": "I", "start": 12.5, "end": 12.6, "score": 0.98}, ...],
         "face": null, "emotion": null, "speaker": {"id": "interview-1a2b3c4d-spk0", "similarity": 0.91,
         "n_speakers": 1}, "quality": {"dnsmos_sig": 3.5, "dnsmos_bak": 3.9, "dnsmos_ovrl": 3.1, "dnsmos_p808": 3.6,
         "dnsmos_windows": 1}}
    """

    id: str
    video_id: str
    source: str
    start: float
    end: float
    audio: str
    text: str | None = None
    language: str | None = None
    words: list[Word] | None = None
    face: Face | None = None
    emotion: Emotion | None = None
    speaker: Speaker | None = None
    quality: Quality | None = None

    key: ClassVar[str] = "id"

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "video_id": self.video_id,
            "source": self.source,
            "start": self.start,
            "end": self.end,
            "audio": self.audio,
            "text": self.text,
            "language": self.language,
            "words": [w.to_dict() for w in self.words] if self.words is not None else None,
            "face": self.face.to_dict() if self.face is not None else None,
            "emotion": self.emotion.to_dict() if self.emotion is not None else None,
            "speaker": self.speaker.to_dict() if self.speaker is not None else None,
            "quality": self.quality.to_dict() if self.quality is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Utterance":
        data = {"speaker": None, "quality": None, **data}  # manifests older than these fields lack the keys
        _check_keys(cls, data)
        return cls(
            **{
                **data,
                "words": [Word.from_dict(w) for w in data["words"]] if data["words"] is not None else None,
                "face": Face.from_dict(data["face"]) if data["face"] is not None else None,
                "emotion": Emotion.from_dict(data["emotion"]) if data["emotion"] is not None else None,
                "speaker": Speaker.from_dict(data["speaker"]) if data["speaker"] is not None else None,
                "quality": Quality.from_dict(data["quality"]) if data["quality"] is not None else None,
            }
        )


@dataclass(frozen=True)
class ItemError:
    """One failed item: a line of ``errors.jsonl``.

    Attributes:
        stage: stage name. item_id: the failed item's id. error_type: exception class name.
        message: what went wrong and, where known, how to fix it. source: the input path concerned.
    """

    stage: str
    item_id: str
    error_type: str
    message: str
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ItemError":
        _check_keys(cls, data)
        return cls(**data)


#: Record types by name, for manifests that name their type.
RECORD_TYPES: dict[str, type] = {
    "Video": Video,
    "Recording": Recording,
    "Utterance": Utterance,
    "ItemError": ItemError,
}

__all__ = [
    "Emotion",
    "Face",
    "ItemError",
    "RECORD_TYPES",
    "Quality",
    "Recording",
    "RecordError",
    "Speaker",
    "Utterance",
    "Video",
    "VideoStream",
    "Word",
]


def utterance_field_names() -> list[str]:
    """Names of the :class:`Utterance` fields in contract order (DESIGN §3)."""
    return [f.name for f in fields(Utterance)]

