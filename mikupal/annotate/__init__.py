"""Emotion annotation: the ``annotate`` stage and its backends.

* :mod:`mikupal.annotate.base`: the backend interface (:class:`Annotator`, :class:`AnnotationRequest`,
  :class:`RolloutAnswer`) and the majority vote (:func:`aggregate`).
* :mod:`mikupal.annotate.gemini`: the paper's annotator (Gemini 2.0 Flash, ``google-genai``).
* :mod:`mikupal.annotate.openai_compat`: any OpenAI-compatible chat-completions endpoint (e.g. vLLM + Qwen2.5-Omni).
* :mod:`mikupal.annotate.fusion`: the offline face + text + prosody annotator (offline preset default).
* :mod:`mikupal.annotate.stage`: the stage adapter (rollouts, concurrency, budget).
* :mod:`mikupal.testing.servers`: local stub servers speaking the Gemini and OpenAI REST protocols.

Importing this package is cheap; SDKs and models load in the backends' ``setup()``.
"""

from mikupal.annotate.base import (
    AnnotationError,
    AnnotationRequest,
    Annotator,
    AnnotatorConfigError,
    RolloutAnswer,
    Usage,
    aggregate,
)

__all__ = [
    "AnnotationError",
    "AnnotationRequest",
    "Annotator",
    "AnnotatorConfigError",
    "RolloutAnswer",
    "Usage",
    "aggregate",
]
