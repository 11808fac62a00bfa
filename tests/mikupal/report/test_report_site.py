"""The report site as files: rows equal the manifest, absent fields stay absent, escaping, privacy, media modes,
runs still in progress (real pipeline output), the out-folder rules and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from mikupal.report import ReportError, ReportOptions, build_report, load_run
from mikupal.report.site import scrub_paths
from mikupal.rundir import stage_records
from mikupal.testing.report import (HOSTILE_RATIONALE, HOSTILE_TEXT, SECRET_DIR, make_in_progress, read_call, site_rows,
                                    write_report_run)
from mikupal.testing.rundirs import forget_done

REPO = Path(__file__).resolve().parents[3]
TEXT_SUFFIXES = {".html", ".js", ".css", ".json", ".svg"}


def manifest(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "utterances.jsonl").read_text().splitlines() if line.strip()]


def test_rows_and_facets_equal_the_manifest(rich_run, tmp_path):
    out = tmp_path / "site"
    result = build_report(rich_run.path, out, ReportOptions(chunk_size=4, page_size=5))
    records = manifest(rich_run.path)
    index, rows = site_rows(out)
    assert result.utterances == index["total"] == len(rows) == len(records) == 15
    assert index["chunks"] == result.chunks == 4 and index["page_size"] == 5
    assert [r["id"] for r in rows] == [r["id"] for r in records]
    counts = Counter(r["emotion"]["label"] for r in records)
    assert dict(zip(index["labels"], index["label_counts"])) == dict(counts)
    assert index["labels"] == sorted(counts, key=lambda lab: (-counts[lab], lab))
    for row, rec, lab, conf in zip(rows, records, index["col_label"], index["col_confidence"]):
        assert index["labels"][lab] == rec["emotion"]["label"] == row["label"]
        assert conf == row["confidence"] == rec["emotion"]["confidence"]
        assert row["intensity"] == rec["emotion"]["intensity"] and row["votes"] == rec["emotion"]["votes"]
        assert row["speaker"] == (rec["speaker"]["id"] if rec["speaker"] else None)
        assert row["quality"] == ({k: round(v, 3) for k, v in rec["quality"].items()} if rec["quality"] else None)
        assert row["text"] == rec["text"] and row["rationale"] == rec["emotion"]["rationale"]
    assert index["speakers"] == sorted({r["speaker"]["id"] for r in records if r["speaker"]})
    assert all(index["col_speaker"][i] == -1 for i, r in enumerate(records) if r["speaker"] is None)
    assert index["videos"] == sorted({r["video_id"] for r in records})
    page = (out / "index.html").read_text(encoding="utf-8")
    assert 'class="status complete"' in page and "vad.too_short" in page and "InvalidDataError" in page
    files = {f.file for f in result.figures if f.file}
    assert {"plots/emotion_distribution.svg", "plots/hist_intensity.svg", "plots/hist_confidence.svg",
            "plots/hist_asd_score.svg", "plots/hist_quality.svg", "plots/timeline-001.svg"} <= files
    for name in files:
        assert (out / name).read_text(encoding="utf-8").lstrip().startswith("<?xml")


def test_media_placeholders_and_links(rich_run, tmp_path):
    out = tmp_path / "site"
    result = build_report(rich_run.path, out)
    _, rows = site_rows(out)
    by_id = {r["id"]: r for r in rows}
    assert result.missing_media == 2
    assert by_id[rich_run.missing_clip]["clip"] is None and "is missing" in by_id[rich_run.missing_clip]["clip_missing"]
    assert by_id[rich_run.missing_audio]["audio"] is None and "is missing" in by_id[rich_run.missing_audio]["audio_missing"]
    assert by_id[rich_run.no_face]["clip"] is None and by_id[rich_run.no_face]["clip_missing"] is None
    for row in rows:
        for key in ("audio", "clip"):
            if row[key]:
                assert row[key].startswith("media/")
                target = out / row[key]
                assert os.path.samefile(target, rich_run.path / row[key][len("media/"):])  # hard link by default


def test_media_copy_relative_and_none(rich_run, tmp_path):
    copy = tmp_path / "copy"
    build_report(rich_run.path, copy, ReportOptions(media="copy"))
    _, rows = site_rows(copy)
    audio = copy / rows[0]["audio"]
    assert audio.stat().st_nlink == 1 and audio.read_bytes() == (rich_run.path / rows[0]["audio"][6:]).read_bytes()

    rel = tmp_path / "elsewhere" / "rel"
    build_report(rich_run.path, rel, ReportOptions(media="relative"))
    _, rows = site_rows(rel)
    assert not (rel / "media").exists()
    for row in rows:
        if row["audio"]:
            assert row["audio"].startswith("../") and (rel / row["audio"]).resolve().is_file()

    none = tmp_path / "none"
    build_report(rich_run.path, none, ReportOptions(media="none"))
    _, rows = site_rows(none)
    assert all(r["audio"] is None and r["clip"] is None for r in rows)
    assert "media=none" in rows[0]["audio_missing"]
    with pytest.raises(ReportError, match="media='cdn'"):
        ReportOptions(media="cdn")


def test_absent_fields_stay_absent(make_run_dir, tmp_path):
    """Records of today's schema (no speaker/quality keys, no emotion.confidence) and null parts."""
    run = make_run_dir("plain", videos=2, per_video=2, label=lambda n: None if n == 3 else "Joy")
    for clip in (run.path / "faces").glob("*.mp4"):  # the records name face clips; take the files away
        clip.unlink()
    out = tmp_path / "site"
    result = build_report(run.path, out)
    index, rows = site_rows(out)
    assert len(rows) == 4 and index["speakers"] == [] and index["col_confidence"] == [None] * 4
    assert all(r["speaker"] is None and r["quality"] is None and r["confidence"] is None for r in rows)
    assert rows[3]["label"] is None and index["col_label"][3] == -1
    missing = {f.title: f.file for f in result.figures}
    assert missing["Confidence"] is None and missing["Speech quality"] is None
    assert missing["Intensity"] == "plots/hist_intensity.svg"
    # face clips named but missing: placeholders, not broken links
    assert all(r["clip"] is None and "is missing" in r["clip_missing"] for r in rows)


def test_transcripts_rationales_and_messages_are_escaped(rich_run, tmp_path):
    out = tmp_path / "site"
    build_report(rich_run.path, out)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "<b>when</b>" not in page and "&lt;b&gt;when&lt;/b&gt;" in page
    assert page.count("<script") == 2  # the two script files of the page, nothing from the data
    _, rows = site_rows(out)
    hostile = next(r for r in rows if r["id"] == rich_run.hostile)
    assert hostile["text"] == HOSTILE_TEXT and hostile["rationale"] == HOSTILE_RATIONALE  # data intact, as JSON
    js = (REPO / "mikupal" / "report" / "assets" / "report.js").read_text(encoding="utf-8")
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "document.write" not in js


def _site_text(out: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in out.rglob("*") if p.suffix in TEXT_SUFFIXES)


def test_no_absolute_path_of_the_machine_unless_published(rich_run, tmp_path):
    out = tmp_path / "site"
    build_report(rich_run.path, out)
    text = _site_text(out)
    for secret in (SECRET_DIR, "/home/alice", str(rich_run.path), str(rich_run.path.parent), str(tmp_path), "/tmp/"):
        assert secret not in text, secret
    assert "talk0-00000000.mp4" in text and "broken.mp4" in text  # file names stay

    published = tmp_path / "published"
    build_report(rich_run.path, published, ReportOptions(publish_source_paths=True))
    text = _site_text(published)
    assert f"{SECRET_DIR}/talk0-00000000.mp4" in text and f"{SECRET_DIR}/broken.mp4" in text
    assert str(rich_run.path) not in text  # the run directory itself is never shown


def test_scrub_paths_keeps_relative_paths_and_urls():
    assert scrub_paths("cannot open /home/a/b/c.mp4: bad") == "cannot open c.mp4: bad"
    assert scrub_paths("see audio/x-00001.flac and faces/y.mp4") == "see audio/x-00001.flac and faces/y.mp4"
    assert scrub_paths("ratio 1/2 at https://example.org/a/b") == "ratio 1/2 at https://example.org/a/b"
    assert scrub_paths(r"C:\Users\bob\v.mp4 and ~/clips/z.mp4") == "v.mp4 and z.mp4"


def test_finished_real_run(pipeline_run, tmp_path):
    run, summary = pipeline_run
    out = tmp_path / "site"
    result = build_report(run, out)
    index, rows = site_rows(out)
    assert result.utterances == len(manifest(run)) == summary["utterances_out"] == len(rows) == 5
    assert all(r["audio"] and (out / r["audio"]).is_file() and r["label"] is None for r in rows)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert 'class="status complete"' in page
    for stage in ("extract", "separate", "vad", "filter"):
        assert f"<td>{stage}</td>" in page


def test_run_in_progress_reports_the_latest_stage(pipeline_run, tmp_path):
    done, _ = pipeline_run
    run = tmp_path / "run"
    shutil.copytree(done, run)
    make_in_progress(run, {"extract", "separate", "vad"})
    vad_lines = stage_records(run / "vad")
    data = load_run(run)
    assert not data.complete and "'vad'" in data.status and "no utterances.jsonl" in data.status
    assert [i.record["id"] for i in data.items] == sorted(r["id"] for r in vad_lines)
    out = tmp_path / "site"
    result = build_report(run, out)
    assert result.utterances == len(vad_lines) == 5
    page = (out / "index.html").read_text(encoding="utf-8")
    assert 'class="status incomplete"' in page and "INCOMPLETE" in page
    assert "<td>vad</td><td>1</td><td>5</td>" in page  # stage table from the done logs
    (index,) = read_call(out / "data" / "index.js", "MIKU.setIndex")
    assert index["complete"] is False

    # killed earlier: only extract has finished items -> a report with no utterances, still incomplete
    make_in_progress(run, {"extract"})
    data = load_run(run)
    assert not data.complete and data.items == [] and "no utterances yet" in data.status
    assert ("hours in", "0.009") in data.overview
    result = build_report(run, tmp_path / "site2")
    assert result.utterances == 0 and result.chunks == 0


def test_an_unfinished_item_is_not_reported(pipeline_run, tmp_path):
    """Outputs whose input item has no done line yet (the item in flight when a run was killed) are left out."""
    done, _ = pipeline_run
    run = tmp_path / "run"
    shutil.copytree(done, run)
    make_in_progress(run, {"extract", "separate", "vad"})
    forget_done(run, "vad", keep=0)
    data = load_run(run)
    assert data.items == [] and not data.complete


def test_out_folder_rules_and_rewrites(rich_run, tmp_path):
    with pytest.raises(ReportError, match="no such directory"):
        build_report(tmp_path / "nope", tmp_path / "o")
    (tmp_path / "empty-run").mkdir()
    with pytest.raises(ReportError, match="not a MIKU-PAL run directory"):
        build_report(tmp_path / "empty-run", tmp_path / "o")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("keep me")
    with pytest.raises(ReportError, match="not written by mikupal-report"):
        build_report(rich_run.path, busy)
    assert (busy / "thesis.tex").read_text() == "keep me"

    out = tmp_path / "site"
    build_report(rich_run.path, out, ReportOptions(chunk_size=2))
    assert (out / "data" / "chunk-0008.js").exists()
    small = write_report_run(tmp_path / "small", videos=1, per_video=5, clips=False)
    build_report(small.path, out, ReportOptions(chunk_size=2))  # a previous report is replaced
    index, rows = site_rows(out)
    assert index["total"] == len(rows) == 5 and sorted(p.name for p in (out / "data").iterdir()) == [
        "chunk-0001.js", "chunk-0002.js", "chunk-0003.js", "index.js"]


def test_cli_writes_a_report_and_refuses_bad_input(rich_run, tmp_path):
    out = tmp_path / "site"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ok = subprocess.run([sys.executable, "-m", "mikupal.report.cli", f"run_dir={rich_run.path}", f"out={out}",
                         "page_size=10", "title=My run"], capture_output=True, text=True, env=env, timeout=300,
                        cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("report written: file://") and "15 utterances" in ok.stdout
    assert len(ok.stdout.splitlines()) == 1 and "written to" in ok.stderr  # the result on stdout, logs on stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # no log file or outputs/ folder
    assert "<title>My run</title>" in (out / "index.html").read_text(encoding="utf-8")
    (index,) = read_call(out / "data" / "index.js", "MIKU.setIndex")
    assert index["page_size"] == 10
    bad = subprocess.run([sys.executable, "-m", "mikupal.report.cli", f"run_dir={tmp_path / 'missing'}",
                          f"out={tmp_path / 'o2'}"], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "no such directory" in bad.stderr


def test_figures_drawn_in_a_child_process_equal_those_drawn_in_process(rich_run, tmp_path, monkeypatch, caplog):
    import threading

    import mikupal.report.site as site

    inline = build_report(rich_run.path, tmp_path / "inline")
    monkeypatch.setattr(site, "PARALLEL_PLOTS_MIN_ROWS", 1)
    with caplog.at_level("INFO", logger="mikupal.report.site"):
        child = build_report(rich_run.path, tmp_path / "child")
    used_child = "in a child process" in caplog.text
    assert used_child == (threading.active_count() == 1)
    assert [(f.file, f.caption) for f in child.figures] == [(f.file, f.caption) for f in inline.figures]
    for f in inline.figures:
        if f.file:
            assert (tmp_path / "child" / f.file).read_bytes() == (tmp_path / "inline" / f.file).read_bytes()


def test_link_falls_back_to_copy_across_filesystems(rich_run, tmp_path, monkeypatch):
    import errno

    import mikupal.report.site as site

    def no_link(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(site.os, "link", no_link)
    out = tmp_path / "site"
    result = build_report(rich_run.path, out)
    _, rows = site_rows(out)
    placed = [out / r[k] for r in rows for k in ("audio", "clip") if r[k]]
    assert len(placed) == result.media_files == 14 + 13 and result.missing_media == 2  # audio, clips
    assert all(p.is_file() and p.stat().st_nlink == 1 for p in placed)
