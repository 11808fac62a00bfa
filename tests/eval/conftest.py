"""Fixtures of the evaluation-suite tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from mikupal.testing.eval_suite import MELD_DIR


def _meld_labels(name: str) -> Path:
    """A MELD label CSV of :data:`~mikupal.testing.eval_suite.MELD_DIR`, or skip the test when it is absent."""
    path = MELD_DIR / name
    if not path.is_file():
        pytest.skip(f"MELD labels not found at {path}")
    return path


@pytest.fixture(scope="session")
def meld_dev() -> Path:
    return _meld_labels("dev_sent_emo.csv")


@pytest.fixture(scope="session")
def meld_train() -> Path:
    return _meld_labels("train_sent_emo.csv")


@pytest.fixture(scope="session")
def dev_gold(meld_dev):
    from eval.meld import load_gold

    return load_gold(meld_dev)
