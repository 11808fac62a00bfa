"""Errors raised by the evaluation suite for input that cannot give a trustworthy number."""

from __future__ import annotations


class EvalInputError(ValueError):
    """An input file or option is unusable; the message says what is wrong and how to fix it."""
