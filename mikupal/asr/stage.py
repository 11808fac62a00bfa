"""``asr`` stage adapter: fills ``text``, ``language`` and ``words`` of each utterance."""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from mikupal.asr.base import Transcriber, Transcript
from mikupal.media import read_audio
from mikupal.records import Utterance, Word
from mikupal.stage import Drop, Stage, StageContext, StopStage

log = logging.getLogger(__name__)


class AsrStage(Stage):
    """Transcribe ``audio/<id>.flac``; word times are moved onto the source video's time line.

    An utterance with an empty transcript is dropped with the reason ``no_transcript`` (VAD fired on non-speech).
    """

    name = "asr"
    input_type = output_type = Utterance
    backend_group = "asr"
    setup_in_background = True  # loads its backend from the config alone
    backend: Transcriber

    def setup(self, ctx: StageContext) -> None:
        super().setup(ctx)
        self.rate = int(self.cfg.media.sampling_rate)

    def process(self, item: Utterance, ctx: StageContext) -> Sequence[Utterance] | Drop:
        audio = read_audio(ctx.path(item.audio), self.rate)
        return self._result(item, self.backend.transcribe(audio, self.rate))

    def map(self, items: Iterable[Utterance], ctx: StageContext) -> Iterator[tuple[Any, Any, dict]]:
        """One by one, or in groups of ``backend.group_size`` consecutive utterances of a video (fixed by index,
        so a resumed run forms the same groups) through ``backend.transcribe_many``."""
        size = max(1, int(getattr(self.backend, "group_size", 1)))
        if size == 1:
            yield from super().map(items, ctx)
            return

        def block(u: Utterance) -> tuple[str, int]:
            index = u.id.rsplit("-", 1)[-1]
            return u.video_id, int(index) // size if index.isdigit() else -1

        for _, group_iter in itertools.groupby(items, key=block):
            group = list(group_iter)
            try:
                audios = [read_audio(ctx.path(u.audio), self.rate) for u in group]
                transcripts = self.backend.transcribe_many(audios, self.rate)
                if len(transcripts) != len(group):
                    raise RuntimeError(f"{type(self.backend).__name__}.transcribe_many returned {len(transcripts)} "
                                       f"transcripts for {len(group)} utterances")
            except (StopStage, KeyboardInterrupt):
                raise
            except Exception as e:  # noqa: BLE001 - retry one by one so one bad item does not fail its group
                log.warning("asr: group of %d utterances failed (%s); transcribing them one by one", len(group), e)
                yield from super().map(group, ctx)
                continue
            for item, transcript in zip(group, transcripts):
                try:
                    result: Any = self._result(item, transcript)
                except Exception as e:  # noqa: BLE001 - per-item failures are recorded by the runner
                    result = e
                yield item, result, ctx.take_counts()

    def _result(self, item: Utterance, result: Transcript) -> Sequence[Utterance] | Drop:
        text = result.text.strip()
        if not text:
            return Drop("no_transcript")
        words = [
            Word(word=w.word, start=round(item.start + w.start, 3), end=round(item.start + w.end, 3), score=w.score)
            for w in result.words
        ]
        return [dataclasses.replace(item, text=text, language=result.language, words=words)]
