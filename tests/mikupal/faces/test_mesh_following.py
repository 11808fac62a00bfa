"""Following faces with the face mesh between detector frames (``faces.follow_with_mesh``, MediaPipe-style)."""

from __future__ import annotations

import cmath

import cv2
import numpy as np
import pytest

from mikupal.faces.mesh import CHIN, FOREHEAD, NOSE_TIP, NUM_LANDMARKS, FaceMesh, MeshFollower, similarity
from mikupal.records import Utterance
from mikupal.testing import loaded
from mikupal.testing.talking_faces import astronaut_face, talking_clip
from mikupal.testing.vision import box_iou, run_vision


def _transform(z: complex, shift: tuple[float, float], pts: np.ndarray, centre=(0.0, 0.0)) -> np.ndarray:
    c = complex(*centre)
    w = (pts[:, 0] + 1j * pts[:, 1] - c) * z + c + complex(*shift)
    return np.stack([w.real, w.imag], axis=1)


def test_similarity_recovers_scale_rotation_and_shift():
    pts = np.random.default_rng(0).normal(size=(50, 2)) * 20
    z = 1.1 * cmath.exp(1j * 0.2)
    moved = _transform(z, (5.0, -3.0), pts)
    got, ref_mean, cur_mean = similarity(pts, moved)
    assert abs(got - z) < 1e-9
    assert np.allclose(ref_mean, pts.mean(axis=0)) and np.allclose(cur_mean, moved.mean(axis=0))


def _face_points() -> np.ndarray:
    """468 points shaped like a face 100 px tall centred at (200, 150): forehead up, chin down, nose in between."""
    pts = np.random.default_rng(1).uniform([-40, -50], [40, 50], size=(NUM_LANDMARKS, 2)) + [200, 150]
    pts[FOREHEAD], pts[CHIN], pts[NOSE_TIP] = (200, 100), (200, 200), (200, 150)
    return pts


class _ScriptedMesh:
    """A face mesh whose "frames" are the points it returns (``None``: no face); records the boxes it is given."""

    def __init__(self) -> None:
        self.boxes: list[np.ndarray] = []

    def landmarks(self, frame, box, keypoints=None):
        self.boxes.append(np.array(box, dtype=float))
        if frame is None:
            return None, 0.1
        return np.hstack([frame, np.zeros((len(frame), 1))]).astype(np.float32), 0.99


def test_a_followed_box_moves_with_the_face_and_each_crop_comes_from_the_box_before():
    face = _face_points()
    z = 1.2 * cmath.exp(1j * 0.1)
    frames = [
        face,
        _transform(1, (6.0, -4.0), face),  # the face moves right and up
        None,  # the mesh misses it: the box stays
        _transform(z, (6.0, -4.0), face, centre=(200, 150)),  # and grows and turns
    ]
    box, keypoints = np.array([160.0, 95.0, 240.0, 205.0]), np.array([[185.0, 130.0], [215.0, 130.0]])
    mesh, follower = _ScriptedMesh(), MeshFollower(box, keypoints)
    steps = [follower.step(mesh, frame) for frame in frames]
    assert np.allclose(steps[0].box, box)  # the detector frame keeps the detector's box
    assert np.allclose(steps[1].box, box + [6, -4, 6, -4])
    assert steps[2].points is None and np.allclose(steps[2].box, steps[1].box)
    centre = np.array([206.0, 146.0])
    half = np.array([40.0, 55.0]) * abs(z)
    assert np.allclose(steps[3].box, np.concatenate([centre - half, centre + half]))
    assert np.allclose(follower.keypoints, _transform(z, (6.0, -4.0), keypoints, centre=(200, 150)))
    # each frame's crop came from the box the face had in the frame before
    assert all(np.allclose(given, b) for given, b in zip(mesh.boxes, [box] + [s.box for s in steps[:-1]]))


def test_a_moving_jaw_does_not_move_the_box():
    face = _face_points()
    talking = face.copy()
    below = (face - face[NOSE_TIP]) @ (face[CHIN] - face[FOREHEAD]) > 0
    talking[below] += [0.0, 12.0]  # the mouth opens, the chin drops
    follower = MeshFollower([160.0, 95.0, 240.0, 205.0])
    mesh = _ScriptedMesh()
    follower.step(mesh, face)
    assert np.allclose(follower.step(mesh, talking).box, [160.0, 95.0, 240.0, 205.0])


@pytest.fixture(scope="module")
def mesh():
    yield from loaded(FaceMesh())


def test_following_over_several_interpreters_gives_the_steps_of_one(mesh):
    """``follow_many`` runs each chain on one interpreter, the chains spread over ``workers``: the same steps."""
    face = astronaut_face(0)
    frames = []
    for k, opening in enumerate((0.0, 0.4, 0.8, 0.3, 0.6, 0.1, 0.9)):
        img = np.full((360, 640, 3), 96, np.uint8)
        img[40 + 2 * k : 360 - 40 + 2 * k, 160 + 5 * k : 480 + 5 * k] = cv2.resize(face.render(opening), (320, 280))
        frames.append(img)
    start = (230.0, 90.0, 400.0, 260.0)
    noise = np.random.default_rng(1).integers(0, 256, (360, 640, 3), dtype=np.uint8)
    chains = [(start, frames), (start, frames[2:5]), ((50.0, 50.0, 250.0, 250.0), [noise, noise]), (start, frames[:1])]
    one = mesh.follow_many([(MeshFollower(box), f) for box, f in chains])
    pool = FaceMesh(workers=2)
    pool.setup()
    try:
        many = pool.follow_many([(MeshFollower(box), f) for box, f in chains])
    finally:
        pool.teardown()
    assert [len(s) for s in many] == [7, 3, 2, 1]
    for a, b in zip(one, many):
        for sa, sb in zip(a, b):
            assert sa.presence == sb.presence and np.array_equal(sa.box, sb.box)
            assert (sa.points is None and sb.points is None) or np.array_equal(sa.points, sb.points)
    assert all(s.points is None for s in many[2])
    assert many[0][-1].box[0] > many[0][0].box[0] + 20  # the face moved 30 px right over the chain; the box too


def _boxes_by_frame(track) -> dict[int, np.ndarray]:
    return {int(f): b for f, b in zip(track.frames, track.boxes)}


def test_a_panning_face_is_followed_between_detector_frames(tmp_path):
    """A real face photo panned 12 px a frame across a 1280×720 frame: with the detector on every 10th frame, the
    followed boxes stay on the face (as the detector on every frame finds it) and it stays one track; the carried
    ones fall behind, and the track breaks at the next detector frame."""

    def pan(i: int, frame: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(frame, np.float32([[1, 0, 12 * (i % 50) - 300], [0, 1, 0]]), frame.shape[1::-1],
                              borderValue=(96, 96, 96))

    clip = talking_clip(tmp_path / "pan.mp4", 2.0, boxes=[(440, 160, 840, 560)], frame_hook=pan)
    utt = [Utterance(id="pan-00000", video_id="pan", source=str(clip.path), start=0.0, end=1.96, audio="a.flac")]
    runs = {
        name: run_vision(tmp_path / name, utt, *overrides, asd=False).tracks("pan-00000")
        for name, overrides in {
            "truth": ["faces.detect_every=1"],
            "followed": ["faces.detect_every=10", "faces.follow_with_mesh=true"],
            "carried": ["faces.detect_every=10", "faces.follow_with_mesh=false"],
        }.items()
    }
    assert len(runs["truth"].tracks) == len(runs["followed"].tracks) == 1
    assert len(runs["carried"].tracks) > 1  # the carried box falls so far behind that the track breaks
    truth = _boxes_by_frame(runs["truth"].tracks[0])
    iou = {}
    for name in ("followed", "carried"):
        between = {}
        for track in runs[name].tracks:
            assert np.isfinite(track.mouth).mean() > 0.95
            boxes = _boxes_by_frame(track)
            between.update({f: boxes[f] for f, d in zip(track.frames, track.detected) if not d and int(f) in truth})
        iou[name] = np.median([box_iou(box, truth[f]) for f, box in between.items()])
    assert runs["followed"].tracks[0].n_detected == 5
    assert iou["followed"] > 0.9 > iou["carried"] + 0.1, iou
