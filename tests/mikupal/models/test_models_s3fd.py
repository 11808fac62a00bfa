"""S3FD (mikupal.models.s3fd): upstream checkpoint layout, strict loading, shapes, anchors, NMS, detection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mikupal.models._checkpoint import CheckpointMismatchError
from mikupal.models.s3fd import S3fd, S3FDNet, decode_boxes, nms, postprocess, prior_boxes

# Key layout of TalkNet-ASD's sfd_face.pth (model/faceDetector/s3fd/nets.py): VGG16 convolutions sit at these
# indices of the `vgg` ModuleList (ReLU and pooling layers in between hold no parameters).
VGG_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28, 31, 33)
UPSTREAM_KEYS = (
    {f"vgg.{i}.{p}" for i in VGG_CONV_INDICES for p in ("weight", "bias")}
    | {"L2Norm3_3.weight", "L2Norm4_3.weight", "L2Norm5_3.weight"}
    | {f"extras.{i}.{p}" for i in range(4) for p in ("weight", "bias")}
    | {f"{head}.{i}.{p}" for head in ("loc", "conf") for i in range(6) for p in ("weight", "bias")}
)


@pytest.fixture(scope="module")
def net() -> S3FDNet:
    torch.manual_seed(0)
    return S3FDNet().eval()


@pytest.fixture()
def checkpoint(tmp_path, net):
    path = tmp_path / "sfd_face.pth"
    torch.save(net.state_dict(), path)  # the upstream file is a plain state dict saved with torch.save
    return path


def test_state_dict_keys_and_shapes_match_upstream_layout(net):
    state = net.state_dict()
    assert set(state) == UPSTREAM_KEYS and len(state) == 65
    assert state["vgg.0.weight"].shape == (64, 3, 3, 3)
    assert state["vgg.31.weight"].shape == (1024, 512, 3, 3)  # fc6, dilated
    assert state["vgg.33.weight"].shape == (1024, 1024, 1, 1)  # fc7
    assert state["conf.0.weight"].shape == (4, 256, 3, 3)  # max-out background: 3 background + 1 face
    assert state["conf.3.weight"].shape == (2, 1024, 3, 3)
    assert state["loc.5.weight"].shape == (4, 256, 3, 3)
    for name, channels, scale in (("L2Norm3_3", 256, 10), ("L2Norm4_3", 512, 8), ("L2Norm5_3", 512, 5)):
        assert torch.equal(state[f"{name}.weight"], torch.full((channels,), float(scale)))


def test_upstream_file_loads_exactly(checkpoint, net):
    detector = S3fd(checkpoint)
    for name, tensor in net.state_dict().items():
        assert torch.equal(detector.net.state_dict()[name], tensor), name


def test_missing_file_names_it_and_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="sfd_face.pth") as info:
        S3fd(tmp_path / "sfd_face.pth")
    assert "TalkNet-ASD" in str(info.value)


def test_renamed_key_is_refused_with_both_names(tmp_path, net):
    state = net.state_dict()
    state["conf3_3.weight"] = state.pop("conf.0.weight")
    torch.save(state, tmp_path / "renamed.pth")
    expected = r"missing keys: conf\.0\.weight.*unexpected keys: conf3_3\.weight"
    with pytest.raises(CheckpointMismatchError, match=expected):
        S3fd(tmp_path / "renamed.pth")


def test_wrong_shape_is_refused(tmp_path, net):
    state = net.state_dict()
    state["conf.0.weight"] = torch.zeros(2, 256, 3, 3)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(CheckpointMismatchError, match="conf.0.weight: checkpoint"):
        S3fd(tmp_path / "shape.pth")


def test_forward_shapes_for_a_quarter_scale_480p_frame(net):
    with torch.inference_mode():
        loc, logits, sizes = net(torch.zeros(2, 3, 120, 160))
    # conv3 pools with ceil_mode, conv4/conv5 with floor: 30x40, 15x20, 7x10, 3x5, then two stride-2 extras
    assert sizes == [(30, 40), (15, 20), (7, 10), (3, 5), (2, 3), (1, 2)]
    anchors = sum(h * w for h, w in sizes)
    assert loc.shape == (2, anchors, 4) and logits.shape == (2, anchors, 2)
    assert prior_boxes((120, 160), sizes).shape == (anchors, 4)


def test_prior_boxes_follow_strides_and_anchor_sizes():
    priors = prior_boxes((120, 160), [(30, 40), (15, 20), (7, 10), (3, 5), (2, 3), (1, 2)])
    # first anchor: centre of the top-left stride-4 cell, side 16 px; row-major within a map
    np.testing.assert_allclose(priors[0].numpy(), [2 / 160, 2 / 120, 16 / 160, 16 / 120], rtol=1e-6)
    np.testing.assert_allclose(priors[1].numpy(), [6 / 160, 2 / 120, 16 / 160, 16 / 120], rtol=1e-6)
    np.testing.assert_allclose(priors[40].numpy(), [2 / 160, 6 / 120, 16 / 160, 16 / 120], rtol=1e-6)
    np.testing.assert_allclose(priors[-1].numpy(), [192 / 160, 64 / 120, 512 / 160, 512 / 120], rtol=1e-6)


def test_decode_with_zero_offsets_gives_the_anchor_corners():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    boxes = decode_boxes(torch.zeros(1, 4), priors)
    np.testing.assert_allclose(boxes.numpy(), [[0.4, 0.3, 0.6, 0.7]], rtol=1e-6)
    shifted = decode_boxes(torch.tensor([[10.0, 0.0, 0.0, 0.0]]), priors)  # dx = 10 * 0.1 * w
    np.testing.assert_allclose(shifted.numpy(), [[0.6, 0.3, 0.8, 0.7]], rtol=1e-6)


@pytest.mark.parametrize("as_torch", [False, True])
def test_nms_keeps_best_and_disjoint_boxes(as_torch):
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], dtype=np.float32)
    if as_torch:
        boxes, scores = torch.from_numpy(boxes), torch.from_numpy(scores)
    keep = nms(boxes, scores, 0.3)
    assert list(keep.tolist()) == [3, 2]  # IoU(3, 0) = 0.95 and IoU(3, 1) = 0.65 > 0.3; box 2 is disjoint
    assert list(nms(boxes, scores, 0.99).tolist()) == [3, 0, 1, 2]
    assert list(nms(boxes, scores, 0.99, top_k=2).tolist()) == [3, 0]


def test_postprocess_thresholds_and_caps():
    priors = torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.8, 0.8, 0.1, 0.1], [0.21, 0.2, 0.1, 0.1]])
    logits = torch.tensor([[[0.0, 3.0], [0.0, -5.0], [0.0, 2.0]]])  # face prob .95, .007, .88
    dets = postprocess(torch.zeros(1, 3, 4), logits, priors)[0]
    assert dets.shape == (1, 5)  # prior 1 below 0.05; prior 2 suppressed by prior 0 (IoU 0.82)
    best = torch.sigmoid(torch.tensor(3.0)).item()
    np.testing.assert_allclose(dets[0].numpy(), [best, 0.15, 0.15, 0.25, 0.25], rtol=1e-5)
    assert len(postprocess(torch.zeros(1, 3, 4), logits, priors, nms_threshold=0.9, keep_top_k=1)[0]) == 1


def test_detect_returns_anchor_boxes_in_source_pixels():
    # Zero weights: every anchor decodes to itself with face probability sigmoid(5) = 0.993; the detections must
    # be square anchors scaled back to the 512x512 source (side 16 px at scale 0.25 -> 64 px), with that score.
    detector = S3fd(None)
    with torch.no_grad():
        for param in detector.net.parameters():
            param.zero_()
        detector.net.conf[0].bias.copy_(torch.tensor([0.0, 0.0, 0.0, 5.0]))
        for head in detector.net.conf[1:]:
            head.bias.copy_(torch.tensor([0.0, 5.0]))
    image = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    dets = detector.detect(image, conf_threshold=0.9, scales=(0.25,))
    assert dets.dtype == np.float64 and dets.ndim == 2 and dets.shape[1] == 5 and len(dets) > 0
    sides = dets[:, 2] - dets[:, 0]
    np.testing.assert_allclose(sides, dets[:, 3] - dets[:, 1], rtol=1e-5)
    assert set(np.round(sides).astype(int)) <= {64, 128, 256, 512, 1024, 2048}
    np.testing.assert_allclose(dets[:, 4], torch.sigmoid(torch.tensor(5.0)).item(), rtol=1e-6)
    assert len(detector.detect(image, conf_threshold=0.999)) == 0
    assert detector.to("cpu") is detector and next(detector.net.parameters()).device.type == "cpu"


def test_detect_rejects_grey_frames():
    with pytest.raises(ValueError, match="RGB"):
        S3fd(None).detect(np.zeros((64, 64), np.uint8))


def test_detect_many_equals_detect_frame_by_frame():
    torch.manual_seed(3)
    detector = S3fd(None)
    with torch.no_grad():  # spread the face scores so that some frames have detections
        for head in detector.net.conf:
            head.weight.mul_(30)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(3)]
    frames.append(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))  # a different size in the same call
    together = detector.detect_many(frames, conf_threshold=0.5, scales=(0.5, 1.0), batch_size=3)
    assert sum(len(d) for d in together) > 0
    for frame, dets in zip(frames, together, strict=True):
        alone = detector.detect(frame, conf_threshold=0.5, scales=(0.5, 1.0))
        assert dets.shape == alone.shape
        # batched convolutions may sum in another order: equal up to float32 rounding (pixels)
        np.testing.assert_allclose(dets, alone, rtol=1e-5, atol=1e-4)


def test_detect_many_on_real_frames_equals_detect_and_uses_weights_where_placed():
    """Real frames (scikit-image's astronaut photo, shifted copies at 1280x720): batched detection equals frame
    by frame. With the real sfd_face.pth placed under $MIKUPAL_MODELS_DIR it is used (and must find the face);
    otherwise a random-init network with sharpened face scores."""
    from mikupal.registry import ModelNotFoundError, resolve
    from mikupal.testing.media import TestDataMissing, face_photo

    try:
        photo = face_photo()
    except TestDataMissing as e:
        pytest.skip(str(e))
    frames = []
    for dx in (0, 200, 400, 600):
        frame = np.full((720, 1280, 3), 90, np.uint8)
        frame[100:612, 100 + dx : 612 + dx] = photo
        frames.append(frame)
    try:
        detector, real = S3fd(resolve("s3fd")), True
    except (ModelNotFoundError, FileNotFoundError):
        torch.manual_seed(5)
        detector, real = S3fd(None), False
        with torch.no_grad():
            for head in detector.net.conf:
                head.weight.mul_(30)
    threshold = 0.9 if real else 0.5
    together = detector.detect_many(frames, conf_threshold=threshold, batch_size=4)
    assert sum(len(d) for d in together) > 0
    for frame, dets in zip(frames, together, strict=True):
        alone = detector.detect(frame, conf_threshold=threshold)
        assert dets.shape == alone.shape
        np.testing.assert_allclose(dets, alone, rtol=1e-5, atol=1e-3)
    if real:  # the face sits at rows 100..612 and moves right by 200 px a frame
        for dx, dets in zip((0, 200, 400, 600), together, strict=True):
            assert 100 + dx < dets[0, 0] < dets[0, 2] < 612 + dx
