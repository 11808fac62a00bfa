"""Export MIKU-EmoBench as a Hub-ready folder, and publish it.

:func:`export_dataset` writes::

    OUT/
      README.md                           dataset card (YAML: configs, dataset_info, license, ...; statistics)
      emotion_distribution.png            utterances per emotion and split
      data/{split}-{i:05d}-of-{n:05d}.parquet   shards with the audio bytes embedded

which ``datasets.load_dataset(OUT)`` loads offline with the builder's features, and :func:`push_folder` uploads
through ``huggingface_hub``'s public API (``create_repo`` + ``upload_folder``).

How it stays fast and flat in memory: the builder writes Parquet directly
(``download_and_prepare(file_format="parquet")``), whose writer embeds each batch of audio files as it goes
(``datasets`` row groups of 100 rows for audio) and starts a new shard past ``max_shard_size``. Audio is never
decoded; each file is read once. The shards are written to a staging folder inside OUT and renamed into place
at the end, so a failed build leaves the previous export intact.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets.exceptions import DatasetGenerationError

from builder.card import MARKER, CardOptions, plot_emotion_distribution, render_card
from builder.miku_emobench import MikuEmoBench, MikuEmoBenchConfig
from builder.scan import SPLITS, BuildError, ScanReport

log = logging.getLogger(__name__)

#: Files an export owns in OUT (besides ``data/``); anything else in a non-empty OUT makes the export refuse.
_README = "README.md"
#: Prefix of the staging folder inside OUT where an export is written before it is swapped in.
_STAGING_PREFIX = ".mikupal-build-"


@dataclass
class ExportResult:
    """What :func:`export_dataset` wrote.

    Attributes:
        output_dir: the export folder. files: per split, the shard paths relative to it.
        split_rows: rows per split. parquet_bytes: total size of the shards. report: the scan.
        card: README.md path. plot: the PNG path. seconds: wall time of the export.
    """

    output_dir: Path
    files: dict[str, list[str]] = field(default_factory=dict)
    split_rows: dict[str, int] = field(default_factory=dict)
    parquet_bytes: int = 0
    report: ScanReport | None = None
    card: Path | None = None
    plot: Path | None = None
    seconds: float = 0.0


def _check_output_dir(out: Path) -> None:
    """OUT must be new, empty, or a previous export (its README.md carries the mikupal-build marker)."""
    if out.exists() and not out.is_dir():
        raise BuildError(f"output_dir {out} is a file: choose a folder")
    if not out.exists() or not any(out.iterdir()):
        return
    readme = out / _README
    if readme.is_file() and MARKER in readme.read_text(encoding="utf-8", errors="replace"):
        return
    raise BuildError(
        f"output_dir {out} is not empty and was not written by mikupal-build: choose a new or empty folder "
        "(an export replaces README.md and data/ and would upload everything in the folder)"
    )


def _collect_shards(staging: Path, builder: MikuEmoBench, split: str, data_dir: Path) -> list[Path]:
    """Rename the builder's Parquet files of one split to the Hub's ``{split}-{i:05d}-of-{n:05d}.parquet``."""
    name = builder.dataset_name
    single = staging / f"{name}-{split}.parquet"
    pattern = re.compile(rf"^{re.escape(name)}-{re.escape(split)}-(\d{{5}})-of-(\d{{5}})\.parquet$")
    if single.is_file():
        shards = [single]
    else:
        shards = sorted(p for p in staging.iterdir() if pattern.match(p.name))
    if not shards:
        raise BuildError(f"datasets wrote no Parquet file for split {split} in {staging} (internal error)")
    out = []
    for i, shard in enumerate(shards):
        target = data_dir / f"{split}-{i:05d}-of-{len(shards):05d}.parquet"
        os.replace(shard, target)
        out.append(target)
    return out


def build_settings(config: MikuEmoBenchConfig, label_set_name: str) -> dict[str, Any]:
    """The build settings shown in the card (no local paths: run directories by name)."""
    return {
        "run_dirs": [Path(p).name for p in config.run_dirs],
        "labels": label_set_name,
        "labels_kept": config.labels_kept,
        "min_asd_score": config.min_asd_score,
        "min_duration": config.min_duration,
        "max_duration": config.max_duration,
        "min_confidence": config.min_confidence,
        "min_dnsmos_ovrl": config.min_dnsmos_ovrl,
        "split_ratios": dict(config.split_ratios),
        "split_seed": config.split_seed,
        "split_by": config.split_by,
        "speaker_map": Path(config.speaker_map).name if config.speaker_map else None,
        "publish_source_paths": config.publish_source_paths,
        "annotations_only": config.annotations_only,
        "lenient": config.lenient,
    }


def _require_torchcodec() -> None:
    """Import torchcodec now (``datasets`` needs it to write any Audio column) and explain a failure.

    Importing it here, before the build starts (and before ``num_proc`` workers fork), also pays its import
    cost once instead of in every worker.

    Raises:
        BuildError: torchcodec or the FFmpeg libraries it needs are missing.
    """
    try:
        import torchcodec.encoders  # noqa: F401
    except (ImportError, OSError) as e:
        raise BuildError(
            f"writing the audio column needs torchcodec ({type(e).__name__}: {e}). On CPU machines install "
            "`torchcodec==0.13.0` next to `torch==2.13.0` (newer torchcodec wheels are CUDA builds) and the FFmpeg "
            "libraries (`apt-get install ffmpeg`): `pip install 'mikupal[build]'`"
        ) from e


def export_dataset(
    config: MikuEmoBenchConfig,
    output_dir: str | os.PathLike[str],
    *,
    max_shard_size: int | str = "500MB",
    num_proc: int | None = None,
    writer_batch_size: int | None = None,
    card: CardOptions | None = None,
) -> ExportResult:
    """Build MIKU-EmoBench and write it as Parquet shards plus a dataset card.

    Args:
        config: what to build (run directories, label set, filters, splits, lenient).
        output_dir: the export folder; new, empty, or a previous export (which is replaced).
        max_shard_size: start a new shard past this many bytes (embedded audio included), e.g. ``"500MB"``.
        num_proc: processes that write shards in parallel (``None``/1: one).
        writer_batch_size: rows per Parquet row group (``None``: ``datasets``' default for audio, 100); shards are
            cut at row-group boundaries.
        card: card options (template, metadata overrides, histogram bins, ...).

    Returns:
        The :class:`ExportResult`.

    Raises:
        BuildError: bad configuration, unusable output folder, no utterance left, or (strict mode) bad input;
            the message says what to fix.
    """
    t0 = time.perf_counter()
    if not config.annotations_only:  # an annotations-only export writes no Audio or Video column
        _require_torchcodec()
    card = card or CardOptions()
    template = card.template_path()
    out = Path(output_dir).expanduser().resolve()
    _check_output_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    for leftover in out.glob(f"{_STAGING_PREFIX}*"):  # from an export that was killed
        log.info("removing %s, left by an interrupted export", leftover)
        shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=out))
    try:
        builder = MikuEmoBench.from_config(
            config, cache_dir=str(staging / "cache"), writer_batch_size=writer_batch_size
        )
        report = builder.scan()
        parquet_dir = staging / "parquet"
        try:
            builder.download_and_prepare(
                output_dir=str(parquet_dir),
                file_format="parquet",
                max_shard_size=max_shard_size,
                num_proc=num_proc if num_proc and num_proc > 1 else None,
                download_mode="force_redownload",
            )
        except DatasetGenerationError as e:  # datasets wraps errors of _generate_examples; surface ours
            if isinstance(e.__cause__, BuildError):
                raise e.__cause__ from None
            raise
        data_dir = staging / "data"
        data_dir.mkdir()
        result = ExportResult(output_dir=out, report=report)
        for split in SPLITS:
            if split not in builder.info.splits:
                continue
            rows = builder.info.splits[split].num_examples
            if rows != report.stats.split_counts[split]:
                raise BuildError(
                    f"split {split}: wrote {rows} rows but the scan planned {report.stats.split_counts[split]} "
                    "(did a manifest change during the build?)"
                )
            shards = _collect_shards(parquet_dir, builder, split, data_dir)
            result.files[split] = [f"data/{p.name}" for p in shards]
            result.split_rows[split] = rows
            result.parquet_bytes += sum(p.stat().st_size for p in shards)

        info = builder.info.copy()
        info.download_size = result.parquet_bytes
        text = render_card(
            template.read_text(encoding="utf-8"),
            report=report,
            options=card,
            info=info,
            split_rows=result.split_rows,
            settings=build_settings(builder.config, builder.label_set.name),
        )
        plot = plot_emotion_distribution(report, staging / card.plot_file)
        (staging / _README).write_text(text, encoding="utf-8")

        # Swap the new export in: old data/ aside, new data/ in, then drop the old one.
        old_data = staging / "old-data"
        if (out / "data").exists():
            os.replace(out / "data", old_data)
        os.replace(data_dir, out / "data")
        os.replace(plot, out / card.plot_file)
        os.replace(staging / _README, out / _README)
        result.card, result.plot = out / _README, out / card.plot_file
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result.seconds = time.perf_counter() - t0
    log.info(
        "exported %d utterances (%.2f h) to %s in %.1f s",
        report.accepted,
        report.stats.total_seconds / 3600,
        out,
        result.seconds,
    )
    return result


_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def push_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = True,
    token: str | None = None,
    token_env: str = "HF_TOKEN",
    commit_message: str = "Upload MIKU-EmoBench (mikupal-build)",
    api: Any = None,
) -> Any:
    """Upload an export folder to a Hub dataset repository.

    Creates the repository if needed (``private`` applies only on creation), then uploads README.md, the plot
    and ``data/*.parquet`` in one commit that also deletes shards of a previous upload that this one does not
    replace.

    Args:
        folder: an export folder written by :func:`export_dataset`.
        repo_id: ``ORG/NAME``.
        private: create the repository private.
        token: a Hub token; ``None`` reads the environment variable ``token_env``, then the token saved by
            ``hf auth login``.
        token_env: name of the environment variable holding the token.
        commit_message: the commit message.
        api: the Hub client (``huggingface_hub.HfApi()`` when ``None``); anything with ``create_repo`` and
            ``upload_folder`` of the same signatures.

    Returns:
        What ``upload_folder`` returns (the commit info).

    Raises:
        BuildError: the folder is not an export, the repo id is malformed, or no token is available.
    """
    folder = Path(folder)
    readme = folder / _README
    is_export = readme.is_file() and MARKER in readme.read_text(encoding="utf-8")
    if not is_export or not any(folder.glob("data/*.parquet")):
        raise BuildError(f"{folder} is not a mikupal-build export (README.md and data/*.parquet): build it first")
    if not _REPO_ID.match(repo_id):
        raise BuildError(f"push_to_hub={repo_id!r} is not a Hub repository id: use ORG/NAME")
    if token is None:
        token = os.environ.get(token_env) or None
    if token is None:
        from huggingface_hub import get_token

        token = get_token()
    if token is None:
        raise BuildError(
            f"no Hugging Face token: set the environment variable {token_env} (a token with write access) or run "
            "`hf auth login`"
        )
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True, token=token)
    log.info("uploading %s to %s", folder, url)
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type="dataset",
        commit_message=commit_message,
        token=token,
        allow_patterns=[_README, "*.png", "data/*.parquet"],
        delete_patterns=["data/*.parquet"],
    )
