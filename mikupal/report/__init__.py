"""Run reports: a static web page of a run directory (or of a built dataset) that opens from ``file://``.

``mikupal-report run_dir=DIR out=REPORT/`` (:mod:`mikupal.report.cli`) reads the run with
:func:`~mikupal.report.collect.load_run` and writes the site with :func:`~mikupal.report.site.write_site`:
a summary (hours, utterances, drops, errors, time and throughput per stage), matplotlib figures, and an utterance
browser with audio, face clips, labels and filters. ``mikupal-build ... report=true`` builds a
:class:`~mikupal.report.collect.ReportData` of the dataset and writes the same site.
"""

from mikupal.report.collect import Item, ReportData, ReportError, load_run
from mikupal.report.site import ReportOptions, SiteResult, write_site


def build_report(run_dir, out, options: ReportOptions | None = None, title: str | None = None) -> SiteResult:
    """Read ``run_dir`` and write its report site into ``out``; returns what was written."""
    options = options or ReportOptions()
    data = load_run(run_dir, title=title, max_errors_listed=options.max_errors_listed)
    return write_site(data, out, options)


__all__ = ["Item", "ReportData", "ReportError", "ReportOptions", "SiteResult", "build_report", "load_run", "write_site"]
