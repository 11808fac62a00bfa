"""Audio-visual clips with known truth for testing face tracking and active speaker detection.

Nothing here is committed media: a real face photo (scikit-image's ``astronaut``, Eileen Collins, public domain
NASA photo) is animated so that its mouth opens and closes with the RMS envelope of real speech (LibriVox
recordings and CMU test utterances from Debian ``pocketsphinx-testdata``), and the result is muxed with that speech
into an MP4 with PyAV. Several faces can share a frame; each one's mouth follows its own signal (the speech on the
audio track, a *different* speech signal, or nothing), so which face is speaking is known exactly.

The mouth is opened by an image warp: everything below the lip line inside a window around the mouth (lower lip,
chin) is pushed down by the opening, with the shift fading out below the chin, and the gap between the lips is
painted in a dark mouth-interior colour whose edges fade at the lip corners. The face mesh reads this as an open
mouth (its mouth-opening ratio rises roughly linearly with the gap), which is what a lip-sync detector needs; it is
not a photorealistic talking head.

Used by the vision tests (``tests/mikupal/{faces,asd}``) and ``benchmarks/bench_vision.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mikupal.testing.media import TestDataMissing, face_photo, librivox_clips, write_video

POCKETSPHINX_DATA = Path("/usr/share/pocketsphinx/test/data")


@dataclass(frozen=True)
class MouthGeometry:
    """Where the mouth is in a photo (pixels): lip corners, the middle of the lip line, and the chin tip."""

    left: tuple[float, float]
    right: tuple[float, float]
    centre: tuple[float, float]
    chin: tuple[float, float]

    def flipped(self, width: int) -> MouthGeometry:
        """The same mouth in the horizontally mirrored photo."""

        def f(p: tuple[float, float]) -> tuple[float, float]:
            return (width - 1 - p[0], p[1])

        return MouthGeometry(left=f(self.right), right=f(self.left), centre=f(self.centre), chin=f(self.chin))


#: The astronaut photo's mouth (512×512 image), measured once with the face mesh and fixed here so the test truth
#: does not depend on the model under test.
ASTRONAUT_MOUTH = MouthGeometry(left=(200.7, 138.9), right=(245.6, 143.1), centre=(222.4, 145.6), chin=(221.3, 172.3))
#: A square around the astronaut's head and shoulders (x1, y1, x2, y2) in the 512×512 photo.
ASTRONAUT_HEAD = (120, 20, 328, 228)


class TalkingFace:
    """A face photo whose mouth opening can be set per frame.

    Args:
        image: RGB uint8 photo.
        mouth: its mouth geometry.
        crop: ``(x1, y1, x2, y2)`` region of the photo to show (e.g. the head), or ``None`` for all of it.
        max_gap: gap between the lips at full opening, as a fraction of the mouth width.
    """

    def __init__(
        self,
        image: np.ndarray,
        mouth: MouthGeometry,
        crop: tuple[int, int, int, int] | None = None,
        max_gap: float = 0.45,
    ) -> None:
        self.image = np.ascontiguousarray(image)
        self.mouth = mouth
        self.crop = crop or (0, 0, image.shape[1], image.shape[0])
        (lx, ly), (rx, ry) = mouth.left, mouth.right
        self.width = float(np.hypot(rx - lx, ry - ly))
        self.max_gap = max_gap * self.width
        # Working region: the lower face around the mouth, with room for the jaw to drop.
        cx, chin_y = mouth.centre[0], mouth.chin[1]
        half = 0.95 * self.width
        self.x0, self.x1 = int(max(0, cx - half)), int(min(image.shape[1], cx + half))
        self.y0 = int(max(0, min(ly, ry) - 0.25 * self.width))
        self.y1 = int(min(image.shape[0], chin_y + self.max_gap + 0.9 * self.width))
        xs = np.arange(self.x0, self.x1, dtype=np.float32)
        ys = np.arange(self.y0, self.y1, dtype=np.float32)
        self.gx, self.gy = np.meshgrid(xs, ys)
        # Lip line: straight between the corners, bowed down to the centre point.
        t = np.clip((xs - lx) / max(rx - lx, 1e-6), 0.0, 1.0)
        straight = ly + t * (ry - ly)
        lens = np.sqrt(np.clip(1.0 - ((xs - cx) / (0.5 * (rx - lx))) ** 2, 0.0, 1.0))
        bow = mouth.centre[1] - (ly + ry) / 2
        self.lip_y = (straight + bow * lens).astype(np.float32)[None, :]
        self.lens = lens.astype(np.float32)[None, :]
        # Jaw window: the shift is full across the mouth and fades to zero at the window's sides.
        u = np.clip(np.abs(xs - cx) / half, 0.0, 1.0)
        self.jaw = (0.5 * (1 + np.cos(np.pi * u))).astype(np.float32)[None, :]
        self.fade_start = chin_y
        self.fade_end = float(self.y1)
        self.interior = np.array([55, 18, 22], np.float32)

    def render(self, opening: float) -> np.ndarray:
        """The (cropped) photo with the mouth opened by ``opening`` in 0..1."""
        out = self.image.copy()
        s = float(np.clip(opening, 0.0, 1.0)) * self.max_gap
        if s > 0.25:
            shift = s * self.jaw * self.lens**0.5
            below = self.gy >= self.lip_y
            fade = np.clip((self.fade_end - self.gy) / max(self.fade_end - self.fade_start, 1.0), 0.0, 1.0)
            dy = np.where(below, shift * fade, 0.0).astype(np.float32)
            map_y = np.maximum(self.gy - dy, np.where(below, self.lip_y, 0.0)).astype(np.float32)
            region = cv2.remap(self.image, self.gx, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            gap = below & (self.gy < self.lip_y + shift)
            depth = np.clip((self.gy - self.lip_y) / np.maximum(shift, 1e-3), 0.0, 1.0)
            alpha = (gap * np.clip(self.lens * 2.5, 0.0, 1.0) * (0.75 + 0.25 * np.sin(np.pi * depth)))[..., None]
            dark = self.interior * (0.8 + 0.4 * depth[..., None])
            region = region.astype(np.float32) * (1 - alpha) + dark * alpha
            out[self.y0 : self.y1, self.x0 : self.x1] = np.clip(region, 0, 255).astype(np.uint8)
        x1, y1, x2, y2 = self.crop
        return out[y1:y2, x1:x2]


def astronaut_face(variant: int = 0, max_gap: float = 0.45) -> TalkingFace:
    """The astronaut's head as a :class:`TalkingFace`.

    ``variant`` 0 is the photo as is; 1 is mirrored with warmer colours and more contrast (a second, different-
    looking face); 2 is mirrored only; 3 is cooler and darker.
    """
    image = face_photo().astype(np.float32)
    mouth = ASTRONAUT_MOUTH
    crop = ASTRONAUT_HEAD
    if variant in (1, 2):
        image = image[:, ::-1]
        mouth = mouth.flipped(image.shape[1])
        crop = (image.shape[1] - ASTRONAUT_HEAD[2], crop[1], image.shape[1] - ASTRONAUT_HEAD[0], crop[3])
    if variant == 1:
        image = (image - 128) * 1.15 + 128
        image *= np.array([1.08, 0.97, 0.85], np.float32)
    elif variant == 3:
        image *= np.array([0.85, 0.92, 1.05], np.float32)
    return TalkingFace(np.clip(image, 0, 255).astype(np.uint8), mouth, crop, max_gap=max_gap)


# ----------------------------------------------------------------------------------------------- speech signals
def speech_corpus(sampling_rate: int = 16000) -> list[np.ndarray]:
    """Real speech recordings from ``pocketsphinx-testdata``: the five LibriVox clips and three CMU utterances."""
    clips = [c.audio for c in librivox_clips(sampling_rate)]
    for name in ("goforward.raw", "numbers.raw", "something.raw"):
        path = POCKETSPHINX_DATA / name
        if path.is_file():
            raw = np.frombuffer(path.read_bytes(), dtype="<i2").astype(np.float32) / 32768.0
            if sampling_rate != 16000:
                from mikupal.media import resample

                raw = resample(raw, 16000, sampling_rate)
            clips.append(raw)
    return clips


def speech_pieces(
    clips: Sequence[np.ndarray], min_len: float = 2.0, max_len: float = 3.5, sampling_rate: int = 16000
) -> list[np.ndarray]:
    """Cut recordings into pieces of ``min_len``..``max_len`` seconds at their quietest 20 ms frame in that range.

    Pieces are peak-normalised to 0.8; a leftover shorter than ``min_len`` is dropped.
    """
    hop = sampling_rate // 50
    pieces = []
    for clip in clips:
        level = np.sqrt(np.convolve(clip.astype(np.float64) ** 2, np.ones(hop) / hop, mode="same"))[::hop]
        start = 0
        while (len(clip) - start) / sampling_rate >= min_len:
            lo, hi = start + int(min_len * sampling_rate), start + int(max_len * sampling_rate)
            if hi >= len(clip):
                cut = len(clip)
            else:
                window = level[lo // hop : hi // hop]
                cut = (lo // hop + int(np.argmin(window))) * hop
            piece = clip[start:cut].astype(np.float32)
            peak = float(np.max(np.abs(piece))) or 1.0
            pieces.append(piece / peak * 0.8)
            start = cut
    return pieces


def speech_envelope(audio: np.ndarray, sampling_rate: int, fps: float, n_frames: int | None = None) -> np.ndarray:
    """Loudness envelope of speech at ``fps``: 40 ms RMS in dB, mapped from [peak − 40 dB, peak] to [0, 1]."""
    n = n_frames if n_frames is not None else int(np.ceil(len(audio) / sampling_rate * fps))
    half = int(0.02 * sampling_rate)
    power = np.convolve(audio.astype(np.float64) ** 2, np.ones(2 * half) / (2 * half), mode="same")
    idx = np.clip((np.arange(n) / fps * sampling_rate).astype(int), 0, max(len(audio) - 1, 0))
    db = 10 * np.log10(power[idx] + 1e-10) if len(audio) else np.full(n, -100.0)
    peak = 10 * np.log10(np.max(power) + 1e-10) if len(audio) else 0.0
    return np.clip((db - (peak - 40.0)) / 40.0, 0.0, 1.0)


def mouth_openings(
    audio: np.ndarray | None,
    sampling_rate: int,
    fps: float,
    n_frames: int,
    lead: float = 0.04,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Per-frame mouth opening (0..1) of a face saying ``audio`` (``None``: a silent face).

    The opening follows the speech envelope, raised to the power 1.5 (quiet sounds barely open the mouth),
    smoothed like a jaw (one-pole low-pass, 50 ms), and leads the sound by ``lead`` seconds (mouths move before
    the sound comes, as in real speech); a little noise is added. A silent face keeps its mouth closed.
    """
    rng = rng or np.random.default_rng(0)
    if audio is None:
        return np.zeros(n_frames)
    shift = int(round(lead * fps))
    env = speech_envelope(audio, sampling_rate, fps, n_frames + shift)[shift : shift + n_frames]
    if len(env) < n_frames:
        env = np.pad(env, (0, n_frames - len(env)))
    target = env**1.5
    alpha = 1.0 - np.exp(-1.0 / (0.05 * fps))
    out = np.empty(n_frames)
    state = 0.0
    for i, v in enumerate(target):
        state += alpha * (v - state)
        out[i] = state
    return np.clip(out + rng.normal(0, 0.02, n_frames), 0.0, 1.0)


# ----------------------------------------------------------------------------------------------- clips
@dataclass
class Segment:
    """One spoken utterance of a synthetic clip: times (seconds) and which face (index) is speaking."""

    start: float
    end: float
    speaker: int
    distractor: int | None = None


@dataclass
class SyntheticClip:
    """A written clip and its truth.

    Attributes:
        path: the MP4.
        audio: the audio track (16 kHz mono float32).
        segments: the spoken utterances, in time order.
        face_boxes: each face's panel ``(x1, y1, x2, y2)`` in frame pixels (the speaker's face lies inside it).
        size: ``(width, height)``. fps: frame rate. duration: seconds.
    """

    path: Path
    audio: np.ndarray
    segments: list[Segment]
    face_boxes: list[tuple[int, int, int, int]]
    size: tuple[int, int]
    fps: int
    duration: float
    extra: dict = field(default_factory=dict)


def faces_frame(
    faces: Sequence[TalkingFace],
    openings: Sequence[float],
    size: tuple[int, int],
    boxes: Sequence[tuple[int, int, int, int]],
) -> np.ndarray:
    """Compose one frame: each face rendered at its opening and resized into its box on a grey background."""
    width, height = size
    frame = np.full((height, width, 3), 96, np.uint8)
    for face, opening, (x1, y1, x2, y2) in zip(faces, openings, boxes):
        img = face.render(opening)
        bw, bh = x2 - x1, y2 - y1
        interp = cv2.INTER_AREA if bw < img.shape[1] else cv2.INTER_LINEAR
        patch = cv2.resize(img, (bw, bh), interpolation=interp)
        # clip to the frame (faces may be placed partly outside it)
        fx1, fy1, fx2, fy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        if fx2 > fx1 and fy2 > fy1:
            frame[fy1:fy2, fx1:fx2] = patch[fy1 - y1 : fy2 - y1, fx1 - x1 : fx2 - x1]
    return frame


def two_speaker_clip(
    path: str | Path,
    n_utterances: int = 20,
    panel: int = 320,
    fps: int = 25,
    gap: float = 0.8,
    seed: int = 0,
    sampling_rate: int = 16000,
    size: tuple[int, int] | None = None,
) -> SyntheticClip:
    """Two faces side by side; the speaker alternates between utterances.

    The frame is ``size`` ``(width, height)`` pixels, each face a ``panel``-pixel square centred in its half
    (``None``: ``2 * panel`` × ``panel``, the panels filling the frame).

    Utterance ``k`` is spoken by face ``k % 2`` (0 = left, the photo as is; 1 = right, mirrored and recoloured)
    with a real speech piece on the audio track. The other face is, alternately, silent or *mouthing a different
    speech piece* (a distractor that moves as much as a speaker but out of sync with the sound). Utterances are
    separated by ``gap`` seconds of silence with both mouths closed. ``seed`` varies the order of the speech
    pieces (seed 0 keeps the corpus order), the lead of the speaker's mouth over the sound (0–80 ms) and the noise.
    """
    rng = np.random.default_rng(seed)
    pieces = speech_pieces(speech_corpus(sampling_rate), sampling_rate=sampling_rate)
    if len(pieces) < 2:
        raise TestDataMissing("need at least two speech pieces from pocketsphinx-testdata")
    if seed:
        pieces = [pieces[i] for i in rng.permutation(len(pieces))]
    faces = [astronaut_face(0), astronaut_face(1)]
    size = size or (2 * panel, panel)
    if size[0] < 2 * panel or size[1] < panel:
        raise ValueError(f"a {size[0]}x{size[1]} frame cannot hold two {panel}-pixel faces side by side")
    x0, y0 = (size[0] // 2 - panel) // 2, (size[1] - panel) // 2
    boxes = [(x0, y0, x0 + panel, y0 + panel), (size[0] // 2 + x0, y0, size[0] // 2 + x0 + panel, y0 + panel)]
    audio_parts = [np.zeros(int(gap * sampling_rate), np.float32)]
    segments: list[Segment] = []
    t = gap
    openings_parts: list[np.ndarray] = []
    n_gap = int(round(gap * fps))
    openings_parts.append(np.stack([mouth_openings(None, sampling_rate, fps, n_gap, rng=rng) for _ in faces], 1))
    for k in range(n_utterances):
        speech = pieces[k % len(pieces)]
        speaker = k % 2
        distractor = None
        if k % 4 >= 2:
            distractor = (k + 3 + len(pieces) // 2) % len(pieces)
            if distractor == k % len(pieces):
                distractor = (distractor + 1) % len(pieces)
        n = int(round(len(speech) / sampling_rate * fps))
        speech = np.pad(speech, (0, max(0, int(round(n / fps * sampling_rate)) - len(speech))))[
            : int(round(n / fps * sampling_rate))
        ]
        cols = []
        for face_index in range(2):
            if face_index == speaker:
                cols.append(mouth_openings(speech, sampling_rate, fps, n, lead=rng.uniform(0.0, 0.08), rng=rng))
            elif distractor is not None:
                cols.append(mouth_openings(pieces[distractor], sampling_rate, fps, n, rng=rng))
            else:
                cols.append(mouth_openings(None, sampling_rate, fps, n, rng=rng))
        openings_parts.append(np.stack(cols, 1))
        segments.append(Segment(start=t, end=t + n / fps, speaker=speaker, distractor=distractor))
        audio_parts.append(speech.astype(np.float32))
        t += n / fps
        audio_parts.append(np.zeros(int(round(gap * sampling_rate)), np.float32))
        openings_parts.append(np.stack([mouth_openings(None, sampling_rate, fps, n_gap, rng=rng) for _ in faces], 1))
        t += n_gap / fps
    openings = np.concatenate(openings_parts)
    audio = np.concatenate(audio_parts)
    duration = len(openings) / fps
    audio = np.pad(audio, (0, max(0, int(round(duration * sampling_rate)) - len(audio))))

    def frame_at(i: int, _t: float) -> np.ndarray:
        return faces_frame(faces, openings[min(i, len(openings) - 1)], size, boxes)

    write_video(path, audio, sampling_rate, frame_at, duration=duration, fps=fps)
    return SyntheticClip(Path(path), audio, segments, boxes, size, fps, duration, extra={"openings": openings})


def talking_clip(
    path: str | Path,
    duration: float,
    boxes: Sequence[tuple[int, int, int, int]],
    size: tuple[int, int] = (1280, 720),
    speaker: int | None = 0,
    fps: int = 25,
    gap: float = 0.6,
    sampling_rate: int = 16000,
    frame_hook: Callable[[int, np.ndarray], np.ndarray] | None = None,
) -> SyntheticClip:
    """Faces at ``boxes`` (frame pixels; a box may reach outside the frame) for ``duration`` seconds.

    Speech pieces follow each other with ``gap`` seconds of silence, looping over the corpus. Face ``speaker``
    mouths the speech; the others keep still (``speaker=None``: every face is still, as with an off-screen
    narrator). Faces cycle through the astronaut variants. ``frame_hook(index, frame)`` may edit each frame (e.g.
    to insert a scene cut).
    """
    rng = np.random.default_rng(1)
    pieces = speech_pieces(speech_corpus(sampling_rate), sampling_rate=sampling_rate)
    faces = [astronaut_face(i % 4) for i in range(len(boxes))]
    total = int(round(duration * sampling_rate))
    audio = np.zeros(total, np.float32)
    segments = []
    t = gap
    k = 0
    while True:
        piece = pieces[k % len(pieces)]
        start = int(round(t * sampling_rate))
        if start + len(piece) > total - int(gap * sampling_rate):
            break
        audio[start : start + len(piece)] = piece
        segments.append(
            Segment(
                start=start / sampling_rate,
                end=(start + len(piece)) / sampling_rate,
                speaker=-1 if speaker is None else speaker,
            )
        )
        t = (start + len(piece)) / sampling_rate + gap
        k += 1
    n = int(round(duration * fps))
    openings = np.zeros((n, len(boxes)))
    if speaker is not None:
        openings[:, speaker] = mouth_openings(audio, sampling_rate, fps, n, rng=rng)

    def frame_at(i: int, _t: float) -> np.ndarray:
        frame = faces_frame(faces, openings[min(i, n - 1)], size, boxes)
        return frame_hook(i, frame) if frame_hook is not None else frame

    write_video(path, audio, sampling_rate, frame_at, duration=duration, fps=fps)
    return SyntheticClip(Path(path), audio, segments, list(boxes), size, fps, duration, extra={"openings": openings})


def single_face_clip(
    path: str | Path,
    duration: float,
    size: tuple[int, int] = (1280, 720),
    face_height: int = 480,
    fps: int = 25,
    gap: float = 0.6,
    sampling_rate: int = 16000,
    frame_hook: Callable[[int, np.ndarray], np.ndarray] | None = None,
) -> SyntheticClip:
    """One talking face (the astronaut's head, ``face_height`` pixels square) centred in a ``size`` frame."""
    width, height = size
    x1, y1 = (width - face_height) // 2, (height - face_height) // 2
    box = (x1, y1, x1 + face_height, y1 + face_height)
    return talking_clip(path, duration, [box], size, 0, fps, gap, sampling_rate, frame_hook)
