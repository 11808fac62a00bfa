"""``filter`` stage: rule-based quality filters before utterances reach the final manifest (config ``filter``).

Every rule is off when its value is ``null``. A dropped utterance is not an error: it is counted by reason
(``filter.too_short``, ``filter.no_face``, …) in ``summary.json``.
"""

from __future__ import annotations

from typing import Sequence

from mikupal.labels import as_label_set
from mikupal.records import Utterance
from mikupal.stage import Drop, Stage, StageContext


class FilterStage(Stage):
    """Keep an utterance only if it passes every configured rule.

    Rules (``conf/filter/default.yaml``): ``min_duration`` / ``max_duration`` (seconds), ``require_text``,
    ``require_face``, ``min_asd_score`` (applies to utterances that have a face), ``require_emotion``,
    ``min_confidence`` (applies to utterances that have an emotion; one without a confidence is dropped), and the
    emotion label must belong to the active label set (``labels``) whenever an emotion is present.

    TTS rules (off by default): ``min_dnsmos_ovrl`` drops utterances whose DNSMOS OVRL is below it
    (``low_dnsmos_ovrl``; Emilia-Pipe uses 3.0) and ``max_speakers_per_utterance`` drops those in which more
    voices were heard (``too_many_speakers``). Each applies only where its stage produced a value: an utterance
    with ``quality`` / ``speaker`` null is kept by that rule.
    """

    name = "filter"
    input_type = Utterance
    output_type = Utterance
    config_keys = ("filter", "labels")

    def setup(self, ctx: StageContext) -> None:
        self.rules = self.cfg.filter
        self.labels = as_label_set(self.cfg.labels)

    def check(self, u: Utterance) -> str | None:
        """The reason to drop ``u``, or ``None`` to keep it."""
        r = self.rules
        if r.min_duration is not None and u.duration < r.min_duration:
            return "too_short"
        if r.max_duration is not None and u.duration > r.max_duration:
            return "too_long"
        if r.require_text and not (u.text or "").strip():
            return "no_text"
        if r.require_face and u.face is None:
            return "no_face"
        if r.min_asd_score is not None and u.face is not None and u.face.asd_score < r.min_asd_score:
            return "low_asd_score"
        min_ovrl = r.get("min_dnsmos_ovrl")
        if min_ovrl is not None and u.quality is not None and u.quality.dnsmos_ovrl < min_ovrl:
            return "low_dnsmos_ovrl"
        max_speakers = r.get("max_speakers_per_utterance")
        if max_speakers is not None and u.speaker is not None and u.speaker.n_speakers > max_speakers:
            return "too_many_speakers"
        if r.require_emotion and u.emotion is None:
            return "no_emotion"
        if u.emotion is not None and u.emotion.label not in self.labels:
            return "invalid_label"
        min_confidence = r.get("min_confidence")
        if min_confidence is not None and u.emotion is not None and (
                u.emotion.confidence is None or u.emotion.confidence < min_confidence):
            return "low_confidence"
        return None

    def process(self, item: Utterance, ctx: StageContext) -> Sequence[Utterance] | Drop:
        reason = self.check(item)
        return Drop(reason) if reason else [item]
