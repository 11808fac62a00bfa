"""The report's figures, drawn with matplotlib (Agg) and written as SVG files.

Figures: the emotion distribution, histograms of intensity, confidence, active-speaker score and speech quality
(DNSMOS), and timelines (one row per video, its utterances as bars coloured by emotion). A figure whose values
are all absent is not drawn; the page says so instead.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

#: DNSMOS scores drawn in the speech-quality histogram, in this order, when present.
QUALITY_KEYS = ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808")


@dataclass
class Figure:
    """One figure of the page: its heading, file (relative to the site) or ``None``, and a caption."""

    title: str
    file: str | None
    caption: str


#: matplotlib's tab20 then tab20b colours, so the page and the figures agree without importing matplotlib twice.
PALETTE = (
    "#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896", "#9467bd", "#c5b0d5",
    "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d", "#17becf", "#9edae5",
    "#393b79", "#5254a3", "#6b6ecf", "#9c9ede", "#637939", "#8ca252", "#b5cf6b", "#cedb9c", "#8c6d31", "#bd9e39",
    "#e7ba52", "#e7cb94", "#843c39", "#ad494a", "#d6616b", "#e7969c", "#7b4173", "#a55194", "#ce6dbd", "#de9ed6",
)


def label_colors(labels: Sequence[str]) -> dict[str, str]:
    """A stable colour (``#rrggbb``) per label, shared by the figures and the browser."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    import matplotlib

    path.parent.mkdir(parents=True, exist_ok=True)
    # text as SVG text (the browser draws it with its own fonts): smaller files, written faster than glyph paths;
    # a fixed salt for the ids inside the SVG, so the same data gives the same file
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "mikupal-report"}):
        fig.savefig(path, format="svg", metadata={"Date": None})
    _pyplot().close(fig)


def _histogram(values: dict[str, list[float]], title: str, xlabel: str, bins: int, value_range: tuple[float, float] | None,
               path: Path, legend: bool = False) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    fig.subplots_adjust(left=0.14, right=0.97, top=0.9, bottom=0.16)  # fixed margins: a layout engine costs more
    for name, vals in values.items():
        ax.hist(np.asarray(vals, dtype=float), bins=bins, range=value_range, histtype="stepfilled", alpha=0.55 if len(values) > 1 else 0.9,
                label=f"{name} (n={len(vals):,})")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("utterances")
    if legend:
        ax.legend(fontsize=7, loc="upper left", framealpha=0.8)
    _save(fig, path)


def draw_all(rows: list[dict[str, Any]], labels: list[str], colors: dict[str, str], out: Path, *, bins: int = 20,
             videos_per_timeline: int = 25, max_timeline_videos: int = 50) -> list[Figure]:
    """Draw every figure of the page into ``out/plots/`` and return them in page order.

    Args:
        rows: the site rows (see :func:`mikupal.report.site.site_row`).
        labels: labels in the order shown (most frequent first). colors: their colours.
        out: the site folder.
    """
    plots = out / "plots"
    figures: list[Figure] = []
    plt = _pyplot()

    counts = Counter(r["label"] for r in rows if r["label"] is not None)
    if counts:
        height = 1.0 + 0.22 * len(labels)
        fig, ax = plt.subplots(figsize=(5.2, height))
        fig.subplots_adjust(left=0.3, right=0.95, top=1 - 0.3 / height, bottom=0.5 / height)
        ax.barh(labels[::-1], [counts[lab] for lab in labels[::-1]], color=[colors[lab] for lab in labels[::-1]])
        for y, lab in enumerate(labels[::-1]):
            ax.text(counts[lab], y, f" {counts[lab]:,}", va="center", fontsize=8)
        ax.set_xlabel("utterances")
        ax.set_title("Emotion distribution")
        ax.margins(x=0.12)
        _save(fig, plots / "emotion_distribution.svg")
        unlabelled = len(rows) - sum(counts.values())
        figures.append(Figure("Emotion distribution", "plots/emotion_distribution.svg",
                              f"{sum(counts.values()):,} labelled utterances" +
                              (f"; {unlabelled:,} without an emotion" if unlabelled else "")))
    else:
        figures.append(Figure("Emotion distribution", None, "No utterance has an emotion label yet."))

    histograms = [
        ("intensity", "Intensity", "emotion intensity (0..1)", (0.0, 1.0)),
        ("confidence", "Confidence", "annotator confidence (0..1)", (0.0, 1.0)),
        ("asd_score", "Active-speaker score", "ASD score of the chosen face track (0..1)", (0.0, 1.0)),
    ]
    for key, title, xlabel, value_range in histograms:
        vals = [r[key] for r in rows if r[key] is not None]
        if vals:
            name = f"hist_{key}.svg"
            _histogram({title.lower(): vals}, title, xlabel, bins, value_range, plots / name)
            figures.append(Figure(title, f"plots/{name}", f"{len(vals):,} of {len(rows):,} utterances have a value"))
        else:
            figures.append(Figure(title, None, f"No utterance has a value for {key}."))

    quality = {k: [r["quality"][k] for r in rows if r["quality"] and isinstance(r["quality"].get(k), (int, float))]
               for k in QUALITY_KEYS}
    quality = {k: v for k, v in quality.items() if v}
    if quality:
        _histogram(quality, "Speech quality (DNSMOS)", "MOS (1..5)", bins, (1.0, 5.0), plots / "hist_quality.svg",
                   legend=True)
        n = sum(1 for r in rows if r["quality"])
        figures.append(Figure("Speech quality", "plots/hist_quality.svg", f"{n:,} of {len(rows):,} utterances scored"))
    else:
        figures.append(Figure("Speech quality", None, "No utterance has speech-quality scores."))

    figures.extend(_timelines(rows, colors, plots, videos_per_timeline, max_timeline_videos))
    return figures


def _timelines(rows: list[dict[str, Any]], colors: dict[str, str], plots: Path, per_figure: int,
               max_videos: int) -> list[Figure]:
    """Timelines: one row per video (most utterances first), bars from start to end coloured by emotion."""
    plt = _pyplot()
    from matplotlib.patches import Patch

    by_video: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["start"] is not None and r["end"] is not None:
            by_video[r["video"]].append(r)
    if not by_video:
        return [Figure("Timelines", None, "No utterance has times yet.")]
    order = sorted(by_video, key=lambda v: (-len(by_video[v]), v))
    shown = order[:max_videos]
    figures = []
    none_color = "#9e9e9e"
    for k in range(0, len(shown), per_figure):
        videos = shown[k:k + per_figure]
        height = 0.9 + 0.22 * len(videos)
        fig, ax = plt.subplots(figsize=(9.0, height))
        # fixed margins instead of a layout engine: measuring every tick label is what makes big figures slow
        fig.subplots_adjust(left=0.24, right=0.84, top=1 - 0.35 / height, bottom=0.5 / height)
        used: dict[str, str] = {}
        n_bars = 0
        for y, video in enumerate(videos):
            utts = by_video[video]
            spans = [(r["start"], max(r["end"] - r["start"], 0.05)) for r in utts]
            cols = [colors.get(r["label"], none_color) if r["label"] else none_color for r in utts]
            n_bars += len(spans)
            bars = ax.broken_barh(spans, (y - 0.38, 0.76), facecolors=cols, linewidth=0)
            bars.set_rasterized(n_bars > 3000)  # keeps very large figures small; axes and text stay vectors
            for r in utts:
                used[r["label"] or "(no emotion)"] = colors.get(r["label"], none_color) if r["label"] else none_color
        ax.set_yticks(range(len(videos)), [v if len(v) <= 40 else v[:37] + "..." for v in videos], fontsize=7)
        ax.set_ylim(len(videos) - 0.5, -0.5)
        ax.set_xlabel("time in the source video (s)")
        ax.set_title(f"Utterances per video, coloured by emotion (videos {k + 1}-{k + len(videos)})")
        handles = [Patch(color=c, label=lab) for lab, c in sorted(used.items())]
        ax.legend(handles=handles, fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        name = f"timeline-{k // per_figure + 1:03d}.svg"
        _save(fig, plots / name)
        figures.append(Figure(f"Timeline {k // per_figure + 1}", f"plots/{name}",
                              f"{len(videos)} video(s), {n_bars:,} utterances"))
    if len(order) > len(shown):
        figures[-1].caption += f"; {len(order) - len(shown):,} more video(s) with fewer utterances not drawn"
    return figures
