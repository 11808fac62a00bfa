"""TalkNet (mikupal.models.talknet): upstream checkpoint layout, strict loading, shapes, chunked scoring, smoothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mikupal.models._checkpoint import CheckpointMismatchError
from mikupal.models.mfcc import talknet_mfcc
from mikupal.models.talknet import (
    TalkNet,
    TalkNetScorer,
    crop_face_track,
    mouth_region,
    smooth_scores,
)

# A sample of the keys of TalkNet-ASD's pretrain_TalkSet.model (state dict of its `talkNet` training wrapper).
UPSTREAM_KEYS = [
    "model.visualFrontend.frontend3D.0.weight",
    "model.visualFrontend.frontend3D.1.running_var",
    "model.visualFrontend.resnet.layer1.downsample.weight",  # present although stage 1 never uses it
    "model.visualFrontend.resnet.layer4.outbnb.bias",
    "model.visualTCN.net.0.net.4.gamma",  # global layer norm
    "model.visualTCN.net.4.net.3.weight",  # PReLU
    "model.visualConv1D.net.3.bias",
    "model.audioEncoder.conv1.weight",
    "model.audioEncoder.layer3.5.se.fc.2.weight",
    "model.audioEncoder.layer4.0.downsample.1.running_mean",
    "model.crossA2V.self_attn.in_proj_weight",
    "model.crossV2A.self_attn.out_proj.bias",
    "model.crossV2A.linear1.weight",
    "model.selfAV.norm2.bias",
    "lossAV.FC.weight",
    "lossA.FC.bias",
    "lossV.FC.weight",
]


@pytest.fixture(scope="module")
def net() -> TalkNet:
    torch.manual_seed(0)
    model = TalkNet()
    g = torch.Generator().manual_seed(1)
    for module in model.modules():  # non-trivial BatchNorm statistics, so that eval-mode normalisation matters
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=g) + 0.5)
    return model.eval()


@pytest.fixture()
def checkpoint(tmp_path, net):
    path = tmp_path / "pretrain_TalkSet.model"
    torch.save(net.state_dict(), path)  # upstream's saveParameters: torch.save(self.state_dict(), path)
    return path


def _faces(frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, 112, 112), dtype=np.uint8)


def test_state_dict_has_the_upstream_layout(net):
    state = net.state_dict()
    assert len(state) == 487
    for key in UPSTREAM_KEYS:
        assert key in state, key
    assert "model.audioEncoder.layer1.0.downsample.0.weight" not in state  # stage 1 keeps its width: no projection
    assert {k.split(".")[0] for k in state} == {"model", "lossAV", "lossA", "lossV"}
    assert state["model.crossA2V.self_attn.in_proj_weight"].shape == (384, 128)
    assert state["model.selfAV.self_attn.in_proj_weight"].shape == (768, 256)
    assert state["lossAV.FC.weight"].shape == (2, 256) and state["lossA.FC.weight"].shape == (2, 128)
    # upstream prints "Model para number = 15.01" (millions of 2**20) for its talkNetModel
    assert sum(p.numel() for p in net.model.parameters()) == 15_743_451


def test_upstream_file_loads_exactly(checkpoint, net):
    loaded = TalkNet.from_checkpoint(checkpoint)
    assert not loaded.training
    for name, tensor in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_dataparallel_prefix_is_stripped_like_upstream(tmp_path, net):
    state = {("module." + k if k.startswith("model.") else k): v for k, v in net.state_dict().items()}
    torch.save(state, tmp_path / "dp.model")
    loaded = TalkNet.from_checkpoint(tmp_path / "dp.model")
    assert torch.equal(loaded.state_dict()["model.selfAV.norm2.bias"], net.state_dict()["model.selfAV.norm2.bias"])


def test_auxiliary_heads_and_step_counters_may_be_absent(tmp_path, net):
    state = {
        k: v
        for k, v in net.state_dict().items()
        if not k.startswith(("lossA.", "lossV.")) and not k.endswith("num_batches_tracked")
    }
    torch.save(state, tmp_path / "slim.model")
    loaded = TalkNet.from_checkpoint(tmp_path / "slim.model")
    assert torch.equal(loaded.lossAV.FC.weight, net.lossAV.FC.weight)


def test_missing_key_is_refused_by_name(tmp_path, net):
    state = net.state_dict()
    del state["model.selfAV.norm1.weight"]
    torch.save(state, tmp_path / "missing.model")
    with pytest.raises(CheckpointMismatchError, match=r"missing keys: model\.selfAV\.norm1\.weight"):
        TalkNet.from_checkpoint(tmp_path / "missing.model")


def test_renamed_or_bare_layout_is_refused(tmp_path, net):
    state = net.state_dict()
    state["lossAV.fc.weight"] = state.pop("lossAV.FC.weight")
    torch.save(state, tmp_path / "renamed.model")
    with pytest.raises(CheckpointMismatchError, match=r"lossAV\.FC\.weight.*unexpected keys: lossAV\.fc\.weight"):
        TalkNet.from_checkpoint(tmp_path / "renamed.model")
    # the inner model's state dict alone (no `model.` prefix) is not the upstream file layout
    torch.save(net.model.state_dict(), tmp_path / "bare.model")
    with pytest.raises(CheckpointMismatchError, match="missing keys"):
        TalkNet.from_checkpoint(tmp_path / "bare.model")


def test_missing_file_names_it_and_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrain_TalkSet.model") as info:
        TalkNetScorer(tmp_path / "pretrain_TalkSet.model")
    assert "TalkNet-ASD" in str(info.value)


def test_forward_shapes_and_per_clip_independence(net):
    mfcc = torch.randn(2, 40, 13, generator=torch.Generator().manual_seed(0)) * 10
    faces = torch.from_numpy(np.stack([_faces(10, 1), _faces(10, 2)])).float()
    with torch.inference_mode():
        both = net(mfcc, faces)
        first = net(mfcc[:1], faces[:1])
        second = net(mfcc[1:], faces[1:])
    assert both.shape == (2, 10)
    # batching clips must not leak context between them (upstream stacks batch into time in its 3D conv)
    torch.testing.assert_close(both, torch.cat([first, second]), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="4 MFCC frames per video frame"):
        net(mfcc[:, :39], faces)


def test_scorer_averages_chunked_scores_over_durations(net):
    faces = _faces(30)
    t = np.arange(30 * 640) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    scorer = TalkNetScorer(net, durations=(1, 2))
    result = scorer.score(faces, audio)
    # 1 + ceil((19200 - 400) / 160) = 119 MFCC frames -> 116 usable (multiple of 4) -> 29 scored video frames
    assert result.raw.shape == (29,)
    a = torch.from_numpy(talknet_mfcc(audio)[:116]).float()
    v = torch.from_numpy(faces[:29]).float()
    with torch.inference_mode():
        one_second = torch.cat([net(a[None, :100], v[None, :25])[0], net(a[None, 100:], v[None, 25:])[0]])
        two_seconds = net(a[None], v[None])[0]
    np.testing.assert_allclose(result.raw, ((one_second + two_seconds) / 2).numpy(), atol=1e-5)
    assert result.frames.shape == (30,)  # every video frame gets a score, also the one past the audio
    np.testing.assert_allclose(result.frames, smooth_scores(result.raw, 30))
    assert result.track == pytest.approx(float(result.frames.mean()))

    rounded = TalkNetScorer(net, durations=(1,), round_decimals=1).raw_scores(talknet_mfcc(audio)[:20], faces[:5])
    assert rounded.shape == (5,)
    np.testing.assert_allclose(rounded * 10, np.round(rounded * 10), atol=1e-9)
    with pytest.raises(ValueError, match="16 kHz"):
        scorer.score(faces, audio, sample_rate=48000)
    with pytest.raises(ValueError, match="too short"):
        scorer.raw_scores(np.zeros((3, 13)), faces)
    assert scorer.to("cpu") is scorer


def test_scorer_accepts_colour_face_crops(net):
    crops = np.zeros((5, 224, 224, 3), np.uint8)
    crops[:, 56:168, 56:168] = 200
    result = TalkNetScorer(net, durations=(1,)).score(crops, np.zeros(3200, np.int16))
    assert result.frames.shape == (5,) and np.isfinite(result.frames).all()


def test_smoothing_window_follows_upstream():
    raw = np.arange(6.0)
    # frame i: mean(raw[max(i-2, 0) : min(i+3, n-1)]); frames past the scores repeat the last defined value
    np.testing.assert_allclose(smooth_scores(raw, 8), [1, 1.5, 2, 2.5, 3, 3.5, 4, 4])
    np.testing.assert_allclose(smooth_scores(np.array([0.7]), 3), [0.7, 0.7, 0.7])


def test_mouth_region_is_the_grey_centre_of_a_224_crop():
    crops = np.zeros((2, 224, 224, 3), np.uint8)
    crops[:, 56:168, 56:168] = (255, 0, 0)  # pure red in the centre
    out = mouth_region(crops)
    assert out.shape == (2, 112, 112) and out.dtype == np.uint8
    assert (out == 76).all()  # ITU-R BT.601 luma of pure red: 0.299 * 255
    assert (mouth_region(crops[..., ::-1].copy(), rgb=False) == 76).all()


def test_face_track_crop_geometry():
    frames = [np.full((240, 320, 3), 30, np.uint8) for _ in range(15)]
    boxes = np.tile([100.0, 60.0, 180.0, 140.0], (15, 1))  # 80 px face, centre (140, 100)
    crops = crop_face_track(frames, boxes)
    assert crops.shape == (15, 224, 224, 3) and crops.dtype == np.uint8
    # with zero-padded median filtering the end frames shrink towards 0 like upstream; the middle is exact:
    # the crop spans y 60..172 and x 84..196, all inside the frame, so it shows only frame pixels
    assert (crops[7] == 30).all()
    near_edge = crop_face_track(frames[:1] * 13, np.tile([0.0, 0.0, 80.0, 80.0], (13, 1)))
    assert (near_edge[6, 0, 0] == 110).all()  # padding colour outside the frame
    with pytest.raises(ValueError):
        crop_face_track(frames, boxes[:3])


def test_score_many_batches_tracks_and_equals_score_one_by_one(net):
    """Tracks of different lengths scored together (chunks of all tracks in shared forward passes, also split
    across passes by max_batch_frames) give each track the result of scoring it alone."""
    rng = np.random.default_rng(4)
    tracks = []
    for frames in (30, 55, 12):
        t = np.arange(frames * 640) / 16000
        audio = (0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
        tracks.append((_faces(frames, seed=frames), audio))
    for max_batch_frames in (750, 50):
        scorer = TalkNetScorer(net, durations=(1, 2), max_batch_frames=max_batch_frames)
        calls = []
        forward = scorer.net.forward
        scorer.net.forward = lambda a, v: calls.append(len(a)) or forward(a, v)
        try:
            together = scorer.score_many(tracks)
        finally:
            del scorer.net.forward
        assert max(calls) > 1 and max(calls) * 25 <= max(max_batch_frames, 50)  # chunks of several tracks per pass
        alone = [scorer.score(faces, audio) for faces, audio in tracks]
        assert len(together) == len(tracks)
        for a, b in zip(together, alone, strict=True):
            assert a.raw.shape == b.raw.shape and a.frames.shape == b.frames.shape
            np.testing.assert_allclose(a.raw, b.raw, atol=1e-5)
            np.testing.assert_allclose(a.frames, b.frames, atol=1e-5)
            assert a.track == pytest.approx(b.track, abs=1e-5)
