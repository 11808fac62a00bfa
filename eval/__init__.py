"""MIKU-PAL evaluation suite (``mikupal-eval``).

Scoring is kept apart from producing predictions, so every number can be computed without a model:

- :mod:`eval.meld` — MELD gold labels, prediction loading and scoring (accuracy, weighted/macro F1, UAR,
  per-class scores, confusion matrix, bootstrap intervals).
- :mod:`eval.agreement` — Fleiss' kappa (statsmodels), per-category kappa, Krippendorff's alpha
  (``krippendorff``), pairwise Cohen's kappa (scikit-learn), percent agreement, bootstrap intervals.
- :mod:`eval.rationality` — human "is this label rational?" studies: rating sheets, import, aggregation.
- :mod:`eval.labelstudio` — Label Studio labelling config, tasks and export parsing for those studies.
- :mod:`eval.baselines` — majority, stratified random and a MiniLM + logistic-regression text baseline.
- :mod:`eval.predict` — run a configured annotator over MELD utterances (modality ablations, resumable).
- :mod:`eval.tables` — the paper's comparison tables (Markdown, LaTeX) and plots from saved reports.
- :mod:`eval.cli` — the Hydra entry point ``mikupal-eval task=...``.

``eval`` imports ``mikupal``; ``mikupal`` never imports ``eval``.
"""
