"""Speaker identity: Resemblyzer embeddings of real voices, clustering per video, bad input, the ONNX backend."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from mikupal.records import Face
from mikupal.speakers.base import EmbeddingSkipped
from mikupal.speakers.clustering import cluster, count_voices
from mikupal.speakers.stage import SpeakersStage, video_report_path
from mikupal.testing.speakers import make_utterances, run_stage

RATE = 16000


def test_resemblyzer_separates_the_three_real_voices(voices, resemblyzer):
    """Every same-speaker pair is more similar than every different-speaker pair (LibriVox, Allison, ALSA)."""
    vectors, names = [], []
    for clip in voices:
        try:
            vectors.append(resemblyzer.embed(clip.audio, RATE).vector)
            names.append(clip.speaker)
        except EmbeddingSkipped as e:
            assert e.reason == "too_short" and clip.speaker == "alsa"  # two 1.4 s announcements hold < 1.2 s of speech
    v, s = np.stack(vectors), np.array(names)
    sim = v @ v.T
    same = sim[(s[:, None] == s[None, :]) & ~np.eye(len(s), dtype=bool)]
    different = sim[s[:, None] != s[None, :]]
    assert len(set(names)) == 3 and len(names) >= 21
    assert same.min() > different.max(), (same.min(), different.max())
    assert same.mean() > 0.8 and different.mean() < 0.6
    labels = cluster(v, 0.35)
    assert len(set(labels)) == 3
    for label in set(labels):  # each cluster is one speaker
        assert len(set(s[labels == label])) == 1


def test_voices_inside_an_utterance_are_counted(voices, resemblyzer):
    by = {}
    for c in voices:
        by.setdefault(c.speaker, []).append(c.audio)
    librivox, allison = by["librivox"], by["allison"]
    pause = np.zeros(3200, np.float32)
    for i in range(4):
        single = resemblyzer.embed(np.concatenate([allison[2 * i], pause, allison[2 * i + 1]]), RATE)
        assert count_voices(single.partials, 0.4, 2) == 1
        two = resemblyzer.embed(np.concatenate([librivox[i], pause, allison[i + 4]]), RATE)
        assert count_voices(two.partials, 0.4, 2) == 2


def test_stage_clusters_a_video_links_faces_and_skips_bad_input(tmp_path, voices):
    """One video: alternating speakers -> one id per speaker; too short and silent -> null with a reason."""
    from mikupal.testing.voices import interleave

    clips = [c for c in interleave([c for c in voices if c.speaker != "alsa"])]
    audio = [c.audio for c in clips] + [voices[0].audio[: int(0.8 * RATE)], np.zeros(2 * RATE, np.float32)]
    items = make_utterances(tmp_path, "talk-0000abcd", audio)
    face = Face(track_id=3, box=[10.0, 20.0, 90.0, 120.0], asd_score=0.8, clip=None)
    items[0] = replace(items[0], face=face)
    results, counts = run_stage(SpeakersStage, tmp_path, items, "stages=[extract,speakers]")
    assert list(results) == [u.id for u in items]  # nothing lost
    out = {uid: r[0] for uid, r in results.items()}
    truth = [c.speaker for c in clips]
    ids = [out[u.id].speaker.id for u in items[: len(clips)]]
    assert {t: {i for i, tt in zip(ids, truth) if tt == t} for t in set(truth)} == {
        "librivox": {"talk-0000abcd-spk0"},
        "allison": {"talk-0000abcd-spk1"},
    }
    assert all(out[u.id].speaker.n_speakers == 1 for u in items[: len(clips)])
    assert all(0.7 < out[u.id].speaker.similarity <= 1.0 for u in items[: len(clips)])
    short, silent = items[-2].id, items[-1].id
    assert out[short].speaker is None and counts[short] == {"speakers.skipped.too_short": 1}
    assert out[silent].speaker is None and counts[silent] == {"speakers.skipped.silent": 1}
    report = json.loads((tmp_path / video_report_path("talk-0000abcd")).read_text())
    spk0 = next(s for s in report["speakers"] if s["id"] == "talk-0000abcd-spk0")
    assert spk0["faces"] == [{"utterance_id": items[0].id, **face.to_dict()}]
    assert spk0["face_coverage"] == pytest.approx(1 / 5)
    assert report["skipped"] == {short: "too_short", silent: "silent"}
    assert (tmp_path / "speakers" / "embeddings" / f"{items[0].id}.npz").is_file()


def test_a_video_with_one_utterance_has_one_speaker(tmp_path, voices):
    items = make_utterances(tmp_path, "solo-0000abcd", [voices[0].audio])
    results, counts = run_stage(SpeakersStage, tmp_path, items, "stages=[extract,speakers]")
    (u,) = results[items[0].id]
    assert u.speaker.id == "solo-0000abcd-spk0" and u.speaker.similarity == 1.0 and u.speaker.n_speakers == 1
    assert counts[items[0].id] == {"speakers.embedded": 1}


def test_unreadable_audio_is_an_item_error_and_the_others_go_on(tmp_path, voices):
    items = make_utterances(tmp_path, "bad-0000abcd", [voices[0].audio, voices[1].audio])
    (tmp_path / items[1].audio).write_bytes(b"not audio")
    results, _ = run_stage(SpeakersStage, tmp_path, items, "stages=[extract,speakers]")
    assert results[items[0].id][0].speaker.id == "bad-0000abcd-spk0"
    assert isinstance(results[items[1].id], Exception) and "cannot read audio" in str(results[items[1].id])


# ---------------------------------------------------------------------------------------------------- ONNX backend
def _mean_logmel_model(path, n_mels: int = 40) -> None:
    """A tiny real ONNX 'speaker model': the mean log-mel spectrum of the window ([N, T, n_mels] -> [N, n_mels])."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node("ReduceMean", ["feats"], ["embedding"], axes=[1], keepdims=0)
    graph = helper.make_graph(
        [node],
        "mean_logmel",
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, ["N", "T", n_mels])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", n_mels])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_onnx_backend_loads_a_user_model_from_the_registry(tmp_path, monkeypatch, voices):
    from mikupal.registry import ModelNotFoundError
    from mikupal.speakers.onnx import OnnxSpeakerEmbedder

    monkeypatch.setenv("MIKUPAL_MODELS_DIR", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match=r"speaker-onnx.*model\.onnx.*place"):
        OnnxSpeakerEmbedder(n_mels=40, mean_normalize=False).setup()
    (tmp_path / "speaker-onnx").mkdir()
    _mean_logmel_model(tmp_path / "speaker-onnx" / "model.onnx")
    with pytest.raises(ValueError, match="rank-3 input.*features=waveform"):
        OnnxSpeakerEmbedder(features="waveform").setup()
    backend = OnnxSpeakerEmbedder(n_mels=40, mean_normalize=False)
    backend.setup()
    emb = backend.embed(voices[0].audio, RATE)
    assert emb.vector.shape == (40,) and np.isclose(np.linalg.norm(emb.vector), 1.0)
    assert emb.partials.shape[0] == len(range(0, len(voices[0].audio) - 25600 + 1, 12800)) + 1
    with pytest.raises(EmbeddingSkipped) as skipped:
        backend.embed(voices[0].audio[:8000], RATE)
    assert skipped.value.reason == "too_short"
    # the stage runs with it through config (speakers=onnx)
    items = make_utterances(tmp_path / "run", "onnx-0000abcd", [voices[0].audio, voices[1].audio])
    results, _ = run_stage(
        SpeakersStage, tmp_path / "run", items, "stages=[extract,speakers]", "speakers=onnx", "speakers.n_mels=40",
        "speakers.mean_normalize=false",
    )
    assert all(results[u.id][0].speaker.id.startswith("onnx-0000abcd-spk") for u in items)


def test_worker_threads_change_neither_speakers_nor_the_config_hash(tmp_path, voices):
    from mikupal.testing.config import compose_pipeline

    audio = [c.audio for c in voices[:4]]
    runs = []
    for workers in (1, 2):
        run_dir = tmp_path / f"w{workers}"
        items = make_utterances(run_dir, "talk-0000abcd", audio)
        overrides = ("stages=[extract,speakers]", f"speakers.workers={workers}")
        runs.append(run_stage(SpeakersStage, run_dir, items, *overrides))
    (one, one_counts), (two, two_counts) = runs
    assert [r[0].speaker for r in one.values()] == [r[0].speaker for r in two.values()]
    assert one_counts == two_counts

    def config(workers: int) -> dict:
        cfg = compose_pipeline(f"input={tmp_path}", f"run_dir={tmp_path}", f"speakers.workers={workers}")
        return SpeakersStage(cfg).stage_config()

    assert config(1) == config(2) and "workers" not in config(1)["speakers"]
