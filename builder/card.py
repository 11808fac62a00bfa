"""The dataset card: ``dataset_card.md`` (the template at the repository root) filled from the data.

The template is a complete document. Generated parts sit between HTML-comment markers::

    <!-- mikupal-build:begin NAME -->
    ...
    <!-- mikupal-build:end NAME -->

Blocks: ``categories`` (the label set's table, rendered from ``conf/labels/<set>.yaml``), ``statistics``
(utterances and hours per split and emotion, duration histogram, statistics per speaker, DNSMOS quality and label
confidence histograms, annotators and prompt versions, lines left out)
and ``pipeline`` (build settings and each run directory's stage configuration from ``<stage>/stage.json``).
The YAML header keeps the template's static metadata (licence, task categories, tags), takes the overrides in
``card.metadata``, and gets ``configs``, ``dataset_info``, ``language`` and ``size_categories`` from the data, in
the form ``datasets.push_to_hub`` writes them.

``python -m builder.card`` re-renders the template's ``categories`` block from ``conf/labels/emobench26.yaml``
(a test fails while the committed card and the label set disagree).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
import statistics as _stats
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from builder.scan import REASONS, SPLITS, BuildError, ScanReport
from mikupal import __version__ as mikupal_version
from mikupal.labels import LabelSet, load_label_set
from mikupal.rundir import STAGE_ORDER  # pipeline stage order; stage folders not in it come after, alphabetically

log = logging.getLogger(__name__)

#: Marker of a file written by mikupal-build (also how an output folder is recognised as ours).
MARKER = "mikupal-build:begin"

_BLOCK_RE = re.compile(
    r"(?P<begin><!-- mikupal-build:begin (?P<name>[\w-]+) -->\n)(?P<body>.*?)"
    r"(?P<end><!-- mikupal-build:end (?P=name) -->)",
    re.S,
)

#: ``size_categories`` values the Hub accepts, with their upper bounds.
_SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
]


def default_template() -> Path:
    """``dataset_card.md`` at the repository root (next to ``conf/``)."""
    return Path(__file__).resolve().parent.parent / "dataset_card.md"


@dataclass
class CardOptions:
    """How the card is written (``card:`` in ``conf/build.yaml``; the defaults are equal, a test checks it).

    Attributes:
        template: the card template; ``None`` is ``dataset_card.md`` at the repository root.
        metadata: YAML header entries that override the template's (e.g. ``{"license": "cc-by-4.0"}``).
        duration_bins: edges of the duration histogram in seconds; the last bin is open-ended.
        plot_file: file name of the emotion-distribution plot, written next to README.md.
        problems_listed: how many offending lines per reason the card lists.
        quality_bins: edges of the DNSMOS histograms (MOS 1..5); the last bin is open-ended.
        confidence_bins: edges of the label-confidence histogram (0..1); the last bin is open-ended.
        speakers_listed: how many speakers (most utterances first) the per-speaker table lists.
    """

    template: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    duration_bins: Sequence[float] = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 30.0)
    plot_file: str = "emotion_distribution.png"
    problems_listed: int = 5
    quality_bins: Sequence[float] = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5)
    confidence_bins: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8)
    speakers_listed: int = 20

    def __post_init__(self) -> None:
        for name in ("duration_bins", "quality_bins", "confidence_bins"):
            bins = [float(b) for b in getattr(self, name)]
            if len(bins) < 2 or any(b2 <= b1 for b1, b2 in zip(bins, bins[1:])):
                raise BuildError(f"card.{name} must be at least 2 increasing edges, got {list(getattr(self, name))}")
            setattr(self, name, bins)
        self.metadata = dict(self.metadata or {})

    def template_path(self) -> Path:
        path = Path(self.template) if self.template else default_template()
        if not path.is_file():
            raise BuildError(
                f"dataset card template {path} not found: install MIKU-PAL from a checkout, or pass "
                "card.template=PATH to a copy of dataset_card.md"
            )
        return path


# ---------------------------------------------------------------------------------------------------- template
def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """Split a card into its YAML header (as a dict) and its Markdown body.

    Raises:
        BuildError: the text has no ``---`` YAML header.
    """
    match = re.match(r"\A---\n(.*?)\n---\n", text, re.S)
    if not match:
        raise BuildError("the dataset card template must start with a YAML header between '---' lines")
    return yaml.safe_load(match.group(1)) or {}, text[match.end() :]


def blocks(text: str) -> dict[str, str]:
    """The generated blocks of a card, ``{name: content}``."""
    return {m.group("name"): m.group("body") for m in _BLOCK_RE.finditer(text)}


def replace_block(text: str, name: str, content: str) -> str:
    """Replace the content of one generated block.

    Raises:
        BuildError: the block's markers are missing.
    """
    found = False

    def sub(m: re.Match[str]) -> str:
        nonlocal found
        if m.group("name") != name:
            return m.group(0)
        found = True
        return m.group("begin") + content.rstrip("\n") + "\n" + m.group("end")

    out = _BLOCK_RE.sub(sub, text)
    if not found:
        raise BuildError(
            f"the dataset card template lacks the block '{name}': keep the lines "
            f"'<!-- mikupal-build:begin {name} -->' and '<!-- mikupal-build:end {name} -->'"
        )
    return out


def fields_table(text: str) -> list[tuple[str, str]]:
    """``(field, type)`` rows of the card's *Data fields* table (names without backticks)."""
    match = re.search(r"^#+ Data fields\s*\n(.*?)(?=^#)", text, re.S | re.M)
    if not match:
        return []
    rows = []
    for line in match.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`"):
            rows.append((cells[0].strip("`"), cells[1]))
    return rows


# ---------------------------------------------------------------------------------------------------- rendering
def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.2f}"


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "–"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_categories(label_set: LabelSet) -> str:
    """The label set as a Markdown table (name, description, MELD class when the set maps to MELD)."""
    with_meld = any(label.meld7 for label in label_set.labels)
    header = ["#", "Category", "Description"] + (["MELD class"] if with_meld else [])
    rows = []
    for i, label in enumerate(label_set.labels):
        row = [i, label.name, _cell(label.description)]
        if with_meld:
            row.append(label.meld7 or "–")
        rows.append(row)
    return f"Label set `{label_set.name}` ({len(label_set)} categories):\n\n" + _table(header, rows)


def duration_histogram(durations: Iterable[float], edges: Sequence[float]) -> list[tuple[str, int]]:
    """Counts per duration bin: ``[lo, hi)`` bins over ``edges``, the last one ``>= edges[-1]`` (open-ended).

    Durations below ``edges[0]`` are counted in the first bin.
    """
    labels = [f"{lo:g}–{hi:g}" for lo, hi in zip(edges, edges[1:])] + [f"≥ {edges[-1]:g}"]
    counts = [0] * len(labels)
    for d in durations:
        i = 0
        while i < len(edges) - 1 and d >= edges[i + 1]:
            i += 1
        counts[i] += 1
    return list(zip(labels, counts))


def render_statistics(report: ScanReport, options: CardOptions, split_rows: Mapping[str, int]) -> str:
    """The statistics block.

    Args:
        report: the scan of the build.
        options: card options (histogram bins, plot file, how many offending lines to list).
        split_rows: rows written per split (checked against the scan by the exporter).
    """
    st = report.stats
    total, seconds = st.total, st.total_seconds
    splits = [s for s in SPLITS if split_rows.get(s)]
    videos = set().union(*(st.split_videos.get(s, set()) for s in splits)) if splits else set()
    languages = ", ".join(f"{lang or 'unknown'} ({n})" for lang, n in st.languages.most_common())
    parts = [
        "### Overview",
        "",
        _table(
            ["", ""],
            [
                ["Utterances", f"{total:,}"],
                ["Hours", _hours(seconds)],
                ["Source videos", f"{len(videos):,}"],
                ["Run directories", len(report.run_dirs)],
                ["Label set", f"`{report.label_set.name}` ({len(report.label_set)} categories)"],
                ["Languages", languages or "–"],
                ["Built", f"{_dt.date.today().isoformat()} with mikupal {mikupal_version}"],
            ],
        ),
        "",
        "### Splits",
        "",
        _table(
            ["Split", "Utterances", "Hours", "Videos", "Share of utterances"],
            [
                [s, f"{st.split_counts[s]:,}", _hours(st.split_seconds[s]), len(st.split_videos.get(s, ())),
                 _share(st.split_counts[s], total)]
                for s in splits
            ],
        ),
        "",
        "### Emotions",
        "",
        "Utterances per category (all categories of the label set, including empty ones) and per split.",
        "",
        _table(
            ["Emotion", "Utterances", "Hours", "Share"] + splits,
            [
                [
                    name,
                    f"{sum(st.emotion_split_counts[(name, s)] for s in splits):,}",
                    _hours(sum(st.emotion_split_seconds[(name, s)] for s in splits)),
                    _share(sum(st.emotion_split_counts[(name, s)] for s in splits), total),
                ]
                + [f"{st.emotion_split_counts[(name, s)]:,}" for s in splits]
                for name in report.label_set.names
            ],
        ),
        "",
        f"![Utterances per emotion and split]({options.plot_file})",
        "",
        "### Utterance durations",
        "",
    ]
    durations = list(st.durations)
    if durations:
        parts.append(
            f"Mean {_stats.fmean(durations):.2f} s, median {_stats.median(durations):.2f} s, "
            f"shortest {min(durations):.2f} s, longest {max(durations):.2f} s."
        )
        parts.append("")
    hist = duration_histogram(durations, options.duration_bins)
    peak = max((n for _, n in hist), default=0)
    parts.append(
        _table(
            ["Duration (s)", "Utterances", "Share", ""],
            [[label, f"{n:,}", _share(n, total), "█" * round(20 * n / peak) if peak else ""] for label, n in hist],
        )
    )
    parts += ["", *render_speakers(report, options), "", *render_quality(report, options)]
    parts += [
        "",
        "### Annotators and prompt versions",
        "",
        _table(
            ["Annotator", "Prompt version", "Utterances", "Share"],
            [[f"`{a}`", f"`{p}`" if p is not None else "–", f"{n:,}", _share(n, total)]
             for (a, p), n in st.annotators.most_common()],
        ),
        "",
        "### Lines left out",
        "",
    ]
    if not report.counts:
        parts.append(f"None: all {report.lines:,} manifest lines are in the dataset.")
    else:
        lenient_note = (
            " (*bad input* lines were skipped because the build ran with `lenient=true`)" if report.bad_input else ""
        )
        parts.append(
            f"{report.lines:,} manifest lines were read; {total:,} are in the dataset. The others were left out "
            f"for these reasons{lenient_note}:"
        )
        parts.append("")
        rows = []
        for name, reason in REASONS.items():
            if report.counts.get(name):
                kind = "bad input" if reason.kind == "bad_input" else "skipped"
                rows.append([f"`{name}`", kind, f"{report.counts[name]:,}", _cell(reason.description)])
        parts.append(_table(["Reason", "Kind", "Lines", "Meaning"], rows))
        listed = []
        for name, reason in REASONS.items():
            for problem in report.problems.get(name, [])[: options.problems_listed]:
                if reason.kind == "bad_input":
                    detail = _strip_run_dirs(problem.detail, report.run_dirs)
                    listed.append(f"- `{_relative_location(problem.file, report.run_dirs)}:{problem.line}` "
                                  f"({name}): {_cell(detail)}")
        if listed:
            parts += ["", f"First bad lines (at most {options.problems_listed} per reason):", ""] + listed
    return "\n".join(parts)


def _histogram_table(values: Sequence[float], edges: Sequence[float], header: str, total: int) -> str:
    hist = duration_histogram(values, edges)
    peak = max((n for _, n in hist), default=0)
    return _table([header, "Utterances", "Share", ""],
                  [[label, f"{n:,}", _share(n, total), "█" * round(20 * n / peak) if peak else ""]
                   for label, n in hist])


def render_speakers(report: ScanReport, options: CardOptions) -> list[str]:
    """The *Speakers* section: how many, utterances and hours per speaker, splits, mean DNSMOS OVRL."""
    st = report.stats
    named = {k: n for k, n in st.speaker_counts.items() if k is not None}
    parts = ["### Speakers", ""]
    if not named:
        parts.append("No utterance has a speaker: the pipeline's `speakers` stage did not run on these run "
                     "directories (`speaker_id` is null).")
        return parts
    counts = sorted(named.values())
    crossing = sum(1 for k in named if len(st.speaker_splits.get(k, ())) > 1)
    parts.append(
        f"{len(named):,} speakers (clusters of voices within each video: the same person in two videos has two "
        f"ids); {sum(counts):,} utterances have one, {st.speaker_counts.get(None, 0):,} do not. Utterances per "
        f"speaker: median {_stats.median(counts):g}, at most {counts[-1]:,}. Speakers in more than one split: "
        f"{crossing:,}."
    )
    parts.append("")
    rows = []
    for speaker, n in sorted(named.items(), key=lambda kv: (-kv[1], kv[0]))[: options.speakers_listed]:
        ovrl = st.speaker_ovrl.get(speaker)
        rows.append([f"`{speaker}`", f"{n:,}", _hours(st.speaker_seconds[speaker]),
                     ", ".join(s for s in SPLITS if s in st.speaker_splits.get(speaker, ())),
                     f"{_stats.fmean(ovrl):.2f}" if ovrl else "–"])
    parts.append(_table(["Speaker", "Utterances", "Hours", "Splits", "Mean DNSMOS OVRL"], rows))
    if len(named) > options.speakers_listed:
        parts += ["", f"({len(named) - options.speakers_listed:,} more speakers not listed.)"]
    return parts


def render_quality(report: ScanReport, options: CardOptions) -> list[str]:
    """The *Speech quality* and *Label confidence* sections: DNSMOS and confidence histograms."""
    st = report.stats
    total = st.total
    parts = ["### Speech quality (DNSMOS)", ""]
    ovrl = list(st.quality.get("dnsmos_ovrl", ()))
    if not ovrl:
        parts.append("No utterance has a quality score: the pipeline's `quality` stage did not run (the `dnsmos_*` "
                     "columns are null).")
    else:
        means = ", ".join(f"{name.split('_')[1].upper()} {_stats.fmean(st.quality[name]):.2f}"
                          for name in ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")
                          if st.quality.get(name))
        parts.append(f"DNSMOS (1..5, higher is better) of {len(ovrl):,} utterances ({st.no_quality:,} without a "
                     f"score); means: {means}. Overall quality (OVRL):")
        parts += ["", _histogram_table(ovrl, options.quality_bins, "DNSMOS OVRL", total)]
    parts += ["", "### Label confidence", ""]
    confidences = list(st.confidences)
    if not confidences:
        parts.append("No label carries a confidence (manifests written before `emotion.confidence` existed).")
    else:
        parts.append(f"`confidence` of {len(confidences):,} labels: mean {_stats.fmean(confidences):.2f}, median "
                     f"{_stats.median(confidences):.2f} (its meaning depends on the annotator, see *Data fields*).")
        parts += ["", _histogram_table(confidences, options.confidence_bins, "Confidence", total)]
    return parts


def _strip_run_dirs(text: str, run_dirs: Sequence[Path]) -> str:
    """Replace absolute run-directory paths in a message by the directory's name."""
    for run_dir in sorted(run_dirs, key=lambda p: len(str(p)), reverse=True):
        text = text.replace(str(run_dir), run_dir.name)
    return text


def _relative_location(file: str, run_dirs: Sequence[Path]) -> str:
    """A manifest path shown as ``<run dir name>/utterances.jsonl`` (no local directories in the card)."""
    path = Path(file)
    for run_dir in run_dirs:
        if path.parent == run_dir:
            return f"{run_dir.name}/{path.name}"
    return path.name


@dataclass
class StageSummary:
    """What one ``<run_dir>/<stage>/stage.json`` says.

    Attributes:
        stage: the stage name (folder name). backends: the ``_target_`` classes in its config.
        config_hash, version, schema_version: as recorded (``None`` if absent). config: the resolved config.
    """

    stage: str
    backends: list[str]
    config_hash: str | None
    version: str | None
    schema_version: Any
    config: Any


def _targets(node: Any) -> list[str]:
    out: list[str] = []
    if isinstance(node, Mapping):
        if isinstance(node.get("_target_"), str):
            out.append(node["_target_"])
        for key, value in node.items():
            if key != "_target_":
                out += _targets(value)
    elif isinstance(node, list):
        for value in node:
            out += _targets(value)
    return out


def read_stage_configs(run_dir: Path) -> list[StageSummary]:
    """Summaries of a run directory's ``<stage>/stage.json`` files, in pipeline order.

    The reader is tolerant: it takes ``config`` (else the whole object), ``config_hash`` or ``hash``,
    ``package_version``/``mikupal_version``/``version`` and ``schema_version`` when present; an unreadable file is
    logged and listed without details.
    """
    order = {name: i for i, name in enumerate(STAGE_ORDER)}
    out = []
    for path in sorted(run_dir.glob("*/stage.json"), key=lambda p: (order.get(p.parent.name, 99), p.parent.name)):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            log.warning("%s: unreadable (%s); listed without details", path, e)
            out.append(StageSummary(path.parent.name, [], None, None, None, None))
            continue
        config = data.get("config", {k: v for k, v in data.items() if k not in ("stage",)})
        out.append(
            StageSummary(
                stage=str(data.get("stage") or path.parent.name),
                backends=_targets(config),
                config_hash=next((str(data[k]) for k in ("config_hash", "hash") if data.get(k)), None),
                version=next((str(data[k]) for k in ("package_version", "mikupal_version", "version") if data.get(k)),
                             None),
                schema_version=data.get("schema_version"),
                config=config,
            )
        )
    return out


def render_pipeline(report: ScanReport, settings: Mapping[str, Any]) -> str:
    """The pipeline block: build settings, then each run directory's stages.

    Args:
        report: the scan (for the run directories).
        settings: the build settings to show (``{name: value}``).
    """
    parts = [
        "### Build settings",
        "",
        _table(
            ["Setting", "Value"], [[f"`{k}`", f"`{json.dumps(v, ensure_ascii=False)}`"] for k, v in settings.items()]
        ),
        "",
        "### Pipeline configuration",
        "",
    ]
    rows = []
    details: dict[tuple[str, str | None], Any] = {}
    for run_dir in report.run_dirs:
        summaries = read_stage_configs(run_dir)
        if not summaries:
            rows.append([f"`{run_dir.name}`", "–", "no stage.json found", "–", "–"])
        for s in summaries:
            rows.append([f"`{run_dir.name}`", s.stage, ", ".join(f"`{b}`" for b in s.backends) or "–",
                         f"`{s.config_hash}`" if s.config_hash else "–", s.version or "–"])
            if s.config is not None:
                details.setdefault((s.stage, s.config_hash), s.config)
    parts.append(_table(["Run directory", "Stage", "Backend", "Config hash", "mikupal version"], rows))
    for (stage, config_hash), config in details.items():
        parts += [
            "",
            f"<details><summary>{stage} config{f' ({config_hash})' if config_hash else ''}</summary>",
            "",
            "```json",
            json.dumps(config, indent=2, ensure_ascii=False, sort_keys=True, default=str),
            "```",
            "",
            "</details>",
        ]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------- plot
def plot_emotion_distribution(report: ScanReport, path: Path) -> Path:
    """A horizontal bar chart of utterances per emotion, stacked by split (PNG, matplotlib's Agg renderer)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    st = report.stats
    names = list(report.label_set.names)
    fig = Figure(figsize=(8, 1.2 + 0.28 * len(names)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    left = [0] * len(names)
    for split in SPLITS:
        counts = [st.emotion_split_counts[(name, split)] for name in names]
        if sum(counts):
            ax.barh(names, counts, left=left, label=split)
            left = [a + b for a, b in zip(left, counts)]
    ax.invert_yaxis()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0, max(1, max(left, default=0)) * 1.15)
    ax.set_xlabel("utterances")
    ax.set_title(f"Utterances per emotion ({report.label_set.name}, {st.total:,} in total, "
                 f"{st.total_seconds / 3600:.2f} h)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


# ---------------------------------------------------------------------------------------------------- card
def size_category(n: int) -> str:
    """The Hub's ``size_categories`` value for ``n`` rows."""
    for bound, name in _SIZE_CATEGORIES:
        if n < bound:
            return name
    return "n>1B"


def card_metadata(
    template_meta: Mapping[str, Any],
    overrides: Mapping[str, Any],
    *,
    info: Any,
    splits: Sequence[str],
    languages: Sequence[str],
    num_rows: int,
) -> str:
    """The card's YAML header, as ``datasets``' ``push_to_hub`` writes it.

    Args:
        template_meta: the template's header. overrides: ``card.metadata``.
        info: the ``datasets.DatasetInfo`` of the export (features, splits, sizes).
        splits: the splits written. languages: ISO codes found in the data (empty: keep the template's).
        num_rows: total rows (for ``size_categories``).
    """
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    meta = dict(template_meta)
    if languages:
        meta["language"] = list(languages)
    meta["size_categories"] = [size_category(num_rows)]
    meta.update(dict(overrides))
    for reserved in ("configs", "dataset_info"):
        meta.pop(reserved, None)
    card_data = DatasetCardData(**meta)
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    MetadataConfigs(
        {"default": {"data_files": [{"split": s, "path": f"data/{s}-*"} for s in splits]}}
    ).to_dataset_card_data(card_data)
    return card_data.to_yaml()


def render_card(
    template_text: str,
    *,
    report: ScanReport,
    options: CardOptions,
    info: Any,
    split_rows: Mapping[str, int],
    settings: Mapping[str, Any],
) -> str:
    """The full README.md text."""
    template_meta, body = split_front_matter(template_text)
    body = re.sub(r"\A\s*<!-- template-note.*?-->\n+", "\n", body, flags=re.S)
    splits = [s for s in SPLITS if split_rows.get(s)]
    languages = sorted(lang for lang in report.stats.languages if lang)
    yaml_text = card_metadata(
        template_meta,
        options.metadata,
        info=info,
        splits=splits,
        languages=languages,
        num_rows=sum(split_rows.values()),
    )
    body = replace_block(body, "categories", render_categories(report.label_set))
    body = replace_block(body, "statistics", render_statistics(report, options, split_rows))
    body = replace_block(body, "pipeline", render_pipeline(report, settings))
    return f"---\n{yaml_text.rstrip()}\n---\n{body}"


def refresh_template(path: Path | None = None, label_set: str = "emobench26") -> bool:
    """Re-render the template's ``categories`` block from the label set; returns whether the file changed."""
    path = path or default_template()
    text = path.read_text(encoding="utf-8")
    new = replace_block(text, "categories", render_categories(load_label_set(label_set)))
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":  # python -m builder.card
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    changed = refresh_template()
    log.info("%s %s", default_template(), "updated" if changed else "already up to date")
