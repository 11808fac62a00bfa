"""Gemini annotator (``annotator=gemini``), the paper's labeller: Gemini 2.0 Flash through ``google-genai``.

What is sent (``POST {base_url}/v1beta/models/{model}:generateContent``):

* ``systemInstruction``: the prompt's system text (task, every label with its description, output format);
* ``contents``: one user turn with the media, then the text: the face-crop clip *with its audio track* when the
  ``video`` and ``audio`` modalities are on and a face was found (``video/mp4``), the clip's video stream alone when
  only ``video`` is on, the utterance audio (``audio/flac``) when there is no face clip or ``video`` is off; media
  up to ``inline_max_bytes`` go inline (``inlineData``, base64), larger files through the Files API (resumable
  upload, then ``GET files/<id>`` until the file is ``ACTIVE``; deleted once the utterance's rollouts are done)
  and are referenced by ``fileData``;
* ``generationConfig``: ``responseMimeType: application/json`` and a ``responseSchema`` whose ``label`` enum is
  the active label set and whose ``rationale`` has the prompt's ``maxLength``, plus temperature, ``seed + rollout``
  and ``maxOutputTokens``.

After an invalid reply the conversation continues with the model's reply and a user message stating the error and
the allowed values, sampled with ``correction_temperature`` and a moved seed
(:meth:`~mikupal.annotate.api.APIAnnotator.generation_params`). An answer saying a modality is not supported is a
:class:`~mikupal.annotate.api.CapabilityError` (never retried; it stops the stage).
The exact model version the server reports (``modelVersion``, e.g. ``gemini-2.0-flash-001``) becomes
``Emotion.annotator``. Prompt tokens are priced per modality (``promptTokensDetails``; Gemini bills audio input at
a higher rate).

The SDK's own retries stay off (its default); :mod:`mikupal.annotate.retry` retries 408/429/5xx and timeouts,
honouring ``Retry-After`` and the ``google.rpc.RetryInfo`` ``retryDelay`` of the error body.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
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
from mikupal.annotate.base import AnnotationError, AnnotationRequest, MediaPart
from mikupal.annotate.retry import RETRYABLE_STATUS, Failure, parse_retry_after, parse_retry_info

log = logging.getLogger(__name__)


@dataclass
class _Upload:
    """A media file uploaded through the Files API, shared by the rollouts (and duplicates) that use it."""

    name: str | None = None
    uri: str | None = None
    mime_type: str | None = None
    users: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class GeminiAnnotator(APIAnnotator):
    """Emotion annotation with a Gemini model (see the module docstring for the exact request).

    Args:
        api_version: REST API version (``v1beta``; the SDK would default to ``v1`` otherwise).
        inline_max_bytes: media files up to this size are sent inline, larger ones through the Files API.
        file_poll_interval: seconds between ``files.get`` polls while an upload is ``PROCESSING``.
        file_poll_timeout: seconds to wait for an upload to become ``ACTIVE`` before the utterance fails.
        delete_uploads: delete uploaded files once an utterance's rollouts are done (they expire after 48 h anyway).
        **kwargs: the shared settings of :class:`~mikupal.annotate.api.APIAnnotator` (model, prompt, api_key_env,
            base_url, timeout, retry, requests_per_minute, prices, cache_dir, temperature, seed, max_output_tokens,
            validation_retries).
    """

    #: Python packages setup() imports (import name -> what to install); checked before a run starts.
    requires = {"google.genai": "google-genai"}

    backend_name = "gemini"
    audio_in_video = True

    def __init__(self, *, api_version: str = "v1beta", inline_max_bytes: int = 20_000_000,
                 file_poll_interval: float = 2.0, file_poll_timeout: float = 600.0, delete_uploads: bool = True,
                 **kwargs: Any) -> None:
        kwargs.setdefault("model", "gemini-2.0-flash")
        kwargs.setdefault("api_key_env", "GEMINI_API_KEY")
        super().__init__(**kwargs)
        self.api_version = str(api_version)
        self.inline_max_bytes = int(inline_max_bytes)
        self.file_poll_interval = float(file_poll_interval)
        self.file_poll_timeout = float(file_poll_timeout)
        self.delete_uploads = bool(delete_uploads)
        self._uploads: dict[str, _Upload] = {}
        self._uploads_lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ client
    def _make_client(self, api_key: str | None) -> Any:
        from google import genai
        from google.genai import types

        options: dict[str, Any] = {"api_version": self.api_version, "timeout": int(round(self.timeout * 1000))}
        if self.base_url:
            options["base_url"] = self.base_url
        client = genai.Client(api_key=api_key, http_options=types.HttpOptions(**options))
        # build the request types once here, so the first concurrent requests do not all pay for lazy set-up
        types.Content(role="user", parts=[types.Part.from_bytes(data=b"", mime_type="audio/flac"),
                                          types.Part.from_text(text="")])
        types.GenerateContentConfig(system_instruction="", response_mime_type="application/json",
                                    response_schema=types.Schema(type="OBJECT", properties={
                                        "label": types.Schema(type="STRING", enum=["a"])}))
        return client

    def _close_client(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception as e:  # noqa: BLE001 - closing is best effort
                log.debug("gemini: closing the client failed: %s", e)

    # ------------------------------------------------------------------------------------------ payload
    def request_params(self, rollout: int) -> dict[str, Any]:
        return {**super().request_params(rollout), "api_version": self.api_version}

    def _prepare(self, prepared: Prepared, media: list[MediaPart], meter: Meter) -> Prepared:
        from google.genai import types

        parts: list[Any] = []
        for part in media:
            path = part.path if (part.kind != "video" or part.with_audio) else self.video_only(part)
            mime = part.mime_type
            if path.stat().st_size <= self.inline_max_bytes:
                parts.append(types.Part.from_bytes(data=path.read_bytes(), mime_type=mime))
            else:
                upload = self._upload(path, mime, prepared.request, meter)
                parts.append(types.Part.from_uri(file_uri=upload.uri, mime_type=upload.mime_type or mime))
        parts.append(types.Part.from_text(text=prepared.user))
        schema = _gemini_schema(prepared.schema)
        config = types.GenerateContentConfig(
            system_instruction=prepared.system,
            response_mime_type="application/json",
            response_schema=schema,
            temperature=self.temperature,
            seed=None if self.seed is None else self.seed + prepared.rollout,
            max_output_tokens=self.max_output_tokens,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )
        prepared.payload = (types.Content(role="user", parts=parts), config)
        return prepared

    def _upload(self, path: Any, mime: str, request: AnnotationRequest, meter: Meter) -> _Upload:
        """Upload ``path`` once (per sha256) and wait until it is ACTIVE."""
        digest = self.media_sha256(path)
        with self._uploads_lock:
            upload = self._uploads.setdefault(digest, _Upload())
            upload.users.add(request.item_id)
        with upload.lock:
            if upload.uri is not None:
                return upload
            from google.genai import types

            what = f"gemini upload {request.item_id}"
            config = types.UploadFileConfig(mime_type=mime, display_name=f"{request.item_id}{path.suffix}")
            file = self.call(lambda: self.client.files.upload(file=str(path), config=config), what)
            meter.uploads += 1
            deadline = time.monotonic() + self.file_poll_timeout
            while _state(file) != "ACTIVE":
                if _state(file) == "FAILED":
                    raise AnnotationError(f"{what}: the Files API could not process {path.name} (state FAILED)")
                if time.monotonic() > deadline:
                    raise AnnotationError(f"{what}: {file.name} still {_state(file)} after {self.file_poll_timeout}s")
                time.sleep(self.file_poll_interval)
                file = self.call(lambda name=file.name: self.client.files.get(name=name), f"{what} (status)")
            upload.name, upload.uri, upload.mime_type = file.name, file.uri, file.mime_type or mime
            log.debug("gemini: uploaded %s as %s", path.name, file.name)
            return upload

    def release(self, request: AnnotationRequest) -> None:
        """Delete the request's uploaded files once no other pending utterance uses them."""
        done: list[_Upload] = []
        with self._uploads_lock:
            for digest, upload in list(self._uploads.items()):
                upload.users.discard(request.item_id)
                if not upload.users:
                    del self._uploads[digest]
                    if upload.name:
                        done.append(upload)
        if not self.delete_uploads or self.client is None:
            return
        for upload in done:
            try:
                self.client.files.delete(name=upload.name)
            except Exception as e:  # noqa: BLE001 - the file expires after 48 h anyway
                log.warning("gemini: could not delete uploaded file %s (%s); it expires after 48 h", upload.name,
                            self._classify(e).reason)

    # ------------------------------------------------------------------------------------------ request
    def _generate(self, prepared: Prepared, correction: tuple[str, str] | None) -> Reply:
        from google.genai import types

        user, config = prepared.payload
        if prepared.turn:
            temperature, seed = self.generation_params(prepared.rollout, prepared.turn)
            config = config.model_copy(update={"temperature": temperature, "seed": seed})
        contents = [user]
        if correction is not None:
            previous, error = correction
            contents.append(types.Content(role="model", parts=[types.Part.from_text(text=previous or "(empty)")]))
            contents.append(types.Content(role="user", parts=[types.Part.from_text(
                text=self.prompt.correction_text(error, prepared.request.label_set))]))
        response = self.client.models.generate_content(model=self.model, contents=contents, config=config)
        text = _text_of(response)
        usage = response.usage_metadata
        by_modality = None
        if usage is not None and usage.prompt_tokens_details:
            by_modality = {}
            for d in usage.prompt_tokens_details:
                modality = getattr(d.modality, "value", d.modality)
                by_modality[str(modality)] = by_modality.get(str(modality), 0) + int(d.token_count or 0)
        finish = None
        if response.candidates:
            reason = response.candidates[0].finish_reason
            finish = str(getattr(reason, "value", reason)) if reason is not None else None
        output_tokens = ((usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)) if usage else 0
        return Reply(
            text=text,
            input_tokens=int((usage.prompt_token_count if usage else 0) or 0),
            output_tokens=int(output_tokens),
            input_by_modality=by_modality,
            model_version=response.model_version,
            finish_reason=finish,
        )

    def _classify(self, error: BaseException) -> Failure:
        from google.genai import errors

        if isinstance(error, errors.APIError):
            code = int(error.code or 0)
            headers = getattr(getattr(error, "response", None), "headers", None)
            hint = parse_retry_after(dict(headers) if headers is not None else None)
            if hint is None:
                hint = parse_retry_info(error.details)
            reason = f"HTTP {code} {error.status or ''}: {error.message or ''}".strip()
            capability = unsupported_modality(error.message or "") if code >= 400 else None
            if capability:
                return APIFailure(False, reason, fatal=True, capability=capability)
            return APIFailure(code in RETRYABLE_STATUS, reason, hint, fatal=code in (401, 403, 404))
        transport = classify_transport(error)
        if transport is not None:
            return transport
        return APIFailure(False, f"{type(error).__name__}: {error}")


def _state(file: Any) -> str:
    state = getattr(file, "state", None)
    value = getattr(state, "value", state)
    return str(value or "ACTIVE")  # a file without a state field is usable


def _text_of(response: Any) -> str | None:
    """The reply's text parts joined (``None`` without candidates or text), without the SDK's warnings."""
    if not response.candidates:
        return None
    content = response.candidates[0].content
    if content is None or not content.parts:
        return None
    texts = [p.text for p in content.parts if getattr(p, "text", None) and not getattr(p, "thought", False)]
    return "".join(texts) if texts else None


def _gemini_schema(schema: dict[str, Any]) -> Any:
    """The answer's JSON schema as a ``google.genai.types.Schema`` (Gemini's OpenAPI subset)."""
    from google.genai import types

    props = schema["properties"]
    return types.Schema(
        type="OBJECT",
        properties={
            "label": types.Schema(type="STRING", enum=list(props["label"]["enum"])),
            "intensity": types.Schema(type="NUMBER", minimum=props["intensity"]["minimum"],
                                      maximum=props["intensity"]["maximum"]),
            "rationale": types.Schema(type="STRING", max_length=props["rationale"].get("maxLength")),
        },
        required=list(schema["required"]),
        property_ordering=["label", "intensity", "rationale"],
    )
