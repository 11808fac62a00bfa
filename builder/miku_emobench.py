"""MIKU-EmoBench as a Hugging Face ``datasets`` builder.

``datasets`` 5.x no longer runs loading scripts, so the builder is an importable class that you drive
directly::

    from builder.miku_emobench import MikuEmoBench

    b = MikuEmoBench(run_dirs=["runs/a", "runs/b"], labels="emobench26", min_asd_score=0.5,
                     cache_dir="hf_cache")
    b.download_and_prepare()            # validates, then writes Arrow (audio referenced by path)
    ds = b.as_dataset(split="train")    # ds[0]["audio"] decodes (torchcodec)

``download_and_prepare`` reuses a finished cache for the same config: after the run directories change, pass
``download_mode="force_redownload"`` (``export_dataset`` always rebuilds).

To publish, use :func:`builder.export.export_dataset` (or ``mikupal-build``): it writes Parquet shards with the
audio embedded plus the dataset card, a folder that ``datasets.load_dataset(folder)`` loads anywhere.

The builder makes two passes. :meth:`MikuEmoBench.scan` (called by ``_split_generators``) streams the manifests,
checks every line and plans which line goes to which split (see :mod:`builder.scan`); in strict mode it raises
before anything is written. ``_generate_examples`` then reads the planned lines back by byte offset, so
memory stays flat however many utterances there are.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterator, Mapping, Sequence

import datasets
from datasets.builder import Key

from builder.features import DNSMOS_FIELDS, MEDIA_FIELDS, build_features
from builder.scan import BuildError, ScanReport, manifest_fingerprint, scan_runs, validate_split_ratios
from mikupal.labels import LabelSet, as_label_set

log = logging.getLogger(__name__)

_CITATION = """\
@inproceedings{cheng2025mikupal,
  title     = {{MIKU-PAL}: An Automated and Standardized Multi-Modal Method for Speech Paralinguistic and Affect
               Labeling},
  author    = {Cheng, Yifan and Zhang, Ruoyi and Shi, Jiatong},
  booktitle = {Proc. Interspeech 2025},
  year      = {2025},
  eprint    = {2505.15772},
  archivePrefix = {arXiv},
}
"""

_DESCRIPTION = (
    "MIKU-EmoBench: in-the-wild speech utterances from video, each with a transcript and an emotion label "
    "(26 fine-grained categories), an intensity and a rationale, produced by the MIKU-PAL pipeline."
)


def _plain(value: Any) -> Any:
    """OmegaConf nodes and tuples to plain lists/dicts (hashable by ``datasets``' fingerprinting)."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(value):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a core dependency
        pass
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass
class MikuEmoBenchConfig(datasets.BuilderConfig):
    """What to build MIKU-EmoBench from, and how.

    The defaults here are the defaults of ``conf/build.yaml`` (a test keeps them equal).

    Attributes:
        run_dirs: pipeline run directories to read, in order; their utterances are merged and a repeated id is
            dropped (the first occurrence wins).
        labels: the label set: a name under ``conf/labels/`` (``emobench26``, ``meld7``), a YAML path, or the
            label-set mapping (Hydra's ``cfg.labels``).
        min_asd_score: keep only utterances whose active-speaker score is at least this (and that have a
            face); ``None`` keeps all.
        min_duration, max_duration: keep only utterances whose audio lasts within these bounds (seconds);
            ``None`` is unbounded.
        labels_kept: keep only these labels (the ``emotion`` ClassLabel still spans the whole label set, so
            class indices do not depend on the filter); ``None`` keeps all.
        min_confidence: keep only utterances whose ``emotion.confidence`` is at least this; ``None`` keeps all.
        min_dnsmos_ovrl: keep only utterances whose DNSMOS OVRL is at least this (Emilia-Pipe uses 3.0); ``None``
            keeps all.
        split_ratios: fraction of videos per split (``train``/``validation``/``test``; sums to 1).
        split_seed: seed of the video -> split hash; keep it fixed to keep splits stable across builds.
        split_by: ``video`` (default) or ``speaker``: videos sharing a named speaker stay in one split (see
            :mod:`builder.scan`).
        speaker_map: with ``split_by="speaker"``, a JSON/YAML file ``{speaker_id: name}`` naming the same person
            across videos (speaker ids alone are per video).
        publish_source_paths: publish ``source`` as given to the pipeline (paths may reveal where the publisher
            keeps the videos); ``False`` (default) publishes the file name only.
        annotations_only: leave out the audio and face-video bytes (columns ``audio``, ``face_video``); ``source``,
            ``start`` and ``end`` locate each utterance in its source video.
        lenient: skip bad manifest lines (counted in the card) instead of failing.
        max_reported_problems: how many offending lines per reason errors and the card show.
        chunk_size: utterances per generator shard (the unit ``num_proc`` distributes).
    """

    run_dirs: Sequence[str] = ()
    labels: str | Mapping[str, Any] = "emobench26"
    min_asd_score: float | None = None
    min_duration: float | None = None
    max_duration: float | None = None
    labels_kept: Sequence[str] | None = None
    split_ratios: Mapping[str, float] = field(
        default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1}
    )
    split_seed: int | str = 0
    split_by: str = "video"
    speaker_map: str | None = None
    min_confidence: float | None = None
    min_dnsmos_ovrl: float | None = None
    publish_source_paths: bool = False
    annotations_only: bool = False
    lenient: bool = False
    max_reported_problems: int = 10
    chunk_size: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.run_dirs, (str, os.PathLike)):
            self.run_dirs = [self.run_dirs]
        self.run_dirs = [os.fspath(p) for p in _plain(self.run_dirs)]
        self.labels = _plain(self.labels)
        self.split_ratios = dict(_plain(self.split_ratios))
        if self.labels_kept is not None:
            self.labels_kept = [str(x) for x in _plain(self.labels_kept)]
        if self.split_by not in ("video", "speaker"):
            raise BuildError(f"split_by must be 'video' or 'speaker', got {self.split_by!r}")
        if self.speaker_map is not None:
            self.speaker_map = os.fspath(self.speaker_map)
        if self.min_confidence is not None and not (isinstance(self.min_confidence, (int, float))
                                                    and 0 <= self.min_confidence <= 1):
            raise BuildError(f"min_confidence must be a number in 0..1 or null, got {self.min_confidence!r}")
        for name in ("min_duration", "max_duration", "min_asd_score", "min_dnsmos_ovrl"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise BuildError(f"{name} must be a non-negative number or null, got {value!r}")
        if self.min_duration is not None and self.max_duration is not None and self.min_duration > self.max_duration:
            raise BuildError(f"min_duration ({self.min_duration}) is above max_duration ({self.max_duration})")
        if self.chunk_size < 1 or self.max_reported_problems < 0:
            raise BuildError("chunk_size must be >= 1 and max_reported_problems >= 0")
        validate_split_ratios(self.split_ratios)

    def resolve_label_set(self) -> LabelSet:
        """Load the label set and check ``labels_kept`` against it.

        Raises:
            BuildError: ``labels_kept`` names a label outside the set.
        """
        label_set = as_label_set(self.labels)
        unknown = [x for x in (self.labels_kept or []) if x not in label_set]
        if unknown:
            raise BuildError(
                f"labels_kept names {unknown}, which are not labels of {label_set.name!r} "
                f"({', '.join(label_set.names)})"
            )
        return label_set


class MikuEmoBench(datasets.GeneratorBasedBuilder):
    """Builds MIKU-EmoBench from MIKU-PAL run directories (see the module docstring)."""

    VERSION = datasets.Version("1.0.0")
    # No BUILDER_CONFIGS on purpose: with predefined configs, ``datasets`` copies one and sets the keyword
    # arguments with setattr, skipping MikuEmoBenchConfig.__post_init__ (normalisation and validation).
    BUILDER_CONFIG_CLASS = MikuEmoBenchConfig

    config: MikuEmoBenchConfig

    _scan: ScanReport | None = None
    _label_set: LabelSet | None = None

    @classmethod
    def from_config(cls, config: MikuEmoBenchConfig, **builder_kwargs: Any) -> "MikuEmoBench":
        """A builder for an existing config object.

        Args:
            config: the config (its MIKU-EmoBench fields are passed as keyword arguments, so they are validated
                again and hashed into the cache directory name).
            **builder_kwargs: ``DatasetBuilder`` arguments, e.g. ``cache_dir``.
        """
        base = {f.name for f in fields(datasets.BuilderConfig)}
        kwargs = {f.name: getattr(config, f.name) for f in fields(config) if f.name not in base}
        return cls(**kwargs, **builder_kwargs)

    @property
    def label_set(self) -> LabelSet:
        """The configured label set (loaded once)."""
        if self._label_set is None:
            self._label_set = self.config.resolve_label_set()
        return self._label_set

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=_DESCRIPTION,
            features=build_features(self.label_set, annotations_only=self.config.annotations_only),
            citation=_CITATION,
            homepage="https://arxiv.org/abs/2505.15772",
        )

    # ------------------------------------------------------------------ first pass
    def scan(self) -> ScanReport:
        """Check and plan the configured run directories (once per builder; the result is cached).

        Returns:
            The :class:`~builder.scan.ScanReport` (counts per reason, first offending lines, split plan, stats).
        """
        if self._scan is None:
            self._scan = scan_runs(self.config, self.label_set)
        return self._scan

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        report = self.scan()
        if not self.config.lenient:
            report.raise_for_bad_input()
        elif report.bad_input:
            log.warning(
                "lenient: skipping %d bad manifest line(s):\n%s", report.bad_input, report.describe("bad_input", 3)
            )
        if report.accepted == 0:
            raise BuildError(
                f"no utterance left to build from {len(report.run_dirs)} run directory(ies) "
                f"({report.lines} line(s) read); left out:\n{report.describe('bad_input', 3)}\n"
                f"{report.describe('skipped', 3)}\nAnnotate the utterances (the pipeline's annotate stage) or "
                "loosen the filters."
            )
        generators = []
        for split, chunks in report.plan.items():
            if not chunks:
                log.warning("split %s is empty (no video hashed into it); it is left out", split)
                continue
            generators.append(datasets.SplitGenerator(name=split, gen_kwargs={"chunks": chunks}))
        return generators

    # ------------------------------------------------------------------ second pass
    def _generate_examples(self, chunks: list[dict[str, Any]]) -> Iterator[tuple[Key, dict[str, Any]]]:
        """Read the planned manifest lines back by offset and turn each into an example.

        Args:
            chunks: the split's plan chunks (see :func:`builder.scan.scan_runs`).

        Yields:
            ``(Key(chunk index within this job, position), example)``; the audio is given as an absolute path
            (the Parquet writer embeds the bytes, keeping only the file name as ``path``).
        """
        for local_index, chunk in enumerate(chunks):  # the job's own shard index, as datasets' builders count
            manifest = Path(chunk["manifest"])
            if manifest_fingerprint(manifest) != tuple(chunk["fingerprint"]):
                raise BuildError(f"{manifest} changed since it was checked: rebuild once the pipeline has finished")
            run_dir = Path(chunk["run_dir"])
            with open(manifest, "rb") as f:
                for position, (offset, duration) in enumerate(zip(chunk["offsets"], chunk["durations"])):
                    f.seek(offset)
                    record = json.loads(f.readline())
                    yield Key(local_index, position), record_to_example(
                        record, run_dir, duration, publish_source_paths=self.config.publish_source_paths,
                        annotations_only=self.config.annotations_only)


def source_name(source: str) -> str:
    """The file name of a source path, whether it was written with ``/`` or ``\\`` (``C:\\v\\a.mp4`` → ``a.mp4``)."""
    return PureWindowsPath(source).name if "\\" in source else PurePosixPath(source).name


def record_to_example(record: Mapping[str, Any], run_dir: Path, duration: float, *,
                      publish_source_paths: bool = False, annotations_only: bool = False) -> dict[str, Any]:
    """One dataset row from a checked, annotated manifest record.

    Works on the JSON object itself (``Utterance.to_dict()`` form): the scan has already parsed and checked the
    same bytes as an :class:`~mikupal.records.Utterance`, so building the row skips the dataclass round trip.
    ``speaker`` and ``quality`` are read when the record has them (absent or null: null columns).

    Args:
        record: the manifest line's object (``emotion`` not null).
        run_dir: its resolved run directory.
        duration: the audio's length in seconds (from the scan).
        publish_source_paths: keep ``source`` as given (else its file name only).
        annotations_only: leave out the media columns.

    Returns:
        A dict with exactly the columns of :func:`builder.features.field_names`.
    """
    emo = record["emotion"]
    face = record["face"]
    words = record["words"]
    speaker = record.get("speaker") or {}
    quality = record.get("quality") or {}
    clip = face.get("clip") if face is not None else None
    row = {
        "id": record["id"],
        "audio": str(run_dir / record["audio"]),
        "text": record["text"],
        "language": record["language"],
        "emotion": emo["label"],
        "intensity": emo["intensity"],
        "confidence": emo.get("confidence"),
        "rationale": emo["rationale"],
        "votes": emo["votes"],
        "annotator": emo["annotator"],
        "prompt_version": emo["prompt_version"],
        "video_id": record["video_id"],
        "speaker_id": speaker.get("id"),
        "source": record["source"] if publish_source_paths else source_name(record["source"]),
        "start": float(record["start"]),
        "end": float(record["end"]),
        "duration": duration,
        **{name: quality.get(name) for name in DNSMOS_FIELDS},
        "words": [{"word": w["word"], "start": w["start"], "end": w["end"], "score": w["score"]} for w in words]
        if words is not None
        else None,
        "asd_score": face["asd_score"] if face is not None else None,
        "face_box": face["box"] if face is not None else None,
        "face_video": str(run_dir / clip) if clip else None,
    }
    if annotations_only:
        for name in MEDIA_FIELDS:
            del row[name]
    return row
