"""``quality`` stage adapter: fill ``Utterance.quality`` with non-intrusive speech-quality scores.

Utterance → the same Utterance with ``quality`` set (:class:`~mikupal.records.Quality`) or ``None``. The backend
(``quality._target_`` and its arguments; default DNSMOS, :mod:`mikupal.quality.dnsmos`) scores the utterance audio
``audio/<id>.flac`` (the separated vocals). Utterances are never dropped here (``filter.min_dnsmos_ovrl`` decides);
input the model cannot score gives ``quality: null`` and a counted reason:

* ``quality.skipped.too_short``: shorter than ``quality.min_seconds`` (default 1 s);
* ``quality.skipped.silent``: RMS level below ``quality.silence_dbfs`` (default -60 dBFS), i.e. digital silence or
  near it, where DNSMOS returns numbers that mean nothing.

Scored utterances count ``quality.scored`` and ``quality.windows``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Sequence

import numpy as np

from mikupal.media import read_audio
from mikupal.models.melspec import level_dbfs
from mikupal.quality.base import QualityScorer
from mikupal.records import Utterance
from mikupal.stage import Stage, StageContext

log = logging.getLogger(__name__)


class QualityStage(Stage):
    """Speech-quality scores per utterance (see the module docstring)."""

    name = "quality"
    input_type = output_type = Utterance
    backend_group = "quality"
    backend: QualityScorer

    def setup(self, ctx: StageContext) -> None:
        qc = self.cfg.quality
        self.min_seconds = float(qc.get("min_seconds", 1.0))
        self.silence_dbfs = float(qc.get("silence_dbfs", -60.0))
        self.rate = int(self.cfg.media.sampling_rate)
        super().setup(ctx)

    def unscorable(self, audio: np.ndarray) -> str | None:
        """Why ``audio`` cannot be scored (``too_short``, ``silent``), or ``None``."""
        if len(audio) < self.min_seconds * self.rate:
            return "too_short"
        if level_dbfs(audio) < self.silence_dbfs:
            return "silent"
        return None

    def process(self, item: Utterance, ctx: StageContext) -> Sequence[Utterance]:
        audio = read_audio(ctx.path(item.audio), self.rate)
        reason = self.unscorable(audio)
        if reason is not None:
            log.info("quality: %s: not scored (%s, %.2f s)", item.id, reason, len(audio) / self.rate)
            ctx.count(f"quality.skipped.{reason}")
            return [replace(item, quality=None)]
        quality = self.backend.score(audio, self.rate)
        ctx.count("quality.scored")
        ctx.count("quality.windows", quality.dnsmos_windows)
        return [replace(item, quality=quality)]
