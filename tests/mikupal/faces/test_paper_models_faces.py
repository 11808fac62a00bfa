"""faces=s3fd: S3FD through the faces backend interface and the faces stage, boxes in the right pixels, setup errors.

The checkpoint has TalkNet-ASD's ``sfd_face.pth`` layout with a random VGG trunk and fixed heads that make every
stride-8 anchor (32 pixels of the network input) a face, so the boxes the backend must return are known exactly:
at ``scale`` 0.25 they are 128-pixel squares centred on a 32-pixel grid of the frame given to the detector.
"""

from __future__ import annotations

import numpy as np
import pytest

from mikupal import registry
from mikupal.faces.base import Detection
from mikupal.faces.stage import FacesStage
from mikupal.models import CheckpointMismatchError
from mikupal.stage import BackendConfigError
from mikupal.testing.config import compose_pipeline
from mikupal.testing.paper_models import patterned_frame

pytestmark = pytest.mark.paper  # the paper preset's models (stand-ins with the real layout)


def off_grid(value: float, offset: float, step: float) -> float:
    """Distance from ``value`` to the nearest point ``offset + k * step``."""
    r = (value - offset) % step
    return min(r, step - r)


def s3fd_backend(tmp_path, *overrides):
    cfg = compose_pipeline(f"input={tmp_path}", f"run_dir={tmp_path / 'run'}", "faces=s3fd", *overrides)
    return FacesStage(cfg).build_backends()["faces"]  # as the stage builds it (stage-level keys left out)


def test_detections_are_anchor_boxes_in_pixels_of_the_given_frame(tmp_path, s3fd_ckpt):
    detector = s3fd_backend(tmp_path, f"faces.model={s3fd_ckpt}", "faces.device=cpu")
    assert "analysis_fps" in FacesStage.stage_keys() and detector.scales == (0.25,)
    with pytest.raises(RuntimeError, match=r"setup\(\) must be called"):
        detector.detect([patterned_frame(320, 180)])
    detector.setup()
    try:
        small, other, large = patterned_frame(320, 180), patterned_frame(320, 180, seed=1), patterned_frame(640, 360)
        found = detector.detect([small, large, other])  # a batch mixing frame sizes
        assert detector.detect([]) == []
    finally:
        detector.teardown()
    assert [len(f) > 0 for f in found] == [True, True, True]
    for frame_dets in found:
        for d in frame_dets:
            assert isinstance(d, Detection) and d.keypoints is None
            assert 0.9 < d.score <= 1.0
            # stride-8 anchors of 32 network pixels at scale 0.25: 128-pixel squares, centres at 32 k + 16
            assert d.width == pytest.approx(128, abs=1e-3) and d.height == pytest.approx(128, abs=1e-3)
            cx, cy = (d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2
            assert off_grid(cx, 16, 32) < 1e-3 and off_grid(cy, 16, 32) < 1e-3
    # the network ignores the content (fixed heads): equal frames sizes give equal boxes, a larger frame more boxes
    assert [d.box for d in found[0]] == [d.box for d in found[2]]
    assert len(found[1]) > len(found[0])
    centres = [((d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2) for d in found[1]]
    assert max(c[0] for c in centres) > 320  # boxes cover the whole larger frame, not just its top-left part


def test_faces_stage_maps_s3fd_boxes_to_source_pixels_at_25_fps(tmp_path, s3fd_ckpt):
    """1280x720 at 30 fps, analysed at 640x360 and 25 fps: boxes come back doubled, in source pixels."""
    from mikupal.faces.artifact import WindowTracks, tracks_path
    from mikupal.faces.stage import FacesStage
    from mikupal.ids import video_id
    from mikupal.records import Utterance
    from mikupal.stage import StageContext
    from mikupal.testing.media import write_video

    video = write_video(tmp_path / "clip.mp4", None, 16000, lambda i, t: patterned_frame(1280, 720), 0.8, fps=30)
    run_dir = tmp_path / "run"
    cfg = compose_pipeline(
        f"input={video}", f"run_dir={run_dir}", "faces=s3fd", f"faces.model={s3fd_ckpt}", "faces.device=cpu",
        "faces.max_side=640", "faces.landmarks=null", "fail_fast=true",
    )
    item = Utterance(id="clip-00000", video_id=video_id(video), source=str(video), start=0.0, end=0.6, audio="")
    ctx = StageContext(run_dir=run_dir, rank=0, world_size=1, cfg=cfg)
    stage = FacesStage(cfg)
    stage.setup(ctx)
    try:
        assert stage.process(item, ctx) == [item]
    finally:
        stage.teardown()
    window = WindowTracks.read(run_dir / tracks_path(item.id))
    assert window.status == "ok" and window.detector == f"S3fdDetector({s3fd_ckpt})"
    assert window.source_size == [1280, 720] and window.analysis_size == [640, 360]
    assert window.n_frames == 15 and window.detector_frames == 15  # 0.6 s at 25 fps, detector on every frame
    assert window.tracks and all(len(t) == 15 for t in window.tracks)
    interior = 0
    for track in window.tracks:
        for x1, y1, x2, y2 in track.boxes:
            # anchor edges at 64 k + 32 source pixels (analysis 32 k + 16, doubled), or the clipped frame edge
            for value, edge in ((x1, 1280), (x2, 1280), (y1, 720), (y2, 720)):
                assert value in (0.0, float(edge)) or off_grid(value, 32, 64) <= 0.11, value
            if 0 < x1 and x2 < 1280 and 0 < y1 and y2 < 720:
                interior += 1
                assert (x2 - x1, y2 - y1) == (pytest.approx(256, abs=0.2), pytest.approx(256, abs=0.2))
    assert interior > 0
    np.testing.assert_allclose(window.tracks[0].scores, 1.0, atol=1e-3)


def test_missing_checkpoint_fails_at_setup_with_the_placement(tmp_path, models_dir, no_network):
    detector = s3fd_backend(tmp_path, "faces.device=cpu")  # construction loads nothing
    with pytest.raises(registry.ModelNotFoundError) as info:
        detector.setup()
    message = str(info.value)
    assert f"{models_dir / 's3fd' / 'sfd_face.pth'} is missing" in message
    assert "1KafnHz7ccT-3IyddBsL5yi2xGtxAKypt" in message  # where to get it


def test_a_file_of_another_model_is_refused_naming_it(tmp_path, models_dir, talknet_ckpt):
    (models_dir / "s3fd").mkdir(parents=True)
    (models_dir / "s3fd" / "sfd_face.pth").write_bytes(talknet_ckpt.read_bytes())
    detector = s3fd_backend(tmp_path, "faces.device=cpu")
    with pytest.raises(CheckpointMismatchError, match=r"sfd_face\.pth does not match S3FDNet: missing keys"):
        detector.setup()


def test_settings_are_checked_at_construction(tmp_path):
    from mikupal.faces.s3fd import S3fdDetector

    with pytest.raises(ValueError, match="faces.scale"):
        S3fdDetector(scale=0)
    with pytest.raises(ValueError, match="faces.device must be auto, cpu, cuda or cuda:N"):
        S3fdDetector(device="gpu0")
    with pytest.raises(BackendConfigError, match=r"unknown setting\(s\) \['max_sid'\]"):
        s3fd_backend(tmp_path, "+faces.max_sid=640")  # a typo of a stage-level key
    assert s3fd_backend(tmp_path, "faces.scale=[0.25,0.5]").scales == (0.25, 0.5)
