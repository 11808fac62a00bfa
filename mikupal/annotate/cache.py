"""On-disk cache of annotator answers, so a rerun or a resumed run makes no request for work already paid for.

One JSON file per rollout answer, at ``<cache_dir>/<key[:2]>/<key>.json``, written to a temporary name and renamed,
so concurrent writers (threads, shards, processes) never leave a partial file. The key is the sha256 of a canonical
JSON description of everything that determines the answer (see :func:`cache_key`): backend, model, prompt version
and rendered prompt text, the sha256 of every media file sent, generation parameters, the output schema and the
rollout index. Only validated answers are stored; errors are never cached. Nothing secret goes into a key or a file
(the API key is not part of the request description).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Bump when the layout of cached entries changes (old entries are then simply not found).
CACHE_FORMAT = 1


def cache_key(description: dict[str, Any]) -> str:
    """sha256 (hex) of a canonical JSON rendering of ``description`` (sorted keys, no whitespace)."""
    blob = json.dumps({"format": CACHE_FORMAT, **description}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class AnswerCache:
    """A directory of cached answers (``None`` directory: caching off).

    Args:
        directory: where entries live; created on first write.
    """

    def __init__(self, directory: str | os.PathLike[str] | None) -> None:
        self.directory = Path(directory).expanduser() if directory else None

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The entry stored under ``key``, or ``None`` (also for an unreadable entry, which is then ignored)."""
        if self.directory is None:
            return None
        path = self._path(key)
        try:
            with open(path, encoding="utf-8") as f:
                entry = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as e:
            log.warning("annotation cache: ignoring unreadable entry %s (%s)", path, e)
            return None
        return entry if isinstance(entry, dict) else None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Store ``entry`` under ``key`` atomically (last writer wins)."""
        if self.directory is None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:12]}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entry, f, ensure_ascii=False, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        if self.directory is None or not self.directory.is_dir():
            return 0
        return sum(1 for _ in self.directory.glob("??/*.json"))
