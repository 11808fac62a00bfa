"""Readable text tables for the terminal, and the plots that go beside the JSON reports (matplotlib, Agg)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)


def fmt(value: Any, digits: int = 3) -> str:
    """Format a number for a table: floats with ``digits`` decimals, ``None``/NaN as ``n/a``."""
    if value is None:
        return "n/a"
    if isinstance(value, (float, np.floating)):
        return "n/a" if not np.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def fmt_interval(interval: Sequence[float] | None, digits: int = 3) -> str:
    """``[lo, hi]`` as ``lo–hi`` (``n/a`` when missing)."""
    if not interval or interval[0] is None or not np.isfinite(interval[0]):
        return "n/a"
    return f"{interval[0]:.{digits}f}-{interval[1]:.{digits}f}"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> str:
    """A plain-text table with aligned columns (numbers right-aligned)."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))

    def is_num(text: str) -> bool:
        try:
            float(text.replace("%", ""))
            return True
        except ValueError:
            return False

    lines = []
    if title:
        lines.append(title)
    lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(c.rjust(w) if is_num(c) else c.ljust(w) for c, w in zip(row, widths)))
    return "\n".join(lines)


def print_block(text: str) -> None:
    """Print a finished table to stdout (the one place the suite prints rather than logs)."""
    print(text + "\n", flush=True)


def format_meld(report: dict) -> str:
    """The terminal view of a MELD scoring report: headline, per-class scores, confusion matrix, warnings."""
    iv = report.get("intervals", {})
    level = iv.get("level", 0.95)
    head = text_table(
        ["metric", "value", f"{level:.0%} CI"],
        [
            ["n (scored)", report["n"], ""],
            ["coverage", report["coverage"], ""],
            ["accuracy", report["accuracy"], fmt_interval(iv.get("accuracy"))],
            ["weighted F1", report["weighted_f1"], fmt_interval(iv.get("weighted_f1"))],
            ["macro F1", report["macro_f1"], ""],
            ["UAR", report["uar"], ""],
            ["accuracy (all gold)", report.get("accuracy_all_gold"), ""],
            ["invalid predictions", report.get("n_invalid", 0), ""],
        ],
        title=f"MELD — {report.get('name', '')}".rstrip(" —"),
    )
    per_class = text_table(
        ["label", "precision", "recall", "f1", "support"],
        [[lab, s["precision"], s["recall"], s["f1"], s["support"]] for lab, s in report["per_class"].items()],
        title="per class",
    )
    conf = report["confusion"]
    confusion = text_table(
        ["gold \\ pred", *conf["predicted_labels"]],
        [[lab, *row] for lab, row in zip(conf["labels"], conf["matrix"])],
        title="confusion (rows gold, columns predicted)",
    )
    parts = [head, per_class, confusion]
    if report.get("risk_coverage"):
        from eval.meld import format_risk_coverage

        parts.append(format_risk_coverage(report["risk_coverage"]))
    if report.get("warnings"):
        parts.append("warnings:\n" + "\n".join(f"  - {w}" for w in report["warnings"]))
    return "\n\n".join(parts)


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write a matplotlib figure to ``path`` (PNG, 120 dpi), creating folders, and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    log.info("wrote %s", path)
    return path


def plot_confusion(confusion: dict, path: str | Path, title: str = "") -> Path:
    """Save the confusion matrix as a PNG: colour = share of the gold row, text = count.

    Args:
        confusion: ``{"labels", "predicted_labels", "matrix"}`` as in a MELD report.
        path: the PNG to write.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(confusion["matrix"], dtype=float)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * matrix.shape[1], 1.0 + 0.7 * matrix.shape[0]))
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(matrix.shape[1]), confusion["predicted_labels"], rotation=45, ha="right")
    ax.set_yticks(range(matrix.shape[0]), confusion["labels"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of gold row")
    if title:
        ax.set_title(title)
    return save_figure(fig, path)
