"""JSONL manifests: one record per line, written through :class:`ManifestWriter`, read with :func:`read_manifest`.

A writer appends and flushes per record, so a killed process loses at most the line it was writing; a
truncated last line is detected and ignored on read (``tolerate_truncated_tail=True``), any other malformed
line is an error naming the file and line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")


class ManifestError(ValueError):
    """A manifest line could not be parsed."""


def iter_jsonl(path: str | Path, *, tolerate_truncated_tail: bool = True) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL file.

    Args:
        path: the file.
        tolerate_truncated_tail: skip an unparseable *last* line that has no trailing newline (what a killed
            writer leaves behind); every other bad line raises.

    Raises:
        ManifestError: a line is not a JSON object; the message names the file and line number.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                # Only the last line of a file can lack its newline: that is a write cut short by a kill.
                if tolerate_truncated_tail and not line.endswith("\n"):
                    return
                raise ManifestError(f"{path}:{number}: not valid JSON ({e.msg}): {line[:200]!r}") from e
            if not isinstance(obj, dict):
                raise ManifestError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
            yield obj


def read_manifest(path: str | Path, record_type: Callable[[dict[str, Any]], T] | type[T]) -> Iterator[T]:
    """Yield typed records from a JSONL file, or from every ``*.jsonl`` file of a directory (sorted).

    ``record_type`` is a record class with ``from_dict`` (e.g. :class:`mikupal.records.Utterance`) or a
    function from dict to record.
    """
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    make = getattr(record_type, "from_dict", record_type)
    for file in files:
        for number, obj in enumerate(iter_jsonl(file), start=1):
            try:
                yield make(obj)
            except (KeyError, TypeError, ValueError) as e:
                raise ManifestError(f"{file}: record {number}: {e}") from e


def write_jsonl_atomic(path: str | Path, objects: Iterable[dict[str, Any]]) -> int:
    """Write a whole JSONL file under a unique temporary name, then rename it into place. Returns the line count.

    (The one atomic writer is :func:`mikupal.rundir.atomic_write`; this name is kept for callers.)
    """
    from mikupal.rundir import atomic_write_jsonl

    return atomic_write_jsonl(path, objects)


class ManifestWriter:
    """Append-only JSONL writer that flushes after every record.

    Use as a context manager. ``write`` takes a record (anything with ``to_dict``) or a plain dict.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, record: Any) -> None:
        obj = record.to_dict() if hasattr(record, "to_dict") else record
        self._file.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> "ManifestWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
