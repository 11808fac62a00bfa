"""Helpers for tests, benchmarks and the demo: real media from registry packages, clip writers, stub servers,
the tests' one Utterance factory (:mod:`mikupal.testing.records`) and their fixtures (pytest plugins, listed in
``tests/conftest.py``)."""

from __future__ import annotations

from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")


def loaded(backend: T) -> Iterator[T]:
    """Set ``backend`` up, hand it to the tests, tear it down after: ``yield from loaded(Backend())`` in a fixture."""
    backend.setup()  # type: ignore[attr-defined]
    try:
        yield backend
    finally:
        backend.teardown()  # type: ignore[attr-defined]


def or_skip(build: Callable[[], Any], needs: str) -> Any:
    """``build()``, or skip the test with ``needs: <why>`` when it raises
    :class:`~mikupal.testing.media.TestDataMissing` (test media from a system package that is not installed)."""
    import pytest

    from mikupal.testing.media import TestDataMissing

    try:
        return build()
    except TestDataMissing as e:
        pytest.skip(f"{needs}: {e}")
