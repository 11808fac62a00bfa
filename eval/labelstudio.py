"""Label Studio import and export for the rationality study (:mod:`eval.rationality`).

* export: :func:`labeling_config` (the labelling config XML), :func:`media_url` (media paths as Label Studio's
  local-files URLs) and :func:`write_project` (``label_studio_tasks.json`` + ``label_studio_config.xml``);
* import: :func:`read_export` / :func:`records_from_export` turn a Label Studio export (JSON or JSON_MIN) into
  ``{item, rater, label, rating}`` records.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from eval.errors import EvalInputError
from eval.io import read_json, write_json

if TYPE_CHECKING:
    from eval.rationality import Scale

TASKS_FILE = "label_studio_tasks.json"
CONFIG_FILE = "label_studio_config.xml"


# -- export -----------------------------------------------------------------------------------------------------


def media_url(run_dir: Path, rel: str | None, prefix: str, media_root: str | None) -> str:
    """URL of a run-directory file in a Label Studio task: ``prefix`` + its path (relative to ``media_root`` if set)."""
    if not rel:
        return ""
    path = (run_dir / rel).resolve()
    if media_root:
        try:
            shown = path.relative_to(Path(media_root).resolve()).as_posix()
        except ValueError:
            shown = path.as_posix().lstrip("/")
    else:
        shown = path.as_posix().lstrip("/")
    return f"{prefix}{shown}"


def labeling_config(scale: "Scale", *, with_video: bool, with_audio: bool = True) -> str:
    """The Label Studio labelling config (XML) for a rationality study (media tags only for media every task has)."""
    video = '  <Video name="video" value="$video"/>\n' if with_video else ""
    audio = '  <Audio name="audio" value="$audio"/>\n' if with_audio else ""
    if scale.kind == "binary":
        control = (
            '  <Choices name="rational" toName="text" choice="single" showInline="true" required="true">\n'
            '    <Choice value="rational"/>\n'
            '    <Choice value="not rational"/>\n'
            "  </Choices>\n"
        )
    else:
        control = (
            f'  <Header value="Rate {scale.likert_min} (not at all rational) to {scale.likert_max} '
            f'(fully rational); {escape(str(int(scale.threshold)))} or more counts as rational."/>\n'
            f'  <Rating name="rational" toName="text" maxRating="{scale.likert_max}" required="true"/>\n'
        )
    return (
        "<View>\n"
        '  <Header value="Is the emotion label a rational reading of this utterance? Label: $label"/>\n'
        '  <Text name="label_description" value="$label_description"/>\n'
        f"{video}"
        f"{audio}"
        '  <Text name="text" value="$text"/>\n'
        '  <Header value="Annotator rationale" size="6"/>\n'
        '  <Text name="rationale" value="$rationale"/>\n'
        f"{control}"
        "</View>\n"
    )


def write_project(out_dir: Path, tasks: list[dict], config: str) -> tuple[Path, Path]:
    """Write the tasks (``label_studio_tasks.json``) and the labelling config (``label_studio_config.xml``)."""
    write_json(out_dir / TASKS_FILE, tasks)
    (out_dir / CONFIG_FILE).write_text(config, encoding="utf-8")
    return out_dir / TASKS_FILE, out_dir / CONFIG_FILE


# -- import -----------------------------------------------------------------------------------------------------


def read_export(path: Path, control: str) -> tuple[list[dict], int]:
    """The ratings of a Label Studio export file (see :func:`records_from_export`)."""
    return records_from_export(read_json(path, what="Label Studio export"), path, control)


def _rater_name(annotation: dict) -> str:
    who = annotation.get("completed_by", annotation.get("annotator", "unknown"))
    if isinstance(who, dict):
        who = who.get("email") or who.get("id") or "unknown"
    return str(who)


def _result_value(result: dict) -> Any:
    value = result.get("value", {})
    if "choices" in value:
        return value["choices"][0] if value["choices"] else None
    if "rating" in value:
        return value["rating"]
    return None


def records_from_export(tasks: Any, path: Path, control: str) -> tuple[list[dict], int]:
    """Ratings of a Label Studio export (JSON: tasks with annotations, or JSON_MIN: one flat object per annotation).

    Args:
        tasks: the parsed export.
        path: its file, for messages.
        control: the name of the choice or rating control holding the rating (``rational``).

    Returns:
        ``(records, cancelled)``: one ``{item, rater, label, rating}`` per annotation, and how many cancelled
        annotations were skipped.

    Raises:
        EvalInputError: the export is not a list of tasks.
    """
    if not isinstance(tasks, list):
        raise EvalInputError(f"{path}: a Label Studio export is a JSON list of tasks")
    records, cancelled = [], 0
    for task in tasks:
        if "annotations" in task:
            data = task.get("data", {})
            item = data.get("item", task.get("id"))
            for ann in task["annotations"]:
                if ann.get("was_cancelled"):
                    cancelled += 1
                    continue
                values = [_result_value(r) for r in ann.get("result", []) if r.get("from_name") == control]
                if values and values[0] is not None:
                    records.append({"item": str(item), "rater": _rater_name(ann), "label": data.get("label"),
                                    "rating": values[0]})
        elif control in task:  # JSON_MIN: one flat object per annotation
            value = task[control]
            if isinstance(value, dict):
                value = (value.get("choices") or [value.get("rating")])[0]
            records.append({"item": str(task.get("item", task.get("id"))), "rater": _rater_name(task),
                            "label": task.get("label"), "rating": value})
    return records, cancelled
