"""``quality`` stage adapter: fill ``Utterance.quality`` with non-intrusive speech-quality scores.

Utterance → the same Utterance with ``quality`` set (:class:`~mikupal.records.Quality`) or ``None``. The backend
(``quality._target_`` and its arguments; default DNSMOS, :mod:`mikupal.quality.dnsmos`) scores the utterance audio
``audio/<id>.flac`` (the separated vocals). Utterances are never dropped here (``filter.min_dnsmos_ovrl`` decides);
input the model cannot score gives ``quality: null`` and a counted reason:

* ``quality.skipped.too_short``: shorter than ``quality.min_seconds`` (default 1 s);
* ``quality.skipped.silent``: RMS level below ``quality.silence_dbfs`` (default -60 dBFS), i.e. digital silence or
  near it, where DNSMOS returns numbers that mean nothing.

Scored utterances count ``quality.scored`` and ``quality.windows``.

``quality.workers`` utterances are scored at once in threads (onnxruntime releases the GIL, so two use both cores of
a 2-core machine); each utterance's score is computed exactly as alone, so the number of workers changes neither the
output nor the stage's config hash.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Iterable, Iterator, Sequence

import numpy as np

from mikupal.media import read_audio
from mikupal.models.melspec import level_dbfs
from mikupal.quality.base import QualityScorer
from mikupal.records import Quality, Utterance
from mikupal.stage import Drop, Stage, StageContext, StopStage, in_threads

log = logging.getLogger(__name__)


class QualityStage(Stage):
    """Speech-quality scores per utterance (see the module docstring)."""

    name = "quality"
    input_type = output_type = Utterance
    backend_group = "quality"
    operational_keys = ("quality.workers",)
    backend: QualityScorer

    def setup(self, ctx: StageContext) -> None:
        qc = self.cfg.quality
        self.min_seconds = float(qc.get("min_seconds", 1.0))
        self.silence_dbfs = float(qc.get("silence_dbfs", -60.0))
        self.rate = int(self.cfg.media.sampling_rate)
        self.workers = self.worker_count("quality.workers")
        super().setup(ctx)

    def unscorable(self, audio: np.ndarray) -> str | None:
        """Why ``audio`` cannot be scored (``too_short``, ``silent``), or ``None``."""
        if len(audio) < self.min_seconds * self.rate:
            return "too_short"
        if level_dbfs(audio) < self.silence_dbfs:
            return "silent"
        return None

    def _score(self, item: Utterance, ctx: StageContext) -> tuple[Quality | None, str | None]:
        """The utterance's scores, or ``(None, reason)`` when it cannot be scored (thread-safe: no counting)."""
        audio = read_audio(ctx.path(item.audio), self.rate)
        reason = self.unscorable(audio)
        if reason is not None:
            log.info("quality: %s: not scored (%s, %.2f s)", item.id, reason, len(audio) / self.rate)
            return None, reason
        return self.backend.score(audio, self.rate), None

    def _result(
        self, item: Utterance, quality: Quality | None, reason: str | None, ctx: StageContext
    ) -> list[Utterance]:
        if reason is not None:
            ctx.count(f"quality.skipped.{reason}")
        else:
            ctx.count("quality.scored")
            ctx.count("quality.windows", quality.dnsmos_windows)
        return [replace(item, quality=quality)]

    def process(self, item: Utterance, ctx: StageContext) -> Sequence[Utterance]:
        return self._result(item, *self._score(item, ctx), ctx)

    def map(self, items: Iterable[Utterance], ctx: StageContext
            ) -> Iterator[tuple[Utterance, Sequence[Utterance] | Drop | BaseException, dict]]:
        """Score ``quality.workers`` utterances at once; results come in input order."""
        if self.workers <= 1:
            yield from super().map(items, ctx)
            return

        def score(item: Utterance) -> tuple[Quality | None, str | None] | BaseException:
            try:
                return self._score(item, ctx)
            except (StopStage, KeyboardInterrupt):
                raise
            except Exception as e:  # noqa: BLE001 - per-item failures are recorded by the runner
                return e

        items = list(items)
        for item, scored in zip(items, in_threads(score, items, self.workers, "quality")):
            result = scored if isinstance(scored, BaseException) else self._result(item, *scored, ctx)
            yield item, result, ctx.take_counts()
