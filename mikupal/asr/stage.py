"""``asr`` stage adapter: fills ``text``, ``language`` and ``words`` of each utterance."""

from __future__ import annotations

import dataclasses
from typing import Sequence

from hydra.utils import instantiate

from mikupal.asr.base import Transcriber
from mikupal.media import read_audio
from mikupal.records import Utterance, Word
from mikupal.stage import Drop, Stage, StageContext


class AsrStage(Stage):
    """Transcribe ``audio/<id>.flac``; word times are moved onto the source video's time line.

    An utterance with an empty transcript is dropped with the reason ``no_transcript`` (VAD fired on non-speech).
    """

    name = "asr"
    input_type = Utterance
    output_type = Utterance
    config_keys = ("asr",)

    def setup(self, ctx: StageContext) -> None:
        self.backend: Transcriber = instantiate(self.cfg.asr)
        self.backend.setup()
        self.rate = int(self.cfg.media.sampling_rate)

    def teardown(self) -> None:
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.teardown()

    def process(self, item: Utterance, ctx: StageContext) -> Sequence[Utterance] | Drop:
        audio = read_audio(ctx.path(item.audio), self.rate)
        result = self.backend.transcribe(audio, self.rate)
        text = result.text.strip()
        if not text:
            return Drop("no_transcript")
        words = [
            Word(word=w.word, start=round(item.start + w.start, 3), end=round(item.start + w.end, 3), score=w.score)
            for w in result.words
        ]
        return [dataclasses.replace(item, text=text, language=result.language, words=words)]
