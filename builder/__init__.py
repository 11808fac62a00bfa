"""MIKU-EmoBench builder: turn MIKU-PAL run directories into a Hugging Face dataset.

* :mod:`builder.miku_emobench` — ``MikuEmoBench``, a ``datasets.GeneratorBasedBuilder``, and its typed
  ``MikuEmoBenchConfig`` (run directories, label set, filters, splits, lenient);
* :mod:`builder.scan` — the first pass: line checks, skip reasons, de-duplication, split by video;
* :mod:`builder.features` — the dataset's ``datasets.Features``;
* :mod:`builder.export` — Parquet shards with embedded audio + dataset card; ``push_folder`` to the Hub;
* :mod:`builder.card` — the dataset card rendered from ``dataset_card.md``;
* :mod:`builder.cli` — the ``mikupal-build`` command (Hydra, ``conf/build.yaml``).

The names below are imported on first use: ``import builder`` alone stays cheap.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "MikuEmoBench": "builder.miku_emobench",
    "MikuEmoBenchConfig": "builder.miku_emobench",
    "export_dataset": "builder.export",
    "push_folder": "builder.export",
    "BuildError": "builder.scan",
    "BadInputError": "builder.scan",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'builder' has no attribute {name!r}")
