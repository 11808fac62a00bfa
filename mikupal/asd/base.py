"""Backend interface of the ``asd`` stage: which face track in an utterance is speaking.

A detector scores every candidate track of one utterance against the utterance's audio. The stage adapter
(:mod:`mikupal.asd.stage`) reads the tracks the ``faces`` stage wrote, prepares what the backend declares it needs,
applies the threshold and coverage rules, and writes the face clip.

What a backend can ask for (class attributes):

* ``needs_mouth`` — the per-frame mouth opening measured by the face mesh in the ``faces`` stage
  (:attr:`TrackEvidence.mouth`); the offline :class:`~mikupal.asd.sync.SyncDetector` uses it.
* ``needs_crops`` — face crops re-decoded from the video at the analysis rate: square crops around the smoothed
  track box (centre and size median-filtered over 13 frames), widened by ``crop_margin`` of the half-size on each
  side, moved down by ``crop_offset`` half-sizes, ``crop_size`` pixels, grey if ``crop_grey``, padded with grey 110
  (:attr:`TrackEvidence.crops`). TalkNet, for instance, needs 25 fps grey crops cut as its demo does
  (``crop_size=224``, ``crop_margin=0.4``, ``crop_offset=0.4``; it uses the central 112 pixels) and the 16 kHz
  audio, and gives per-frame scores.
* ``fps`` — the analysis rate the model was trained for (TalkNet: 25); the stage refuses to run if the ``faces``
  stage analysed at another rate, instead of silently misaligning audio and video (a bug of the original code).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

@dataclass
class TrackEvidence:
    """One candidate face track of an utterance, as given to a detector.

    Attributes:
        track_id: the track's id within the utterance.
        times: ``(n,)`` frame times in seconds *from the start of the utterance audio*.
        fps: analysis frame rate.
        boxes: ``(n, 4)`` boxes in source-frame pixels.
        detected: ``(n,)`` whether each box was detected (else interpolated).
        mouth: ``(n,)`` mouth opening (NaN where unknown), or ``None`` when not measured.
        crops: ``(n, S, S)`` grey or ``(n, S, S, 3)`` RGB uint8 face crops, when the backend asked for them.
        speech: ``(k, 2)`` spans (seconds from the start of the utterance audio) where the utterance's words are
            spoken, from the ASR's word timestamps; ``None`` when the utterance has no words.
    """

    track_id: int
    times: np.ndarray
    fps: float
    boxes: np.ndarray
    detected: np.ndarray
    mouth: np.ndarray | None = None
    crops: np.ndarray | None = None
    speech: np.ndarray | None = None


@dataclass
class TrackScore:
    """A detector's verdict on one track.

    Attributes:
        score: active-speaker score in 0..1 (each backend documents its mapping); comparable across tracks.
        frame_scores: optional ``(n,)`` per-frame scores in 0..1 (NaN where not scored).
        details: backend-specific numbers worth keeping (e.g. the lag found), JSON-serialisable.
        evidence: how strongly the track's own evidence says it is the speaker, unbounded (larger: surer), or
            ``None``. With ``asd.rank_by: evidence`` the stage chooses among the tracks whose ``score`` passes
            ``asd.threshold`` by this (``None``: by ``score``); ``score`` alone decides whether any track passes.
        contested_by: the id of another candidate track of the same utterance whose evidence contradicts this one
            as the speaker (a detector's check across the tracks it scores), or ``None``. The stage never chooses
            a contested track; when every passing track is contested the utterance gets no face
            (``asd.no_face.contested``) rather than a guess between two talking faces.
    """

    score: float
    frame_scores: np.ndarray | None = None
    details: dict[str, Any] = field(default_factory=dict)
    evidence: float | None = None
    contested_by: int | None = None


class ActiveSpeakerDetector(ABC):
    """Scores face tracks against speech. Load models in :meth:`setup`, free them in :meth:`teardown`.

    The ``asd`` config node holds the detector's arguments beside the stage-level keys declared once in
    ``conf/asd/_stage.yaml`` (the threshold, which depends on the detector's score scale and so may be overridden
    per backend, the coverage rule, the track cap, the cut splitting and the clip settings). The stage constructs
    the detector with its own arguments only.
    """

    needs_mouth: ClassVar[bool] = False
    needs_crops: ClassVar[bool] = False
    crop_size: int = 112
    crop_grey: bool = True
    crop_margin: float = 0.4
    crop_offset: float = 0.0
    fps: float | None = None

    def setup(self) -> None:
        """Load the model."""

    def teardown(self) -> None:
        """Free the model."""

    @abstractmethod
    def score(self, tracks: Sequence[TrackEvidence], audio: np.ndarray, sampling_rate: int) -> list[TrackScore]:
        """Score each track.

        Args:
            tracks: the candidate tracks of one utterance.
            audio: the utterance's audio, mono float32, starting at the utterance start.
            sampling_rate: its rate (16000 in this pipeline).

        Returns:
            One :class:`TrackScore` per track, in order.
        """
