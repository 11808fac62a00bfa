"""Checks run by the runner's ``plan`` before the first item: a bad config fails in seconds, not hours in.

1. **Stage chain.** Each stage must read the record type its upstream stage writes (``stages=[extract,asr]`` fails:
   ``asr`` reads utterances, ``extract`` writes recordings); the message names the stages to insert.
2. **Backends.** Every configured stage's backend is constructed (which loads nothing, DESIGN §2) and checked:
   the Python packages its ``setup()`` imports (a backend's ``requires``: import name -> what to install) are
   installed, and the model files its ``model_keys`` attributes name are present and match their pinned sha256
   (:mod:`mikupal.registry`).

A failure raises :class:`~mikupal.runner.ConfigError` with one line naming the config key and the fix; the CLI
prints it and exits with status 2.
"""

from __future__ import annotations

import importlib
import itertools
import importlib.util
import logging
from typing import Any, Sequence

from omegaconf import DictConfig

from mikupal.rundir import STAGE_ORDER, STAGE_SPECS

log = logging.getLogger(__name__)


def _error(message: str) -> Exception:
    from mikupal.runner import ConfigError

    return ConfigError(message)


def _adapter_class(name: str) -> type:
    module_name, class_name = STAGE_SPECS[name].adapter.split(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except ImportError as e:
        raise _error(f"stages: stage {name!r} cannot be imported ({e}). Fix: bash scripts/setup.sh") from e


def check_chain(stage_names: Sequence[str]) -> None:
    """Each stage's input record type must be its upstream stage's output type.

    Raises:
        ConfigError: naming the two stages, the types, and the stages that would connect them.
    """
    classes = {name: _adapter_class(name) for name in stage_names}  # only the stages that run (imports cost)
    for before, after in zip(stage_names, stage_names[1:]):
        wrote, reads = classes[before].output_type, classes[after].input_type
        if wrote is reads:
            continue
        classes = {name: _adapter_class(name) for name in STAGE_ORDER}  # the fix may need any stage
        between = list(STAGE_ORDER[STAGE_ORDER.index(before) + 1 : STAGE_ORDER.index(after)])
        # the fewest stages from those in between (in order) that connect the two
        bridge = next(
            (list(c) for n in range(1, len(between) + 1) for c in itertools.combinations(between, n)
             if _connects(classes, [before, *c, after])),
            between,
        )
        fixed = list(stage_names)
        fixed[fixed.index(after):fixed.index(after)] = bridge
        raise _error(
            f"stages: {after!r} reads {reads.__name__} records but {before!r} writes {wrote.__name__} records; "
            f"add {','.join(bridge)} between them, e.g. stages=[{','.join(fixed)}]"
        )


def _connects(classes: dict[str, type], chain: Sequence[str]) -> bool:
    return all(classes[a].output_type is classes[b].input_type for a, b in zip(chain, chain[1:]))


def stage_backends(name: str, cfg: DictConfig) -> dict[str, Any]:
    """The backends of a stage, by config key, constructed but not set up (nothing is loaded)."""
    return _adapter_class(name)(cfg).build_backends()


def check_backend(key: str, backend: Any) -> None:
    """Check a constructed backend's imports (``requires``) and model files (``model_keys``).

    Raises:
        ConfigError: one line naming ``key`` and the fix.
    """
    from mikupal import registry

    kind = type(backend).__name__
    for module, install in dict(getattr(backend, "requires", {}) or {}).items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a missing parent package (``google`` of ``google.genai``)
            found = False
        if not found:
            raise _error(
                f"{key} ({kind}) needs the Python package {module!r}, which is not installed. "
                f"Fix: bash scripts/setup.sh (or pip install {install}), or choose another {key.split('.')[0]} backend"
            )
    for attr in getattr(backend, "model_keys", ()) or ():
        value = getattr(backend, attr, None)
        if value is None:
            continue
        try:
            registry.resolve(value)
        except registry.ModelNotFoundError as e:
            raise _error(f"{key}.{attr}={value}: {e}") from e


def check_backends(cfg: DictConfig, stage_names: Sequence[str]) -> None:
    """Construct and check the backend of every stage in ``stage_names``.

    Raises:
        ConfigError: a backend cannot be constructed, lacks a package or a model file.
    """
    from mikupal.runner import ConfigError

    for name in stage_names:
        try:
            backends = stage_backends(name, cfg)
        except ConfigError:
            raise
        except ImportError as e:
            raise _error(f"{name}: its backend cannot be imported ({e}). Fix: bash scripts/setup.sh") from e
        except Exception as e:  # noqa: BLE001 - a constructor rejecting its settings is a config error
            raise _error(f"{name}: the backend rejects its settings: {type(e).__name__}: {e}") from e
        for key, backend in backends.items():
            check_backend(key, backend)
            log.debug("check: %s backend %s ok", key, type(backend).__name__)


def run_checks(cfg: DictConfig, stage_names: Sequence[str]) -> None:
    """All checks before the first item (see the module docstring)."""
    check_chain(stage_names)
    check_backends(cfg, stage_names)
