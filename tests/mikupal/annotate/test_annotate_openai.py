"""The OpenAI-compatible annotator against a local stub speaking chat completions."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import av
import pytest
import soundfile as sf

from mikupal.annotate.base import AnnotationError, AnnotationRequest, AnnotatorConfigError
from mikupal.annotate.openai_compat import OpenAICompatAnnotator
from mikupal.labels import load_label_set
from mikupal.testing.annotate import FAST_RETRY, KEY_ENV, SECRET
from mikupal.testing.servers import OpenAIStub, StubReply, answer_json, openai_error

MELD = load_label_set("meld7")
EMO26 = load_label_set("emobench26")


@pytest.fixture
def stub():
    with OpenAIStub(max_lifetime=60) as server:
        yield server


@pytest.fixture
def make(stub, tmp_path):
    made = []

    def build(**kwargs) -> OpenAICompatAnnotator:
        settings = dict(base_url=stub.base_url, api_key_env=KEY_ENV, retry=FAST_RETRY, timeout=2.0,
                        cache_dir=tmp_path / "cache", model="qwen2.5-omni-test")
        settings.update(kwargs)
        annotator = OpenAICompatAnnotator(**settings)
        annotator.setup()
        made.append(annotator)
        return annotator

    yield build
    for annotator in made:
        annotator.teardown()


def request(media_dir: Path, label_set=MELD, modalities=("video", "audio", "text"), face=True,
            text="what a joy") -> AnnotationRequest:
    return AnnotationRequest(item_id="vid-00002", label_set=label_set, modalities=frozenset(modalities),
                             transcript=text, language="en", face_clip=media_dir / "clip.mp4" if face else None,
                             audio=media_dir / "speech.flac")


def parts(sent) -> list[dict]:
    user = [m for m in sent.openai_messages if m["role"] == "user"][0]
    return user["content"]


def test_chat_request_carries_labels_schema_and_media(stub, make, media_dir):
    answer = make().annotate(request(media_dir, label_set=EMO26, text="Joy, pure joy"), 0)
    assert answer.label == "Joy" and answer.model_version == "qwen2.5-omni-test"
    (sent,) = stub.generate_requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    body = sent.json
    assert body["model"] == "qwen2.5-omni-test" and body["temperature"] == 0.0 and body["seed"] == 0
    system = body["messages"][0]
    assert system["role"] == "system"
    for label in EMO26.labels:
        assert f"{label.name}: {label.description}" in system["content"]
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"]["properties"]["label"]["enum"] == EMO26.names
    content = parts(sent)
    assert [p["type"] for p in content] == ["video_url", "input_audio", "text"]
    url = content[0]["video_url"]["url"]
    assert url.startswith("data:video/mp4;base64,")
    with av.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as video:
        assert {s.type for s in video.streams} == {"video"}  # the sound goes in its own part
    audio = content[1]["input_audio"]
    assert audio["format"] == "wav"
    samples, rate = sf.read(io.BytesIO(base64.b64decode(audio["data"])))
    assert rate == 16000 and samples.ndim == 1 and len(samples) == 16000
    assert '"Joy, pure joy"' in content[2]["text"]


@pytest.mark.parametrize(
    "modalities, face, types",
    [
        (("video",), True, ["video_url", "text"]),
        (("audio",), True, ["input_audio", "text"]),
        (("text",), True, ["text"]),
        (("video", "audio", "text"), False, ["input_audio", "text"]),
    ],
)
def test_content_parts_follow_modalities(stub, make, media_dir, modalities, face, types):
    make().annotate(request(media_dir, modalities=modalities, face=face, text="what a joy"), 0)
    content = parts(stub.generate_requests[0])
    assert [p["type"] for p in content] == types
    assert ("what a joy" in content[-1]["text"]) == ("text" in modalities)


def test_frames_mode_sends_jpeg_frames(stub, make, media_dir):
    make(video_mode="frames", max_frames=4).annotate(request(media_dir, modalities=("video",)), 0)
    content = parts(stub.generate_requests[0])
    images = [p for p in content if p["type"] == "image_url"]
    assert len(images) == 4
    assert all(p["image_url"]["url"].startswith("data:image/jpeg;base64,/9j/") for p in images)


def test_no_key_variable_means_no_key_and_a_missing_one_is_named(stub, make, media_dir, monkeypatch):
    make(api_key_env=None).annotate(request(media_dir), 0)
    assert stub.generate_requests[0].headers["authorization"] == "Bearer EMPTY"
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(AnnotatorConfigError, match=f"environment variable {KEY_ENV} is not set"):
        OpenAICompatAnnotator(base_url=stub.base_url, api_key_env=KEY_ENV).setup()


def test_429_with_retry_after_ms_then_success(stub, make, media_dir):
    stub.script(StubReply(status=429, body=openai_error("rate limited", "rate_limit_error"),
                          headers={"retry-after-ms": "300"}))
    start = time.monotonic()
    answer = make().annotate(request(media_dir), 0)
    assert time.monotonic() - start >= 0.3
    assert answer.usage.requests == 2 and len(stub.generate_requests) == 2


def test_500_three_times_is_an_item_error(stub, make, media_dir):
    stub.script(*[StubReply(status=500, body=openai_error("boom"))] * 3)
    with pytest.raises(AnnotationError, match="gave up after 3"):
        make().annotate(request(media_dir), 0)
    assert len(stub.generate_requests) == 3


def test_timeout_then_success(stub, make, media_dir):
    stub.script(StubReply(text=answer_json("anger"), delay=1.5))
    answer = make(timeout=0.5).annotate(request(media_dir, text="surprise!"), 0)
    assert answer.label == "surprise" and len(stub.generate_requests) == 2


def test_malformed_then_out_of_set_label_fails_after_one_correction(stub, make, media_dir):
    stub.script(StubReply(text="{not json"), StubReply(text=answer_json("contentment")))
    with pytest.raises(AnnotationError, match="contentment"):
        make().annotate(request(media_dir), 0)
    assert len(stub.generate_requests) == 2
    messages = stub.generate_requests[1].openai_messages
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == "{not json" and "not valid JSON" in messages[3]["content"]


def test_code_fenced_reply_is_accepted(stub, make, media_dir):
    stub.script(StubReply(text='```json\n{"label": "fear", "intensity": 0.9, "rationale": "trembling"}\n```'))
    answer = make(response_format="json_object").annotate(request(media_dir), 0)
    assert (answer.label, answer.intensity) == ("fear", 0.9)
    assert stub.generate_requests[0].json["response_format"] == {"type": "json_object"}


def test_cache_hit_on_rerun(stub, make, media_dir):
    req = request(media_dir)
    make().annotate(req, 0)
    again = make().annotate(req, 0)
    assert len(stub.generate_requests) == 1 and again.usage.cache_hits == 1
    make(video_mode="frames").annotate(req, 0)  # another way of sending the video: another request
    assert len(stub.generate_requests) == 2


def test_prices_apply_to_openai_usage(stub, make, media_dir):
    stub.script(StubReply(text=answer_json("joy"), input_tokens=2_000_000, output_tokens=1_000_000))
    answer = make(prices={"qwen2.5-omni-test": {"input": 0.5, "output": 1.5}}).annotate(request(media_dir), 0)
    assert answer.usage.cost_usd == pytest.approx(1.0 + 1.5)


# ---------------------------------------------------------------------------------------------- issue 16: bounds,
# corrections that can change the outcome, capability errors, the server's own messages
LLAMACPP_AUDIO = {"error": {"code": 500, "message": "audio input is not supported - hint: if this is unexpected, "
                            "you may need to provide the mmproj", "type": "server_error"}}


def test_request_bounds_the_answer_by_default(stub, make, media_dir):
    make().annotate(request(media_dir), 0)
    body = stub.generate_requests[0].json
    assert body["max_tokens"] == 256
    rationale = body["response_format"]["json_schema"]["schema"]["properties"]["rationale"]
    assert rationale == {"type": "string", "maxLength": 200}
    assert "at most 200 characters" in body["messages"][0]["content"]


def test_a_reply_over_the_bound_or_cut_off_is_corrected_and_says_why(stub, make, media_dir):
    long = answer_json("joy", rationale="x" * 201)
    stub.script(StubReply(text=long), StubReply(text='{"label": "joy", "intensity": 0.5, "rationale": "endless',
                                                finish_reason="length"))
    with pytest.raises(AnnotationError) as info:
        make().annotate(request(media_dir), 0)
    message = str(info.value)
    assert "cut off at annotator.max_output_tokens=256" in message and "at at" not in message
    assert "at most 200 characters, got 201" in stub.generate_requests[1].openai_messages[3]["content"]


def test_the_correction_samples_differently_and_states_the_range(stub, make, media_dir):
    stub.script(StubReply(text='{"label": "joy", "intensity": 5.5, "rationale": "big smile"}'))
    answer = make().annotate(request(media_dir, text="what a joy"), 1)
    assert answer.intensity == 0.6 and answer.usage.validation_retries == 1
    first, second = stub.generate_requests
    assert (first.json["temperature"], first.json["seed"]) == (0.0, 1)
    assert (second.json["temperature"], second.json["seed"]) == (0.7, 1001)  # seed + rollout + 1 * offset
    correction = second.openai_messages[3]["content"]
    assert "got 5.5" in correction and "between 0.0 and 1.0 inclusive" in correction


def test_an_intensity_on_a_declared_scale_is_rescaled_without_a_correction(stub, make, media_dir):
    stub.script(StubReply(text='{"label": "joy", "intensity": 8, "intensity_scale": "0-10", "rationale": "r"}'))
    answer = make(response_format="json_object").annotate(request(media_dir), 0)
    assert answer.intensity == pytest.approx(0.8) and len(stub.generate_requests) == 1


def test_timeouts_are_resent_once_not_max_attempts_times(stub, make, media_dir):
    slow = StubReply(text=answer_json("joy"), delay=1.0)
    stub.script(slow, slow, slow)
    start = time.monotonic()
    with pytest.raises(AnnotationError) as info:
        make(timeout=0.3, retry={**FAST_RETRY, "max_attempts": 6}).annotate(request(media_dir), 0)
    assert len(stub.generate_requests) == 2 and time.monotonic() - start < 2.0
    message = str(info.value)
    assert "gave up after 2 attempt(s), 2 of them timed out" in message
    assert "annotator.timeout=0.3s" in message and "annotator.max_output_tokens=256" in message


def test_a_modality_the_server_cannot_take_stops_without_retries_and_is_remembered(stub, make, media_dir):
    from mikupal.annotate.api import CapabilityError

    stub.script(StubReply(status=500, body=LLAMACPP_AUDIO))
    annotator = make()
    with pytest.raises(CapabilityError) as info:
        annotator.annotate(request(media_dir, modalities=("audio", "text")), 0)
    assert len(stub.generate_requests) == 1 and info.value.modality == "audio"  # not retried
    message = str(info.value)
    assert "audio input is not supported" in message and "Error code" not in message
    assert "annotator.modalities=['audio', 'text'] sends audio" in message and "annotator.modalities=[text]" in message
    # the next request with audio fails at once, without a request; text alone still works
    with pytest.raises(CapabilityError, match="not sent"):
        annotator.annotate(request(media_dir, modalities=("audio", "text"), text="again"), 0)
    assert len(stub.generate_requests) == 1
    assert annotator.annotate(request(media_dir, modalities=("text",)), 0).label == "joy"


def test_http_errors_carry_the_servers_message_once(stub, make, media_dir):
    from mikupal.annotate.api import FatalAPIError

    stub.script(StubReply(status=401, body={"error": {"code": 401, "message": "Invalid API Key",
                                                      "type": "authentication_error"}}))
    with pytest.raises(FatalAPIError) as info:
        make().annotate(request(media_dir), 0)
    assert str(info.value).endswith("HTTP 401: Invalid API Key")


def test_not_a_multimodal_model_points_at_the_media_the_request_sent(stub, make, media_dir):
    from mikupal.annotate.api import CapabilityError

    stub.script(StubReply(status=400, body=openai_error("Qwen/Qwen2.5-7B-Instruct is not a multimodal model",
                                                        "invalid_request_error")))
    with pytest.raises(CapabilityError, match="does not take audio input") as info:
        make().annotate(request(media_dir, modalities=("audio", "text")), 0)
    assert info.value.modality == "audio" and len(stub.generate_requests) == 1
