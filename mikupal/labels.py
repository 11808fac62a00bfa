"""Emotion label sets (``conf/labels/*.yaml``) and strict parsing of a model's answer into a label.

A label set is a list of labels, each with a one-sentence description (used in prompts), aliases, and for the
fine-grained set the MELD class it maps to. :meth:`LabelSet.parse` matches the whole answer, or whole words
of it, against names and aliases — never substrings ("unhappy" is not "happy") — and raises
:class:`LabelParseError` for an answer outside the set instead of guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from mikupal.paths import load_conf_yaml


class LabelParseError(ValueError):
    """A model's answer does not name exactly one label of the active label set."""


@dataclass(frozen=True)
class Label:
    """One emotion category.

    Attributes:
        name: canonical name, as written in datasets and reports.
        description: one sentence saying what the category covers (goes into prompts).
        aliases: other words an answer may use for it (whole-word, case-insensitive).
        meld7: the MELD class this category maps to, for fine-grained sets (``None`` otherwise).
    """

    name: str
    description: str
    aliases: tuple[str, ...] = ()
    meld7: str | None = None


_NEGATIONS = {"not", "no", "never", "isn't", "wasn't", "aren't", "without", "non"}


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of emotion labels; the order is the class index order in datasets and reports."""

    name: str
    labels: tuple[Label, ...]
    _lookup: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        lookup: dict[str, str] = {}
        for label in self.labels:
            for term in (label.name, *label.aliases):
                key = _norm(term)
                if key in lookup and lookup[key] != label.name:
                    raise ValueError(
                        f"label set {self.name!r}: term {term!r} names both {lookup[key]!r} and {label.name!r}"
                    )
                lookup[key] = label.name
        object.__setattr__(self, "_lookup", lookup)

    @property
    def names(self) -> list[str]:
        return [label.name for label in self.labels]

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __len__(self) -> int:
        return len(self.labels)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def get(self, name: str) -> Label:
        for label in self.labels:
            if label.name == name:
                return label
        raise KeyError(f"{name!r} is not a label of {self.name!r} ({', '.join(self.names)})")

    def parse(self, answer: str) -> str:
        """Map a model's answer to exactly one label name.

        The whole answer (trimmed, case- and trailing-punctuation-insensitive) may be a name or alias; otherwise
        the answer's words are searched for names and aliases as whole words (multi-word terms too), skipping a
        term preceded by a negation ("not happy"). Exactly one distinct label must be found.

        Raises:
            LabelParseError: no label, or more than one distinct label, is named.
        """
        text = _norm(answer).strip(" .!,;:\"'`*")
        if text in self._lookup:
            return self._lookup[text]
        found: set[str] = set()
        for term, name in self._lookup.items():
            for m in re.finditer(rf"(?<![\w-]){re.escape(term)}(?![\w-])", text):
                before = text[: m.start()].split()
                if before and before[-1] in _NEGATIONS:
                    continue
                found.add(name)
        if len(found) == 1:
            return found.pop()
        if not found:
            raise LabelParseError(f"answer {answer!r} names no label of {self.name!r} ({', '.join(self.names)})")
        raise LabelParseError(f"answer {answer!r} names several labels of {self.name!r}: {sorted(found)}")

    def to_meld7(self, name: str) -> str:
        """The MELD class of a label (identity for the ``meld7`` set)."""
        if self.name == "meld7":
            self.get(name)
            return name
        label = self.get(name)
        if label.meld7 is None:
            raise KeyError(f"label {name!r} of {self.name!r} has no MELD mapping")
        return label.meld7

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "LabelSet":
        """Build from the mapping in ``conf/labels/<name>.yaml`` (a dict or an OmegaConf node)."""
        labels = tuple(
            Label(
                name=str(item["name"]),
                description=str(item["description"]),
                aliases=tuple(str(a) for a in item.get("aliases", []) or []),
                meld7=item.get("meld7"),
            )
            for item in cfg["labels"]
        )
        return cls(name=str(cfg["name"]), labels=labels)


def load_label_set(name_or_path: str | Path) -> LabelSet:
    """Load a label set by name (``emobench26``, ``meld7``) from ``conf/labels/`` or from a YAML path."""
    return LabelSet.from_config(load_conf_yaml("labels", name_or_path))


def as_label_set(labels: LabelSet | Mapping[str, Any] | str) -> LabelSet:
    """Accept a :class:`LabelSet`, a config mapping (Hydra's ``cfg.labels``) or a label set name."""
    if isinstance(labels, LabelSet):
        return labels
    if isinstance(labels, str):
        return load_label_set(labels)
    return LabelSet.from_config(labels)
