"""OpenAI-compatible annotator (``annotator=openai``): any chat-completions endpoint, e.g. a local vLLM serving
Qwen2.5-Omni, with the same prompt, output contract, retries, cache and cost accounting as the Gemini annotator.

What is sent (``POST {base_url}/chat/completions``):

* a ``system`` message with the prompt's system text (task, every label with its description, output format);
* a ``user`` message whose content parts are, in order:

  - ``video`` modality and a face clip: with ``video_mode: video_url`` (default) the clip's video stream alone,
    remuxed without its audio, as ``{"type": "video_url", "video_url": {"url": "data:video/mp4;base64,..."}}``
    (vLLM's format for video models such as Qwen2.5-Omni); with ``video_mode: frames`` up to ``max_frames``
    evenly spaced frames as ``image_url`` JPEG data URLs (for image-only vision models);
  - ``audio`` modality: the utterance audio as ``{"type": "input_audio", "input_audio": {"data": <base64>,
    "format": "wav"}}`` (16-bit mono 16 kHz; ``audio_format: flac`` sends FLAC where the server accepts it). The
    audio is always its own part, never inside the video, because servers differ in whether they read a video's
    sound track;
  - the text part: transcript (``text`` modality) and context;
* ``response_format``: ``{"type": "json_schema", "json_schema": {"name": "emotion_annotation", "schema": ...,
  "strict": true}}`` whose ``label`` enum is the active label set and whose ``rationale`` has the prompt's
  ``maxLength`` (``response_format: json_object`` or ``none`` for servers without structured output; the reply is
  validated either way). llama.cpp enforces the enum and ``maxLength`` but not a number's ``minimum``/``maximum``;
* ``temperature``, ``seed`` (``seed + rollout``), ``max_tokens``; a corrective follow-up uses
  ``correction_temperature`` and a moved seed (:meth:`~mikupal.annotate.api.APIAnnotator.generation_params`).

Errors: the message of an HTTP error is the server's own (``error.message`` of the body), not the SDK's
``Error code: 500 - {...}`` rendering. An answer saying a modality is not supported (llama.cpp: HTTP 500 "audio
input is not supported - hint: ... mmproj") is a :class:`~mikupal.annotate.api.CapabilityError`, never retried.

The reply's ``model`` field becomes ``Emotion.annotator``; ``usage.prompt_tokens`` / ``completion_tokens`` are
priced with ``annotator.prices`` (local servers: leave the table empty, cost 0). The client is built with
``max_retries=0``; retries are :mod:`mikupal.annotate.retry`'s (``Retry-After`` / ``retry-after-ms`` honoured).
"""

from __future__ import annotations

import base64
import logging
import re
from typing import Any

from mikupal.annotate.api import (
    APIAnnotator,
    APIFailure,
    Meter,
    Prepared,
    Reply,
    classify_transport,
    unsupported_modality,
)
from mikupal.annotate.base import AnnotatorConfigError, MediaPart
from mikupal.annotate.retry import RETRYABLE_STATUS, Failure, parse_retry_after, parse_retry_info

log = logging.getLogger(__name__)


class OpenAICompatAnnotator(APIAnnotator):
    """Emotion annotation through an OpenAI-compatible chat-completions endpoint (see the module docstring).

    Args:
        video_mode: ``video_url`` (the clip as a data URL), ``frames`` (sampled JPEG frames) or ``none`` (never
            send video).
        max_frames: frames sent with ``video_mode: frames``.
        frame_max_side: longer side of each sent frame, pixels.
        audio_format: ``wav`` or ``flac``.
        response_format: ``json_schema``, ``json_object`` or ``none``.
        **kwargs: the shared settings of :class:`~mikupal.annotate.api.APIAnnotator`.
    """

    #: Python packages setup() imports (import name -> what to install); checked before a run starts.
    requires = {"openai": "openai"}

    backend_name = "openai"
    audio_in_video = False

    def __init__(self, *, video_mode: str = "video_url", max_frames: int = 8, frame_max_side: int = 448,
                 audio_format: str = "wav", response_format: str = "json_schema", **kwargs: Any) -> None:
        kwargs.setdefault("model", "Qwen/Qwen2.5-Omni-7B")
        kwargs.setdefault("base_url", "http://127.0.0.1:8000/v1")
        super().__init__(**kwargs)
        if video_mode not in ("video_url", "frames", "none"):
            raise AnnotatorConfigError(f"annotator.video_mode={video_mode!r}: use video_url, frames or none")
        if audio_format not in ("wav", "flac"):
            raise AnnotatorConfigError(f"annotator.audio_format={audio_format!r}: use wav or flac")
        if response_format not in ("json_schema", "json_object", "none"):
            raise AnnotatorConfigError(
                f"annotator.response_format={response_format!r}: use json_schema, json_object or none")
        self.video_mode = video_mode
        self.max_frames = int(max_frames)
        self.frame_max_side = int(frame_max_side)
        self.audio_format = audio_format
        self.response_format = response_format

    def _make_client(self, api_key: str | None) -> Any:
        from openai import OpenAI

        # local servers (vLLM) accept any key; the SDK insists on one
        return OpenAI(api_key=api_key or "EMPTY", base_url=self.base_url, timeout=self.timeout, max_retries=0)

    def _close_client(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception as e:  # noqa: BLE001 - closing is best effort
                log.debug("openai: closing the client failed: %s", e)

    def request_params(self, rollout: int) -> dict[str, Any]:
        return {**super().request_params(rollout), "video_mode": self.video_mode, "max_frames": self.max_frames,
                "frame_max_side": self.frame_max_side, "audio_format": self.audio_format,
                "response_format": self.response_format}

    def _prepare(self, prepared: Prepared, media: list[MediaPart], meter: Meter) -> Prepared:
        from mikupal.annotate.mediaprep import audio_bytes, jpeg_bytes, sample_frames

        content: list[dict[str, Any]] = []
        for part in media:
            if part.kind == "video":
                if self.video_mode == "video_url":
                    data = base64.b64encode(self.video_only(part).read_bytes()).decode("ascii")
                    content.append({"type": "video_url", "video_url": {"url": f"data:video/mp4;base64,{data}"}})
                elif self.video_mode == "frames":
                    for frame in sample_frames(part.path, self.max_frames):
                        data = base64.b64encode(jpeg_bytes(frame, self.frame_max_side)).decode("ascii")
                        content.append({"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{data}"}})
            elif part.kind == "audio":
                data = base64.b64encode(audio_bytes(part.path, self.audio_format)).decode("ascii")
                content.append({"type": "input_audio", "input_audio": {"data": data, "format": self.audio_format}})
        content.append({"type": "text", "text": prepared.user})
        prepared.payload = content
        return prepared

    def _generate(self, prepared: Prepared, correction: tuple[str, str] | None) -> Reply:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": prepared.system},
            {"role": "user", "content": prepared.payload},
        ]
        if correction is not None:
            previous, error = correction
            messages.append({"role": "assistant", "content": previous or "(empty)"})
            messages.append({"role": "user", "content": self.prompt.correction_text(error, prepared.request.label_set)})
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages}
        temperature, seed = self.generation_params(prepared.rollout, prepared.turn)
        if temperature is not None:
            kwargs["temperature"] = temperature
        if seed is not None:
            kwargs["seed"] = seed
        if self.max_output_tokens is not None:
            kwargs["max_tokens"] = self.max_output_tokens
        if self.response_format == "json_schema":
            kwargs["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "emotion_annotation", "schema": prepared.schema, "strict": True}}
        elif self.response_format == "json_object":
            kwargs["response_format"] = {"type": "json_object"}
        response = self.client.chat.completions.create(**kwargs)
        choice = response.choices[0] if response.choices else None
        usage = response.usage
        return Reply(
            text=choice.message.content if choice is not None else None,
            input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            model_version=response.model or None,
            finish_reason=choice.finish_reason if choice is not None else None,
        )

    def _classify(self, error: BaseException) -> Failure:
        import openai

        if isinstance(error, openai.APITimeoutError):
            return APIFailure(True, f"timeout ({error})", timeout=True)
        if isinstance(error, openai.APIConnectionError):
            return APIFailure(True, f"connection error ({error})")
        if isinstance(error, openai.APIStatusError):
            code = int(error.status_code)
            headers = getattr(error.response, "headers", None)
            hint = parse_retry_after(dict(headers) if headers is not None else None)
            if hint is None:
                hint = parse_retry_info(error.body)
            message = server_message(error)
            reason = f"HTTP {code}: {message}"
            capability = unsupported_modality(message) if code >= 400 else None
            if capability:
                return APIFailure(False, reason, fatal=True, capability=capability)
            return APIFailure(code in RETRYABLE_STATUS, reason, hint, fatal=code in (401, 403, 404))
        transport = classify_transport(error)
        if transport is not None:
            return transport
        return APIFailure(False, f"{type(error).__name__}: {error}")


_SDK_PREFIX = re.compile(r"^Error code: \d+ - ")


def server_message(error: Any) -> str:
    """The server's own message of an ``openai.APIStatusError`` (its body's ``message`` or ``error.message``).

    The SDK's ``error.message`` is ``"Error code: 401 - {...}"``, the body rendered after the status; the status is
    reported separately, so only the server's words are kept.
    """
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        text = inner.get("message") if isinstance(inner, dict) else None
        if isinstance(text, str) and text.strip():
            return text.strip()
    elif isinstance(body, str) and body.strip():
        return body.strip()
    return _SDK_PREFIX.sub("", str(getattr(error, "message", "") or error)).strip()
