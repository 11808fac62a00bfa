"""Fixtures of the evaluation-suite tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from mikupal.testing.eval_suite import MELD_DIR


@pytest.fixture(scope="session")
def meld_dev() -> Path:
    path = MELD_DIR / "dev_sent_emo.csv"
    if not path.is_file():
        pytest.skip(f"MELD labels not found at {path}")
    return path


@pytest.fixture(scope="session")
def meld_train() -> Path:
    path = MELD_DIR / "train_sent_emo.csv"
    if not path.is_file():
        pytest.skip(f"MELD labels not found at {path}")
    return path


@pytest.fixture(scope="session")
def dev_gold(meld_dev):
    from eval.meld import load_gold

    return load_gold(meld_dev)
