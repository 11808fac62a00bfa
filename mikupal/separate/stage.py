"""``separate`` stage adapter: raw :class:`~mikupal.records.Recording` → vocals recording."""

from __future__ import annotations

from typing import Sequence

from mikupal.media import read_audio, write_audio
from mikupal.records import Recording
from mikupal.separate.base import Separator
from mikupal.stage import Stage, StageContext, write_atomic


class SeparateStage(Stage):
    """Write the separated vocals to ``separate/audio/<video_id>.flac`` (or reuse the input for passthrough)."""

    name = "separate"
    input_type = Recording
    output_type = Recording
    backend_group = "separate"
    backend: Separator
    operational_keys = ("separate.workers",)


    def process(self, item: Recording, ctx: StageContext) -> Sequence[Recording]:
        if not self.backend.modifies_audio:
            return [Recording(**{**item.__dict__, "kind": "vocals"})]
        audio = read_audio(ctx.path(item.audio), item.sampling_rate)
        vocals = self.backend.separate(audio, item.sampling_rate)
        if len(vocals) != len(audio):
            raise RuntimeError(
                f"{type(self.backend).__name__} returned {len(vocals)} samples for {len(audio)}; a separator must keep the length"
            )
        out = ctx.path(f"separate/audio/{item.video_id}.flac")
        write_atomic(out, lambda tmp: write_audio(tmp, vocals, item.sampling_rate))
        return [Recording(**{**item.__dict__, "audio": ctx.relative(out), "kind": "vocals"})]
