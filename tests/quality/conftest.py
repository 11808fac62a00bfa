"""Fixtures of the quality tests: a loaded DNSMOS scorer (a missing model is an error with the fix, not a skip)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def dnsmos():
    from mikupal.quality.dnsmos import DnsmosScorer

    scorer = DnsmosScorer()
    scorer.setup()
    yield scorer
    scorer.teardown()


@pytest.fixture(scope="session")
def music_audio():
    """Real music (Debian asterisk-moh-opsound-wav), 16 kHz."""
    from mikupal.testing.audio_eval import music_track
    from mikupal.testing.media import TestDataMissing

    try:
        return music_track()
    except TestDataMissing as e:
        pytest.skip(f"needs Debian asterisk-moh-opsound-wav: {e}")
