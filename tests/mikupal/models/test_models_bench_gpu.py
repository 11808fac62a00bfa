"""benchmarks/bench_gpu.py: skips cleanly without CUDA; a tiny CPU smoke run measures all three stages."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the CUDA run would measure, not skip")
def test_without_cuda_it_says_so_and_exits_0(bench, capsys):
    assert bench.main([]) == 0
    out = capsys.readouterr().out
    assert "CUDA is not available" in out and "|" not in out


def test_cpu_smoke_run_prints_every_stage(bench, capsys):
    """Tiny inputs on the CPU (random S3FD/TalkNet weights where the paper's are not placed, Whisper base)."""
    from mikupal.registry import ModelNotFoundError, resolve

    try:
        resolve("whisper-base")
    except ModelNotFoundError as e:
        pytest.skip(str(e))
    args = ["--device", "cpu", "--max-seconds", "2", "--frame-size", "320x180", "--random-weights",
            "--asr-model", "whisper-base"]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    rows = {m.group(1): m for m in re.finditer(r"^\| (faces|asd|asr) \| ([^|]+) \| [^|]+ \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", out, re.M)}
    assert set(rows) == {"faces", "asd", "asr"}, out
    assert float(rows["faces"].group(3)) == 2.0  # 50 frames at 25 fps
    assert float(rows["asd"].group(3)) == 2.0
    assert float(rows["asr"].group(3)) >= 2.0  # whole LibriVox utterances
    for m in rows.values():
        media, wall, rate = (float(m.group(k)) for k in (3, 4, 5))
        assert wall > 0 and rate == pytest.approx(media / wall, rel=0.05, abs=0.1)
    assert "base" in rows["asr"].group(2)
