"""TalkNet active speaker detection as an ``asd`` backend (``asd=talknet``; the paper's detector, ``preset=paper``).

Model: TalkNet, "Is Someone Speaking? Exploring Long-term Temporal Features for Audio-visual Active Speaker
Detection" (Tao et al., ACM MM 2021): a visual temporal encoder over grey mouth-region crops, an audio encoder over
MFCCs, audio-visual cross-attention and self-attention, and a per-frame "speaking" logit. The network, its MFCC
front end and TalkNet-ASD's demo scoring are our own implementation (:mod:`mikupal.models.talknet`,
:mod:`mikupal.models.mfcc`), loading ``pretrain_TalkSet.model`` unchanged (per-frame scores within 4.2e-7 of
upstream on random weights).

Weights: ``pretrain_TalkSet.model`` from TalkNet-ASD (https://github.com/TaoRuijie/TalkNet-ASD, MIT licence; its
``demoTalkNet.py`` fetches it from Google Drive, id ``1AbN9fCf9IexMxEKXLQY2KYBlb-IhSEea``), placed by the user at
``$MIKUPAL_MODELS_DIR/talknet/pretrain_TalkSet.model`` (registry name ``talknet``). A missing file fails in
:meth:`TalkNetDetector.setup` with that placement.

Input, exactly what TalkNet was trained on, whatever the source video's frame rate or the audio's sample rate:

* **video at 25 fps.** The backend declares ``fps = 25``, so the ``asd`` stage refuses to run unless the ``faces``
  stage analysed at 25 fps; the frames are then decoded at 25 fps from the source whatever its own rate (a 30 fps
  source skips every sixth frame, :mod:`mikupal.faces.video`). Tracks handed to :meth:`TalkNetDetector.score` at any
  other rate (a caller outside the stage) are retimed to 25 fps here: each 25 fps frame takes the track frame
  nearest in time, and each track frame gets the score of the 25 fps frame nearest to it. The original MIKU-PAL
  code fed source-rate crops to a model slicing at 25 fps (``paper.md`` §6 B.10); that cannot happen here.
* **grey 112x112 mouth regions.** The stage cuts 224x224 grey crops around the smoothed track box as TalkNet's demo
  does (box widened by 0.4 of its half-size, moved down by 0.4 half-sizes, grey 110 padding;
  ``crop_size``/``crop_margin``/``crop_offset`` below), and the model uses their central 112x112.
* **16 kHz mono audio starting at the track's first frame.** The utterance audio is resampled to 16 kHz if the
  pipeline runs at another rate (soxr), and the slice from the track's first frame time to the end of its last
  frame is turned into 13 MFCCs at 100 Hz: exactly 4 audio frames per video frame.

Scoring (TalkNet-ASD's demo): the aligned streams are scored in chunks of 1 to 6 seconds and the six per-frame
logit sequences averaged; frame logits are smoothed over a ±2-frame window; MIKU-PAL's track statistic is the mean
smoothed logit ``m``. The backend reports ``score = sigmoid(m)``, a monotone map of ``m`` onto 0..1 (not a
calibrated probability: the logit is the raw "speaking" output of the two-way head, as upstream uses it), so tracks
rank exactly as upstream ranks them, and ``score >= 0.5`` is upstream's ``m > 0`` ("speaking"): ``asd.threshold:
0.5`` in ``conf/asd/talknet.yaml``. Per-frame scores are ``sigmoid`` of the smoothed frame logits. Details kept per
track: ``logit`` (``m``), ``speaking_frames`` (fraction of frames with a positive smoothed logit), ``frames_scored``.

GPU: the network (15.7 M parameters) moves to CUDA when ``device`` resolves to it (``auto``: when torch sees one);
chunks of equal length are batched up to ``max_batch_frames`` video frames per forward pass. On 2 CPU cores scoring
takes about 6 s per second of track (six chunk durations): real footage needs a GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from mikupal.asd.base import ActiveSpeakerDetector, TrackEvidence, TrackScore
from mikupal.torch_device import check_device, release_memory, resolve_torch_device

log = logging.getLogger(__name__)

#: What TalkNet was trained on.
TALKNET_FPS = 25.0
TALKNET_RATE = 16000


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))  # overflow-free logistic


def retime_indices(n_frames: int, fps: float, target_fps: float = TALKNET_FPS) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-frame maps between a track sampled at ``fps`` and the same span sampled at ``target_fps``.

    Args:
        n_frames: frames of the track at ``fps``.
        fps: the track's frame rate.
        target_fps: the rate to resample to.

    Returns:
        ``(forward, backward)``: ``forward[k]`` is the track frame shown at target frame ``k`` (time ``k /
        target_fps`` from the track start; ``round(n_frames * target_fps / fps)`` target frames, at least 1) and
        ``backward[i]`` the target frame nearest to track frame ``i``.
    """
    if n_frames < 1 or fps <= 0:
        raise ValueError(f"cannot retime {n_frames} frames at {fps} fps")
    n_target = max(1, round(n_frames * target_fps / fps))
    forward = np.clip(np.floor(np.arange(n_target) * fps / target_fps + 0.5), 0, n_frames - 1).astype(np.int64)
    backward = np.clip(np.floor(np.arange(n_frames) * target_fps / fps + 0.5), 0, n_target - 1).astype(np.int64)
    return forward, backward


class TalkNetDetector(ActiveSpeakerDetector):
    """TalkNet active speaker detection on face-track crops (see the module docstring).

    Args:
        model: registry name (``talknet``) or a path to a checkpoint in the ``pretrain_TalkSet.model`` layout.
        device: ``auto`` (CUDA when torch sees a GPU, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        durations: chunk lengths (seconds) whose scores are averaged (TalkNet-ASD's demo: 1 to 6).
        round_decimals: round the averaged logits like upstream (1) or keep them (``None``, the default: rounding
            only adds ties).
        max_batch_frames: upper bound on video frames per forward pass (GPU memory).
    """

    #: Python packages setup() imports (import name -> what to install); checked before a run starts.
    requires = {"torch": "torch==2.13.0 (CPU; scripts/setup.sh)"}
    #: Attributes holding a model-registry name or path; their files are checked before a run starts.
    model_keys = ("model",)

    needs_crops = True
    crop_size = 224
    crop_grey = True
    crop_margin = 0.4
    crop_offset = 0.4
    fps = TALKNET_FPS

    def __init__(
        self,
        model: str = "talknet",
        device: str = "auto",
        durations: Sequence[int] = (1, 2, 3, 4, 5, 6),
        round_decimals: int | None = None,
        max_batch_frames: int = 750,
    ) -> None:
        durations = tuple(int(d) for d in durations)
        if not durations or min(durations) < 1:
            raise ValueError(f"asd.durations must be a non-empty list of whole seconds >= 1, got {list(durations)}")
        if int(max_batch_frames) < 1:
            raise ValueError(f"asd.max_batch_frames must be >= 1, got {max_batch_frames}")
        self.model = str(model)
        self.device = check_device(device, "asd.device")
        self.durations = durations
        self.round_decimals = None if round_decimals is None else int(round_decimals)
        self.max_batch_frames = int(max_batch_frames)
        self._scorer = None

    def setup(self) -> None:
        """Resolve the checkpoint (a missing file raises the registry's placement message) and load it."""
        from mikupal.models.talknet import TalkNetScorer
        from mikupal.registry import resolve

        path = resolve(self.model)
        device = resolve_torch_device(self.device, "asd.device")
        self._scorer = TalkNetScorer(
            path,
            device=device,
            durations=self.durations,
            round_decimals=self.round_decimals,
            max_batch_frames=self.max_batch_frames,
        )
        log.info("TalkNet %s loaded on %s", path, device)

    def teardown(self) -> None:
        if self._scorer is not None:
            self._scorer = None
            release_memory()

    def score(self, tracks: Sequence[TrackEvidence], audio: np.ndarray, sampling_rate: int) -> list[TrackScore]:
        """Score each track against the utterance audio (see the module docstring).

        Args:
            tracks: candidate tracks with ``crops`` (grey, any square size; 224 from the stage) and ``times``
                (seconds from the start of ``audio``), at any frame rate.
            audio: the utterance audio, mono, starting at the utterance start.
            sampling_rate: its rate (resampled to 16 kHz when different).

        Returns:
            One :class:`TrackScore` per track: ``score`` in 0..1 (``sigmoid`` of the mean smoothed logit), per-frame
            scores for the track's own frames.

        Raises:
            RuntimeError: :meth:`setup` was not called.
            ValueError: a track without crops, or crops and times of different lengths.
        """
        if self._scorer is None:
            raise RuntimeError("TalkNetDetector.setup() must be called before score()")
        from mikupal.media import resample

        audio16 = resample(np.asarray(audio, dtype=np.float32).reshape(-1), int(sampling_rate), TALKNET_RATE)
        return [self._score_track(t, audio16) for t in tracks]

    def _score_track(self, track: TrackEvidence, audio16: np.ndarray) -> TrackScore:
        if track.crops is None:
            raise ValueError(f"track {track.track_id}: TalkNet needs face crops (run it through the asd stage)")
        crops = np.asarray(track.crops)
        n = len(crops)
        if n == 0 or len(track.times) != n:
            raise ValueError(f"track {track.track_id}: {n} crops for {len(track.times)} frame times")
        if crops.ndim == 4:  # colour crops: TalkNet reads grey
            from mikupal.models.talknet import mouth_region

            crops = mouth_region(crops)
        fps = float(track.fps)
        if abs(fps - TALKNET_FPS) > 1e-6:
            forward, backward = retime_indices(n, fps)
            crops = crops[forward]
        else:
            forward = backward = np.arange(n)
        start = float(track.times[0])
        a0 = max(0, round(start * TALKNET_RATE))
        a1 = a0 + round(len(crops) / TALKNET_FPS * TALKNET_RATE)
        segment = audio16[a0:a1]
        details: dict[str, Any] = {"fps_in": round(fps, 3), "frames_scored": 0}
        if len(segment) < TALKNET_RATE // TALKNET_FPS * 2:  # under two video frames of audio: nothing to score
            log.debug("asd=talknet: track %d starts at %.2fs, after the audio ends", track.track_id, start)
            return TrackScore(score=0.0, frame_scores=np.full(n, np.nan), details={**details, "reason": "no_audio"})
        result = self._scorer.score(crops, segment, TALKNET_RATE)
        logits = result.frames[backward]
        return TrackScore(
            score=float(_sigmoid(result.track)),
            frame_scores=_sigmoid(logits),
            details={
                **details,
                "logit": round(float(result.track), 4),
                "speaking_frames": round(float(np.mean(result.frames > 0)), 4),
                "frames_scored": len(result.raw),
            },
        )
