"""``mikupal-build ... report=true``: the report site of a built dataset; config defaults agree with the code."""

from __future__ import annotations

import dataclasses

import pytest
from hydra import compose, initialize_config_dir

from mikupal.paths import conf_dir
from mikupal.report import ReportOptions
from mikupal.testing.report import read_call, site_rows


def _compose(name: str, *overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        return compose(name, overrides=list(overrides))


def test_config_defaults_equal_the_code_defaults():
    code = ReportOptions()
    plot_keys = {"bins", "videos_per_timeline", "max_timeline_videos"}
    for cfg in (_compose("report", "run_dir=x", "out=y"), _compose("build", "run_dir=x", "output_dir=y").report_site):
        assert ReportOptions.from_config(cfg) == code
        keys = {k for k in cfg if k not in ("run_dir", "out", "title", "plots")} | set(cfg.plots)
        assert keys == {f.name for f in dataclasses.fields(ReportOptions)} and set(cfg.plots) == plot_keys
    assert _compose("build", "run_dir=x", "output_dir=y").report is False


def test_build_with_report_true(make_run_dir, hf_offline_cache, tmp_path):
    from builder.cli import run, summary

    a = make_run_dir("a", videos=["shared-0000000a", "only-a-0000000a"], per_video=3)
    b = make_run_dir("b", videos=["shared-0000000a", "only-b-0000000b"], per_video=2,
                     label=lambda n: "Boredom" if n == 3 else "Joy")  # n 0-1: ids repeated from run a
    out = tmp_path / "out"
    outcome = run(_compose("build", f"run_dir=[{a.path},{b.path}]", f"output_dir={out}", "report=true",
                           "filters.labels_kept=[Joy,Anger,Calmness,Interest,Sadness,Surprise]",
                           "split.ratios={train:0.5,validation:0.5,test:0}"))
    site = out / "report"
    assert outcome.report is not None and outcome.report.index == site / "index.html"
    index, rows = site_rows(site)
    kept = sum(outcome.export.split_rows.values())
    assert index["total"] == len(rows) == kept == outcome.export.report.accepted
    assert {r["split"] for r in rows} == set(outcome.export.split_rows)
    assert all(r["audio"] and (site / r["audio"]).is_file() for r in rows)
    # videos of both run directories; their media kept apart under media/run1, media/run2
    assert {r["audio"].split("/")[1] for r in rows} == {"run1", "run2"}
    page = (site / "index.html").read_text(encoding="utf-8")
    assert "Left out of the dataset, by reason" in page and "duplicate_id" in page and "label_not_kept" in page
    assert str(tmp_path) not in page
    assert "report: file://" in summary(outcome)
    (meta,) = [read_call(site / "data" / "index.js", "MIKU.setIndex")[0]]
    assert meta["complete"] is True
    # the dataset itself is untouched by the report: it still loads, and a rebuild replaces both
    import datasets

    assert sum(len(datasets.load_dataset(str(out), split=s)) for s in outcome.export.split_rows) == kept
    run(_compose("build", f"run_dir={a.path}", f"output_dir={out}", "report=true"))
    index, rows = site_rows(site)
    assert index["total"] == len(rows) == 6


@pytest.mark.browser
def test_dataset_report_in_the_browser(make_run_dir, hf_offline_cache, chromium, tmp_path):
    from builder.cli import run

    run_dir = make_run_dir("c", videos=3, per_video=4)
    out = tmp_path / "out"
    outcome = run(_compose("build", f"run_dir={run_dir.path}", f"output_dir={out}", "report=true",
                           "report_site.page_size=5"))
    problems = []
    chromium.on("pageerror", lambda e: problems.append(str(e)))
    chromium.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    chromium.goto((out / "report" / "index.html").as_uri())
    chromium.wait_for_selector("#rows[data-ready=yes]")
    assert int(chromium.get_attribute("#count", "data-count")) == outcome.export.report.accepted == 12
    assert chromium.locator("article.utt").count() == 5
    assert problems == []
