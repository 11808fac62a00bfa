"""File input and output shared by the evaluation tasks: tables, JSON reports, run directories."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from eval.errors import EvalInputError

log = logging.getLogger(__name__)


def as_path_list(value: Any) -> list[Path]:
    """Turn a config value (``None``, one path, or a list of paths) into a list of paths."""
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [Path(value)]
    return [Path(v) for v in value]


def read_table(path: str | Path, *, what: str = "table"):
    """Read a CSV (or ``.tsv``) file into a pandas DataFrame of strings.

    Every column is read as text (ids such as ``007`` keep their zeros); empty cells become ``NaN``.

    Args:
        path: the file.
        what: what the file is, for error messages ("predictions", "ratings").

    Raises:
        EvalInputError: the file is missing, empty, or has a header but no rows.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise EvalInputError(f"{what} file {path} does not exist")
    if path.stat().st_size == 0:
        raise EvalInputError(f"{what} file {path} is empty (0 bytes)")
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError as e:
        raise EvalInputError(f"{what} file {path} has no header or rows") from e
    df.columns = [str(c).strip() for c in df.columns]
    if len(df) == 0:
        raise EvalInputError(f"{what} file {path} has a header ({', '.join(df.columns)}) but no rows")
    return df


def iter_json_objects(path: str | Path, *, what: str = "file") -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL file, with errors that name the file and line."""
    from mikupal.manifest import ManifestError, iter_jsonl

    try:
        yield from iter_jsonl(path)
    except ManifestError as e:
        raise EvalInputError(f"{what}: {e}") from e


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, paths and non-finite floats into plain JSON values (NaN → ``None``)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically (temporary name, then rename). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(to_jsonable(obj), f, indent=2, ensure_ascii=False, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)
    log.info("wrote %s", path)
    return path


def read_json(path: str | Path, *, what: str = "report") -> Any:
    """Read a JSON file, with a clear error when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise EvalInputError(f"{what} {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise EvalInputError(f"{what} {path} is not valid JSON: {e}") from e


def run_manifest(path: str | Path) -> Path:
    """The ``utterances.jsonl`` of a run directory (or the file itself when given a file)."""
    path = Path(path)
    if path.is_dir():
        manifest = path / "utterances.jsonl"
        if not manifest.is_file():
            raise EvalInputError(f"{path} is a directory without utterances.jsonl: is it a MIKU-PAL run directory?")
        return manifest
    if not path.is_file():
        raise EvalInputError(f"{path} does not exist")
    return path


def load_utterances(path: str | Path) -> list[Any]:
    """Read the :class:`mikupal.records.Utterance` records of a run directory or ``utterances.jsonl``.

    Raises:
        EvalInputError: the manifest is missing, empty, or a line is not an Utterance.
    """
    from mikupal.manifest import ManifestError, read_manifest
    from mikupal.records import RecordError, Utterance

    manifest = run_manifest(path)
    try:
        utterances = list(read_manifest(manifest, Utterance))
    except (ManifestError, RecordError) as e:
        raise EvalInputError(f"{manifest}: not a manifest of Utterance records: {e}") from e
    if not utterances:
        raise EvalInputError(f"{manifest} holds no utterances")
    return utterances


def sibling(out: str | Path, suffix: str) -> Path:
    """A file next to the report ``out``: ``report.json`` + ``.confusion.png`` → ``report.confusion.png``."""
    out = Path(out)
    return out.with_name(out.stem + suffix)


def first_examples(values: Iterable[Any], k: int = 5) -> list[Any]:
    """Up to ``k`` values, for "e.g. ..." parts of messages."""
    result = []
    for v in values:
        result.append(v)
        if len(result) >= k:
            break
    return result
