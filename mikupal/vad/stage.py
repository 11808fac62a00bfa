"""``vad`` stage adapter: vocals :class:`~mikupal.records.Recording` → :class:`~mikupal.records.Utterance` drafts."""

from __future__ import annotations

from typing import Sequence

from mikupal.ids import utterance_id
from mikupal.media import read_audio, write_audio
from mikupal.records import Recording, Utterance
from mikupal.stage import Drop, Stage, StageContext, write_atomic
from mikupal.vad.base import VoiceActivityDetector
from mikupal.vad.segmentation import SegmentationRules, segment


class VadStage(Stage):
    """Detect speech, apply the segmentation rules, and write each utterance's audio to ``audio/<id>.flac``.

    Utterance ids are ``<video_id>-<index>`` in time order, so they are stable across reruns with the same config.
    A recording without speech is dropped with the reason ``no_speech`` (a counted zero-utterance result).
    """

    name = "vad"
    input_type = Recording
    output_type = Utterance
    config_keys = ("vad", "segmentation")
    backend_group = "vad"
    setup_in_background = True  # loads its backend from the config alone
    #: How the Silero backend runs its model, not what it finds (same probabilities either way).
    operational_keys = ("vad.sequence_model", "vad.frames_per_call")
    backend: VoiceActivityDetector

    @staticmethod
    def parent_key(output: Utterance) -> str:
        return output.video_id

    def setup(self, ctx: StageContext) -> None:
        super().setup(ctx)
        self.rules = SegmentationRules(**self.cfg.segmentation)

    def process(self, item: Recording, ctx: StageContext) -> Sequence[Utterance] | Drop:
        rate = item.sampling_rate
        audio = read_audio(ctx.path(item.audio), rate)
        spans = self.backend.detect(audio, rate)
        ctx.count("vad.speech_seconds", sum(e - s for s, e in spans))
        utterance_spans, too_short = segment(spans, audio, rate, self.rules)
        if too_short:
            ctx.count("drop.vad.too_short", too_short)
        if not utterance_spans:
            return Drop("no_speech")
        out: list[Utterance] = []
        for index, (start, end) in enumerate(utterance_spans):
            uid = utterance_id(item.video_id, index)
            path = ctx.path(f"audio/{uid}.flac")
            clip = audio[int(round(start * rate)) : int(round(end * rate))]
            write_atomic(path, lambda tmp, clip=clip: write_audio(tmp, clip, rate))
            out.append(
                Utterance(
                    id=uid, video_id=item.video_id, source=item.source, start=start, end=end, audio=ctx.relative(path)
                )
            )
        return out
