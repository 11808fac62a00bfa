"""The builder's first pass over pipeline run directories: read, validate, filter, de-duplicate and split.

:func:`scan_runs` streams every ``utterances.jsonl`` line by line (memory does not grow with the file), checks
each line, and decides for each utterance whether it goes into the dataset and in which split. What it keeps
is a *plan*: per split, chunks of ``(manifest, byte offset, duration)`` that the builder's
``_generate_examples`` reads back line by line, so no record or audio is held in memory between the passes.

Every line that is not kept gets exactly one **reason** (:data:`REASONS`). Two kinds:

* ``bad_input`` — the line or its audio is broken (malformed line, audio missing / unreadable / not 16 kHz mono,
  audio path outside the run directory, label outside the label set). Strict mode (the default) fails with
  the counts and the first offending lines; ``lenient=True`` skips them and the card lists them.
* ``skipped`` — a valid utterance left out on purpose: a duplicate id (first occurrence wins, in run-directory
  order), no emotion annotation (``emotion`` is null: an unannotated utterance cannot be in an emotion
  dataset), or one of the configured filters (labels kept, minimum ASD score, duration bounds).

Splits are assigned per *video*: a stable hash of ``"<seed>/<video_id>"`` mapped to [0, 1) is cut at the
cumulative split ratios, so every utterance of a video lands in the same split, on every machine and rerun.
With ``split_by="speaker"`` the unit is a *group of videos that share a speaker*: speaker ids (``speaker.id``,
``"<video_id>-spkN"``) come from clustering within one video, so ``speaker_map`` (a JSON or YAML file
``{speaker_id: name}``, e.g. from the publisher's knowledge of who hosts a channel) names the same person across
videos; videos joined by a shared name are kept in one split (the group is hashed by its first video id in sorted
order), so no named speaker and no video spans two splits. Without a map every speaker id is already confined to
its video and the split equals ``split_by="video"``.

Fields the pipeline added after this module was written (``speaker``, ``quality``) are read from the raw line, so
the builder works with manifests with or without them (absent = null).
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from builder.features import SAMPLING_RATE
from mikupal.ids import stable_hash
from mikupal.labels import LabelParseError, LabelSet
from mikupal.records import RecordError, Utterance

if TYPE_CHECKING:
    from builder.miku_emobench import MikuEmoBenchConfig

log = logging.getLogger(__name__)

#: The dataset's splits, in order.
SPLITS: tuple[str, ...] = ("train", "validation", "test")

#: Name of the final manifest in a run directory (DESIGN §2).
MANIFEST_NAME = "utterances.jsonl"


class BuildError(Exception):
    """The dataset cannot be built as configured; the message says what to change."""


class BadInputError(BuildError):
    """Strict mode found bad manifest lines; the message has counts and the first offending lines."""


@dataclass(frozen=True)
class Reason:
    """Why a manifest line is not in the dataset.

    Attributes:
        name: short id, used as a key in reports.
        kind: ``"bad_input"`` (an error in strict mode) or ``"skipped"`` (left out on purpose).
        description: one sentence for users (goes into error messages and the dataset card).
    """

    name: str
    kind: str
    description: str


_REASON_LIST = [
    Reason("malformed_line", "bad_input", "the line is not a JSON object with the Utterance fields and value types"),
    Reason("audio_outside_run_dir", "bad_input", "the audio path is absolute or leaves its run directory"),
    Reason("audio_missing", "bad_input", "the audio file does not exist"),
    Reason("audio_unreadable", "bad_input", "the audio file cannot be opened as audio, or holds no samples"),
    Reason("audio_format", "bad_input", f"the audio is not {SAMPLING_RATE // 1000} kHz mono"),
    Reason("label_outside_set", "bad_input", "the emotion label or a vote is not a label of the label set"),
    Reason("face_clip_missing", "bad_input", "face.clip names a file that does not exist or leaves the run directory"),
    Reason("duplicate_id", "skipped", "an utterance with the same id was already taken (first occurrence wins)"),
    Reason("no_emotion", "skipped", "emotion is null: the utterance was never annotated"),
    Reason("label_not_kept", "skipped", "the label is not in labels_kept"),
    Reason("no_face", "skipped", "min_asd_score is set and the utterance has no active-speaker face"),
    Reason("asd_below_min", "skipped", "the active-speaker score is below min_asd_score"),
    Reason("too_short", "skipped", "the audio is shorter than min_duration"),
    Reason("too_long", "skipped", "the audio is longer than max_duration"),
    Reason("low_confidence", "skipped", "emotion.confidence is below min_confidence (or unknown)"),
    Reason("low_quality", "skipped", "DNSMOS OVRL is below min_dnsmos_ovrl (or unknown)"),
]
#: Every reason a line can be left out, by name, in report order.
REASONS: dict[str, Reason] = {r.name: r for r in _REASON_LIST}


@dataclass(frozen=True)
class Problem:
    """One manifest line that was left out.

    Attributes:
        file: the manifest path. line: 1-based line number. reason: a key of :data:`REASONS`.
        detail: what exactly is wrong with this line.
    """

    file: str
    line: int
    reason: str
    detail: str

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Stats:
    """What the accepted utterances add up to (the dataset card's statistics come from here).

    Attributes:
        split_counts, split_seconds: per split.
        emotion_split_counts, emotion_split_seconds: per ``(emotion, split)``.
        split_videos: the video ids of each split.
        annotators: utterances per ``(annotator, prompt_version)``.
        languages: utterances per language (``None`` when unknown).
        durations: the duration of every accepted utterance (for histograms), seconds.
        speaker_counts, speaker_seconds: per speaker id (``None``: no speaker).
        speaker_splits: the splits each speaker id appears in. speaker_ovrl: DNSMOS OVRL values per speaker id.
        quality: DNSMOS values of the utterances that have them, per column (``dnsmos_ovrl``, ...).
        no_quality: utterances without a quality record. confidences: ``emotion.confidence`` of the utterances
            that have one. no_face_video: accepted utterances without a face clip.
    """

    split_counts: Counter = field(default_factory=Counter)
    split_seconds: Counter = field(default_factory=Counter)
    emotion_split_counts: Counter = field(default_factory=Counter)
    emotion_split_seconds: Counter = field(default_factory=Counter)
    split_videos: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    annotators: Counter = field(default_factory=Counter)
    languages: Counter = field(default_factory=Counter)
    durations: array = field(default_factory=lambda: array("d"))
    speaker_counts: Counter = field(default_factory=Counter)
    speaker_seconds: Counter = field(default_factory=Counter)
    speaker_splits: dict[str | None, set[str]] = field(default_factory=lambda: defaultdict(set))
    speaker_ovrl: dict[str | None, array] = field(default_factory=lambda: defaultdict(lambda: array("d")))
    quality: dict[str, array] = field(default_factory=lambda: defaultdict(lambda: array("d")))
    no_quality: int = 0
    confidences: array = field(default_factory=lambda: array("d"))
    no_face_video: int = 0

    def add(self, utt: Utterance, split: str, duration: float, extras: "Extras | None" = None) -> None:
        """Count one accepted utterance (``extras``: its speaker and quality, see :func:`read_extras`)."""
        assert utt.emotion is not None
        extras = extras or Extras()
        speaker = extras.speaker_id
        self.speaker_counts[speaker] += 1
        self.speaker_seconds[speaker] += duration
        self.speaker_splits[speaker].add(split)
        if extras.quality is None:
            self.no_quality += 1
        else:
            for name, value in extras.quality.items():
                if value is not None:
                    self.quality[name].append(float(value))
            if extras.quality.get("dnsmos_ovrl") is not None:
                self.speaker_ovrl[speaker].append(float(extras.quality["dnsmos_ovrl"]))
        if utt.emotion.confidence is not None:
            self.confidences.append(float(utt.emotion.confidence))
        if utt.face is None or not utt.face.clip:
            self.no_face_video += 1
        label = utt.emotion.label
        self.split_counts[split] += 1
        self.split_seconds[split] += duration
        self.emotion_split_counts[(label, split)] += 1
        self.emotion_split_seconds[(label, split)] += duration
        self.split_videos[split].add(utt.video_id)
        self.annotators[(utt.emotion.annotator, utt.emotion.prompt_version)] += 1
        self.languages[utt.language] += 1
        self.durations.append(duration)

    @property
    def total(self) -> int:
        return sum(self.split_counts.values())

    @property
    def total_seconds(self) -> float:
        return float(sum(self.split_seconds.values()))


@dataclass
class ScanReport:
    """The outcome of :func:`scan_runs`.

    Attributes:
        run_dirs: the run directories, resolved, in the order given.
        label_set: the label set the lines were checked against.
        lines: non-blank manifest lines read.
        plan: per split, the chunks the builder generates examples from (``gen_kwargs`` material).
        counts: lines left out, per reason.
        problems: the first offending lines of each reason (at most ``max_reported_problems`` each).
        stats: totals of the accepted utterances.
    """

    run_dirs: list[Path]
    label_set: LabelSet
    lines: int = 0
    plan: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    problems: dict[str, list[Problem]] = field(default_factory=lambda: defaultdict(list))
    stats: Stats = field(default_factory=Stats)

    @property
    def accepted(self) -> int:
        return self.stats.total

    def count_of(self, kind: str) -> int:
        """Lines left out for reasons of one kind (``"bad_input"`` or ``"skipped"``)."""
        return sum(n for reason, n in self.counts.items() if REASONS[reason].kind == kind)

    @property
    def bad_input(self) -> int:
        return self.count_of("bad_input")

    @property
    def skipped(self) -> int:
        return self.count_of("skipped")

    def describe(self, kind: str, max_lines: int | None = None) -> str:
        """Counts per reason of one kind, each followed by its first offending lines.

        Args:
            kind: ``"bad_input"`` or ``"skipped"``.
            max_lines: at most this many example lines per reason (all kept ones if ``None``).
        """
        out = []
        for name, reason in REASONS.items():
            if reason.kind != kind or not self.counts.get(name):
                continue
            out.append(f"  {name} ({self.counts[name]}): {reason.description}")
            for problem in self.problems.get(name, [])[:max_lines]:
                out.append(f"    {problem.location}: {problem.detail}")
        return "\n".join(out)

    def raise_for_bad_input(self) -> None:
        """Fail with counts and the first offending lines when any line is bad input.

        Raises:
            BadInputError: at least one line is bad input.
        """
        if not self.bad_input:
            return
        raise BadInputError(
            f"{self.bad_input} bad manifest line(s) in {len(self.run_dirs)} run director"
            f"{'y' if len(self.run_dirs) == 1 else 'ies'} (strict mode):\n"
            f"{self.describe('bad_input')}\n"
            "Fix or remove these lines (or re-run the pipeline stage that wrote them), or pass lenient=true to skip "
            "them; skipped lines are then counted in the dataset card's statistics."
        )


def validate_split_ratios(ratios: Mapping[str, float]) -> dict[str, float]:
    """Check split ratios and return them as a plain dict in split order.

    Args:
        ratios: ``{split: fraction}`` over ``train``/``validation``/``test``; missing splits are 0.

    Raises:
        BuildError: an unknown split, a negative ratio, or ratios that do not sum to 1.
    """
    unknown = sorted(set(ratios) - set(SPLITS))
    if unknown:
        raise BuildError(f"split_ratios: unknown split(s) {unknown}; use {list(SPLITS)}")
    out = {name: float(ratios.get(name, 0.0)) for name in SPLITS}
    if any(r < 0 for r in out.values()):
        raise BuildError(f"split_ratios must be non-negative, got {out}")
    total = sum(out.values())
    if abs(total - 1.0) > 1e-6:
        raise BuildError(
            f"split_ratios must sum to 1, got {out} (sum {total:g}); give every split its ratio, e.g. "
            "split.ratios={train:0.9,validation:0.05,test:0.05} (a partial override is merged into the defaults)"
        )
    return out


def assign_split(video_id: str, ratios: Mapping[str, float], seed: int | str) -> str:
    """The split of a video: a stable hash of ``"<seed>/<video_id>"`` cut at the cumulative ratios.

    Args:
        video_id: the video's stable id.
        ratios: validated split ratios (see :func:`validate_split_ratios`).
        seed: changes the assignment as a whole; keep it fixed to keep splits stable across builds.

    Returns:
        ``"train"``, ``"validation"`` or ``"test"``.
    """
    u = stable_hash(f"{seed}/{video_id}") / 2**64
    cumulative = 0.0
    last = SPLITS[0]
    for name in SPLITS:
        if ratios.get(name, 0.0) <= 0:
            continue
        cumulative += ratios[name]
        last = name
        if u < cumulative:
            return name
    return last


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: Utterance fields added by later pipeline versions that the builder reads from the raw line (absent = null).
EXTRA_FIELDS = ("speaker", "quality")
#: DNSMOS keys of ``Utterance.quality`` published as columns.
QUALITY_KEYS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")


@dataclass(frozen=True)
class Extras:
    """The speaker and quality of a manifest line (``None`` when the line has none).

    Attributes:
        speaker_id: ``speaker.id``. similarity: ``speaker.similarity``.
        quality: ``{dnsmos_sig, dnsmos_bak, dnsmos_ovrl, dnsmos_p808}`` (values may be null), or ``None``.
    """

    speaker_id: str | None = None
    similarity: float | None = None
    quality: dict[str, float | None] | None = None


def read_extras(obj: Mapping[str, Any]) -> tuple[Extras, str | None]:
    """Read and check the ``speaker`` and ``quality`` objects of a raw manifest line.

    Returns:
        ``(extras, problem)``: ``problem`` says what is malformed, else ``None``.
    """
    speaker, quality = obj.get("speaker"), obj.get("quality")
    speaker_id = similarity = None
    if speaker is not None:
        if not isinstance(speaker, dict) or not isinstance(speaker.get("id"), str) or not speaker["id"]:
            return Extras(), f"speaker must be null or an object with a non-empty string id, got {speaker!r}"
        if speaker.get("similarity") is not None and not _is_number(speaker["similarity"]):
            return Extras(), f"speaker.similarity must be a number, got {speaker['similarity']!r}"
        speaker_id, similarity = speaker["id"], speaker.get("similarity")
    values = None
    if quality is not None:
        if not isinstance(quality, dict):
            return Extras(), f"quality must be null or an object, got {quality!r}"
        values = {k: quality.get(k) for k in QUALITY_KEYS}
        bad = {k: v for k, v in values.items() if v is not None and not _is_number(v)}
        if bad:
            return Extras(), f"quality values must be numbers or null, got {bad}"
    return Extras(speaker_id, similarity, values), None


def _invalid_values(utt: Utterance) -> str | None:
    """What is wrong with the values of a parsed Utterance (``None`` if nothing)."""
    for name in ("id", "video_id", "source", "audio"):
        if not isinstance(getattr(utt, name), str) or not getattr(utt, name):
            return f"{name} must be a non-empty string, got {getattr(utt, name)!r}"
    for name in ("text", "language"):
        if getattr(utt, name) is not None and not isinstance(getattr(utt, name), str):
            return f"{name} must be a string or null, got {getattr(utt, name)!r}"
    if not (_is_number(utt.start) and _is_number(utt.end)) or not utt.end > utt.start:
        return f"start and end must be numbers with end > start, got start={utt.start!r} end={utt.end!r}"
    for word in utt.words or []:
        if not isinstance(word.word, str) or not (_is_number(word.start) and _is_number(word.end)):
            return f"word {word.to_dict()!r} needs a string word and numeric start/end"
        if word.score is not None and not _is_number(word.score):
            return f"word {word.to_dict()!r} has a non-numeric score"
    face = utt.face
    if face is not None:
        if not (isinstance(face.box, list) and len(face.box) == 4 and all(_is_number(v) for v in face.box)):
            return f"face.box must be 4 numbers [x1, y1, x2, y2], got {face.box!r}"
        if not _is_number(face.asd_score):
            return f"face.asd_score must be a number, got {face.asd_score!r}"
    emo = utt.emotion
    if emo is not None:
        if not isinstance(emo.label, str):
            return f"emotion.label must be a string, got {emo.label!r}"
        if not _is_number(emo.intensity) or not 0.0 <= emo.intensity <= 1.0:
            return f"emotion.intensity must be a number in 0..1, got {emo.intensity!r}"
        if not isinstance(emo.rationale, str):
            return f"emotion.rationale must be a string, got {emo.rationale!r}"
        if not isinstance(emo.annotator, str) or not emo.annotator:
            return f"emotion.annotator must be a non-empty string, got {emo.annotator!r}"
        if emo.prompt_version is not None and not isinstance(emo.prompt_version, str):
            return f"emotion.prompt_version must be a string or null, got {emo.prompt_version!r}"
        if not all(isinstance(v, str) for v in emo.votes):
            return f"emotion.votes must be a list of label names, got {emo.votes!r}"
        if emo.confidence is not None and (not _is_number(emo.confidence) or not 0.0 <= emo.confidence <= 1.0):
            return f"emotion.confidence must be a number in 0..1 or null, got {emo.confidence!r}"
    return None


def _label_problem(label: str, label_set: LabelSet, what: str) -> str | None:
    """Why ``label`` is not exactly a name of the label set, with a hint when it is a near miss."""
    if label in label_set:
        return None
    hint = ""
    try:
        hint = f" (did you mean {label_set.parse(label)!r}? labels must be written exactly as named)"
    except LabelParseError:
        pass
    return f"{what} {label!r} is not a label of {label_set.name!r}{hint}"


def audio_path_is_inside(relative: str) -> bool:
    """Whether a run-directory-relative path stays inside the run directory (no absolute path, no ``..``).

    The check is on the path as written (the manifest is the untrusted part); symbolic links inside the run
    directory are the run directory owner's choice and are followed.
    """
    if os.path.isabs(relative) or relative.startswith(("/", "\\")) or ":" in relative.split("/")[0]:
        return False
    normalized = posixpath.normpath(relative.replace("\\", "/"))
    return normalized not in ("", ".") and normalized != ".." and not normalized.startswith("../")


def check_audio(run_dir: Path, relative: str) -> tuple[str | None, str, float]:
    """Check an utterance's audio file by reading its header.

    Args:
        run_dir: the resolved run directory.
        relative: the ``audio`` field (relative to the run directory).

    Returns:
        ``(reason, detail, duration)``: reason ``None`` and the duration in seconds when the file is usable.
    """
    import soundfile as sf  # optional at import time: the builder module imports without audio libraries

    if not audio_path_is_inside(relative):
        return "audio_outside_run_dir", f"audio path {relative!r} points outside {run_dir}", 0.0
    path = run_dir / relative
    if not path.is_file():
        return "audio_missing", f"{relative} not found (looked for {path})", 0.0
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError, sf.LibsndfileError) as e:  # LibsndfileError subclasses RuntimeError
        return "audio_unreadable", f"{relative}: {e}", 0.0
    if info.frames <= 0 or info.samplerate <= 0:
        return "audio_unreadable", f"{relative} holds no samples", 0.0
    if info.samplerate != SAMPLING_RATE or info.channels != 1:
        return (
            "audio_format",
            f"{relative} is {info.samplerate} Hz with {info.channels} channel(s); the dataset needs "
            f"{SAMPLING_RATE} Hz mono (re-run the pipeline's extract/separate stages)",
            0.0,
        )
    return None, "", info.frames / info.samplerate


def _iter_lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(line number, byte offset, raw line)`` for the non-blank lines of a file, streaming."""
    offset = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            start = offset
            offset += len(raw)
            if raw.strip():
                yield number, start, raw


def parse_line(raw: bytes) -> tuple[Utterance | None, str, Extras]:
    """Parse one manifest line into an :class:`Utterance` and its :class:`Extras` (speaker, quality).

    Returns:
        ``(utterance, "", extras)`` or ``(None, what is wrong, Extras())``.
    """
    try:
        obj = json.loads(raw)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        return None, f"not valid JSON ({e}): {raw[:120]!r}", Extras()
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}", Extras()
    extras, problem = read_extras(obj)
    if problem:
        return None, problem, Extras()
    known = {f.name for f in fields(Utterance)}
    record = {k: v for k, v in obj.items() if k in known or k not in EXTRA_FIELDS}
    try:
        utt = Utterance.from_dict(record)
    except (RecordError, KeyError, TypeError, ValueError, AttributeError) as e:
        return None, f"not an Utterance: {e}", Extras()
    problem = _invalid_values(utt)
    if problem:
        return None, problem, Extras()
    return utt, "", extras


def manifest_fingerprint(path: Path) -> tuple[int, int]:
    """``(size, mtime_ns)`` of a manifest, to detect a change between the scan and the generation."""
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def resolve_run_dirs(run_dirs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Resolve run directories and check each has its final manifest.

    Raises:
        BuildError: no run directory given, or one without ``utterances.jsonl``.
    """
    if not run_dirs:
        raise BuildError("no run directory given: pass run_dir=DIR (or a list, run_dir=[DIR1,DIR2])")
    out: list[Path] = []
    for given in run_dirs:
        path = Path(given).expanduser().resolve()
        if not (path / MANIFEST_NAME).is_file():
            what = "does not exist" if not path.exists() else f"has no {MANIFEST_NAME}"
            raise BuildError(
                f"run directory {given} {what}: point run_dir at a MIKU-PAL run directory (run "
                f"`mikupal input=VIDEOS run_dir={given}` first)"
            )
        if path in out:
            log.warning("run directory %s given twice; reading it once", given)
            continue
        out.append(path)
    return out


def load_speaker_map(path: str | os.PathLike[str] | None) -> dict[str, str]:
    """Read ``speaker_map`` (JSON or YAML ``{speaker_id: name}``); ``{}`` for ``None``.

    Raises:
        BuildError: the file is missing or is not a flat mapping of strings.
    """
    if path is None:
        return {}
    file = Path(path).expanduser()
    if not file.is_file():
        raise BuildError(f"split.speaker_map={path}: file not found (a JSON or YAML mapping speaker_id -> name)")
    import yaml

    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))  # YAML is a superset of JSON
    except yaml.YAMLError as e:
        raise BuildError(f"split.speaker_map={path}: not JSON or YAML ({e})") from e
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise BuildError(f"split.speaker_map={path}: expected a mapping of speaker ids to names, e.g. "
                         '{"talk-1a2b3c4d-spk0": "host"}')
    return data


def speaker_groups(run_dirs: Sequence[Path], speaker_map: Mapping[str, str]) -> dict[str, str]:
    """``{video_id: group key}``: videos joined by a shared speaker name fall in one group (union-find).

    The key of a group is its smallest video id, so the assignment is stable. Lines that do not parse are ignored
    here (the main pass reports them).
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for run_dir in run_dirs:
        for _, _, raw in _iter_lines(run_dir / MANIFEST_NAME):
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(obj, dict) or not isinstance(obj.get("video_id"), str):
                continue
            video = "v:" + obj["video_id"]
            find(video)
            speaker = obj.get("speaker")
            if isinstance(speaker, dict) and isinstance(speaker.get("id"), str):
                union(video, "s:" + speaker_map.get(speaker["id"], speaker["id"]))
    groups: dict[str, str] = {}
    for node in parent:
        root = find(node)
        if node.startswith("v:"):
            groups.setdefault(root, node[2:])
            groups[root] = min(groups[root], node[2:])
    return {node[2:]: groups[find(node)] for node in parent if node.startswith("v:")}


def scan_runs(config: "MikuEmoBenchConfig", label_set: LabelSet) -> ScanReport:
    """Read, check, filter, de-duplicate and split the utterances of the configured run directories.

    Args:
        config: the builder config (run directories, filters, split ratios and seed, chunk size).
        label_set: the resolved label set.

    Returns:
        The :class:`ScanReport`; it does not raise for bad input (see :meth:`ScanReport.raise_for_bad_input`).

    Raises:
        BuildError: a run directory is missing, or the configuration is invalid.
    """
    run_dirs = resolve_run_dirs(config.run_dirs)
    ratios = validate_split_ratios(config.split_ratios)
    report = ScanReport(run_dirs=run_dirs, label_set=label_set)
    report.plan = {name: [] for name in SPLITS}
    open_chunk: dict[str, dict[str, Any] | None] = {name: None for name in SPLITS}
    seen: set[str] = set()
    kept = set(config.labels_kept) if config.labels_kept is not None else None
    limit = config.max_reported_problems
    groups: dict[str, str] = {}
    if config.split_by == "speaker":
        groups = speaker_groups(run_dirs, load_speaker_map(config.speaker_map))

    def leave_out(file: Path, number: int, reason: str, detail: str) -> None:
        report.counts[reason] += 1
        if len(report.problems[reason]) < limit:
            report.problems[reason].append(Problem(str(file), number, reason, detail))

    for run_dir in run_dirs:
        manifest = run_dir / MANIFEST_NAME
        fingerprint = manifest_fingerprint(manifest)
        for name in SPLITS:
            open_chunk[name] = None  # chunks never span run directories
        for number, offset, raw in _iter_lines(manifest):
            report.lines += 1
            utt, detail, extras = parse_line(raw)
            if utt is None:
                leave_out(manifest, number, "malformed_line", detail)
                continue
            if utt.id in seen:
                leave_out(manifest, number, "duplicate_id", f"id {utt.id} was already taken")
                continue
            reason, detail, duration = check_audio(run_dir, utt.audio)
            if reason is not None:
                leave_out(manifest, number, reason, detail)
                continue
            emo = utt.emotion
            if emo is None:
                leave_out(manifest, number, "no_emotion", f"{utt.id} has no emotion annotation")
                continue
            label_problem = _label_problem(emo.label, label_set, "label")
            for vote in emo.votes:
                label_problem = label_problem or _label_problem(vote, label_set, "vote")
            if label_problem:
                leave_out(manifest, number, "label_outside_set", label_problem)
                continue
            clip = utt.face.clip if utt.face is not None else None
            if clip and not config.annotations_only and not (
                    audio_path_is_inside(clip) and (run_dir / clip).is_file()):
                leave_out(manifest, number, "face_clip_missing", f"{utt.id}: {clip} not found in {run_dir}")
                continue
            if kept is not None and emo.label not in kept:
                leave_out(manifest, number, "label_not_kept", f"{utt.id}: {emo.label}")
                continue
            if config.min_asd_score is not None:
                if utt.face is None:
                    leave_out(manifest, number, "no_face", f"{utt.id} has no face")
                    continue
                if utt.face.asd_score < config.min_asd_score:
                    leave_out(manifest, number, "asd_below_min", f"{utt.id}: {utt.face.asd_score:.3f}")
                    continue
            if config.min_duration is not None and duration < config.min_duration:
                leave_out(manifest, number, "too_short", f"{utt.id}: {duration:.2f} s")
                continue
            if config.max_duration is not None and duration > config.max_duration:
                leave_out(manifest, number, "too_long", f"{utt.id}: {duration:.2f} s")
                continue
            if config.min_confidence is not None and (emo.confidence is None or emo.confidence < config.min_confidence):
                leave_out(manifest, number, "low_confidence", f"{utt.id}: {emo.confidence}")
                continue
            ovrl = (extras.quality or {}).get("dnsmos_ovrl")
            if config.min_dnsmos_ovrl is not None and (ovrl is None or ovrl < config.min_dnsmos_ovrl):
                leave_out(manifest, number, "low_quality", f"{utt.id}: DNSMOS OVRL {ovrl}")
                continue

            seen.add(utt.id)
            split = assign_split(groups.get(utt.video_id, utt.video_id), ratios, config.split_seed)
            chunk = open_chunk[split]
            if chunk is None or len(chunk["offsets"]) >= config.chunk_size:
                chunk = {
                    "index": len(report.plan[split]),
                    "run_dir": str(run_dir),
                    "manifest": str(manifest),
                    "fingerprint": fingerprint,
                    "offsets": array("q"),
                    "durations": array("d"),
                }
                report.plan[split].append(chunk)
                open_chunk[split] = chunk
            chunk["offsets"].append(offset)
            chunk["durations"].append(duration)
            report.stats.add(utt, split, duration, extras)

        if manifest_fingerprint(manifest) != fingerprint:
            raise BuildError(f"{manifest} changed while it was read: wait for the pipeline to finish, then rebuild")

    log.info(
        "scanned %d line(s) in %d run dir(s): %d kept, %d skipped, %d bad input",
        report.lines,
        len(run_dirs),
        report.accepted,
        report.skipped,
        report.bad_input,
    )
    return report
