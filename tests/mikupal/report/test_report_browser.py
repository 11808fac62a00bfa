"""The report in a real browser: Debian's headless Chromium driven by Playwright, the page opened from file://.

Checks: no console errors, the row count equals the manifest's, filters change it, audio and video reach
``readyState >= 2`` from relative paths, missing media show placeholders, hostile text stays text, a run in
progress is marked incomplete; a screenshot is saved in the test's tmp folder.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from mikupal.report import ReportOptions, build_report
from mikupal.testing.report import make_in_progress

pytestmark = pytest.mark.browser

PAGE_SIZE = 5  # the first page holds the hostile, missing-media and faceless utterances


def open_report(page, out: Path) -> list[str]:
    """Open ``out/index.html``; returns the list that collects console errors and page errors from now on."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    # a media request that load() restarts is aborted by the browser itself (net::ERR_ABORTED): not a failure
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}")
            if "ERR_ABORTED" not in (r.failure or "") else None)
    page.goto(out.joinpath("index.html").as_uri())
    wait_rows(page)
    return problems


def wait_rows(page) -> None:
    page.wait_for_selector("#rows[data-ready=yes]", timeout=15000)


def count(page) -> int:
    return int(page.get_attribute("#count", "data-count"))


def change(page, selector: str, value: str) -> None:
    """Set a filter control and wait until the browser has re-rendered."""
    page.evaluate("document.getElementById('rows').setAttribute('data-ready', 'stale')")
    if selector.startswith("select") or page.evaluate(f"document.querySelector('{selector}').tagName") == "SELECT":
        page.select_option(selector, value)
    else:
        page.fill(selector, value)
    page.wait_for_function("document.getElementById('rows').getAttribute('data-ready') === 'yes'", timeout=15000)


def test_page_rows_filters_media_and_screenshot(rich_run, chromium, tmp_path):
    page = chromium
    out = tmp_path / "site"
    build_report(rich_run.path, out, ReportOptions(page_size=PAGE_SIZE, chunk_size=6))
    records = [json.loads(x) for x in (rich_run.path / "utterances.jsonl").read_text().splitlines() if x.strip()]
    problems = open_report(page, out)

    # row count equals the manifest's: the counter, and the cards over every page
    assert int(page.get_attribute("#count", "data-total")) == count(page) == len(records)
    seen = []
    while True:
        seen += page.eval_on_selector_all("article.utt", "els => els.map(e => e.dataset.id)")
        if page.is_disabled("#next"):
            break
        page.evaluate("document.getElementById('rows').setAttribute('data-ready', 'stale')")
        page.click("#next")
        wait_rows(page)
    assert seen == [r["id"] for r in records]
    page.click("#f-reset")
    wait_rows(page)

    # filters change the count to what the manifest says
    labels = Counter(r["emotion"]["label"] for r in records)
    label, n_label = labels.most_common()[-1]
    options = page.eval_on_selector_all("#f-label option", "os => os.map(o => [o.value, o.textContent])")
    value = next(v for v, text in options if text.startswith(label + " "))
    change(page, "#f-label", value)
    assert count(page) == n_label < len(records)
    assert set(page.eval_on_selector_all("article.utt .chip", "els => els.map(e => e.textContent)")) == {label}
    page.click("#f-reset")
    wait_rows(page)
    change(page, "#f-conf", "0.5")
    assert count(page) == sum(r["emotion"]["confidence"] >= 0.5 for r in records)
    change(page, "#f-conf", "")
    speakers = sorted({r["speaker"]["id"] for r in records if r["speaker"]})
    change(page, "#f-speaker", str(speakers.index("talk1-00000001-spk0")))
    assert count(page) == sum(1 for r in records if r["speaker"] and r["speaker"]["id"] == "talk1-00000001-spk0")
    page.click("#f-reset")
    wait_rows(page)
    videos = sorted({r["video_id"] for r in records})
    change(page, "#f-video", str(videos.index("talk2-00000002")))
    assert count(page) == sum(r["video_id"] == "talk2-00000002" for r in records)
    page.click("#f-reset")
    wait_rows(page)
    change(page, "#f-text", "number 1")  # words anywhere in the transcript, case-insensitive
    expected = sum(1 for r in records if "number" in r["text"].lower() and "1" in r["text"])
    assert count(page) == expected and 0 < expected < len(records)
    change(page, "#f-text", "onerror")
    assert count(page) == 1
    page.click("#f-reset")
    wait_rows(page)

    # audio and video from relative paths reach HAVE_CURRENT_DATA (2) or better
    media = page.eval_on_selector_all("article.utt audio, article.utt video", "els => els.map(e => e.getAttribute('src'))")
    assert media and all(not src.startswith(("/", "file:")) and src.startswith("media/") for src in media)
    page.evaluate("Array.from(document.querySelectorAll('audio, video')).forEach(e => { e.preload = 'auto'; e.load(); })")
    page.wait_for_function("Array.from(document.querySelectorAll('audio, video')).every(e => e.readyState >= 2)",
                           timeout=20000)
    kinds = page.eval_on_selector_all("article.utt audio, article.utt video", "els => els.map(e => e.tagName)")
    assert "AUDIO" in kinds and "VIDEO" in kinds

    # missing media: placeholders in place of players
    clip_card = f"article.utt[data-id='{rich_run.missing_clip}']"
    assert "is missing" in page.inner_text(f"{clip_card} .media .placeholder")
    audio_card = f"article.utt[data-id='{rich_run.missing_audio}']"
    assert page.locator(f"{audio_card} audio").count() == 0 and "is missing" in page.inner_text(f"{audio_card} .body .placeholder")
    assert "no face found" in page.inner_text(f"article.utt[data-id='{rich_run.no_face}'] .media .placeholder")

    # hostile transcript and rationale are shown as text; nothing from them became an element
    hostile = f"article.utt[data-id='{rich_run.hostile}']"
    assert page.inner_text(f"{hostile} .text").startswith('<script>alert("x")</script> "><img src=x onerror=alert(1)>')
    assert "<script>alert(2)</script>" in page.inner_text(f"{hostile} .rationale")
    assert page.locator("img[onerror], [onmouseover], #rows script").count() == 0
    assert "<b>when</b>" in page.inner_text("table.errors")  # error messages too

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    assert problems == []


def test_run_in_progress_in_the_browser(pipeline_run, chromium, tmp_path):
    """Real pipeline output, the run cut before its last stage: the page says INCOMPLETE and plays the audio."""
    page = chromium
    run = tmp_path / "run"
    shutil.copytree(pipeline_run[0], run)
    make_in_progress(run, {"extract", "separate", "vad"})
    out = tmp_path / "site"
    build_report(run, out)
    problems = open_report(page, out)
    assert page.inner_text("#status").startswith("INCOMPLETE")
    assert count(page) == 5 and page.locator("article.utt").count() == 5
    page.evaluate("Array.from(document.querySelectorAll('audio')).forEach(e => { e.preload = 'auto'; e.load(); })")
    page.wait_for_function("Array.from(document.querySelectorAll('audio')).every(e => e.readyState >= 2)", timeout=20000)
    assert page.locator("#f-conf").is_disabled() and page.locator("#f-speaker").is_disabled()
    page.screenshot(path=str(tmp_path / "in-progress.png"), full_page=True)
    assert problems == []


def test_site_still_works_after_it_is_moved(rich_run, chromium, tmp_path):
    """media=link makes a self-contained folder: move it away from the run directory and it still plays."""
    out = tmp_path / "site"
    build_report(rich_run.path, out, ReportOptions(page_size=PAGE_SIZE))
    moved = tmp_path / "elsewhere" / "moved-site"
    moved.parent.mkdir()
    out.rename(moved)
    page = chromium
    problems = open_report(page, moved)
    page.evaluate("Array.from(document.querySelectorAll('audio, video')).forEach(e => { e.preload = 'auto'; e.load(); })")
    page.wait_for_function("Array.from(document.querySelectorAll('audio, video')).every(e => e.readyState >= 2)",
                           timeout=20000)
    assert problems == []
