"""The paper's comparison tables from saved reports (``mikupal-eval task=tables``).

Inputs are report JSONs written by the other tasks (``meld``, ``baseline``, ``predict``, ``agreement``,
``rationality``) and run ``summary.json`` files. Four tables come out, each as Markdown and LaTeX (and rows in
the JSON report), with bar charts for the first two:

1. MELD accuracy and weighted F1: our measured reports and baselines, beside published reference values and the
   paper's claim (``conf/eval.yaml`` ``references.meld``; each marked with its split and source).
2. Agreement: our kappa/alpha reports beside human inter-annotator references (MELD 0.43, EmotionLines 0.34)
   and the paper's claim (0.93–0.95), with the kind of agreement (humans vs. rollouts of one model).
3. Rationality: our shares beside the paper's 83%.
4. Cost and time per hour of labelled speech from run summaries (``hours_out``, ``cost_usd``, summed stage wall
   times; the key paths are configurable in ``tables.summary_keys``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from eval.errors import EvalInputError
from eval.io import read_json
from eval.report import save_figure

log = logging.getLogger(__name__)


def _num(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _lookup(obj: Any, dotted: str) -> Any:
    """Value at a dotted key path; ``*`` matches every key of a dict and gives a list of values."""
    parts = dotted.split(".")
    cur: Any = obj
    for i, part in enumerate(parts):
        if part == "*":
            if not isinstance(cur, dict):
                return None
            rest = ".".join(parts[i + 1 :])
            return [_lookup(v, rest) if rest else v for v in cur.values()]
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def summary_value(summary: dict, candidates: Sequence[str]) -> float | None:
    """The first candidate key path with a number in a run summary; a list or dict of numbers is summed.

    A list/dict with a missing number (e.g. the per-stage wall times of a merged multi-shard summary) does not
    count as present, so the next candidate is tried.
    """
    for path in candidates:
        value = _lookup(summary, path)
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            numbers = [_num(v) for v in value]
            if numbers and all(n is not None for n in numbers):
                return float(sum(numbers))
            continue
        if _num(value) is not None:
            return _num(value)
    return None


def _report_name(report: dict, path: Path) -> str:
    return str(report.get("name") or path.stem)


def collect(report_paths: Sequence[str | Path]) -> dict[str, list[tuple[str, dict]]]:
    """Sort report files by task, expanding baseline and predict reports into their MELD reports."""
    found: dict[str, list[tuple[str, dict]]] = {"meld": [], "agreement": [], "rationality": []}
    for path in map(Path, report_paths):
        report = read_json(path)
        task = report.get("task") if isinstance(report, dict) else None
        name = _report_name(report, path) if isinstance(report, dict) else path.stem
        if task == "meld":
            found["meld"].append((name, report))
        elif task == "baseline":
            for sub, r in report["baselines"].items():
                found["meld"].append((f"baseline: {sub}", r))
        elif task == "predict":
            annotator = str(report.get("annotator") or "annotator").rsplit(".", 1)[-1]
            for sub, r in report["ablations"].items():
                if r.get("accuracy") is not None:
                    found["meld"].append((f"{annotator} ({sub})", r))
        elif task in ("agreement", "rationality"):
            found[task].append((name, report))
        else:
            raise EvalInputError(f"{path}: not a report of a known task (task={task!r}); expected meld, baseline, "
                                 "predict, agreement or rationality")
    return found


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _pct_ci(interval: Sequence[float] | None) -> str:
    if not interval or interval[0] is None:
        return ""
    return f"{100 * interval[0]:.1f}–{100 * interval[1]:.1f}"


def build_tables(report_paths: Sequence[str | Path], summary_paths: Sequence[str | Path], cfg: Any) -> dict:
    """Assemble the four comparison tables.

    Args:
        report_paths: report JSONs of other tasks.
        summary_paths: run ``summary.json`` files.
        cfg: the eval config (``references``, ``tables.summary_keys``).

    Returns:
        ``{"task": "tables", "tables": {name: {"headers", "rows", "caption"}}, "warnings": [...]}``; values in
        rows are display strings.
    """
    found = collect(report_paths)
    warnings: list[str] = []
    refs = cfg.references
    tables: dict[str, dict] = {}

    meld_rows = []
    for name, r in found["meld"]:
        iv = r.get("intervals", {})
        meld_rows.append([name, "measured", str(r.get("split") or r.get("gold_split") or "—"), str(r["n"]),
                          _pct(r["accuracy"]), _pct_ci(iv.get("accuracy")), _pct(r["weighted_f1"]),
                          _pct_ci(iv.get("weighted_f1")), _pct(r.get("coverage"))])
    for ref in refs.meld:
        meld_rows.append([str(ref.name), str(ref.kind), str(ref.split), str(ref.get("n") or "—"),
                          _pct(_num(ref.get("accuracy"))), "", _pct(_num(ref.get("weighted_f1"))), "", "—"])
    tables["meld"] = {
        "caption": "MELD 7-class emotion recognition: accuracy and weighted F1 (%), 95% bootstrap CI for measured "
                   "rows. Reference rows are published or claimed values (see 'source' in conf/eval.yaml).",
        "headers": ["system", "source", "split", "n", "accuracy", "acc. CI", "weighted F1", "W-F1 CI", "coverage"],
        "rows": meld_rows,
        "plot": [(row[0], _num(r.get("accuracy")), (r.get("intervals") or {}).get("accuracy"), "measured")
                 for row, (_, r) in zip(meld_rows, found["meld"])]
                + [(str(ref.name), _num(ref.get("accuracy")), None, str(ref.kind)) for ref in refs.meld
                   if ref.get("accuracy") is not None],
    }

    kappa_rows = []
    for name, r in found["agreement"]:
        iv = r.get("intervals", {})
        ci = iv.get("fleiss_kappa") or [None, None]
        kappa_rows.append([name, f"measured ({r.get('kind', 'ratings')})", str(r["n_items"]), str(r["n_raters"]),
                           "n/a" if r["fleiss_kappa"] is None else f"{r['fleiss_kappa']:.3f}",
                           "" if ci[0] is None else f"{ci[0]:.3f}–{ci[1]:.3f}",
                           "n/a" if r["krippendorff_alpha"] is None else f"{r['krippendorff_alpha']:.3f}"])
    for ref in refs.agreement:
        kappa_rows.append([str(ref.name), str(ref.kind), str(ref.get("n_items") or "—"),
                           str(ref.get("raters") or "—"),
                           str(ref.kappa), "", "—"])
    tables["agreement"] = {
        "caption": "Agreement: Fleiss' kappa (95% bootstrap CI) and Krippendorff's alpha. Agreement among rollouts of "
                   "one model is self-consistency and is not comparable with agreement between human annotators.",
        "headers": ["ratings", "source", "items", "raters", "Fleiss' kappa", "CI", "Krippendorff's alpha"],
        "rows": kappa_rows,
        "plot": [(name, _num(r["fleiss_kappa"]), (r.get("intervals") or {}).get("fleiss_kappa"), "measured")
                 for name, r in found["agreement"]]
                + [(str(ref.name), _num(ref.get("plot_value", ref.kappa)), ref.get("plot_range"), str(ref.kind))
                   for ref in refs.agreement],
    }

    rat_rows = []
    for name, r in found["rationality"]:
        rat_rows.append([name, "measured", str(r["n_items"]), str(r["n_raters"]), _pct(r["rational_share"]),
                         _pct_ci(r.get("interval")), _pct(r.get("majority_share"))])
    for ref in refs.rationality:
        rat_rows.append([str(ref.name), str(ref.kind), str(ref.get("n_items") or "—"),
                         str(ref.get("raters") or "—"),
                         _pct(_num(ref.share)), "", "—"])
    tables["rationality"] = {
        "caption": "Share of labels human raters judged rational (%), 95% interval for measured rows.",
        "headers": ["labels", "source", "items", "raters", "rated rational", "CI", "items (majority)"],
        "rows": rat_rows,
    }

    keys = cfg.tables.summary_keys
    cost_rows = []
    for path in map(Path, summary_paths):
        summary = read_json(path, what="run summary")
        hours_out = summary_value(summary, keys.hours_out)
        hours_in = summary_value(summary, keys.hours_in)
        cost = summary_value(summary, keys.cost_usd)
        wall = summary_value(summary, keys.wall_time_s)
        if not hours_out:
            warnings.append(f"{path}: no labelled hours (keys {list(keys.hours_out)}); per-hour figures n/a")
        if wall is None:
            warnings.append(f"{path}: no wall time (keys {list(keys.wall_time_s)}; merged multi-shard summaries "
                            "have none: pass the per-shard summaries)")
        per_hour = (lambda v: None if v is None or not hours_out else v / hours_out)
        name = path.parent.name or str(path)
        cost_rows.append([
            name,
            "n/a" if hours_in is None else f"{hours_in:.3f}",
            "n/a" if hours_out is None else f"{hours_out:.3f}",
            "n/a" if cost is None else f"{cost:.2f}",
            "n/a" if per_hour(cost) is None else f"{per_hour(cost):.2f}",
            "n/a" if wall is None else f"{wall / 3600:.3f}",
            "n/a" if per_hour(wall) is None else f"{per_hour(wall) / 3600:.3f}",
        ])
    for ref in cfg.references.cost:
        cost_rows.append([str(ref.name), "—", "—", "—", str(ref.get("cost_per_hour") or "—"), "—",
                          str(ref.get("time_per_hour") or "—")])
    tables["cost"] = {
        "caption": "Cost (USD) and wall time (hours) per hour of labelled speech, from run summaries.",
        "headers": ["run", "hours in", "hours out", "cost USD", "USD / labelled h", "wall h", "wall h / labelled h"],
        "rows": cost_rows,
    }
    for w in warnings:
        log.warning(w)
    return {"task": "tables", "tables": tables, "warnings": warnings, "inputs": {
        "reports": [str(p) for p in report_paths], "summaries": [str(p) for p in summary_paths]}}


def to_markdown(tables: dict) -> str:
    """All tables as Markdown (a heading and caption per table)."""
    parts = []
    for name, table in tables.items():
        lines = [f"### {name}", "", table["caption"], "",
                 "| " + " | ".join(table["headers"]) + " |",
                 "|" + "|".join("---" for _ in table["headers"]) + "|"]
        lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in table["rows"]]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters."""
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "–": "--", "—": "---"}
    return "".join(repl.get(ch, ch) for ch in str(text))


def to_latex(tables: dict) -> str:
    """All tables as LaTeX ``table`` environments (booktabs)."""
    parts = ["% generated by mikupal-eval task=tables; needs \\usepackage{booktabs}"]
    for name, table in tables.items():
        cols = "l" * 2 + "r" * (len(table["headers"]) - 2)
        body = [" & ".join(latex_escape(c) for c in row) + r" \\" for row in table["rows"]]
        parts.append("\n".join([
            r"\begin{table}[t]", r"\centering", r"\small",
            rf"\caption{{{latex_escape(table['caption'])}}}", rf"\label{{tab:mikupal-{name}}}",
            rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
            " & ".join(latex_escape(h) for h in table["headers"]) + r" \\", r"\midrule",
            *body, r"\bottomrule", r"\end{tabular}", r"\end{table}",
        ]))
    return "\n\n".join(parts) + "\n"


def bar_plot(entries: Sequence[tuple[str, float | None, Any, str]], path: str | Path, *, ylabel: str, title: str,
             percent: bool) -> Path | None:
    """Horizontal bar chart of ``(name, value, [lo, hi] or None, kind)``; measured bars and reference bars differ.

    Returns ``None`` (no file) when no entry has a value.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [e for e in entries if e[1] is not None]
    if not entries:
        return None
    scale = 100.0 if percent else 1.0
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(entries) + 1.2))
    right = 0.0
    for i, (name, value, interval, kind) in enumerate(entries):
        measured = kind == "measured"
        ax.barh(i, value * scale, color="#3b75af" if measured else "#bbbbbb",
                hatch=None if measured else "//", edgecolor="black", linewidth=0.5)
        end = value * scale
        if interval and interval[0] is not None:
            lo, hi = interval[0] * scale, interval[1] * scale
            ax.errorbar(value * scale, i, xerr=[[max(0.0, value * scale - lo)], [max(0.0, hi - value * scale)]],
                        fmt="none", ecolor="black", capsize=3)
            end = max(end, hi)
        ax.text(end, i, f"  {value * scale:.1f}" if percent else f"  {value:.2f}", va="center", fontsize=8)
        right = max(right, end)
    ax.set_xlim(0, right * 1.15 if right > 0 else 1)
    ax.set_yticks(range(len(entries)),
                  [e[0] if e[3] == "measured" or e[3] in e[0] else f"{e[0]} [{e[3]}]" for e in entries], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(ylabel)
    ax.set_title(title)
    return save_figure(fig, path)
