"""separate=mdx: MDX-Net through audio-separator from a local model folder, never touching the network.

The real UVR weights cannot be fetched here, so the model is a stand-in ONNX graph with the MDX-Net interface
(a fixed spectral mask: 1.0 is the identity) plus audio-separator's three metadata JSONs keyed by its MD5, placed
exactly as a user places the real files. Input: real LibriVox speech.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.paper  # the paper preset's models (stand-ins with the real layout)

pytest.importorskip("audio_separator", reason="separate=mdx needs audio-separator (bash scripts/setup.sh)")
pytest.importorskip("onnx", reason="the stand-in model is built with onnx (onnx-weekly)")

from mikupal.registry import ModelNotFoundError  # noqa: E402
from mikupal.separate.mdx import DownloadRefused, MdxSeparator, chunk_starts, crossfade_weights  # noqa: E402
from mikupal.testing.paper import MDX_FILE, make_mdx_folder, tiled_speech  # noqa: E402

RATE = 16000


@pytest.fixture(scope="module")
def speech():
    try:
        return tiled_speech(14.0)
    except FileNotFoundError as e:
        pytest.skip(str(e))


def band(audio: np.ndarray, lo: float = 50.0, hi: float = 7000.0) -> np.ndarray:
    """``audio`` restricted to lo..hi Hz. Below 21.5 Hz MDX zeroes its first three STFT bins by design; near 8 kHz
    the 16 → 44.1 → 16 kHz resampling rolls off."""
    spectrum = np.fft.rfft(audio)
    freqs = np.fft.rfftfreq(len(audio), 1 / RATE)
    spectrum[(freqs < lo) | (freqs > hi)] = 0
    return np.fft.irfft(spectrum, len(audio))


def error_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Energy of (estimate - reference) relative to the reference, in dB, within 50 Hz..7 kHz."""
    ref, est = band(reference), band(estimate)
    return float(10 * np.log10(np.sum((est - ref) ** 2) / np.sum(ref**2)))


def run(separator: MdxSeparator, audio: np.ndarray) -> np.ndarray:
    separator.setup()
    try:
        return separator.separate(audio, RATE)
    finally:
        separator.teardown()


# ------------------------------------------------------------------------------------------------ end to end
def test_identity_vocals_model_returns_the_speech_offline(models_dir, speech, no_network):
    make_mdx_folder(models_dir / "mdx-net", scale=1.0, primary_stem="Vocals")
    separator = MdxSeparator(device="cpu", chunk_seconds=6.0, crossfade_seconds=1.0)
    vocals = run(separator, speech)
    assert vocals.dtype == np.float32 and vocals.shape == speech.shape
    assert error_db(speech, vocals) < -45.0  # measured about -70 dB
    assert separator._instance is None  # teardown freed the model


def test_instrumental_model_gives_mixture_minus_compensated_stem(models_dir, speech, no_network):
    """UVR-MDX-NET-Inst_HQ_3 predicts the instrumental: vocals = mix - compensate * instrumental, at any level.

    (audio-separator 0.47.1's own ``separate()`` multiplies the instrumental by the input's peak before this
    subtraction, so a quiet input leaks instrumental into its vocals; this backend keeps the level consistent.)
    """
    make_mdx_folder(models_dir / "mdx-net", scale=0.25, primary_stem="Instrumental", compensate=1.2)
    separator = MdxSeparator(device="cpu", chunk_seconds=100.0)
    separator.setup()
    try:
        for peak in (0.3, 1.5):  # 1.5: above the 0.9 normalization threshold, scaled down and back up
            mix = speech / np.abs(speech).max() * peak
            vocals = separator.separate(mix, RATE)
            assert vocals.shape == mix.shape
            assert error_db((1 - 1.2 * 0.25) * mix, vocals) < -45.0, peak
    finally:
        separator.teardown()


def test_chunked_output_matches_one_pass(models_dir, speech, no_network):
    """Chunks (crossfaded) join without seams: same result as separating the whole input at once."""
    make_mdx_folder(models_dir / "mdx-net", scale=0.5, primary_stem="Vocals")
    whole = run(MdxSeparator(device="cpu", chunk_seconds=100.0), speech)
    chunked = run(MdxSeparator(device="cpu", chunk_seconds=5.0, crossfade_seconds=1.0), speech)
    assert error_db(whole, chunked) < -45.0
    assert error_db(0.5 * speech, chunked) < -45.0


def test_chunk_plan_covers_the_input_and_crossfades_sum_to_one():
    for n, chunk, fade in [(100, 40, 10), (10, 40, 10), (81, 40, 10), (1000, 7, 3), (50, 10, 0)]:
        total = np.zeros(n)
        starts = chunk_starts(n, chunk, fade)
        for k, start in enumerate(starts):
            end = min(start + chunk, n)
            total[start:end] += crossfade_weights(end - start, fade, fade_in=k > 0, fade_out=k < len(starts) - 1)
        np.testing.assert_allclose(total, 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="crossfade_seconds"):
        MdxSeparator(chunk_seconds=4.0, crossfade_seconds=3.0)


# ------------------------------------------------------------------------------------------------ files and errors
@pytest.mark.parametrize("missing", ["download_checks.json", "mdx_model_data.json", "vr_model_data.json", MDX_FILE])
def test_missing_file_fails_with_the_registry_placement_message(models_dir, missing, no_network):
    folder = make_mdx_folder(models_dir / "mdx-net")
    (folder / missing).unlink()
    with pytest.raises(ModelNotFoundError) as info:
        MdxSeparator(device="cpu").setup()
    message = str(info.value)
    assert f"{folder / missing} is missing" in message
    assert f"place {MDX_FILE}, download_checks.json, mdx_model_data.json, vr_model_data.json in {folder}/" in message
    assert "mdx_model_data/model_data_new.json saved as mdx_model_data.json" in message


def test_other_model_file_is_checked_with_the_metadata(models_dir, speech, no_network):
    folder = make_mdx_folder(models_dir / "mdx-net", filename="Kim_Vocal_2.onnx")
    vocals = run(MdxSeparator(model_filename="Kim_Vocal_2.onnx", device="cpu"), speech[: 3 * RATE])
    assert vocals.shape == (3 * RATE,)
    (folder / "vr_model_data.json").unlink()
    with pytest.raises(ModelNotFoundError, match="vr_model_data.json is missing.*place Kim_Vocal_2.onnx, download_"):
        MdxSeparator(model_filename="Kim_Vocal_2.onnx", device="cpu").setup()


def test_local_folder_instead_of_registry_name(tmp_path, speech, no_network):
    folder = make_mdx_folder(tmp_path / "my-mdx")
    assert run(MdxSeparator(model=str(folder), device="cpu"), speech[:RATE]).shape == (RATE,)
    (folder / "download_checks.json").unlink()
    with pytest.raises(ModelNotFoundError, match=r"my-mdx/download_checks.json is missing\. Fix: place"):
        MdxSeparator(model=str(folder), device="cpu").setup()


def test_model_whose_md5_is_not_in_the_metadata_is_refused(models_dir, no_network):
    folder = make_mdx_folder(models_dir / "mdx-net")
    (folder / "mdx_model_data.json").write_text(json.dumps({"0" * 32: {"compensate": 1.0}}))
    expected = r"has no entry for UVR-MDX-NET-Inst_HQ_3.onnx \(MD5 of its content: [0-9a-f]{32}\)"
    with pytest.raises(ModelNotFoundError, match=expected):
        MdxSeparator(device="cpu").setup()


def test_model_not_listed_in_download_checks_is_explained(models_dir, no_network):
    make_mdx_folder(models_dir / "mdx-net", listed=False)
    with pytest.raises(ModelNotFoundError, match=r'does not list UVR-MDX-NET-Inst_HQ_3.onnx.*"mdx_download_list"'):
        MdxSeparator(device="cpu").setup()


def test_unreadable_metadata_names_the_file(models_dir, no_network):
    folder = make_mdx_folder(models_dir / "mdx-net")
    (folder / "vr_model_data.json").write_text("<html>rate limited</html>")
    with pytest.raises(ModelNotFoundError, match=r"vr_model_data.json is not readable JSON"):
        MdxSeparator(device="cpu").setup()


def test_audio_separator_is_never_allowed_to_download(models_dir, tmp_path, no_network):
    make_mdx_folder(models_dir / "mdx-net")
    separator = MdxSeparator(device="cpu")
    separator.setup()
    try:
        fetch = separator._separator.download_file_if_not_exists
        fetch("https://example.invalid/x.json", str(models_dir / "mdx-net" / "download_checks.json"))  # present: no-op
        with pytest.raises(DownloadRefused, match=r"absent.yaml.*never downloads"):
            fetch("https://example.invalid/absent.yaml", str(tmp_path / "absent.yaml"))
    finally:
        separator.teardown()


def test_setup_leaves_no_process_wide_side_effects(models_dir, monkeypatch, no_network):
    """audio-separator silences all warnings and reads AUDIO_SEPARATOR_MODEL_DIR; neither leaks out of setup()."""
    import warnings

    make_mdx_folder(models_dir / "mdx-net")
    monkeypatch.setenv("AUDIO_SEPARATOR_MODEL_DIR", "/nonexistent/elsewhere")
    filters = list(warnings.filters)
    separator = MdxSeparator(device="cpu")
    separator.setup()
    try:
        assert separator._separator.model_file_dir == str(models_dir / "mdx-net")
        assert warnings.filters == filters
        assert os.environ["AUDIO_SEPARATOR_MODEL_DIR"] == "/nonexistent/elsewhere"
        stand_in = sys.modules.get("onnx2torch")
        assert stand_in is None or getattr(stand_in, "__file__", None), "the onnx2torch stand-in leaked"
        if importlib.util.find_spec("torchvision") is None:
            assert "torchvision" not in sys.modules
    finally:
        separator.teardown()


def test_bad_device_and_cuda_without_gpu(models_dir):
    with pytest.raises(ValueError, match="separate.device"):
        MdxSeparator(device="gpu0")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    make_mdx_folder(models_dir / "mdx-net")
    with pytest.raises(RuntimeError, match="torch sees no CUDA device"):
        MdxSeparator(device="cuda").setup()


def test_construction_loads_nothing(models_dir):
    separator = MdxSeparator()  # no files anywhere: construction must not look for them
    with pytest.raises(RuntimeError, match=r"setup\(\) must be called"):
        separator.separate(np.zeros(10, np.float32), RATE)


# ------------------------------------------------------------------------------------------------ memory
def test_peak_memory_does_not_grow_with_the_length_of_the_recording(tmp_path):
    """Two inputs, 10 s and 40 s, in 8 s chunks: the peak above the input grows only by the output array.

    Measured: +3 MB chunked; unchunked, the same model and inputs give +56 MB (about 1.9 MB per extra second: the
    44.1 kHz stereo working arrays of audio-separator's demix), so a missing or broken chunk loop fails this test.
    glibc's adaptive mmap threshold would make the peaks depend on heap history; a fixed one makes them reproducible.
    """
    folder = make_mdx_folder(tmp_path / "mdx")
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    result = subprocess.run(
        [sys.executable, "-m", "mikupal.testing.mdx_memory_probe", str(folder), "--chunk-seconds", "8"]
        + ["--durations", "10", "40"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if result.returncode == 3:
        pytest.skip(result.stderr.strip())
    assert result.returncode == 0, result.stderr[-3000:]
    peaks = json.loads(result.stdout.strip().splitlines()[-1])["peak_above_input_mb"]
    output_growth_mb = 30 * RATE * 4 / 2**20  # the longer output array
    assert peaks["40.0"] - peaks["10.0"] < output_growth_mb + 10.0, peaks
    assert peaks["40.0"] < 400.0, peaks


def test_segment_size_other_than_dim_t_explains_the_onnx2torch_path(models_dir, no_network):
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: audio-separator's onnx2torch path works here")
    make_mdx_folder(models_dir / "mdx-net")
    with pytest.raises(RuntimeError, match=r"onnx2torch.*leave separate.segment_size=null"):
        MdxSeparator(device="cpu", segment_size=128).setup()
