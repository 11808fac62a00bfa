"""Fixtures of the speaker tests: real voices of known identity (Debian packages) and a loaded Resemblyzer.

Tests that need the Debian media skip with the install command when it is absent; a missing model is an error
with the registry's fix message, not a skip.
"""

from __future__ import annotations

import pytest

from mikupal.testing.media import TestDataMissing


@pytest.fixture(scope="session")
def voices():
    from mikupal.testing.voices import known_voices

    try:
        return known_voices()
    except TestDataMissing as e:
        pytest.skip(f"needs the Debian voice packages: {e}")


@pytest.fixture(scope="session")
def resemblyzer():
    from mikupal.speakers.resemblyzer import ResemblyzerEmbedder

    backend = ResemblyzerEmbedder()
    backend.setup()
    yield backend
    backend.teardown()
