"""Stable ids and sharding.

``video_id`` = slug of the file stem + 8 hex digits of the SHA-1 of the resolved absolute path, so the same file
gets the same id on every rerun and two files with the same name in different folders do not collide.
Utterance ids are ``"<video_id>-<5-digit index>"``. Work is sharded by a stable hash of the video id, so every
stage of one video runs in the same process and N processes split the work with no coordination.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata


def slugify(text: str, max_len: int = 40) -> str:
    """Lower-case ASCII slug: letters, digits and single hyphens."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-").lower()
    return text[:max_len].strip("-") or "video"


def video_id(path: str | os.PathLike[str]) -> str:
    """Stable id of a source video from its path."""
    resolved = os.path.realpath(os.fspath(path))
    stem = os.path.splitext(os.path.basename(resolved))[0]
    digest = hashlib.sha1(resolved.encode("utf-8")).hexdigest()[:8]
    return f"{slugify(stem)}-{digest}"


def utterance_id(video: str, index: int) -> str:
    """``"<video_id>-<5-digit index>"``."""
    return f"{video}-{index:05d}"


def stable_hash(text: str) -> int:
    """A process-independent 64-bit hash (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big")


def shard_of(video: str, world_size: int) -> int:
    """The rank (0..world_size-1) that processes a video."""
    if world_size < 1:
        raise ValueError(f"runner.world_size must be >= 1, got {world_size}")
    return stable_hash(video) % world_size
