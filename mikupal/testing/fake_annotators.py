"""A tiny annotator backend for the pipeline's annotate stage (imported only when mikupal.annotate exists)."""

from __future__ import annotations

from mikupal.annotate.base import AnnotationRequest, Annotator, RolloutAnswer

#: (item_id, transcript, audio path or None, face clip or None, modalities) of every request seen.
REQUESTS: list[tuple] = []
#: (label set name, number of requests seen by then) of every prepare() call.
PREPARED: list[tuple[str, int]] = []


class RecordingAnnotator(Annotator):
    """Answers ``neutral`` (``joy`` when the transcript has "!"), recording what the stage asked."""

    model_id = "recording-v1"
    deterministic = True

    def __init__(self, note: str = "") -> None:
        self.note = note

    def prepare(self, label_set) -> None:
        PREPARED.append((label_set.name, len(REQUESTS)))

    def annotate(self, request: AnnotationRequest, rollout: int = 0) -> RolloutAnswer:
        REQUESTS.append((request.item_id, request.transcript, request.audio, request.face_clip,
                         sorted(request.modalities)))
        label = "joy" if "!" in (request.transcript or "") else "neutral"
        return RolloutAnswer(label=label, intensity=0.5, rationale="recorded")
