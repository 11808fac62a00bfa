"""The Gemini annotator against a local stub speaking the REST protocol (generateContent, resumable upload, files)."""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

import av
import pytest

from mikupal.annotate.api import FatalAPIError
from mikupal.annotate.base import AnnotationError, AnnotationRequest, AnnotatorConfigError
from mikupal.annotate.gemini import GeminiAnnotator
from mikupal.labels import load_label_set
from mikupal.testing.annotate import FAST_RETRY, KEY_ENV, SECRET
from mikupal.testing.servers import GeminiStub, StubReply, answer_json, gemini_error

MELD = load_label_set("meld7")
EMO26 = load_label_set("emobench26")
PRICES = {"gemini-2.0-flash": {"input": 0.10, "output": 0.40, "input_by_modality": {"AUDIO": 0.70}}}


@pytest.fixture
def stub():
    with GeminiStub(max_lifetime=60) as server:
        yield server


@pytest.fixture
def make(stub, tmp_path):
    made = []

    def build(**kwargs) -> GeminiAnnotator:
        settings = dict(base_url=stub.url, api_key_env=KEY_ENV, retry=FAST_RETRY, timeout=2.0, prices=PRICES,
                        cache_dir=tmp_path / "cache", file_poll_interval=0.001)
        settings.update(kwargs)
        annotator = GeminiAnnotator(**settings)
        annotator.setup()
        made.append(annotator)
        return annotator

    yield build
    for annotator in made:
        annotator.teardown()


def request(media_dir: Path, label_set=MELD, modalities=("video", "audio", "text"), face=True, text="I won the prize",
            item_id="vid-00001") -> AnnotationRequest:
    return AnnotationRequest(item_id=item_id, label_set=label_set, modalities=frozenset(modalities), transcript=text,
                             language="en", face_clip=media_dir / "clip.mp4" if face else None,
                             audio=media_dir / "speech.flac")


def streams(data: bytes) -> set[str]:
    with av.open(io.BytesIO(data)) as container:
        return {s.type for s in container.streams}


# ---------------------------------------------------------------------------------------------- what is sent
def test_request_holds_every_label_schema_enum_media_and_transcript(stub, make, media_dir):
    answer = make().annotate(request(media_dir, label_set=EMO26, text="I won the prize"), 0)
    assert answer.label in EMO26.names and answer.model_version == "gemini-2.0-flash-001"
    (sent,) = stub.generate_requests
    assert sent.path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == SECRET
    system = sent.gemini_system
    for label in EMO26.labels:
        assert f"{label.name}: {label.description}" in system
    config = sent.json["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"]["properties"]["label"]["enum"] == EMO26.names
    assert config["temperature"] == 0.0 and config["seed"] == 0
    inline = stub.inline_parts(sent)
    assert [m for m, _ in inline] == ["video/mp4"]
    assert inline[0][1] == (media_dir / "clip.mp4").read_bytes()  # the clip, with its audio track
    assert streams(inline[0][1]) == {"video", "audio"}
    assert '"I won the prize"' in sent.user_text
    assert sent.gemini_parts[-1]["text"] == sent.user_text  # media first, then the text


@pytest.mark.parametrize(
    "modalities, face, mimes, tracks, has_text",
    [
        (("video",), True, ["video/mp4"], [{"video"}], False),
        (("audio", "text"), True, ["audio/flac"], [{"audio"}], True),
        (("video", "audio", "text"), False, ["audio/flac"], [{"audio"}], True),
        (("text",), True, [], [], True),
        (("video", "text"), False, [], [], True),
    ],
)
def test_media_parts_follow_modalities(stub, make, media_dir, modalities, face, mimes, tracks, has_text):
    make().annotate(request(media_dir, modalities=modalities, face=face, text="I won the prize"), 0)
    (sent,) = stub.generate_requests
    inline = stub.inline_parts(sent)
    assert [m for m, _ in inline] == mimes
    assert [streams(data) for _, data in inline] == tracks
    assert ("I won the prize" in sent.user_text) == has_text
    system = sent.gemini_system.split("Emotion categories")[0]
    assert ("transcript" in system) == has_text


# ---------------------------------------------------------------------------------------------- key
def test_missing_key_variable_is_named_and_no_request_is_made(stub, monkeypatch, caplog):
    monkeypatch.delenv(KEY_ENV)
    annotator = GeminiAnnotator(base_url=stub.url, api_key_env=KEY_ENV)
    with pytest.raises(AnnotatorConfigError, match=KEY_ENV) as info:
        annotator.setup()
    assert SECRET not in str(info.value)
    assert stub.requests == []


# ---------------------------------------------------------------------------------------------- retries
def test_429_then_success_honours_retry_after(stub, make, media_dir, caplog):
    stub.script(StubReply(status=429, body=gemini_error(429, "RESOURCE_EXHAUSTED", "quota"),
                          headers={"Retry-After": "0.3"}))
    start = time.monotonic()
    with caplog.at_level(logging.WARNING):
        answer = make().annotate(request(media_dir), 0)
    assert time.monotonic() - start >= 0.3
    assert len(stub.generate_requests) == 2
    assert answer.usage.requests == 2 and answer.usage.retries == 1
    assert "429" in caplog.text and "server asked for 0.3s" in caplog.text
    assert SECRET not in caplog.text


def test_429_retry_info_in_the_body_is_honoured(stub, make, media_dir):
    stub.script(StubReply(status=429, body=gemini_error(429, "RESOURCE_EXHAUSTED", "quota", retry_delay="0.25s")))
    start = time.monotonic()
    make().annotate(request(media_dir), 0)
    assert time.monotonic() - start >= 0.25
    assert len(stub.generate_requests) == 2


def test_persistent_500_becomes_an_item_error_after_max_attempts(stub, make, media_dir):
    stub.script(*[StubReply(status=500, body=gemini_error(500, "INTERNAL", "boom"))] * 3)
    with pytest.raises(AnnotationError, match="gave up after 3 attempt.*500") as info:
        make().annotate(request(media_dir), 0)
    assert len(stub.generate_requests) == 3
    assert info.value.usage.requests == 3


def test_503_then_success(stub, make, media_dir):
    stub.script(StubReply(status=503, body=gemini_error(503, "UNAVAILABLE", "overloaded")))
    assert make().annotate(request(media_dir, text="see you at nine, neutral"), 0).label == "neutral"
    assert len(stub.generate_requests) == 2


def test_timeout_is_retried(stub, make, media_dir):
    stub.script(StubReply(text=answer_json("joy"), delay=1.5))  # longer than the 0.5 s client timeout
    answer = make(timeout=0.5).annotate(request(media_dir, text="such sadness"), 0)
    assert answer.label == "sadness"  # the retried request got the default answer, not the late "joy"
    assert len(stub.generate_requests) == 2 and answer.usage.retries == 1


def test_400_is_not_retried(stub, make, media_dir):
    stub.script(StubReply(status=400, body=gemini_error(400, "INVALID_ARGUMENT", "bad media")))
    with pytest.raises(AnnotationError, match="400"):
        make().annotate(request(media_dir), 0)
    assert len(stub.generate_requests) == 1


def test_401_is_fatal(stub, make, media_dir):
    stub.script(StubReply(status=401, body=gemini_error(401, "UNAUTHENTICATED", "API key not valid")))
    with pytest.raises(FatalAPIError, match="401"):
        make().annotate(request(media_dir), 0)


# ---------------------------------------------------------------------------------------------- validation
def test_malformed_json_is_retried_once_with_the_error_stated(stub, make, media_dir):
    stub.script(StubReply(text="I think the speaker is happy."))
    answer = make().annotate(request(media_dir, text="so much joy"), 0)
    assert answer.label == "joy" and answer.usage.validation_retries == 1
    first, second = stub.generate_requests
    turns = second.json["contents"]
    assert [t["role"] for t in turns] == ["user", "model", "user"]
    assert turns[1]["parts"][0]["text"] == "I think the speaker is happy."
    assert "not valid JSON" in turns[2]["parts"][0]["text"]
    assert turns[0] == first.json["contents"][0]  # the media and transcript are sent again as they were


def test_label_outside_the_set_twice_is_an_item_error(stub, make, media_dir):
    bad = StubReply(text=answer_json("bananas"))
    stub.script(bad, bad)
    with pytest.raises(AnnotationError, match="failed validation 2 time.*bananas"):
        make().annotate(request(media_dir), 0)
    assert len(stub.generate_requests) == 2
    assert "'bananas' is not one of the allowed categories" in stub.generate_requests[1].json["contents"][2][
        "parts"][0]["text"]


def test_out_of_range_intensity_then_valid(stub, make, media_dir):
    stub.script(StubReply(text='{"label": "joy", "intensity": 8, "rationale": "r"}'))
    answer = make().annotate(request(media_dir), 0)
    assert answer.intensity == 0.6 and len(stub.generate_requests) == 2


# ---------------------------------------------------------------------------------------------- files API
def test_large_media_go_through_the_files_api(stub, make, media_dir):
    annotator = make(inline_max_bytes=1000)  # the 1 s clip is ~9 kB
    req = request(media_dir)
    annotator.annotate(req, 0)
    annotator.annotate(req, 1)  # second rollout: same upload reused
    uploads = [r for r in stub.requests if r.path.startswith("/upload/")]
    assert len(uploads) == 1
    start = uploads[0]
    assert start.headers["x-goog-upload-protocol"] == "resumable"
    assert start.headers["x-goog-upload-command"] == "start"
    assert start.headers["x-goog-upload-header-content-type"] == "video/mp4"
    chunk = next(r for r in stub.requests if r.path.startswith("/upload-session/"))
    assert chunk.headers["x-goog-upload-command"] == "upload, finalize"
    assert chunk.body == (media_dir / "clip.mp4").read_bytes()
    polls = [r for r in stub.requests if r.method == "GET"]
    assert len(polls) >= 1  # PROCESSING, then ACTIVE
    for sent in stub.generate_requests:
        assert stub.inline_parts(sent) == []
        (file_part,) = [p for p in sent.gemini_parts if "fileData" in p or "file_data" in p]
        data = file_part.get("fileData") or file_part.get("file_data")
        assert data["file_uri"].endswith(polls[0].path.rsplit("/", 1)[-1])
    annotator.release(req)
    assert stub.deleted == [f"files/{polls[0].path.rsplit('/', 1)[-1]}"]


def test_video_only_upload_has_no_audio_track(stub, make, media_dir):
    make(inline_max_bytes=1000).annotate(request(media_dir, modalities=("video",)), 0)
    chunk = next(r for r in stub.requests if r.path.startswith("/upload-session/"))
    assert streams(chunk.body) == {"video"}


# ---------------------------------------------------------------------------------------------- cache and cost
def test_cache_hit_on_rerun_makes_zero_requests(stub, make, media_dir, tmp_path):
    req = request(media_dir)
    first = make().annotate(req, 0)
    assert len(stub.generate_requests) == 1 and first.usage.cache_hits == 0
    again = make().annotate(req, 0)  # a fresh annotator, same cache folder (a rerun)
    assert len(stub.generate_requests) == 1
    assert again.usage.cache_hits == 1 and again.usage.requests == 0 and again.usage.cost_usd == 0
    assert (again.label, again.intensity, again.rationale) == (first.label, first.intensity, first.rationale)
    make().annotate(req, 1)  # another rollout is another request, with another seed
    assert len(stub.generate_requests) == 2
    assert stub.generate_requests[1].json["generationConfig"]["seed"] == 1
    make(model="gemini-2.5-flash").annotate(req, 0)  # another model: a miss
    assert len(stub.generate_requests) == 3
    cached = (tmp_path / "cache").rglob("*.json")
    assert SECRET not in "".join(p.read_text() for p in cached)


def test_cost_uses_the_price_table_per_modality(stub, make, media_dir):
    stub.script(StubReply(text=answer_json("joy"), input_tokens=1_000_000, output_tokens=500_000))
    answer = make().annotate(request(media_dir), 0)
    assert answer.usage.input_tokens == 1_000_000 and answer.usage.output_tokens == 500_000
    assert answer.usage.cost_usd == pytest.approx(0.10 + 0.20)
    # with per-modality details: the stub reports 100 AUDIO tokens for the flac part, the rest as TEXT
    second = make().annotate(request(media_dir, modalities=("audio",), item_id="other"), 0)
    audio_tokens = 100  # GeminiStub(media_tokens=100)
    text_tokens = second.usage.input_tokens - audio_tokens
    assert text_tokens > 0
    expected = (audio_tokens * 0.70 + text_tokens * 0.10 + second.usage.output_tokens * 0.40) / 1e6
    assert second.usage.cost_usd == pytest.approx(expected)
    assert second.usage.cost_usd > (second.usage.input_tokens * 0.10 + second.usage.output_tokens * 0.40) / 1e6


def test_client_side_rate_limit_spaces_requests(stub, make, media_dir):
    from concurrent.futures import ThreadPoolExecutor

    annotator = make(requests_per_minute=600, rate_burst=1, cache_dir=None)  # one request per 0.1 s
    requests = [request(media_dir, modalities=("text",), text=f"utterance {i}", item_id=f"u{i}") for i in range(5)]
    with ThreadPoolExecutor(5) as pool:
        list(pool.map(lambda r: annotator.annotate(r, 0), requests))
    arrivals = sorted(r.received for r in stub.generate_requests)
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    # The limiter releases one request per 0.1 s; arrival at the server adds thread and socket jitter to each
    # (0.063 s gaps seen on a loaded machine), so the rate is checked over the whole span (4 intervals = 0.4 s)
    # and every gap only against what no limiter would give (5 parallel requests arrive within milliseconds).
    assert len(arrivals) == 5 and arrivals[-1] - arrivals[0] > 0.32 and min(gaps) > 0.03


# ---------------------------------------------------------------------------------------------- issue 16
def test_schema_bounds_the_rationale_and_the_correction_samples_differently(stub, make, media_dir):
    stub.script(StubReply(text='{"label": "joy", "intensity": 10, "rationale": "r"}'))
    answer = make().annotate(request(media_dir, text="so much joy"), 0)
    assert answer.intensity == 0.6
    first, second = stub.generate_requests
    config = first.json["generationConfig"]
    assert config["maxOutputTokens"] == 256
    rationale = config["responseSchema"]["properties"]["rationale"]
    assert int(rationale.get("maxLength", rationale.get("max_length"))) == 200  # the SDK sends the snake_case name
    assert (config["temperature"], config["seed"]) == (0.0, 0)
    again = second.json["generationConfig"]
    assert (again["temperature"], again["seed"]) == (0.7, 1000)
    assert again["responseSchema"] == config["responseSchema"]


def test_an_unsupported_modality_is_a_capability_error_not_retried(stub, make, media_dir):
    from mikupal.annotate.api import CapabilityError

    stub.script(StubReply(status=400, body=gemini_error(400, "INVALID_ARGUMENT",
                                                        "Audio input modality is not enabled for this model")))
    with pytest.raises(CapabilityError, match="annotator.modalities") as info:
        make().annotate(request(media_dir, face=False), 0)
    assert info.value.modality == "audio" and len(stub.generate_requests) == 1
