"""``emotion.confidence``: rollout agreement and model probabilities in the vote, the API path, the filter rule."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from mikupal.annotate.base import AnnotationRequest, RolloutAnswer, aggregate, label_confidence
from mikupal.annotate.gemini import GeminiAnnotator
from mikupal.filter import FilterStage
from mikupal.labels import load_label_set
from mikupal.paths import conf_dir, load_conf_yaml
from mikupal.records import Emotion, Utterance
from mikupal.testing.annotate import FAST_RETRY, KEY_ENV
from mikupal.testing.servers import GeminiStub, StubReply, answer_json

MELD = load_label_set("meld7")


def _answer(label, scores=None, confidence=None):
    return RolloutAnswer(label=label, intensity=0.5, rationale=f"because {label}", scores=scores,
                         confidence=confidence)


def test_without_probabilities_confidence_is_the_share_of_agreeing_rollouts():
    emotion = aggregate([_answer("joy"), _answer("anger"), _answer("joy")], MELD, "m", None)
    assert emotion.label == "joy" and emotion.confidence == pytest.approx(2 / 3, abs=1e-4)
    assert aggregate([_answer("joy")], MELD, "m", None).confidence == 1.0  # one rollout cannot disagree
    split = aggregate([_answer("joy"), _answer("anger"), _answer("sadness"), _answer("fear")], MELD, "m", None)
    assert split.confidence == 0.25


def test_with_probabilities_confidence_is_their_mean_and_a_backend_confidence_wins():
    s1, s2 = {"joy": 0.7, "anger": 0.3}, {"joy": 0.2, "anger": 0.8}
    emotion = aggregate([_answer("joy", s1), _answer("anger", s2), _answer("joy", s1)], MELD, "m", None)
    assert emotion.label == "joy" and emotion.confidence == pytest.approx((0.7 + 0.2 + 0.7) / 3, abs=1e-4)
    # a backend's own (calibrated) confidence replaces its probability for its own label, not for others
    calibrated = [_answer("joy", s1, confidence=0.4), _answer("anger", s2, confidence=0.9)]
    assert label_confidence(calibrated, "joy") == pytest.approx((0.4 + 0.2) / 2)
    with pytest.raises(ValueError, match="outside 0..1"):
        label_confidence([_answer("joy", confidence=1.5)], "joy")


def test_old_manifests_without_confidence_still_load():
    emotion = Emotion("joy", 0.5, "r", None, ["joy"], "m", None, confidence=0.8)
    data = emotion.to_dict()
    assert data["confidence"] == 0.8 and Emotion.from_dict(data) == emotion
    del data["confidence"]
    assert Emotion.from_dict(data).confidence is None


def test_api_rollouts_give_their_agreement_as_confidence(media_dir, tmp_path):
    with GeminiStub(max_lifetime=60) as stub:
        stub.script(*(StubReply(text=answer_json(label)) for label in ("joy", "anger", "joy")))
        annotator = GeminiAnnotator(base_url=stub.url, api_key_env=KEY_ENV, retry=FAST_RETRY, timeout=2.0,
                                    cache_dir=tmp_path / "cache", file_poll_interval=0.001)
        annotator.setup()
        try:
            request = AnnotationRequest("vid-00001", MELD, modalities=frozenset({"text"}), transcript="We won!")
            emotion = annotator.annotate_all(request, rollouts=3)
        finally:
            annotator.teardown()
    assert emotion.votes == ["joy", "anger", "joy"] and emotion.confidence == pytest.approx(0.6667, abs=1e-4)


def _filter(min_confidence):
    cfg = OmegaConf.create({"filter": {**load_conf_yaml("filter", "default"), "min_confidence": min_confidence},
                            "labels": load_conf_yaml("labels", "meld7")})
    stage = FilterStage(cfg)
    stage.setup(None)
    return stage


def _utt(confidence):
    emotion = Emotion("joy", 0.5, "r", None, ["joy"], "m", None, confidence=confidence)
    return Utterance(id="v-00000", video_id="v", source="v.mp4", start=0.0, end=2.0, audio="audio/v-00000.flac",
                     text="We won!", language="en", emotion=emotion)


def test_filter_min_confidence_drops_and_keeps_by_confidence():
    assert (conf_dir() / "filter" / "default.yaml").read_text().count("min_confidence: null") == 1  # off by default
    assert _filter(None).check(_utt(0.1)) is None
    rule = _filter(0.5)
    assert rule.check(_utt(0.49)) == "low_confidence"
    assert rule.check(_utt(0.5)) is None and rule.check(_utt(0.9)) is None
    assert rule.check(_utt(None)) == "low_confidence"  # an unknown confidence does not pass a confidence bar
