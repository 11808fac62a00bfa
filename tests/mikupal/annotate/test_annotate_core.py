"""Retry policy, server hints, rate limiter, cache, media selection, the majority vote with its tie rule, reply bounds
and scales, and capability errors."""

from __future__ import annotations

import email.utils
import random
import threading
import time

import pytest

from mikupal.annotate.base import AnnotationRequest, AnnotatorConfigError, RolloutAnswer, aggregate
from mikupal.annotate.cache import AnswerCache, cache_key
from mikupal.annotate.prompt import PromptTemplate, ReplyValidationError, parse_reply
from mikupal.annotate.retry import (
    Failure,
    RateLimiter,
    RetriesExhausted,
    RetryPolicy,
    call_with_retry,
    parse_retry_after,
    parse_retry_info,
)
from mikupal.labels import load_label_set

MELD = load_label_set("meld7")


# ---------------------------------------------------------------------------------------------- retry
def test_backoff_grows_exponentially_is_capped_and_jittered():
    policy = RetryPolicy(initial_delay=1.0, max_delay=5.0, multiplier=2.0, jitter=0.0)
    assert [policy.delay(a) for a in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    jittered = RetryPolicy(initial_delay=1.0, max_delay=60.0, jitter=0.5)
    rng = random.Random(0)
    delays = [jittered.delay(2, rng=rng) for _ in range(200)]
    assert 1.0 <= min(delays) < 1.2 and 2.8 < max(delays) <= 3.0  # 2 s * [0.5, 1.5]
    assert len(set(delays)) > 100


def test_server_hint_wins_when_longer_and_is_capped():
    policy = RetryPolicy(initial_delay=0.1, jitter=0.0, max_server_delay=30.0)
    assert policy.delay(1, hint=7.0) == 7.0
    assert policy.delay(1, hint=0.01) == 0.1  # a shorter hint does not shorten the backoff
    assert policy.delay(1, hint=3600.0) == 30.0


def test_parse_retry_after_header_forms():
    assert parse_retry_after({"Retry-After": "12"}) == 12.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    future = email.utils.formatdate(time.time() + 20, usegmt=True)
    assert 15 < parse_retry_after({"Retry-After": future}) <= 21
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None


def test_parse_retry_info_from_google_error_body():
    body = {"error": {"code": 429, "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}}
    assert parse_retry_info(body) == 37.0
    body["error"]["details"][1]["retryDelay"] = {"seconds": 2, "nanos": 500_000_000}
    assert parse_retry_info(body) == 2.5
    assert parse_retry_info({"error": {"code": 500}}) is None
    assert parse_retry_info("not a dict") is None


def test_call_with_retry_retries_retryable_errors_then_succeeds():
    calls, sleeps = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("boom")
        return "ok"

    policy = RetryPolicy(max_attempts=5, initial_delay=0.5, jitter=0.0)
    result = call_with_retry(flaky, lambda e: Failure(True, str(e), hint=2.0 if len(calls) == 2 else None), policy,
                             sleep=sleeps.append)
    assert result == "ok" and len(calls) == 3
    assert sleeps == [0.5, 2.0]  # second wait follows the server's hint


def test_call_with_retry_gives_up_and_does_not_retry_fatal_errors():
    attempts = []
    with pytest.raises(RetriesExhausted, match="gave up after 3 attempt"):
        call_with_retry(lambda: (_ for _ in ()).throw(TimeoutError("t")), lambda e: Failure(True, "timeout"),
                        RetryPolicy(max_attempts=3, initial_delay=0.0, jitter=0.0), sleep=lambda s: None,
                        on_attempt=attempts.append)
    assert attempts == [1, 2, 3]
    attempts.clear()
    with pytest.raises(ValueError):
        call_with_retry(lambda: (_ for _ in ()).throw(ValueError("bad request")), lambda e: Failure(False, "400"),
                        RetryPolicy(max_attempts=3), sleep=lambda s: None, on_attempt=attempts.append)
    assert attempts == [1]


def test_rate_limiter_spaces_requests_with_a_burst():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(requests_per_minute=600, burst=2, clock=lambda: now[0], sleep=sleep)  # 0.1 s apart
    waits = [limiter.acquire() for _ in range(5)]
    assert waits[:2] == [0.0, 0.0]  # the burst
    assert waits[2:] == pytest.approx([0.1, 0.1, 0.1])
    assert RateLimiter(None).acquire() == 0.0


def test_rate_limiter_is_thread_safe_and_holds_the_rate():
    limiter = RateLimiter(requests_per_minute=6000)  # 10 ms apart
    stamps = []
    lock = threading.Lock()

    def worker():
        for _ in range(5):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(stamps) == 20
    assert time.monotonic() - start >= 0.18  # 20 requests, 19 gaps of 10 ms


# ---------------------------------------------------------------------------------------------- cache
def test_cache_roundtrip_key_sensitivity_and_corrupt_entries(tmp_path):
    cache = AnswerCache(tmp_path / "c")
    key = cache_key({"model": "m", "rollout": 0, "media": ["abc"]})
    assert key == cache_key({"media": ["abc"], "rollout": 0, "model": "m"})  # order-independent
    assert key != cache_key({"model": "m", "rollout": 1, "media": ["abc"]})
    assert cache.get(key) is None
    cache.put(key, {"label": "joy"})
    assert cache.get(key) == {"label": "joy"} and len(cache) == 1
    path = next((tmp_path / "c").rglob("*.json"))
    path.write_text("{truncated")
    assert cache.get(key) is None
    assert AnswerCache(None).get(key) is None


# ---------------------------------------------------------------------------------------------- requests
def test_media_selection_follows_modalities(tmp_path):
    clip, audio = tmp_path / "f.mp4", tmp_path / "a.flac"

    def media(mods, with_clip=True, audio_in_video=True):
        request = AnnotationRequest("u", MELD, modalities=frozenset(mods), face_clip=clip if with_clip else None,
                                    audio=audio)
        return [(m.kind, m.path.name, m.mime_type, m.with_audio) for m in request.media(audio_in_video)]

    assert media({"video", "audio", "text"}) == [("video", "f.mp4", "video/mp4", True)]
    assert media({"video", "audio"}, audio_in_video=False) == [("video", "f.mp4", "video/mp4", False),
                                                               ("audio", "a.flac", "audio/flac", False)]
    assert media({"video"}) == [("video", "f.mp4", "video/mp4", False)]
    assert media({"audio", "text"}) == [("audio", "a.flac", "audio/flac", False)]
    assert media({"video", "audio"}, with_clip=False) == [("audio", "a.flac", "audio/flac", False)]
    assert media({"text"}) == []


def test_modalities_are_validated():
    with pytest.raises(AnnotatorConfigError, match="unknown"):
        AnnotationRequest("u", MELD, modalities=frozenset({"smell"}))
    with pytest.raises(AnnotatorConfigError, match="non-empty"):
        AnnotationRequest("u", MELD, modalities=frozenset())


# ---------------------------------------------------------------------------------------------- votes
def _answer(label, intensity=0.5, scores=None, version="gemini-2.0-flash-001", rationale=None):
    return RolloutAnswer(label=label, intensity=intensity, rationale=rationale or f"because {label}", scores=scores,
                         model_version=version)


def test_majority_vote_keeps_votes_and_averages_the_winners_intensity():
    emotion = aggregate([_answer("joy", 0.4), _answer("anger", 0.9), _answer("joy", 0.8, rationale="second")],
                        MELD, "gemini-2.0-flash", "miku_pal_v1")
    assert emotion.label == "joy" and emotion.votes == ["joy", "anger", "joy"]
    assert emotion.intensity == pytest.approx(0.6)
    assert emotion.rationale == "because joy"  # the first rollout that voted for the winner
    assert emotion.annotator == "gemini-2.0-flash-001" and emotion.prompt_version == "miku_pal_v1"
    assert emotion.scores is None


def test_tie_rule_scores_then_intensity_then_label_set_order():
    # scores: joy sums to 0.85, anger to 0.7 -> joy wins the 1-1 tie
    s1 = {"anger": 0.6, "joy": 0.4}
    s2 = {"anger": 0.1, "joy": 0.45}
    by_score = aggregate([_answer("anger", 0.9, scores=s1), _answer("joy", 0.1, scores=s2)], MELD, "m", None)
    assert by_score.label == "joy"
    assert by_score.scores["joy"] == pytest.approx(0.425)
    # no scores: higher summed intensity of the voters wins
    by_intensity = aggregate([_answer("sadness", 0.3), _answer("fear", 0.7)], MELD, "m", None)
    assert by_intensity.label == "fear"
    # equal intensity: label-set order (fear comes before sadness in meld7)
    by_order = aggregate([_answer("sadness", 0.5), _answer("fear", 0.5)], MELD, "m", None)
    assert by_order.label == "fear"
    assert aggregate([_answer("fear", 0.5), _answer("sadness", 0.5)], MELD, "m", None).label == "fear"


def test_aggregate_falls_back_to_configured_model_id_and_rejects_foreign_labels():
    mixed = aggregate([_answer("joy", version="a"), _answer("joy", version="b")], MELD, "configured", None)
    assert mixed.annotator == "configured"
    with pytest.raises(ValueError, match="not a label"):
        aggregate([_answer("Joy")], MELD, "m", None)
    with pytest.raises(ValueError, match="no rollout"):
        aggregate([], MELD, "m", None)


def test_backends_are_built_without_stage_keys_and_typos_are_rejected(tmp_path):
    from mikupal.annotate.gemini import GeminiAnnotator
    from mikupal.annotate.stage import AnnotateStage, build_annotator
    from mikupal.testing.config import compose_pipeline

    cfg = compose_pipeline(f"input={tmp_path}", f"run_dir={tmp_path / 'run'}", "annotator=gemini")
    backend = build_annotator(cfg)  # what the stage's setup and the runner's checks do
    assert isinstance(backend, GeminiAnnotator) and cfg.annotator.max_in_flight == 8
    assert "max_in_flight" in AnnotateStage.stage_keys() and not hasattr(backend, "max_in_flight")
    assert backend.client is None  # nothing is loaded or connected before setup()
    typo = compose_pipeline(f"input={tmp_path}", f"run_dir={tmp_path / 'run'}", "annotator=gemini",
                            "+annotator.temprature=0.5")
    with pytest.raises(AnnotatorConfigError, match="unknown setting.*temprature"):
        build_annotator(typo)


# ---------------------------------------------------------------------------------------------- issue 16
def test_timeouts_count_against_their_own_limit():
    attempts = []
    with pytest.raises(RetriesExhausted) as info:
        call_with_retry(lambda: (_ for _ in ()).throw(TimeoutError("t")),
                        lambda e: Failure(True, "timeout", timeout=True),
                        RetryPolicy(max_attempts=6, initial_delay=0.0, jitter=0.0), sleep=lambda s: None,
                        on_attempt=attempts.append)
    assert attempts == [1, 2] and info.value.timeouts == 2 and "2 of them timed out" in str(info.value)
    attempts.clear()
    with pytest.raises(RetriesExhausted, match="gave up after 6 attempt"):  # 5xx still get every attempt
        call_with_retry(lambda: (_ for _ in ()).throw(RuntimeError("500")), lambda e: Failure(True, "HTTP 500"),
                        RetryPolicy(max_attempts=6, initial_delay=0.0, jitter=0.0), sleep=lambda s: None,
                        on_attempt=attempts.append)
    assert len(attempts) == 6
    with pytest.raises(ValueError, match="max_timeouts"):
        RetryPolicy(max_timeouts=0)


@pytest.mark.parametrize("reply, expected", [
    ('{"label": "joy", "intensity": 7, "intensity_scale": 10, "rationale": "r"}', 0.7),
    ('{"label": "joy", "intensity": 10, "intensity_scale": "1-10", "rationale": "r"}', 1.0),
    ('{"label": "joy", "intensity": 3, "intensity_scale": [1, 5], "rationale": "r"}', 0.5),
    ('{"label": "joy", "intensity": 50, "intensity_scale": {"min": 0, "max": 100}, "rationale": "r"}', 0.5),
    ('{"label": "joy", "intensity": 0.4, "intensity_scale": "0 to 1", "rationale": "r"}', 0.4),
])
def test_an_intensity_is_rescaled_only_from_the_scale_the_reply_declares(reply, expected):
    assert parse_reply(reply, MELD).intensity == pytest.approx(expected)


@pytest.mark.parametrize("reply, message", [
    ('{"label": "joy", "intensity": 5.5, "rationale": "r"}', "from 0.0 to 1.0, got 5.5"),  # no scale: never guessed
    ('{"label": "joy", "intensity": 12, "intensity_scale": 10, "rationale": "r"}', "outside the scale 0 to 10"),
    ('{"label": "joy", "intensity": 3, "intensity_scale": "big", "rationale": "r"}', "is not a scale"),
    ('{"label": "joy", "intensity": 3, "intensity_scale": [5, 5], "rationale": "r"}', "is not a scale"),
    ('{"label": "joy", "intensity": NaN, "rationale": "r"}', "must be a number"),
])
def test_an_intensity_outside_0_1_without_a_usable_scale_is_an_error(reply, message):
    with pytest.raises(ReplyValidationError, match=message):
        parse_reply(reply, MELD)


def test_the_rationale_bound_is_in_prompt_schema_and_validation():
    v2, v1 = PromptTemplate.load("miku_pal_v2"), PromptTemplate.load("miku_pal_v1")
    assert v2.version == "miku_pal_v2" and v2.rationale_max_chars == 200 and v2.fingerprint != v1.fingerprint
    assert v2.schema(MELD)["properties"]["rationale"] == {"type": "string", "maxLength": 200}
    assert "at most 200 characters" in v2.system_text(MELD, [], True)
    assert "between 0.0 and 1.0 inclusive" in v2.correction_text("x", MELD) and "200" in v2.correction_text("x", MELD)
    assert v1.rationale_max_chars is None and v1.schema(MELD)["properties"]["rationale"] == {"type": "string"}
    ok = '{"label": "joy", "intensity": 0.5, "rationale": "%s"}'
    assert v2.parse(ok % ("a" * 200), MELD).rationale == "a" * 200
    with pytest.raises(ReplyValidationError, match="at most 200 characters, got 201"):
        v2.parse(ok % ("a" * 201), MELD)
    assert v1.parse(ok % ("a" * 1000), MELD).rationale == "a" * 1000  # v1 answers stay valid


def test_a_truncated_reply_names_the_problem_once():
    with pytest.raises(ReplyValidationError) as info:
        parse_reply('{"label": "joy", "intensity": 0.5, "rationale": "and then and then', MELD)
    message = str(info.value)
    assert "not valid JSON (Unterminated string starting at: character" in message and "at at" not in message


@pytest.mark.parametrize("message, modality", [
    ("audio input is not supported - hint: if this is unexpected, you may need to provide the mmproj", "audio"),
    ("image input is not supported - hint: if this is unexpected, you may need to provide the mmproj", "video"),
    ("video input is not supported", "video"),
    ("At most 0 audio(s) may be provided in one request.", "audio"),
    ("Invalid content type. image_url is only supported by certain models.", "video"),
    ("This model does not support audio input.", "audio"),
    ("Qwen/Qwen2.5-7B-Instruct is not a multimodal model", "audio"),  # names none: the media that was sent
    ("the request exceeds the available context size, try increasing it", None),
    ("Invalid API Key", None),
    ("Unsupported parameter: 'seed'", None),
    ("Invalid value for input_audio format: 'ogg'", None),
])
def test_modality_not_supported_answers_are_recognised(message, modality):
    from mikupal.annotate.api import unsupported_modality

    assert unsupported_modality(message, {"audio", "text"}) == modality


def test_a_rollouts_meter_counts_every_usage_field_and_freezes_into_usage():
    from dataclasses import fields

    from mikupal.annotate.api import Meter
    from mikupal.annotate.base import Usage

    meter = Meter()
    assert meter.usage() == Usage()  # every field starts at its default
    meter.requests += 2
    meter.retries += 1
    meter.input_tokens += 120
    meter.cost_usd += 0.25
    usage = meter.usage()
    assert usage == Usage(requests=2, retries=1, input_tokens=120, cost_usd=0.25)
    assert {f.name for f in fields(Usage)} <= set(vars(meter))  # a field added to Usage is metered too
    meter.requests += 1
    assert usage.requests == 2  # the frozen usage does not follow the meter
