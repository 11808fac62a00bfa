"""preset=paper: it composes, every model it needs is placed by the user and a missing one fails at setup with the
placement to do, and Whisper large-v3's folder layout (128 mel bins) runs through the same faster-whisper backend."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mikupal import registry
from mikupal.stage import build_backend, stage_keys_of
from mikupal.testing.paper import compose_paper, paper_model_nodes

pytestmark = pytest.mark.paper  # the paper preset's models (stand-ins with the real layout)

RATE = 16000


def test_paper_preset_selects_the_papers_audio_models():
    cfg = compose_paper()
    assert cfg.separate._target_ == "mikupal.separate.mdx.MdxSeparator" and cfg.separate.model == "mdx-net"
    assert cfg.vad._target_ == "mikupal.vad.webrtc.WebrtcVad"
    assert cfg.asr._target_ == "mikupal.asr.faster_whisper.FasterWhisperTranscriber"
    assert cfg.asr.model == "whisper-large-v3" and cfg.asr.language == "en" and cfg.asr.beam_size == 5
    assert cfg.asr.word_timestamps is True
    assert cfg.separate.device == cfg.asr.device == "auto"  # both follow runner.device
    assert compose_paper("runner.device=cpu").separate.device == "cpu"


def test_group_choice_on_the_command_line_wins_over_the_paper_preset():
    cfg = compose_paper("asr=faster_whisper", "separate=rnnoise")
    assert cfg.asr.model == "whisper-base" and cfg.separate._target_.endswith("RnnoiseSeparator")


def test_every_paper_model_missing_fails_at_setup_with_its_placement(models_dir, no_network):
    cfg = compose_paper("runner.device=cpu")
    nodes = paper_model_nodes(cfg)
    assert {node.model for _, node in nodes} >= {"mdx-net", "whisper-large-v3"}
    for path, node in nodes:
        entry = registry.get(node.model)
        # built as its stage builds it (stage-level keys of conf/<group>/_stage.yaml left out); loads nothing
        kwargs = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k not in stage_keys_of(path)}
        backend = build_backend(path, kwargs)
        with pytest.raises(registry.ModelNotFoundError) as info:
            backend.setup()
        message = str(info.value)
        folder = models_dir / entry.name
        assert f"{folder / entry.files[0]} is missing" in message, path
        assert f"place {', '.join(entry.files)} in {folder}/" in message, path
        assert entry.source in message, path


def test_mikupal_models_lists_and_verifies_the_paper_files(models_dir, capsys):
    assert registry.main(["list", "--preset", "paper"]) == 0
    listing = capsys.readouterr().out
    for name in ("mdx-net", "whisper-large-v3"):
        assert name in listing and registry.get(name).source in listing
    assert "offline" not in listing.split()
    assert registry.main(["verify", "mdx-net", "whisper-large-v3"]) == 1
    out = capsys.readouterr().out
    whisper_files = "model.bin, config.json, preprocessor_config.json, tokenizer.json, vocabulary.json"
    assert f"place {whisper_files} in {models_dir / 'whisper-large-v3'}/" in out
    assert (
        f"place UVR-MDX-NET-Inst_HQ_3.onnx, download_checks.json, mdx_model_data.json, vr_model_data.json in "
        f"{models_dir / 'mdx-net'}/" in out
    )


# ------------------------------------------------------------------------------------------------ Whisper large-v3
@pytest.fixture(scope="module")
def tiny_large_v3_layout(tmp_path_factory):
    """A random 128-mel Whisper in the faster-whisper-large-v3 folder layout (no download)."""
    pytest.importorskip("transformers")
    pytest.importorskip("ctranslate2")
    try:
        base = registry.resolve("whisper-base")  # for Whisper's multilingual tokenizer.json
    except registry.ModelNotFoundError as e:
        pytest.skip(str(e))
    from mikupal.testing.paper import make_tiny_whisper_ct2

    return make_tiny_whisper_ct2(tmp_path_factory.mktemp("ct2") / "whisper-large-v3", base / "tokenizer.json")


def _place(source, target):
    import shutil

    shutil.copytree(source, target)
    return target


def test_large_v3_layout_runs_through_the_paper_asr_config(models_dir, tiny_large_v3_layout, librivox, no_network):
    _place(tiny_large_v3_layout, models_dir / "whisper-large-v3")
    cfg = compose_paper("runner.device=cpu", "asr.temperatures=[0.0]")
    transcriber = instantiate(cfg.asr)
    transcriber.setup()
    try:
        assert transcriber._model.feature_extractor.mel_filters.shape[0] == 128  # from preprocessor_config.json
        assert transcriber._model.model.n_mels == 128
        clip = librivox[0].audio[: 3 * RATE]
        result = transcriber.transcribe(clip, RATE)
    finally:
        transcriber.teardown()
    assert result.language == "en"
    assert all(0.0 <= w.start <= w.end <= 3.0 for w in result.words)


def test_large_v3_without_preprocessor_config_is_refused_before_loading(models_dir, tiny_large_v3_layout, no_network):
    """Without it faster-whisper would compute 80 mel bins and CTranslate2 would reject them mid-run."""
    folder = _place(tiny_large_v3_layout, models_dir / "whisper-large-v3")
    (folder / "preprocessor_config.json").unlink()
    transcriber = instantiate(compose_paper("runner.device=cpu").asr)
    with pytest.raises(registry.ModelNotFoundError, match=r"preprocessor_config.json is missing\. Fix: place"):
        transcriber.setup()


def test_paper_preset_resolves_to_plain_values():
    """Every interpolation resolves (a typo in a preset option would only show at run time otherwise)."""
    container = OmegaConf.to_container(compose_paper(), resolve=True)
    assert container["separate"]["chunk_seconds"] > 2 * container["separate"]["crossfade_seconds"]
