"""Write the report site: a static folder that opens from ``file://`` with no server and no network.

Layout of OUT::

    index.html              summary (rendered here, readable without JavaScript), figures, the utterance browser
    assets/report.js|css    the page's own script and style (no CDN, no third-party code)
    data/index.js           MIKU.setIndex({...}): facets and the filter columns of every utterance
    data/chunk-NNNN.js      MIKU.addChunk(N, [...]): the utterances, ``chunk_size`` per file, loaded on demand
    plots/*.svg             the figures (matplotlib)
    media/...               audio and face clips (``media=link|copy``), at their run-directory relative paths
    report.json             what was written (also marks OUT as a report folder that a later report may replace)

Data travels as script files, not ``fetch()``: Chromium refuses ``fetch()`` of a local file from a ``file://`` page
but runs ``<script src>``. Every text from the run (transcripts, rationales, ids, error messages) reaches the page
either HTML-escaped here or through ``textContent`` in the script, never as markup.
"""

from __future__ import annotations

import html
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mikupal.report.collect import Item, ReportData, ReportError
from mikupal.report.plots import Figure, draw_all, label_colors

log = logging.getLogger(__name__)

MARKER = "report.json"
GENERATOR = "mikupal-report"
MEDIA_MODES = ("link", "copy", "relative", "none")
#: From this many utterances on, the figures are drawn in a child process while the media and data are written.
PARALLEL_PLOTS_MIN_ROWS = 1000


@dataclass
class ReportOptions:
    """How the site is written (``conf/report.yaml`` documents each key)."""

    media: str = "link"
    publish_source_paths: bool = False
    page_size: int = 25
    chunk_size: int = 500
    max_errors_listed: int = 200
    bins: int = 20
    videos_per_timeline: int = 25
    max_timeline_videos: int = 50

    def __post_init__(self) -> None:
        if self.media not in MEDIA_MODES:
            raise ReportError(f"media={self.media!r}: choose one of {', '.join(MEDIA_MODES)}")
        for name in ("page_size", "chunk_size", "bins", "videos_per_timeline"):
            if int(getattr(self, name)) < 1:
                raise ReportError(f"{name}={getattr(self, name)}: must be a positive integer")

    @classmethod
    def from_config(cls, cfg: Any) -> "ReportOptions":
        """From a composed ``report`` config (or any mapping with the same keys)."""
        plots = cfg.get("plots") or {}
        return cls(
            media=str(cfg.get("media", "link")),
            publish_source_paths=bool(cfg.get("publish_source_paths", False)),
            page_size=int(cfg.get("page_size", 25)),
            chunk_size=int(cfg.get("chunk_size", 500)),
            max_errors_listed=int(cfg.get("max_errors_listed", 200)),
            bins=int(plots.get("bins", 20)),
            videos_per_timeline=int(plots.get("videos_per_timeline", 25)),
            max_timeline_videos=int(plots.get("max_timeline_videos", 50)),
        )


@dataclass
class SiteResult:
    """What :func:`write_site` wrote: the folder, its page, the utterance count, chunk files, media placed."""

    out: Path
    index: Path
    utterances: int
    chunks: int
    media_files: int
    missing_media: int
    figures: list[Figure] = field(default_factory=list)
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------------ paths
#: An absolute path (POSIX, home-relative or Windows) that is not part of a relative path or a URL.
_ABS_PATH = re.compile(r"(?<![\w.\-~:/\\<])(?:~|[A-Za-z]:)?[/\\](?:[^\s\"'<>|*?/\\]+[/\\])*[^\s\"'<>|*?/\\,;)]+")


def scrub_paths(text: str) -> str:
    """Replace every absolute path in ``text`` by its file name (what is shown when source paths stay private)."""

    def name(match: re.Match[str]) -> str:
        parts = re.split(r"[/\\]", match.group(0).rstrip("/\\"))
        return parts[-1] if parts[-1] else "…"

    return _ABS_PATH.sub(name, text)


def source_name(source: Any, publish: bool) -> str | None:
    """A video's source as shown: as given with ``publish``, else its file name only."""
    if not isinstance(source, str) or not source:
        return None
    return source if publish else re.split(r"[/\\]", source.rstrip("/\\"))[-1]


_DRIVE = re.compile(r"^[A-Za-z]:")
_URL_SAFE = re.compile(r"^[A-Za-z0-9._/~-]*$")


class MediaPlacer:
    """Puts an utterance's media where the site can reach it by a relative path, as ``media`` says."""

    def __init__(self, out: Path, mode: str, prefixes: dict[Path, str]) -> None:
        self.out, self.mode = str(out), mode
        self.prefixes = {str(k): v for k, v in prefixes.items()}
        self.placed = 0
        self.missing = 0
        self._dirs: set[str] = set()

    def place(self, run_dir: Path, relative: Any, what: str) -> tuple[str | None, str | None]:
        """Returns ``(href, None)`` for a reachable file, ``(None, why)`` when it cannot be shown, ``(None, None)``
        when the record names no file. (Plain strings rather than pathlib: this runs twice per utterance.)"""
        if not isinstance(relative, str) or not relative:
            return None, None
        rel = relative.replace("\\", "/")
        if rel.startswith("/") or ".." in rel.split("/") or _DRIVE.match(rel):
            self.missing += 1
            return None, f"{what} path is not inside the run directory"
        root = str(run_dir)
        src = os.path.join(root, rel)
        if self.mode in ("link", "copy"):
            prefix = self.prefixes.get(root, "")
            href = f"media/{prefix}/{rel}" if prefix else f"media/{rel}"
            found = self._put(src, os.path.join(self.out, href))
        else:
            found = os.path.isfile(src)
            href = os.path.relpath(src, self.out).replace(os.sep, "/")
        if not found:
            self.missing += 1
            return None, f"{what} {rel} is missing"
        if self.mode == "none":
            return None, f"{what} not included in this report (media=none)"
        self.placed += 1
        return (href if _URL_SAFE.match(href) else quote(href)), None

    def _put(self, src: str, dst: str) -> bool:
        """Hard-link (``link``) or copy ``src`` to ``dst`` unless ``dst`` already is that file; False if src is
        missing. The common case (a new site, one filesystem) costs one ``link`` call per file."""
        folder = os.path.dirname(dst)
        if folder not in self._dirs:
            os.makedirs(folder, exist_ok=True)
            self._dirs.add(folder)
        if self.mode == "link":
            try:
                os.link(src, dst)
                return True
            except FileNotFoundError:
                return os.path.isfile(src) and self._copy(src, dst)  # src missing (or dst's folder vanished)
            except FileExistsError:
                if os.path.samefile(src, dst):
                    return True
                os.unlink(dst)
                return self._put(src, dst)
            except OSError:  # another filesystem, or links not allowed: copy instead
                pass
        if not os.path.isfile(src):
            return False
        if os.path.exists(dst):
            s, d = os.stat(src), os.stat(dst)
            if os.path.samefile(src, dst) or (s.st_size == d.st_size and d.st_mtime >= s.st_mtime):
                return True
            os.unlink(dst)
        return self._copy(src, dst)

    @staticmethod
    def _copy(src: str, dst: str) -> bool:
        shutil.copy2(src, dst)
        return True


# ------------------------------------------------------------------------------------------------ rows
def _num(value: Any, digits: int = 4) -> float | None:
    """A finite number rounded to ``digits``, else ``None`` (booleans, strings, NaN and infinities are absent)."""
    kind = type(value)
    if kind is float:
        return round(value, digits) if math.isfinite(value) else None
    if kind is int:
        return float(value)
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def record_values(n: int, item: Item, publish: bool) -> dict[str, Any]:
    """The browser's view of one utterance, without its media: plain values, absent parts ``None``."""
    r = item.record
    emo, face = _dict(r.get("emotion")), _dict(r.get("face"))
    speaker, quality = _dict(r.get("speaker")), _dict(r.get("quality"))
    votes = emo.get("votes")
    scores = emo.get("scores")
    q = {str(k): _num(v, 3) for k, v in quality.items() if _num(v) is not None}
    return {
        "n": n,
        "id": str(r.get("id")),
        "video": str(r.get("video_id")),
        "source": source_name(r.get("source"), publish),
        "split": item.split,
        "start": _num(r.get("start"), 3),
        "end": _num(r.get("end"), 3),
        "text": _str(r.get("text")),
        "language": _str(r.get("language")),
        "label": _str(emo.get("label")),
        "intensity": _num(emo.get("intensity"), 3),
        "confidence": _num(emo.get("confidence"), 3),
        "rationale": _str(emo.get("rationale")),
        "votes": [str(v) for v in votes] if isinstance(votes, list) else None,
        "scores": {str(k): _num(v, 3) for k, v in scores.items()} if isinstance(scores, dict) else None,
        "annotator": _str(emo.get("annotator")),
        "prompt_version": _str(emo.get("prompt_version")),
        "speaker": _str(speaker.get("id")),
        "speaker_similarity": _num(speaker.get("similarity"), 3),
        "face": bool(face),
        "asd_score": _num(face.get("asd_score"), 3),
        "quality": q or None,
    }


def add_media(row: dict[str, Any], item: Item, media: MediaPlacer) -> dict[str, Any]:
    """Add the row's media hrefs (or why there is none), placing the files as ``media`` says."""
    face = _dict(item.record.get("face"))
    row["audio"], row["audio_missing"] = media.place(item.run_dir, item.record.get("audio"), "audio")
    row["clip"], row["clip_missing"] = media.place(item.run_dir, face.get("clip"), "face clip")
    return row


def site_row(n: int, item: Item, media: MediaPlacer, publish: bool) -> dict[str, Any]:
    """The browser's view of one utterance: plain values, media as site-relative hrefs, absent parts ``None``."""
    return add_media(record_values(n, item, publish), item, media)


def _draw_figures(rows: list[dict[str, Any]], labels: list[str], colors: dict[str, str], out: Path,
                  options: ReportOptions) -> list[Figure]:
    return draw_all(rows, labels, colors, out, bins=options.bins, videos_per_timeline=options.videos_per_timeline,
                    max_timeline_videos=options.max_timeline_videos)


def _js_call(function: str, *args: Any) -> str:
    body = ",".join(json.dumps(a, ensure_ascii=False, separators=(",", ":")) for a in args)
    return f"{function}({body});\n"


# ------------------------------------------------------------------------------------------------ html
def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _table(headers: list[str], rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _rate(num: float | None, den: float | None, fmt: str) -> str:
    if num is None or not den:
        return "-"
    return format(num / den, fmt)


def _summary_html(data: ReportData, publish: bool) -> str:
    clean = (lambda s: s) if publish else scrub_paths
    parts = ['<dl class="overview">']
    parts += [f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in data.overview]
    parts.append("</dl>")
    parts.append(f"<h3>{_e(data.drops_title)}</h3>")
    if data.drops:
        parts.append(_table(["reason", "utterances / items"], [[k, f"{v:,}"] for k, v in data.drops.items()],
                            "drops"))
    else:
        parts.append("<p>None.</p>")
    if data.stages:
        parts.append("<h3>Stages: time and throughput</h3>")
        rows = []
        for s in data.stages:
            wall = s.get("wall_time_s")
            seconds_in = data.hours_in * 3600 if data.hours_in is not None else None
            rows.append([
                s.get("name"), f"{s.get('items_done', 0):,}", f"{s.get('outputs', 0):,}", f"{s.get('dropped', 0):,}",
                f"{s.get('errors', 0):,}", "-" if wall is None else f"{wall:.2f}",
                _rate(s.get("items_done"), wall, ".2f"), _rate(seconds_in, wall, ".1f"),
            ])
        parts.append(_table(["stage", "items done", "outputs", "dropped", "errors", "wall time (s)", "items / s",
                             "input audio s / s"], rows, "stages"))
        parts.append('<p class="note">Wall time is that of the last run of each stage (0 when it had nothing left '
                     'to do on a resumed run); "input audio s / s" is the input audio duration over the stage\'s wall '
                     "time.</p>")
    parts.append(f"<h3>Errors ({data.error_count:,})</h3>")
    if data.errors:
        rows = [[e.get("stage"), e.get("item_id"), source_name(e.get("source"), publish) or "-", e.get("error_type"),
                 clean(str(e.get("message", "")))] for e in data.errors]
        parts.append(_table(["stage", "item", "file", "error", "message"], rows, "errors"))
        if data.error_count > len(data.errors):
            parts.append(f'<p class="note">{data.error_count - len(data.errors):,} more in errors.jsonl.</p>')
    else:
        parts.append("<p>None.</p>")
    return "\n".join(parts)


def _figures_html(figures: list[Figure]) -> str:
    out = []
    for f in figures:
        img = (f'<img src="{_e(f.file)}" alt="{_e(f.title)}" loading="lazy">' if f.file
               else '<div class="placeholder">no data</div>')
        wide = " wide" if f.file and "timeline" in f.file else ""
        out.append(f'<figure class="plot{wide}">{img}<figcaption><b>{_e(f.title)}</b>: {_e(f.caption)}'
                   "</figcaption></figure>")
    return "\n".join(out)


def _page(data: ReportData, figures: list[Figure], publish: bool, generated: str) -> str:
    clean = (lambda s: s) if publish else scrub_paths
    status_cls = "status complete" if data.complete else "status incomplete"
    notes = "".join(f"<p>{_e(clean(n))}</p>" for n in data.notes)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(data.title)}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="assets/report.css">
</head>
<body>
<header class="top">
  <h1>{_e(data.title)}</h1>
  <nav><a href="#summary">Summary</a> <a href="#plots">Plots</a> <a href="#browser">Utterances</a></nav>
</header>
<main>
<div class="{status_cls}" id="status"><b>{"Complete" if data.complete else "INCOMPLETE"}</b> · {_e(clean(data.status))}
{notes}<p class="note">Generated {_e(generated)} by mikupal-report.</p></div>
<section id="summary"><h2>Summary</h2>
{_summary_html(data, publish)}
</section>
<section id="plots"><h2>Plots</h2><div class="plots">
{_figures_html(figures)}
</div></section>
<section id="browser"><h2>Utterances</h2>
<noscript><p class="status incomplete">The utterance browser needs JavaScript (it runs locally; nothing is
downloaded).</p></noscript>
<form id="filters" class="filters" autocomplete="off" onsubmit="return false">
  <label>Label <select id="f-label"><option value="">all</option></select></label>
  <label>Video <select id="f-video"><option value="">all</option></select></label>
  <label>Speaker <select id="f-speaker"><option value="">all</option></select></label>
  <label>Min confidence <input id="f-conf" type="number" min="0" max="1" step="0.05" placeholder="any"></label>
  <label>Search transcripts <input id="f-text" type="search" placeholder="words…"></label>
  <button type="button" id="f-reset">Reset</button>
</form>
<div class="pager"><button type="button" id="prev">‹ Prev</button> <span id="page"></span>
  <button type="button" id="next">Next ›</button> <span id="count" class="count"></span></div>
<div id="rows" class="rows"></div>
<div class="pager"><button type="button" id="prev2">‹ Prev</button> <span id="page2"></span>
  <button type="button" id="next2">Next ›</button></div>
</section>
</main>
<script src="assets/report.js"></script>
<script src="data/index.js"></script>
</body>
</html>
"""


# ------------------------------------------------------------------------------------------------ writer
def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ReportError(f"out={out} is a file: choose a folder for the report")
    if not out.exists() or not any(out.iterdir()):
        return
    marker = out / MARKER
    try:
        ok = marker.is_file() and json.loads(marker.read_text(encoding="utf-8")).get("generator") == GENERATOR
    except (OSError, json.JSONDecodeError):
        ok = False
    if not ok:
        raise ReportError(f"out={out} is not empty and was not written by mikupal-report: choose a new or empty folder")


def _asset(name: str) -> str:
    return resources.files("mikupal.report").joinpath("assets", name).read_text(encoding="utf-8")


def _write_data(rows: list[dict[str, Any]], items: list[Item], data: ReportData, labels: list[str],
                label_counts: dict[str, int], colors: dict[str, str], out: Path, options: ReportOptions) -> MediaPlacer:
    """Place the media of every row and write ``data/``: the chunks and the index."""
    run_dirs = list(dict.fromkeys(item.run_dir for item in items))
    prefixes = {rd: (f"run{k + 1}" if len(run_dirs) > 1 else "") for k, rd in enumerate(run_dirs)}
    media = MediaPlacer(out, options.media, prefixes)
    for row, item in zip(rows, items):
        add_media(row, item, media)

    chunk = options.chunk_size
    n_chunks = (len(rows) + chunk - 1) // chunk
    for k in range(n_chunks):
        text = _js_call("MIKU.addChunk", k + 1, rows[k * chunk:(k + 1) * chunk])
        (out / "data" / f"chunk-{k + 1:04d}.js").write_text(text, encoding="utf-8")

    videos = sorted({r["video"] for r in rows})
    speakers = sorted({r["speaker"] for r in rows if r["speaker"]})
    video_at = {v: i for i, v in enumerate(videos)}
    speaker_at = {s: i for i, s in enumerate(speakers)}
    label_at = {lab: i for i, lab in enumerate(labels)}
    index = {
        "title": data.title,
        "complete": data.complete,
        "total": len(rows),
        "page_size": options.page_size,
        "chunk_size": chunk,
        "chunks": n_chunks,
        "labels": labels,
        "label_counts": [label_counts[lab] for lab in labels],
        "colors": colors,
        "videos": videos,
        "speakers": speakers,
        # filter columns, one entry per utterance in row order (-1 / null: absent)
        "col_label": [label_at.get(r["label"], -1) for r in rows],
        "col_video": [video_at[r["video"]] for r in rows],
        "col_speaker": [speaker_at.get(r["speaker"], -1) if r["speaker"] else -1 for r in rows],
        "col_confidence": [r["confidence"] for r in rows],
    }
    (out / "data" / "index.js").write_text(_js_call("MIKU.setIndex", index), encoding="utf-8")
    return media


def write_site(data: ReportData, out: str | os.PathLike[str], options: ReportOptions | None = None) -> SiteResult:
    """Write the report site of ``data`` into ``out`` (new, empty, or a previous report, which is replaced).

    Raises:
        ReportError: ``out`` is unusable or an option is invalid.
    """
    t0 = time.perf_counter()
    options = options or ReportOptions()
    out = Path(out).expanduser().resolve()
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("data", "plots", "assets"):
        shutil.rmtree(out / sub, ignore_errors=True)
    if options.media in ("relative", "none"):
        shutil.rmtree(out / "media", ignore_errors=True)
    (out / "data").mkdir()
    (out / "assets").mkdir()

    rows = [record_values(n, item, options.publish_source_paths) for n, item in enumerate(data.items)]
    label_counts: dict[str, int] = {}
    for r in rows:
        if r["label"] is not None:
            label_counts[r["label"]] = label_counts.get(r["label"], 0) + 1
    labels = sorted(label_counts, key=lambda lab: (-label_counts[lab], lab))
    colors = label_colors(labels)

    # Large reports: the figures are drawn in a child process while this one places the media and writes data/.
    pool = None
    # (fork only from a single-threaded process: a lock another thread holds would stay held in the child)
    parallel = ((os.cpu_count() or 1) > 1 and "fork" in multiprocessing.get_all_start_methods()
                and threading.active_count() == 1)
    if parallel and len(rows) >= PARALLEL_PLOTS_MIN_ROWS:
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
    try:
        # (a copy: the pool pickles its arguments in a thread while add_media changes the rows)
        future = (pool.submit(_draw_figures, [dict(r) for r in rows], labels, colors, out, options)
                  if pool is not None else None)
        media = _write_data(rows, data.items, data, labels, label_counts, colors, out, options)
        t_data = time.perf_counter()
        figures = future.result() if future is not None else _draw_figures(rows, labels, colors, out, options)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    t_plots = time.perf_counter()

    for name in ("report.js", "report.css"):
        (out / "assets" / name).write_text(_asset(name), encoding="utf-8")
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = out / "index.html"
    page.write_text(_page(data, figures, options.publish_source_paths, generated), encoding="utf-8")
    meta = {
        "generator": GENERATOR,
        "generated": generated,
        "title": data.title,
        "complete": data.complete,
        "utterances": len(rows),
        "chunks": (len(rows) + options.chunk_size - 1) // options.chunk_size,
        "media": options.media,
        "media_files": media.placed,
        "missing_media": media.missing,
        "errors": data.error_count,
        "figures": [f.file for f in figures if f.file],
    }
    (out / MARKER).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    result = SiteResult(out, page, len(rows), meta["chunks"], media.placed, media.missing, figures,
                        time.perf_counter() - t0)
    log.info("report of %d utterance(s) written to %s in %.2f s (media and data files %.2f s, figures %s %.2f s "
             "more); %d media file(s), %d missing", len(rows), out, result.seconds, t_data - t0,
             "in a child process:" if pool is not None else "after them:", t_plots - t_data, media.placed,
             media.missing)
    return result
