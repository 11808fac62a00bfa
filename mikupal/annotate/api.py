"""Machinery shared by the API annotators (Gemini, OpenAI-compatible): key, prompt, cache, retries, validation, cost.

:class:`APIAnnotator` implements :meth:`~mikupal.annotate.base.Annotator.annotate` once:

1. render the prompt (system instruction with every label and its description; user text with transcript and
   context) and pick the media parts for the request's modalities;
2. look the request up in the on-disk cache (key: backend, model, prompt version and text, media sha256,
   generation parameters, output schema, rollout index); a hit returns without any request;
3. otherwise prepare the backend's payload (inline media or uploads), send it through :func:`call_with_retry`
   (exponential backoff with jitter on 429, 5xx, timeouts, honouring server hints) behind the client-side
   :class:`~mikupal.annotate.retry.RateLimiter`;
4. validate the reply (:func:`~mikupal.annotate.prompt.parse_reply`); an invalid reply is answered once (by default)
   with the error and the allowed values stated, and a second invalid reply makes the utterance an item error. The
   corrective request is sampled differently from the first (``correction_temperature``, and the seed moved by
   ``correction_seed_offset`` per turn): at temperature 0 with the same seed a server gives the same invalid answer
   back, however the error is worded;
5. price the tokens with the configured table and store the validated answer in the cache.

Failures that every further request would repeat stop the stage (:class:`FatalAPIError`): a bad key, no access,
an unknown model, and a server that cannot take a modality that ``annotator.modalities`` asks for
(:class:`CapabilityError`: "audio input is not supported", "... is not a multimodal model", ...). Such answers are
recognised whatever their HTTP status (llama.cpp answers 500) and never retried; once a modality is known to be
unsupported, later requests that would send it fail at once without a request.

A timeout is retried at most ``retry.max_timeouts - 1`` times (once by default): a reply slower than ``timeout``
usually means the model generated up to ``max_output_tokens``, and the same request takes as long again.

A subclass provides the SDK specifics: ``_make_client``, ``_prepare``, ``_generate``, ``_classify`` and, if it
uploads, ``_release_uploads``.

The API key is read from the environment variable *named* by ``api_key_env`` and handed to the SDK client only; it
is never stored on the annotator, logged, cached, or put in an error message.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
from abc import abstractmethod
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Mapping

from mikupal.annotate.base import (
    AnnotationError,
    AnnotationRequest,
    Annotator,
    AnnotatorConfigError,
    MediaPart,
    RolloutAnswer,
    Usage,
)
from mikupal.annotate.cache import AnswerCache, cache_key, file_sha256
from mikupal.annotate.prompt import PromptTemplate, ReplyValidationError
from mikupal.annotate.retry import Failure, RateLimiter, RetriesExhausted, RetryPolicy, call_with_retry

log = logging.getLogger(__name__)


class FatalAPIError(AnnotationError):
    """An API error that every further request would repeat (bad key, no access, unknown model): stop the stage."""


class CapabilityError(FatalAPIError):
    """The server cannot take an input modality the request sends (e.g. audio to a text-only model).

    Attributes:
        modality: the ``annotator.modalities`` entry it cannot take (``audio`` or ``video``).
        reason: the server's answer (status and message).
        explanation: what is wrong and how to fix it, without the request's name (the message adds that).
    """

    def __init__(self, message: str, modality: str, reason: str = "", explanation: str | None = None,
                 usage: Usage | None = None) -> None:
        super().__init__(message, usage)
        self.modality = modality
        self.reason = reason
        self.explanation = explanation or message


#: What servers answer when a request carries a modality the model cannot take (llama.cpp: "audio input is not
#: supported - hint: ... mmproj"; vLLM: "... is not a multimodal model", "At most 0 audio(s) may be provided";
#: OpenAI: "... image_url is only supported by certain models"; Gemini: "Audio input modality is not enabled").
_MODALITY_WORDS = r"(input_audio|audio|image_url|image|video_url|video|vision|multimodal|multi-modal)"
_UNSUPPORTED = re.compile(
    _MODALITY_WORDS + r"[\w\s()'\"-]{0,40}?\b(is|are)\s+(not|only)\s+(supported|enabled|allowed)"
    r"|" + _MODALITY_WORDS + r"[\w\s()'\"-]{0,20}?\b(unsupported|not\s+supported)"
    r"|(does\s+not|doesn't|cannot|can't)\s+(support|accept|process|handle)\s+(\w+\s+){0,2}?" + _MODALITY_WORDS
    + r"|not\s+a\s+multi-?modal\s+model|at\s+most\s+0\s+" + _MODALITY_WORDS,
    re.IGNORECASE,
)


def unsupported_modality(message: str, sent: frozenset[str] | set[str] | None = None) -> str | None:
    """The ``annotator.modalities`` entry a server error says it cannot take, or ``None`` if it says no such thing.

    ``audio`` for audio / ``input_audio``; ``video`` for video, image, vision (the video modality goes as a video or
    as image frames). A message that names no modality ("not a multimodal model") points at the media modalities
    the request sent (``sent``): ``video`` if it sent video, else ``audio``.
    """
    m = _UNSUPPORTED.search(message or "")
    if m is None:
        return None
    words = [w.lower() for w in re.findall(_MODALITY_WORDS, m.group(0), re.IGNORECASE)]
    for word in words:
        if "audio" in word:
            return "audio"
        if word.startswith(("image", "video", "vision")):
            return "video"
    media = set(sent or ()) & {"video", "audio"}
    return "video" if "video" in media or not media else "audio"


# ---------------------------------------------------------------------------------------------- prices
class PriceTable:
    """USD prices per million tokens, by model id (``annotator.prices``).

    Each entry: ``{input: USD, output: USD, input_by_modality: {AUDIO: USD, ...}}``; ``input_by_modality`` prices
    the prompt tokens the API reports per modality (Gemini's ``promptTokensDetails``), other input tokens use
    ``input``. A model is looked up by exact id, then by the longest configured id it starts with (so
    ``gemini-2.0-flash-001`` uses ``gemini-2.0-flash``).
    """

    def __init__(self, prices: Mapping[str, Mapping[str, Any]] | None) -> None:
        self.prices = {str(k): dict(v) for k, v in dict(prices or {}).items()}

    def lookup(self, *models: str | None) -> dict[str, Any] | None:
        """The price entry of the first model id that has one, or ``None``."""
        for model in models:
            if not model:
                continue
            name = model.removeprefix("models/")
            if name in self.prices:
                return self.prices[name]
            prefixes = [k for k in self.prices if name.startswith(k)]
            if prefixes:
                return self.prices[max(prefixes, key=len)]
        return None

    def cost(self, entry: Mapping[str, Any] | None, input_tokens: int, output_tokens: int,
             input_by_modality: Mapping[str, int] | None = None) -> float:
        """USD for one reply (0 without a price entry)."""
        if entry is None:
            return 0.0
        base_in = float(entry.get("input", 0.0))
        by_mod = {str(k).upper(): float(v) for k, v in dict(entry.get("input_by_modality") or {}).items()}
        if input_by_modality:
            counted = sum(input_by_modality.values())
            usd = sum(n * by_mod.get(m.upper(), base_in) for m, n in input_by_modality.items())
            usd += max(0, input_tokens - counted) * base_in
        else:
            usd = input_tokens * base_in
        usd += output_tokens * float(entry.get("output", 0.0))
        return usd / 1e6


# ---------------------------------------------------------------------------------------------- plumbing
@dataclass
class Reply:
    """One generation reply as the backend saw it.

    Attributes:
        text: the model's text (``None`` if it gave none, e.g. blocked).
        input_tokens, output_tokens: reported usage.
        input_by_modality: prompt tokens by modality (``TEXT``, ``AUDIO``, ``VIDEO``, ``IMAGE``), if reported.
        model_version: the exact model id the server reported.
        finish_reason: why generation stopped, if reported.
    """

    text: str | None
    input_tokens: int = 0
    output_tokens: int = 0
    input_by_modality: dict[str, int] | None = None
    model_version: str | None = None
    finish_reason: str | None = None


class Meter:
    """Mutable usage accumulator for one rollout: the fields of :class:`Usage` (declared there only), each starting
    at its default and added to as requests go out (``meter.requests += 1``); :meth:`usage` freezes them."""

    def __init__(self) -> None:
        for f in fields(Usage):
            setattr(self, f.name, f.default)

    def usage(self) -> Usage:
        return Usage(**{f.name: getattr(self, f.name) for f in fields(Usage)})


@dataclass
class Prepared:
    """A backend payload ready to send, plus what the shared code needs to know about it."""

    request: AnnotationRequest
    system: str
    user: str
    schema: dict[str, Any]
    rollout: int
    payload: Any = None
    #: 0 for the first request of a rollout, ``t`` for its t-th corrective follow-up (see ``generation_params``)
    turn: int = 0


class APIAnnotator(Annotator):
    """Base class of the API annotators (see the module docstring for what it does).

    Args:
        model: model id sent to the API (e.g. ``gemini-2.0-flash``).
        prompt: the prompt template (a :class:`PromptTemplate`, its config mapping, or a name in ``conf/prompt``).
        api_key_env: name of the environment variable holding the API key (``None``: no key, for local servers).
        base_url: endpoint override (a local server, a proxy); ``None`` for the SDK default.
        timeout: seconds per HTTP request.
        retry: ``annotator.retry`` settings (:class:`RetryPolicy` fields).
        requests_per_minute: client-side rate limit of generation requests (``None``/0: off).
        rate_burst: requests allowed at once after an idle period.
        prices: ``annotator.prices`` (:class:`PriceTable`).
        cache_dir: on-disk answer cache (``None``: no cache).
        temperature, seed, max_output_tokens: generation parameters (the seed of rollout ``r`` is ``seed + r``).
            The default ``max_output_tokens`` (256) fits the answer the prompt bounds (a label, a number and a
            rationale of at most ``rationale_max_chars`` = 200 characters: about 60 tokens of English, at most ~230
            at one token per character); thinking models that count thoughts as output need more.
        validation_retries: corrective follow-ups after an invalid reply before the utterance fails.
        correction_temperature: temperature of the corrective follow-ups (``None``: ``temperature``); a follow-up
            at the same temperature 0 and seed tends to repeat the invalid answer.
        correction_seed_offset: the t-th follow-up of rollout ``r`` uses the seed ``seed + r + t * offset``.
    """

    backend_name: ClassVar[str] = "api"
    #: whether the audio travels inside the video file (True) or as its own part (False)
    audio_in_video: ClassVar[bool] = False
    concurrent = True

    def __init__(
        self,
        *,
        model: str,
        prompt: PromptTemplate | Mapping[str, Any] | str = "miku_pal_v2",
        api_key_env: str | None = None,
        base_url: str | None = None,
        timeout: float = 120.0,
        retry: Mapping[str, Any] | RetryPolicy | None = None,
        requests_per_minute: float | None = None,
        rate_burst: int = 1,
        prices: Mapping[str, Mapping[str, Any]] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        temperature: float | None = 0.0,
        seed: int | None = 0,
        max_output_tokens: int | None = 256,
        validation_retries: int = 1,
        correction_temperature: float | None = 0.7,
        correction_seed_offset: int = 1000,
    ) -> None:
        if not model:
            raise AnnotatorConfigError("annotator.model is empty: name the model to call")
        self.model = str(model)
        self.model_id = self.model
        if isinstance(prompt, PromptTemplate):
            self.prompt = prompt
        elif isinstance(prompt, str):
            self.prompt = PromptTemplate.load(prompt)
        else:
            self.prompt = PromptTemplate.from_config(prompt)
        self.prompt_version = self.prompt.version
        self.api_key_env = str(api_key_env) if api_key_env else None
        self.base_url = str(base_url) if base_url else None
        self.timeout = float(timeout)
        self.retry = retry if isinstance(retry, RetryPolicy) else RetryPolicy.from_config(retry)
        self.limiter = RateLimiter(requests_per_minute, burst=rate_burst)
        self.prices = PriceTable(prices)
        self.cache = AnswerCache(cache_dir)
        self.temperature = None if temperature is None else float(temperature)
        self.seed = None if seed is None else int(seed)
        self.max_output_tokens = None if max_output_tokens is None else int(max_output_tokens)
        if validation_retries < 0:
            raise AnnotatorConfigError("annotator.validation_retries must be >= 0")
        self.validation_retries = int(validation_retries)
        self.correction_temperature = None if correction_temperature is None else float(correction_temperature)
        self.correction_seed_offset = int(correction_seed_offset)
        self.client: Any = None
        self._unsupported: dict[str, str] = {}  # modality -> the server's answer, once a request showed it
        self._sha_lock = threading.Lock()
        self._sha: dict[tuple[str, int, int], str] = {}
        self._tmp_dir: Path | None = None
        self._price_warned = False

    # ------------------------------------------------------------------------------------------ lifecycle
    def read_api_key(self) -> str | None:
        """The API key from the environment variable named by ``api_key_env`` (``None`` when no variable is named).

        Raises:
            AnnotatorConfigError: the variable is named but not set; the message names the variable, never a key.
        """
        if not self.api_key_env:
            return None
        value = os.environ.get(self.api_key_env, "").strip()
        if not value:
            raise AnnotatorConfigError(
                f"annotator.api_key_env={self.api_key_env}: the environment variable {self.api_key_env} is not set "
                f"or empty. Export it (export {self.api_key_env}=...) or point annotator.api_key_env at the "
                f"variable that holds your {self.backend_name} API key."
            )
        return value

    def setup(self) -> None:
        """Read the key and build the SDK client (no request is made)."""
        self.client = self._make_client(self.read_api_key())
        if self.cache.directory is None:
            self._tmp_dir = Path(tempfile.mkdtemp(prefix="mikupal-annotate-"))

    def teardown(self) -> None:
        self._close_client()
        self.client = None
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None

    def has_price(self) -> bool:
        """Whether the price table has an entry for the configured model."""
        return self.prices.lookup(self.model) is not None

    @property
    def work_dir(self) -> Path:
        """Where derived media (video without audio) are kept: beside the cache, or a temporary folder."""
        if self.cache.directory is not None:
            return self.cache.directory / "media"
        if self._tmp_dir is None:
            self._tmp_dir = Path(tempfile.mkdtemp(prefix="mikupal-annotate-"))
        return self._tmp_dir

    # ------------------------------------------------------------------------------------------ the one method
    def annotate(self, request: AnnotationRequest, rollout: int = 0) -> RolloutAnswer:
        if self.client is None:
            raise RuntimeError(f"{type(self).__name__}.setup() was not called")
        label_set = request.label_set
        media = request.media(self.audio_in_video)
        what = f"{self.backend_name} {self.model} {request.item_id} rollout {rollout}"
        system = self.prompt.system_text(label_set, media, "text" in request.modalities)
        user = self.prompt.user_text(request, request.context)
        schema = self.prompt.schema(label_set)
        key = cache_key({
            "backend": self.backend_name,
            "model": self.model,
            "prompt_version": self.prompt.version,
            "prompt": self.prompt.fingerprint,
            "system": system,
            "user": user,
            "media": [{"sha256": self.media_sha256(m.path), "kind": m.kind, "with_audio": m.with_audio,
                       "mime": m.mime_type} for m in media],
            "params": self.request_params(rollout),
            "schema": schema,
            "rollout": rollout,
        })
        hit = self.cache.get(key)
        if hit is not None:
            try:
                return RolloutAnswer(label=label_set.get(hit["label"]).name, intensity=float(hit["intensity"]),
                                     rationale=str(hit["rationale"]), scores=None, usage=Usage(cache_hits=1),
                                     model_version=hit.get("model_version"))
            except (KeyError, TypeError, ValueError):
                log.warning("annotation cache: entry %s does not fit label set %s; asking again", key[:12],
                            label_set.name)
        meter = Meter()
        try:
            self._check_capabilities(request, media, what)
            prepared = self._prepare(Prepared(request, system, user, schema, rollout), media, meter)
            correction: tuple[str, str] | None = None
            for turn in range(self.validation_retries + 1):
                prepared.turn = turn
                reply = self._send(prepared, correction, meter, what)
                try:
                    parsed = self.prompt.parse(reply.text, label_set)
                    break
                except ReplyValidationError as e:
                    finish = (reply.finish_reason or "").upper()
                    if finish in {"LENGTH", "MAX_TOKENS", "FINISH_REASON_MAX_TOKENS"}:
                        e = ReplyValidationError(
                            f"{e} (the reply was cut off at annotator.max_output_tokens={self.max_output_tokens})")
                    elif finish and finish not in {"STOP", "FINISH_REASON_STOP"}:
                        e = ReplyValidationError(f"{e} (finish reason {reply.finish_reason})")
                    if turn >= self.validation_retries:
                        raise AnnotationError(
                            f"{what}: the reply failed validation {turn + 1} time(s); last: {e}", usage=meter.usage()
                        ) from None
                    meter.validation_retries += 1
                    log.warning("%s: invalid reply (%s); asking again with the error stated", what, e)
                    correction = (reply.text or "", str(e))
        except CapabilityError as e:
            self._unsupported.setdefault(e.modality, e.explanation)
            e.usage = meter.usage()
            raise
        except AnnotationError as e:
            e.usage = meter.usage()
            raise
        usage = meter.usage()
        answer = RolloutAnswer(label=parsed.label, intensity=parsed.intensity, rationale=parsed.rationale,
                               scores=None, usage=usage, model_version=reply.model_version)
        self.cache.put(key, {"label": parsed.label, "intensity": parsed.intensity, "rationale": parsed.rationale,
                             "model_version": reply.model_version, "model": self.model,
                             "prompt_version": self.prompt.version, "item_id": request.item_id, "rollout": rollout,
                             "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                             "cost_usd": usage.cost_usd})
        return answer

    def _check_capabilities(self, request: AnnotationRequest, media: list[MediaPart], what: str) -> None:
        """Fail at once, without a request, when a modality the request sends is known to be unsupported."""
        for kind in {m.kind for m in media}:
            known = self._unsupported.get(kind)
            if known is not None:
                raise CapabilityError(f"{what}: not sent, an earlier request showed that {known}", kind,
                                      explanation=known)

    def capability_message(self, modality: str, reason: str, modalities: Any) -> str:
        """Why a capability error stops the stage, naming ``annotator.modalities`` and the fix."""
        mods = sorted(modalities)
        left = [m for m in mods if m != modality]
        fix = f"annotator.modalities=[{','.join(left)}]" if left else "annotator.modalities=[text]"
        return (f"the server at {self.base_url or 'the default endpoint'} does not take {modality} input for model "
                f"{self.model} ({reason}), and annotator.modalities={mods} sends {modality}. Set {fix} (the "
                f"modalities the model accepts) or serve a model that takes {modality} input")

    def generation_params(self, rollout: int, turn: int = 0) -> tuple[float | None, int | None]:
        """``(temperature, seed)`` of request ``turn`` of a rollout (0: the first; t > 0: the t-th correction)."""
        if turn == 0:
            return self.temperature, None if self.seed is None else self.seed + rollout
        temperature = self.temperature if self.correction_temperature is None else self.correction_temperature
        seed = None if self.seed is None else self.seed + rollout + turn * self.correction_seed_offset
        return temperature, seed

    def _send(self, prepared: Prepared, correction: tuple[str, str] | None, meter: Meter, what: str) -> Reply:
        """One generation request with retries; adds its usage and cost to ``meter``."""

        def attempt() -> Reply:
            self.limiter.acquire()
            return self._generate(prepared, correction)

        def on_attempt(n: int) -> None:
            meter.requests += 1
            if n > 1:
                meter.retries += 1

        try:
            reply = self.call(attempt, what, on_attempt)
        except CapabilityError as e:
            sent = {m.kind for m in prepared.request.media(self.audio_in_video)}
            modality = unsupported_modality(e.reason, sent) or e.modality  # "not a multimodal model": what was sent
            explanation = self.capability_message(modality, e.reason, prepared.request.modalities)
            raise CapabilityError(f"{what}: {explanation}", modality, e.reason, explanation) from e
        meter.input_tokens += int(reply.input_tokens or 0)
        meter.output_tokens += int(reply.output_tokens or 0)
        entry = self.prices.lookup(self.model, reply.model_version)
        if entry is None and not self._price_warned:
            self._price_warned = True
            log.warning("annotator.prices has no entry for model %s: its cost is counted as 0", self.model)
        meter.cost_usd += self.prices.cost(entry, int(reply.input_tokens or 0), int(reply.output_tokens or 0),
                                           reply.input_by_modality)
        return reply

    def call(self, fn: Any, what: str, on_attempt: Any = None) -> Any:
        """Run ``fn`` with the retry policy; turn failures into :class:`AnnotationError` (or :class:`FatalAPIError`,
        :class:`CapabilityError`)."""
        try:
            return call_with_retry(fn, self._classify, self.retry, what=what, on_attempt=on_attempt)
        except RetriesExhausted as e:
            message = str(e)
            if e.timeouts:
                message += (f". A reply slower than annotator.timeout={self.timeout:g}s usually means the model "
                            f"generated up to annotator.max_output_tokens={self.max_output_tokens}: lower it, or "
                            "raise annotator.timeout for a slow server")
            raise AnnotationError(message) from e
        except AnnotationError:
            raise
        except Exception as e:  # noqa: BLE001 - non-retryable SDK errors become item errors with a clear reason
            failure = self._classify(e)
            capability = getattr(failure, "capability", None)
            if capability:
                raise CapabilityError(f"{what}: {failure.reason}", capability, failure.reason) from e
            cls = FatalAPIError if getattr(failure, "fatal", False) else AnnotationError
            raise cls(f"{what}: {failure.reason}") from e

    def media_sha256(self, path: Path) -> str:
        """sha256 of a media file, memoised by path, size and mtime (rollouts share it)."""
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._sha_lock:
            if key in self._sha:
                return self._sha[key]
        digest = file_sha256(path)
        with self._sha_lock:
            self._sha[key] = digest
        return digest

    def request_params(self, rollout: int) -> dict[str, Any]:
        """Generation parameters of a rollout (part of the cache key); subclasses add theirs."""
        return {
            "temperature": self.temperature,
            "seed": None if self.seed is None else self.seed + rollout,
            "max_output_tokens": self.max_output_tokens,
            "validation_retries": self.validation_retries,
            "correction": list(self.generation_params(rollout, 1)) if self.validation_retries else None,
        }

    def video_only(self, part: MediaPart) -> Path:
        """The video stream of ``part`` alone (remuxed once per source file, kept in :attr:`work_dir`)."""
        from mikupal.annotate.mediaprep import strip_audio

        dest = self.work_dir / f"{self.media_sha256(part.path)}.video.mp4"
        if not dest.exists():
            strip_audio(part.path, dest)
        return dest

    # ------------------------------------------------------------------------------------------ backend hooks
    @abstractmethod
    def _make_client(self, api_key: str | None) -> Any:
        """Build the SDK client (no request)."""

    def _close_client(self) -> None:
        """Close the SDK client's connections."""

    @abstractmethod
    def _prepare(self, prepared: Prepared, media: list[MediaPart], meter: Meter) -> Prepared:
        """Fill ``prepared.payload`` (inline media, uploads); count uploads in ``meter``."""

    @abstractmethod
    def _generate(self, prepared: Prepared, correction: tuple[str, str] | None) -> Reply:
        """Send one generation request (no retry here). ``correction`` is ``(previous reply, error)``; sample with
        :meth:`generation_params` of ``(prepared.rollout, prepared.turn)``."""

    @abstractmethod
    def _classify(self, error: BaseException) -> Failure:
        """Decide whether an SDK exception is worth retrying, with any server delay hint."""


@dataclass(frozen=True)
class APIFailure(Failure):
    """A :class:`Failure` that also says whether every further request would fail the same way.

    Attributes:
        fatal: every further request would fail the same way (bad key, no access, unknown model).
        capability: the modality the server said it cannot take (:func:`unsupported_modality`), if it said so.
    """

    fatal: bool = False
    capability: str | None = None


def classify_transport(error: BaseException) -> Failure | None:
    """Timeouts and connection errors of httpx / httpx2 (whichever the SDK uses) as retryable, else ``None``."""
    for cls in type(error).__mro__:
        module = cls.__module__.split(".")[0]
        if module in ("httpx", "httpx2") and cls.__name__ in ("TimeoutException", "NetworkError",
                                                              "RemoteProtocolError"):
            timeout = cls.__name__ == "TimeoutException"
            kind = "timeout" if timeout else "connection error"
            return APIFailure(True, f"{kind} ({type(error).__name__}: {error})", timeout=timeout)
    return None
