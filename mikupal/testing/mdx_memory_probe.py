"""Peak memory of ``separate=mdx`` on inputs of several lengths, in a fresh process (used by the tests and by hand).

Usage::

    python -m mikupal.testing.mdx_memory_probe MODEL_DIR --chunk-seconds 12 --crossfade-seconds 1 --durations 15 75

For each duration it builds that much real LibriVox speech, resets the kernel's peak-RSS counter
(``/proc/self/clear_refs``), separates, and reports the peak RSS above the RSS just before the call (which already
holds the model and the input). Prints one JSON object: ``{"peak_above_input_mb": {duration: MB}, "seconds":
{duration: wall time}}``. Exits 3 when the kernel does not allow resetting the peak counter.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

from mikupal.testing.paper import tiled_speech


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--chunk-seconds", type=float, required=True)
    parser.add_argument("--crossfade-seconds", type=float, default=1.0)
    parser.add_argument("--durations", type=float, nargs="+", required=True)
    args = parser.parse_args()

    from mikupal.separate.mdx import MdxSeparator

    separator = MdxSeparator(
        model=args.model_dir, device="cpu", chunk_seconds=args.chunk_seconds, crossfade_seconds=args.crossfade_seconds
    )
    separator.setup()
    separator.separate(tiled_speech(2.0), 16000)  # warm-up: lazy allocations of torch/onnxruntime
    peaks, seconds = {}, {}
    for duration in args.durations:
        audio = tiled_speech(duration)
        gc.collect()
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError as e:
            print(f"cannot reset the peak RSS counter: {e}", file=sys.stderr)
            return 3
        before = _status_kb("VmRSS")
        start = time.perf_counter()
        vocals = separator.separate(audio, 16000)
        seconds[duration] = round(time.perf_counter() - start, 2)
        peaks[duration] = round((_status_kb("VmHWM") - before) / 1024, 1)
        assert len(vocals) == len(audio)
        del vocals, audio
    separator.teardown()
    print(json.dumps({"peak_above_input_mb": peaks, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
