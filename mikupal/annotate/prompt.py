"""Versioned prompt templates (``conf/prompt/*.yaml``), the output schema, and strict validation of replies.

The prompt follows the paper's design (its Fig. 2): the *system* prompt holds the task description, a one-sentence
description of every label of the active label set (taken verbatim from ``conf/labels/<set>.yaml``), and the
required output format; the *user* turn carries the media parts, then the transcript and, optionally, the preceding
utterances of the same video as context. The answer is a JSON object ``{"label", "intensity", "rationale"}``;
backends that support structured output also send :func:`response_schema`, whose ``label`` enum is exactly the
label set, so the model cannot answer outside it. Every reply is still validated by :func:`parse_reply`; unlike the
original code's substring match on free text (``paper.md`` §6 C), a label must be the whole value of the ``label``
field (a name or a whole alias of the set), and anything else is an error, never a guess.

Every free-text field of the answer is bounded: a prompt version with ``rationale_max_chars`` (from
``miku_pal_v2``) states the bound in its text, puts it in the schema as ``maxLength`` (servers that constrain
decoding with the schema, such as llama.cpp and vLLM, then cannot loop inside the string until the output token
limit) and :func:`parse_reply` rejects a longer rationale. ``label`` is an enum, so it is bounded already.

Intensity is on the 0..1 scale. A reply outside it is an error, unless the reply itself declares the scale it used
(``"intensity_scale": 10``, ``"1-10"``, ``[1, 10]`` or ``{"min": 1, "max": 10}``): then the value is rescaled from
that scale. A scale is never guessed from the value.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from mikupal.labels import LabelParseError, LabelSet
from mikupal.paths import load_conf_yaml

if TYPE_CHECKING:
    from mikupal.annotate.base import AnnotationRequest, MediaPart


class ReplyValidationError(ValueError):
    """A model reply is not a usable answer (not JSON, missing keys, label outside the set, bad intensity)."""


@dataclass(frozen=True)
class ParsedReply:
    """A validated reply: a label of the set, an intensity in 0..1 and a non-empty rationale."""

    label: str
    intensity: float
    rationale: str


_REQUIRED_KEYS = ("version", "system", "label_line", "inputs", "user", "transcript", "no_transcript", "context",
                  "context_line", "correction")
_INPUT_KINDS = ("video_with_audio", "video", "audio", "text", "none")


@dataclass(frozen=True)
class PromptTemplate:
    """One version of the annotation prompt (see ``conf/prompt/miku_pal_v1.yaml`` for every field's role).

    Attributes:
        version: the prompt version written into ``Utterance.emotion.prompt_version``.
        system, label_line, user, transcript, no_transcript, context, context_line, correction: templates in
            :meth:`str.format` syntax (``system`` and ``correction`` may use ``{rationale_max_chars}``).
        inputs: how each input kind is named in the system prompt (``video_with_audio``, ``video``, ``audio``,
            ``text``, ``none``).
        rationale_max_chars: the longest rationale allowed, in characters (``None``: unbounded, as in
            ``miku_pal_v1``); it becomes the schema's ``maxLength`` and is checked by :func:`parse_reply`.
    """

    version: str
    system: str
    label_line: str
    inputs: Mapping[str, str]
    user: str
    transcript: str
    no_transcript: str
    context: str
    context_line: str
    correction: str
    rationale_max_chars: int | None = None
    fingerprint: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        missing = [k for k in _INPUT_KINDS if k not in self.inputs]
        if missing:
            raise ValueError(f"prompt {self.version!r}: inputs lacks {missing}")
        if self.rationale_max_chars is not None and int(self.rationale_max_chars) < 1:
            raise ValueError(f"prompt {self.version!r}: rationale_max_chars must be >= 1 (or null for no bound)")
        texts: dict[str, Any] = {k: getattr(self, k) for k in _REQUIRED_KEYS if k != "inputs"}
        texts["inputs"] = dict(self.inputs)
        if self.rationale_max_chars is not None:  # absent from older versions, so their fingerprints stay the same
            texts["rationale_max_chars"] = int(self.rationale_max_chars)
        digest = hashlib.sha256(json.dumps(texts, sort_keys=True).encode()).hexdigest()[:16]
        object.__setattr__(self, "fingerprint", digest)

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "PromptTemplate":
        """Build from the mapping in ``conf/prompt/<name>.yaml`` (a dict or an OmegaConf node).

        Raises:
            ValueError: a required field is missing (the message lists them).
        """
        data = dict(cfg)
        missing = [k for k in _REQUIRED_KEYS if k not in data or data[k] is None]
        if missing:
            raise ValueError(f"prompt config lacks {missing}; see conf/prompt/miku_pal_v1.yaml for the fields")
        return cls(
            version=str(data["version"]),
            system=str(data["system"]),
            label_line=str(data["label_line"]),
            inputs={str(k): str(v) for k, v in dict(data["inputs"]).items()},
            user=str(data["user"]),
            transcript=str(data["transcript"]),
            no_transcript=str(data["no_transcript"]),
            context=str(data["context"]),
            context_line=str(data["context_line"]),
            correction=str(data["correction"]),
            rationale_max_chars=None if data.get("rationale_max_chars") is None else int(data["rationale_max_chars"]),
        )

    @classmethod
    def load(cls, name_or_path: str | Path = "miku_pal_v2") -> "PromptTemplate":
        """Load ``conf/prompt/<name>.yaml`` (or a YAML file path)."""
        return cls.from_config(load_conf_yaml("prompt", name_or_path))

    # ------------------------------------------------------------------------------------------ rendering
    def system_text(self, label_set: LabelSet, media: Sequence["MediaPart"], text: bool) -> str:
        """The system instruction: task, every label with its description, output format.

        Args:
            label_set: the active label set.
            media: the media parts the user turn carries (their kinds are named in the task description).
            text: whether the transcript is sent.
        """
        kinds = [("video_with_audio" if m.kind == "video" and m.with_audio else m.kind) for m in media]
        if text:
            kinds.append("text")
        names = [self.inputs[k] for k in kinds] or [self.inputs["none"]]
        inputs = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        label_list = "\n".join(self.label_line.format(name=label.name, description=label.description)
                               for label in label_set.labels)
        return self.system.format(inputs=inputs, n_labels=len(label_set), label_list=label_list,
                                  label_names=", ".join(label_set.names), rationale_max_chars=self.rationale_max_chars)

    def user_text(self, request: "AnnotationRequest", context: Sequence[str]) -> str:
        """The text part of the user turn (it follows the media parts).

        Args:
            request: the utterance (transcript and language are used when the text modality is on).
            context: transcripts of the preceding utterances to show, oldest first (empty: no context block).
        """
        if "text" in request.modalities:
            if request.transcript and request.transcript.strip():
                note = f" (language: {request.language})" if request.language else ""
                transcript = self.transcript.format(text=_one_line(request.transcript), language_note=note)
            else:
                transcript = self.no_transcript
        else:
            transcript = ""
        block = ""
        if context:
            lines = "\n".join(self.context_line.format(text=_one_line(t)) for t in context)
            block = self.context.format(lines=lines)
        return self.user.format(context=block, transcript=transcript)

    def correction_text(self, error: str, label_set: LabelSet) -> str:
        """The follow-up user message after an invalid reply, stating the error (and the allowed values)."""
        return self.correction.format(error=error, label_names=", ".join(label_set.names),
                                      rationale_max_chars=self.rationale_max_chars)

    def schema(self, label_set: LabelSet) -> dict[str, Any]:
        """The answer's JSON schema under this prompt (:func:`response_schema` with the rationale bound)."""
        return response_schema(label_set, self.rationale_max_chars)

    def parse(self, text: str | None, label_set: LabelSet) -> "ParsedReply":
        """Validate a reply under this prompt (:func:`parse_reply` with the rationale bound)."""
        return parse_reply(text, label_set, self.rationale_max_chars)


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().replace('"', "'")


# ---------------------------------------------------------------------------------------------- output contract
def response_schema(label_set: LabelSet, rationale_max_chars: int | None = None) -> dict[str, Any]:
    """JSON Schema of the answer; ``label`` is an enum of exactly the label set's names, in set order.

    Args:
        label_set: the active label set.
        rationale_max_chars: ``maxLength`` of ``rationale`` (``None``: unbounded).
    """
    rationale: dict[str, Any] = {"type": "string"}
    if rationale_max_chars is not None:
        rationale["maxLength"] = int(rationale_max_chars)
    return {
        "type": "object",
        "properties": {
            "label": {"type": "string", "enum": list(label_set.names)},
            "intensity": {"type": "number", "minimum": 0.0, "maximum": 1.0},
            "rationale": rationale,
        },
        "required": ["label", "intensity", "rationale"],
        "additionalProperties": False,
    }


_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n?(.*?)\n?\s*```\s*$", re.S)


def parse_reply(text: str | None, label_set: LabelSet, rationale_max_chars: int | None = None) -> ParsedReply:
    """Validate a model reply against the output contract.

    Accepts a JSON object (optionally inside a Markdown code fence, which some OpenAI-compatible servers add even in
    JSON mode) with ``label`` naming exactly one label of the set (its name, or a whole alias: see
    :meth:`LabelSet.parse`), ``intensity`` a number in 0..1 (or on the scale the reply declares in
    ``intensity_scale``, rescaled to 0..1) and ``rationale`` a non-empty string of at most ``rationale_max_chars``
    characters. Other extra keys are ignored.

    Raises:
        ReplyValidationError: the reply breaks the contract; the message says how, in words fit to send back to the
            model.
    """
    if text is None or not text.strip():
        raise ReplyValidationError("the reply was empty")
    body = text.strip()
    m = _FENCE.match(body)
    if m:
        body = m.group(1)
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as e:
        raise ReplyValidationError(f"the reply is not valid JSON ({e.msg}: character {e.pos} of {len(body)})") from None
    if not isinstance(obj, dict):
        raise ReplyValidationError(f"the reply is JSON but not an object (got {type(obj).__name__})")
    missing = [k for k in ("label", "intensity", "rationale") if k not in obj]
    if missing:
        raise ReplyValidationError(f"the reply lacks the key(s) {missing}")
    label = obj["label"]
    if not isinstance(label, str):
        raise ReplyValidationError(f"label must be a string, got {label!r}")
    if label in label_set:
        name = label
    else:
        try:
            name = label_set.parse(label)
        except LabelParseError:
            raise ReplyValidationError(
                f"label {label!r} is not one of the allowed categories ({', '.join(label_set.names)})"
            ) from None
    intensity = obj["intensity"]
    if isinstance(intensity, bool) or not isinstance(intensity, (int, float)) or intensity != intensity:
        raise ReplyValidationError(f"intensity must be a number from 0.0 to 1.0, got {intensity!r}")
    value = float(intensity)
    if obj.get("intensity_scale") is not None:
        lo, hi = _declared_scale(obj["intensity_scale"])
        if not lo <= value <= hi:
            raise ReplyValidationError(
                f"intensity {intensity!r} lies outside the scale {lo:g} to {hi:g} the reply declares; "
                "intensity must be a number from 0.0 to 1.0")
        value = (value - lo) / (hi - lo)
    elif not 0.0 <= value <= 1.0:
        raise ReplyValidationError(f"intensity must be a number from 0.0 to 1.0, got {intensity!r}")
    rationale = obj["rationale"]
    if not isinstance(rationale, str) or not rationale.strip():
        raise ReplyValidationError("rationale must be a non-empty string")
    rationale = rationale.strip()
    if rationale_max_chars is not None and len(rationale) > rationale_max_chars:
        raise ReplyValidationError(
            f"rationale must be at most {rationale_max_chars} characters, got {len(rationale)}")
    return ParsedReply(label=name, intensity=round(value, 6), rationale=rationale)


_SCALE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:-|–|\.\.|to)\s*(-?\d+(?:\.\d+)?)\s*$")


def _declared_scale(scale: Any) -> tuple[float, float]:
    """``(min, max)`` of the ``intensity_scale`` a reply declares: ``10`` (0 to 10), ``"1-10"``, ``[1, 10]`` or
    ``{"min": 1, "max": 10}``.

    Raises:
        ReplyValidationError: the declaration is not a scale with min < max.
    """
    bounds: tuple[Any, Any] | None = None
    if isinstance(scale, (int, float)) and not isinstance(scale, bool):
        bounds = (0.0, scale)
    elif isinstance(scale, str):
        m = _SCALE.match(scale)
        if m:
            bounds = (m.group(1), m.group(2))
    elif isinstance(scale, (list, tuple)) and len(scale) == 2:
        bounds = (scale[0], scale[1])
    elif isinstance(scale, Mapping) and "min" in scale and "max" in scale:
        bounds = (scale["min"], scale["max"])
    try:
        lo, hi = (float(b) for b in bounds) if bounds is not None and not any(isinstance(b, bool) for b in bounds) \
            else (None, None)
    except (TypeError, ValueError):
        lo = hi = None
    if lo is None or hi is None or not lo < hi:
        raise ReplyValidationError(f"intensity_scale {scale!r} is not a scale (give none, and intensity from 0.0 "
                                   "to 1.0)")
    return lo, hi
