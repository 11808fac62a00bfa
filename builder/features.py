"""The MIKU-EmoBench schema: the single definition of the dataset's ``datasets.Features``.

Every column of the published dataset is declared here, in order. The dataset card (``dataset_card.md``)
documents the same columns, with their types, in its *Data fields* table; a test keeps the two equal.

The audio column holds the utterance audio the pipeline wrote (``audio/<id>.flac``, 16 kHz mono FLAC). In the
Parquet export its bytes are embedded, so the dataset is self-contained; ``datasets`` decodes it with
torchcodec (``Audio(sampling_rate=16000)``). ``face_video`` is the active speaker's 224 px face-crop clip with the
utterance audio (``faces/<id>.mp4``), embedded the same way and decoded by ``datasets.Video`` (a torchcodec
``VideoDecoder``); it is null when no face was found.

An *annotations-only* export (:data:`MEDIA_FIELDS` left out) carries no audio or video bytes: ``source`` with
``start`` and ``end`` locate each utterance in its source video, for sources whose licence forbids redistribution.
"""

from __future__ import annotations

import datasets

from mikupal.labels import LabelSet

#: Sampling rate of the utterance audio: a contract of the pipeline (DESIGN §3), not a tunable.
SAMPLING_RATE = 16000

#: The dataset's columns, in order. Each is documented in the dataset card's *Data fields* table.
FIELD_NAMES: tuple[str, ...] = (
    "id",
    "audio",
    "text",
    "language",
    "emotion",
    "intensity",
    "confidence",
    "rationale",
    "votes",
    "annotator",
    "prompt_version",
    "video_id",
    "speaker_id",
    "source",
    "start",
    "end",
    "duration",
    "dnsmos_sig",
    "dnsmos_bak",
    "dnsmos_ovrl",
    "dnsmos_p808",
    "words",
    "asd_score",
    "face_box",
    "face_video",
)

#: Columns holding media bytes; an annotations-only export leaves them out.
MEDIA_FIELDS: tuple[str, ...] = ("audio", "face_video")

#: The DNSMOS columns (from ``Utterance.quality``), 1..5 MOS scales.
DNSMOS_FIELDS: tuple[str, ...] = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")


def field_names(annotations_only: bool = False) -> tuple[str, ...]:
    """The columns of an export: all of :data:`FIELD_NAMES`, or those without media for an annotations-only one."""
    return tuple(n for n in FIELD_NAMES if not (annotations_only and n in MEDIA_FIELDS))


def build_features(label_set: LabelSet, annotations_only: bool = False) -> datasets.Features:
    """The dataset's features for a label set.

    Args:
        label_set: the label set; its order is the ``emotion`` class index order.
        annotations_only: leave out the media columns (:data:`MEDIA_FIELDS`).

    Returns:
        ``datasets.Features`` with the columns of :func:`field_names`, in that order.
    """
    string = datasets.Value("string")
    float32 = datasets.Value("float32")
    features = datasets.Features(
        {
            "id": string,
            "audio": datasets.Audio(sampling_rate=SAMPLING_RATE),
            "text": string,
            "language": string,
            "emotion": datasets.ClassLabel(names=list(label_set.names)),
            "intensity": float32,
            "confidence": float32,
            "rationale": string,
            "votes": datasets.List(string),
            "annotator": string,
            "prompt_version": string,
            "video_id": string,
            "speaker_id": string,
            "source": string,
            "start": datasets.Value("float64"),
            "end": datasets.Value("float64"),
            "duration": datasets.Value("float64"),
            **{name: float32 for name in DNSMOS_FIELDS},
            "words": datasets.List(
                {
                    "word": string,
                    "start": datasets.Value("float64"),
                    "end": datasets.Value("float64"),
                    "score": datasets.Value("float32"),
                }
            ),
            "asd_score": float32,
            "face_box": datasets.List(float32, length=4),
            "face_video": datasets.Video(),
        }
    )
    if tuple(features) != FIELD_NAMES:
        raise AssertionError("builder.features: FIELD_NAMES and build_features() list different columns")
    if annotations_only:
        features = datasets.Features({k: v for k, v in features.items() if k not in MEDIA_FIELDS})
    return features


def feature_type_name(feature: object) -> str:
    """A short human-readable type of a feature, as written in the dataset card's *Data fields* table.

    Args:
        feature: a ``datasets`` feature.

    Returns:
        e.g. ``"string"``, ``"float32"``, ``"Audio (16 kHz)"``, ``"ClassLabel"``, ``"list[string]"``.
    """
    if isinstance(feature, datasets.Audio):
        return f"Audio ({feature.sampling_rate // 1000} kHz)"
    if isinstance(feature, datasets.Video):
        return "Video"
    if isinstance(feature, datasets.ClassLabel):
        return "ClassLabel"
    if isinstance(feature, datasets.Value):
        return feature.dtype
    if isinstance(feature, datasets.List):
        inner = feature.feature
        inner_name = "struct" if isinstance(inner, dict) else feature_type_name(inner)
        return f"list[{inner_name}]" + (f" (length {feature.length})" if feature.length not in (None, -1) else "")
    return type(feature).__name__
