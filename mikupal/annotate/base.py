"""Backend interface of the ``annotate`` stage: one request in, one rollout's answer out; votes and their tie rule.

An :class:`Annotator` receives an :class:`AnnotationRequest` (one utterance: its face-crop clip with audio when a
face was found, else its audio; the transcript and language; optionally the transcripts of preceding utterances of
the same video; the active label set; the modalities to use) and returns a :class:`RolloutAnswer` (label, intensity,
rationale, per-label scores when the backend has them, token usage and cost). The stage asks ``annotator.rollouts``
times (rollout index 0..N-1) and combines the answers with :func:`aggregate` into the Utterance ``emotion``.

Majority vote and its tie rule (:func:`aggregate`): the label with the most votes wins; among labels tied on votes,
the one with the highest summed score over the rollouts (backends with per-label scores), then the highest summed
intensity of the rollouts that voted for it, then the one that comes first in the label set's order. The winner's
intensity is the mean intensity of the rollouts that voted for it, its rationale that of the first such rollout.

Confidence (:func:`label_confidence`, ``Emotion.confidence``, 0..1): the mean, over the rollouts, of the probability
each rollout gives the winning label. A rollout counts with

1. its backend's own confidence in its label (:attr:`RolloutAnswer.confidence`; the fusion annotator's is calibrated
   on MELD train) when it voted for the winner and has one;
2. else the model's own probability of the winner (``scores[winner]``) when it has per-label scores;
3. else 1 when it voted for the winner, 0 when it did not.

So for API and local MLLMs without probabilities it is the **share of rollouts that agree with the label** (one
rollout always gives 1.0: ask for ``annotator.rollouts`` >= 3 for a confidence that means something), and where the
model gives probabilities it is their mean over rollouts, which reduces to the vote share when every rollout is
certain.
"""

from __future__ import annotations

import logging
import mimetypes
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from mikupal.labels import LabelSet
from mikupal.records import Emotion, Word

log = logging.getLogger(__name__)

MODALITIES = ("video", "audio", "text")


class AnnotationError(RuntimeError):
    """An utterance could not be annotated (invalid replies, retries exhausted, media problem).

    Attributes:
        usage: what was spent before failing (requests, tokens, cost), so budgets stay honest.
    """

    def __init__(self, message: str, usage: "Usage | None" = None) -> None:
        super().__init__(message)
        self.usage = usage or Usage()


class AnnotatorConfigError(ValueError):
    """The annotator is configured in a way that cannot work; the message names the key and the fix."""


def check_modalities(modalities: Iterable[str]) -> frozenset[str]:
    """Validate ``annotator.modalities``: a non-empty subset of video, audio, text.

    Raises:
        AnnotatorConfigError: unknown or no modality.
    """
    mods = frozenset(str(m) for m in modalities)
    unknown = sorted(mods - set(MODALITIES))
    if unknown or not mods:
        raise AnnotatorConfigError(
            f"annotator.modalities={sorted(mods)}: must be a non-empty subset of {list(MODALITIES)}"
            + (f" (unknown: {unknown})" if unknown else "")
        )
    return mods


@dataclass(frozen=True)
class MediaPart:
    """One media input an API backend sends.

    Attributes:
        path: the source file (absolute).
        kind: ``video`` or ``audio``.
        mime_type: of the source file (e.g. ``video/mp4``, ``audio/flac``).
        with_audio: for ``video``: whether its audio track is sent with it (else the backend sends the video stream
            only, remuxed without re-encoding).
    """

    path: Path
    kind: str
    mime_type: str
    with_audio: bool = False


@dataclass(frozen=True)
class AnnotationRequest:
    """One utterance to annotate.

    Attributes:
        item_id: the utterance id (for logs and file names).
        label_set: the active label set.
        modalities: which of video, audio, text to use.
        transcript: the utterance's transcript (``None`` if none). language: its ISO code.
        face_clip: absolute path of the face-crop clip with audio (``faces/<id>.mp4``), or ``None`` (no face found).
        audio: absolute path of the utterance audio (``audio/<id>.flac``, 16 kHz mono), or ``None``.
        context: transcripts of the preceding utterances of the same video, oldest first (may be empty).
        words: word timings (for speaking rate), seconds in the source video, if known.
        duration: utterance duration in seconds, if known.
    """

    item_id: str
    label_set: LabelSet
    modalities: frozenset[str] = frozenset(MODALITIES)
    transcript: str | None = None
    language: str | None = None
    face_clip: Path | None = None
    audio: Path | None = None
    context: tuple[str, ...] = ()
    words: tuple[Word, ...] | None = None
    duration: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", check_modalities(self.modalities))
        for name in ("face_clip", "audio"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    def media(self, audio_in_video: bool) -> list[MediaPart]:
        """The media parts to send under :attr:`modalities`.

        * ``video`` on and a face clip exists: the clip; with its audio track when ``audio`` is on too and
          ``audio_in_video`` (Gemini reads both streams of an mp4), else the video stream only.
        * ``audio`` on and the audio is not already inside the clip: the utterance audio.

        Args:
            audio_in_video: whether the backend takes the audio inside the video file (Gemini) rather than as a
                separate part (OpenAI-compatible chat completions).
        """
        parts: list[MediaPart] = []
        audio_sent = False
        if "video" in self.modalities and self.face_clip is not None:
            with_audio = "audio" in self.modalities and audio_in_video
            parts.append(MediaPart(self.face_clip, "video", _mime(self.face_clip, "video/mp4"), with_audio))
            audio_sent = with_audio
        if "audio" in self.modalities and not audio_sent and self.audio is not None:
            parts.append(MediaPart(self.audio, "audio", _mime(self.audio, "audio/flac")))
        return parts


def _mime(path: Path, default: str) -> str:
    suffix = path.suffix.lower()
    known = {".flac": "audio/flac", ".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
             ".mp4": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime", ".mkv": "video/x-matroska"}
    return known.get(suffix) or mimetypes.guess_type(path.name)[0] or default


@dataclass(frozen=True)
class Usage:
    """What answering cost.

    Attributes:
        input_tokens, output_tokens: as reported by the API (0 for offline backends and cache hits).
        cost_usd: from the configured price table.
        requests: generation requests sent (every attempt, including retried and corrective ones).
        retries: attempts that failed and were retried (429, 5xx, timeouts).
        uploads: media files uploaded (Gemini Files API).
        cache_hits: answers served from the on-disk cache (no request).
        validation_retries: replies that failed validation and were asked again.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    requests: int = 0
    retries: int = 0
    uploads: int = 0
    cache_hits: int = 0
    validation_retries: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(**{k: getattr(self, k) + getattr(other, k) for k in self.__dataclass_fields__})

    def counters(self, prefix: str = "annotate.") -> dict[str, float]:
        """The stage counters summed into ``summary.json`` (``annotate.cost_usd`` is the summary's cost)."""
        return {prefix + k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class RolloutAnswer:
    """One rollout's answer.

    Attributes:
        label: a label name of the request's label set.
        intensity: 0..1.
        rationale: the evidence named by the annotator.
        scores: ``{label: probability}`` over the whole label set, or ``None``.
        usage: tokens, cost, requests spent on this answer.
        model_version: the exact model id the server reported (e.g. ``gemini-2.0-flash-001``), if it did.
        confidence: the backend's own probability (0..1) that ``label`` is right, when it has one (the fusion
            annotator's calibrated confidence), else ``None``; see :func:`label_confidence`.
    """

    label: str
    intensity: float
    rationale: str
    scores: dict[str, float] | None = None
    usage: Usage = field(default_factory=Usage)
    model_version: str | None = None
    confidence: float | None = None


class Annotator(ABC):
    """An emotion annotator backend.

    Attributes:
        model_id: the model id written to ``Emotion.annotator`` (an API backend prefers the exact version the server
            reports, see :attr:`RolloutAnswer.model_version`).
        prompt_version: version of the prompt template used (``None`` for backends without a prompt).
        deterministic: the same request always gives the same answer, so the stage asks once and repeats the vote.
        concurrent: :meth:`annotate` may be called from several threads at once (API backends).
    """

    model_id: str = "unknown"
    prompt_version: str | None = None
    deterministic: bool = False
    concurrent: bool = False

    def setup(self) -> None:
        """Load models / open clients (never at import or construction)."""

    def prepare(self, label_set: LabelSet) -> None:
        """Work that depends on the label set only (fusion's text prototypes), done once after :meth:`setup`.

        The stage calls it in its own setup, which ``runner.prefetch`` runs in the background while earlier
        stages work, so that the first batch does not wait for it. The default does nothing.
        """

    def teardown(self) -> None:
        """Free models / close clients."""

    @abstractmethod
    def annotate(self, request: AnnotationRequest, rollout: int = 0) -> RolloutAnswer:
        """Answer one rollout of one request.

        Args:
            request: the utterance.
            rollout: rollout index (0..N-1); part of the cache key and of the seed of API backends.

        Raises:
            AnnotationError: the utterance cannot be annotated (recorded as an item error by the stage).
        """

    def release(self, request: AnnotationRequest) -> None:
        """Free per-utterance resources once all rollouts are done (e.g. delete uploaded files)."""

    def annotate_batch(self, requests: Sequence[AnnotationRequest], rollout: int = 0
                       ) -> list[RolloutAnswer | AnnotationError | Exception]:
        """Answer one rollout of several requests; a failed request gives its exception in its place.

        The default calls :meth:`annotate` for each; local backends override it to batch model calls.
        """
        out: list[RolloutAnswer | AnnotationError | Exception] = []
        for request in requests:
            try:
                out.append(self.annotate(request, rollout))
            except Exception as e:  # noqa: BLE001 - returned in the request's place
                out.append(e)
        return out

    def annotate_all(self, request: AnnotationRequest, rollouts: int = 1) -> Emotion:
        """Run ``rollouts`` rollouts one after another and aggregate them (a convenience for scripts and eval).

        The stage runs rollouts concurrently instead; both give the same :class:`Emotion`.
        """
        try:
            n = 1 if self.deterministic else rollouts
            answers = [self.annotate(request, r) for r in range(n)]
        finally:
            self.release(request)
        answers = answers * rollouts if self.deterministic else answers
        return aggregate(answers, request.label_set, self.model_id, self.prompt_version)

    def __enter__(self) -> "Annotator":
        self.setup()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.teardown()


def label_confidence(answers: Sequence[RolloutAnswer], label: str) -> float:
    """The confidence in ``label`` of a set of rollout answers (rule in the module docstring), rounded to 4 places.

    Raises:
        ValueError: no answers, or a backend confidence outside 0..1.
    """
    if not answers:
        raise ValueError("label_confidence: no rollout answers")
    total = 0.0
    for a in answers:
        if a.label == label and a.confidence is not None:
            if not 0.0 <= a.confidence <= 1.0:
                raise ValueError(f"label_confidence: rollout confidence {a.confidence!r} is outside 0..1")
            total += float(a.confidence)
        elif a.scores is not None:
            total += min(1.0, max(0.0, float(a.scores.get(label, 0.0))))
        else:
            total += 1.0 if a.label == label else 0.0
    return round(total / len(answers), 4)


def aggregate(answers: Sequence[RolloutAnswer], label_set: LabelSet, model_id: str,
              prompt_version: str | None) -> Emotion:
    """Combine rollout answers into the Utterance ``emotion`` by majority vote (tie rule in the module docstring).

    Args:
        answers: one per rollout, in rollout order.
        label_set: the active label set (its order is the last tie-breaker).
        model_id: the configured model id; replaced by the server-reported version when every rollout reports the
            same one.
        prompt_version: the prompt version.

    Raises:
        ValueError: no answers, or an answer outside the label set.
    """
    if not answers:
        raise ValueError("aggregate: no rollout answers")
    for a in answers:
        if a.label not in label_set:
            raise ValueError(f"aggregate: {a.label!r} is not a label of {label_set.name!r}")
    votes = [a.label for a in answers]
    counts = Counter(votes)
    all_scores = all(a.scores is not None for a in answers)

    def rank(name: str) -> tuple[float, float, float, int]:
        score_sum = sum((a.scores or {}).get(name, 0.0) for a in answers) if all_scores else 0.0
        intensity_sum = sum(a.intensity for a in answers if a.label == name)
        return (counts[name], score_sum, intensity_sum, -label_set.index(name))

    winner = max(counts, key=rank)
    voters = [a for a in answers if a.label == winner]
    intensity = round(sum(a.intensity for a in voters) / len(voters), 4)
    scores = None
    if all_scores:
        scores = {name: round(sum((a.scores or {}).get(name, 0.0) for a in answers) / len(answers), 6)
                  for name in label_set.names}
    versions = {a.model_version for a in answers}
    annotator = versions.pop() if len(versions) == 1 and None not in versions else model_id
    return Emotion(label=winner, intensity=intensity, rationale=voters[0].rationale, scores=scores, votes=votes,
                   annotator=str(annotator), prompt_version=prompt_version,
                   confidence=label_confidence(answers, winner))


def backend_kwargs(cfg: Any) -> dict[str, Any]:
    """A backend's constructor arguments from a ``conf/annotator/*.yaml`` mapping as written (its defaults list,
    ``_target_`` and the stage-level keys of ``conf/annotator/_stage.yaml`` removed)."""
    from mikupal.stage import stage_keys_of

    dropped = stage_keys_of("annotator") | {"defaults", "_target_"}
    return {k: v for k, v in dict(cfg).items() if k not in dropped}
