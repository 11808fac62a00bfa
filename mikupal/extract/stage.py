"""``extract`` stage adapter: :class:`~mikupal.records.Video` → :class:`~mikupal.records.Recording`."""

from __future__ import annotations

import logging
from typing import Sequence

from mikupal.extract.base import AudioExtractor
from mikupal.media import MediaError, write_audio
from mikupal.records import Recording, Video, VideoStream
from mikupal.stage import Drop, Stage, StageContext, write_atomic

log = logging.getLogger(__name__)


class ExtractStage(Stage):
    """Decode each input video's audio to ``extract/audio/<video_id>.flac`` (16 kHz mono).

    A file without a video stream (an audio file: ``.wav``, ``.mp3``, ``.m4a`` ..., cover art does not count as
    video) is accepted as audio-only (``video: null``; the vision stages then count ``faces.no_video``). Corrupt or
    incomplete audio packets are skipped and counted as ``extract.corrupt_packets`` (see the backend). A missing,
    empty or non-media file, one without an audio stream, or one of which too little decodes is an item error with
    a message that names the file and the fix.
    """

    name = "extract"
    input_type = Video
    output_type = Recording
    setup_in_background = True  # loads its backend from the config alone
    config_keys = ("extract", "media")
    backend_group = "extract"
    backend: AudioExtractor

    def setup(self, ctx: StageContext) -> None:
        super().setup(ctx)
        self.rate = int(self.cfg.media.sampling_rate)

    def process(self, item: Video, ctx: StageContext) -> Sequence[Recording] | Drop:
        extracted = self.backend.extract(item.path, self.rate)
        audio, info = extracted.audio, extracted.info
        if extracted.corrupt_packets:
            ctx.count("extract.corrupt_packets", extracted.corrupt_packets)
        if len(audio) == 0:
            raise MediaError(f"{item.source}: the audio stream decodes to zero samples")
        out = ctx.path(f"extract/audio/{item.video_id}.flac")
        write_atomic(out, lambda tmp: write_audio(tmp, audio, self.rate))
        video = None
        if info.has_video and info.width and info.height:
            video = VideoStream(width=info.width, height=info.height, fps=info.fps or 0.0, duration=info.video_duration)
        ctx.count("extract.audio_seconds", len(audio) / self.rate)
        return [
            Recording(
                video_id=item.video_id,
                source=item.source,
                audio=ctx.relative(out),
                sampling_rate=self.rate,
                duration=len(audio) / self.rate,
                video=video,
                kind="raw",
            )
        ]
