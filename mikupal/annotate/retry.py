"""Retries with exponential backoff and jitter, server delay hints, and a client-side rate limiter.

Shared by every API annotator (Gemini, OpenAI-compatible). Both SDKs are used with their own retries switched off
(google-genai retries nothing by default; the openai client is built with ``max_retries=0``) so that one policy,
configured in ``annotator.retry``, decides everything:

* what is retried: HTTP 408, 429 and 5xx replies, timeouts and connection errors (the backend classifies its
  SDK's exceptions into a :class:`Failure`);
* how long to wait: ``initial_delay * multiplier**(attempt-1)``, capped at ``max_delay``, times a random factor in
  ``[1 - jitter, 1 + jitter]``; a server hint (an HTTP ``Retry-After`` header, OpenAI's ``retry-after-ms``, or a
  ``google.rpc.RetryInfo`` ``retryDelay`` in a Gemini error body) replaces the computed delay when it is longer,
  capped at ``max_server_delay``;
* how often: at most ``max_attempts`` attempts in all, after which the last error is raised; of them at most
  ``max_timeouts`` may time out. A reply slower than the client timeout is usually a long generation (an answer
  that runs to the output token limit), and resending the identical request gives the same long reply, so a
  timeout is retried once by default, not ``max_attempts`` times.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: HTTP statuses worth retrying: request timeout, rate limited, and server-side failures.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How failed requests are retried.

    Attributes:
        max_attempts: attempts in all (1 = no retry).
        initial_delay: seconds before the first retry.
        max_delay: cap of the computed (exponential) delay, seconds.
        multiplier: growth factor of the delay per attempt.
        jitter: relative random spread of each delay (0.5 means the delay is multiplied by a factor in 0.5..1.5).
        max_server_delay: cap, in seconds, of a delay the server asks for; a longer hint is cut to this.
        max_timeouts: attempts that may time out, in all, before giving up (counted within ``max_attempts``).
    """

    max_attempts: int = 6
    initial_delay: float = 1.0
    max_delay: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_server_delay: float = 300.0
    max_timeouts: int = 2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"annotator.retry.max_attempts must be >= 1, got {self.max_attempts}")
        if self.initial_delay < 0 or self.max_delay < 0 or self.max_server_delay < 0:
            raise ValueError("annotator.retry delays must be >= 0")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"annotator.retry.jitter must be in 0..1, got {self.jitter}")
        if self.max_timeouts < 1:
            raise ValueError(f"annotator.retry.max_timeouts must be >= 1, got {self.max_timeouts}")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> "RetryPolicy":
        """Build from the ``annotator.retry`` mapping (missing keys keep their defaults)."""
        return cls(**{k: v for k, v in dict(cfg or {}).items()})

    def delay(self, attempt: int, hint: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        Args:
            attempt: the attempt that just failed.
            hint: the delay the server asked for, if any.
            rng: random source for the jitter (tests pass a seeded one).
        """
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1))
        r = (rng or random).uniform(1 - self.jitter, 1 + self.jitter) if self.jitter else 1.0
        delay = base * r
        if hint is not None and hint > 0:
            delay = max(delay, min(hint, self.max_server_delay))
        return delay


@dataclass(frozen=True)
class Failure:
    """A backend's verdict on an exception raised by its SDK.

    Attributes:
        retryable: whether another attempt may succeed (429, 5xx, 408, timeout, connection error).
        reason: short description for logs and the final error (status code and message, never the API key).
        hint: seconds the server asked the client to wait, if it said.
        timeout: the request timed out (counted against :attr:`RetryPolicy.max_timeouts`).
    """

    retryable: bool
    reason: str
    hint: float | None = None
    timeout: bool = False


class RetriesExhausted(RuntimeError):
    """Every attempt failed with a retryable error; the message names the attempts and the last reason.

    Attributes:
        attempts: attempts made. timeouts: how many of them timed out. failure: the last :class:`Failure`.
    """

    def __init__(self, message: str, attempts: int, timeouts: int, failure: Failure) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.timeouts = timeouts
        self.failure = failure


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait according to response headers, or ``None``.

    Reads OpenAI's ``retry-after-ms`` (milliseconds) and the standard ``Retry-After`` (seconds or an HTTP date).
    """
    if not headers:
        return None
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    value = lowered.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def parse_retry_info(body: Any) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail in a Google API error body, or ``None``.

    The body looks like ``{"error": {"code": 429, "details": [{"@type": ".../google.rpc.RetryInfo",
    "retryDelay": "12s"}]}}``; a ``retryDelay`` may also be ``{"seconds": 12, "nanos": 0}``.
    """
    if not isinstance(body, Mapping):
        return None
    error = body.get("error", body)
    details = error.get("details") if isinstance(error, Mapping) else None
    if not isinstance(details, list):
        return None
    for detail in details:
        if not isinstance(detail, Mapping) or not str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            continue
        delay = detail.get("retryDelay")
        if isinstance(delay, str):
            m = _DURATION.match(delay)
            if m:
                return float(m.group(1))
        elif isinstance(delay, Mapping):
            return float(delay.get("seconds", 0)) + float(delay.get("nanos", 0)) / 1e9
    return None


def call_with_retry(
    fn: Callable[[], T],
    classify: Callable[[BaseException], Failure],
    policy: RetryPolicy,
    *,
    what: str = "request",
    sleep: Callable[[float], None] = time.sleep,
    on_attempt: Callable[[int], None] | None = None,
) -> T:
    """Call ``fn`` until it succeeds, retrying retryable failures with backoff.

    Args:
        fn: the request (no arguments).
        classify: turns an exception into a :class:`Failure`; a non-retryable one is re-raised at once.
        policy: the retry policy.
        what: what is being attempted, for log messages.
        sleep: the sleep function (tests may pass a recorder).
        on_attempt: called with the attempt number (1-based) before each attempt (counts requests).

    Returns:
        ``fn``'s result.

    Raises:
        RetriesExhausted: every attempt failed with a retryable error, or ``policy.max_timeouts`` attempts timed out
            (chained to the last exception).
        Exception: a non-retryable error, unchanged.
    """
    attempt = 0
    timeouts = 0
    while True:
        attempt += 1
        if on_attempt is not None:
            on_attempt(attempt)
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - classified below; non-retryable errors are re-raised unchanged
            failure = classify(e)
            if not failure.retryable:
                raise
            timeouts += int(failure.timeout)
            if attempt >= policy.max_attempts or timeouts >= policy.max_timeouts:
                timed_out = f", {timeouts} of them timed out" if timeouts else ""
                raise RetriesExhausted(
                    f"{what}: gave up after {attempt} attempt(s){timed_out}; last error: {failure.reason}",
                    attempt, timeouts, failure,
                ) from e
            delay = policy.delay(attempt, failure.hint)
            hint = f", server asked for {failure.hint:.3g}s" if failure.hint is not None else ""
            log.warning("%s: attempt %d failed (%s); retrying in %.3fs%s", what, attempt, failure.reason, delay, hint)
            sleep(delay)


class RateLimiter:
    """Client-side request rate limit: at most ``requests_per_minute``, spread evenly, with a small burst.

    A thread-safe virtual-clock (GCRA) limiter: each :meth:`acquire` reserves the next free slot and sleeps until
    it. ``burst`` requests may go at once after an idle period. ``requests_per_minute`` of ``None`` or ``0``
    disables the limit.
    """

    def __init__(self, requests_per_minute: float | None, burst: int = 1, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 60.0 / float(requests_per_minute) if requests_per_minute else 0.0
        self.burst = max(1, int(burst))
        self._clock = clock
        self._sleep = sleep
        self._tat = 0.0  # theoretical arrival time of the next request (GCRA)
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for a slot; returns the seconds waited."""
        if not self.interval:
            return 0.0
        with self._lock:
            now = self._clock()
            tat = max(self._tat, now)
            start = max(now, tat - (self.burst - 1) * self.interval)
            self._tat = tat + self.interval
            wait = start - now
        if wait > 0:
            self._sleep(wait)
        return max(0.0, wait)
