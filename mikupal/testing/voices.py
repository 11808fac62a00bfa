"""Real voices of known identity from Debian packages, for speaker tests and benchmarks.

Nothing is committed: every clip is read at run time from

* LibriVox reader of "Sense and Sensibility" (Debian ``pocketsphinx-testdata``; 5 clips, 3.0-7.1 s, 16 kHz),
  via :func:`mikupal.testing.media.librivox_clips`;
* Allison Smith's IVR prompts (Debian ``asterisk-core-sounds-en-wav``,
  ``/usr/share/asterisk/sounds/en_US_f_Allison/``; 8 kHz telephone band);
* the ALSA channel announcements (Debian ``alsa-utils``, ``/usr/share/sounds/alsa/``; 1.4 s each, 48 kHz).

Each group is one speaker. ``bash scripts/setup.sh`` installs the packages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mikupal.media import read_audio
from mikupal.testing.media import TestDataMissing, librivox_clips

ALLISON_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ALSA_DIR = Path("/usr/share/sounds/alsa")

#: Allison prompts of 2.7-7.6 s (a fixed choice, spread over the prompt lengths).
ALLISON_PROMPTS = (
    "vm-savemessage", "dir-first", "vm-nonumber", "conf-getchannel", "vm-whichbox", "demo-nomatch",
    "priv-callpending", "unidentified-no-callback", "demo-thanks", "vm-opts",
)
#: The ALSA announcements spoken by one voice (``Noise.wav`` is pink noise and left out).
ALSA_CLIPS = (
    "Front_Center", "Front_Left", "Front_Right", "Rear_Center", "Rear_Left", "Rear_Right", "Side_Left", "Side_Right",
)


@dataclass(frozen=True)
class VoiceClip:
    """One clip of a known speaker: ``speaker`` (group name), ``name`` (file stem), 16 kHz mono samples."""

    speaker: str
    name: str
    audio: np.ndarray


def _read_group(speaker: str, folder: Path, names: tuple[str, ...], package: str, rate: int) -> list[VoiceClip]:
    clips = []
    for name in names:
        path = folder / f"{name}.wav"
        if not path.is_file():
            raise TestDataMissing(f"{path} not found: apt-get install {package} (or run bash scripts/setup.sh)")
        clips.append(VoiceClip(speaker, name, read_audio(path, rate)))
    return clips


def allison_clips(rate: int = 16000) -> list[VoiceClip]:
    """Allison's prompts (:data:`ALLISON_PROMPTS`), resampled from 8 kHz."""
    return _read_group("allison", ALLISON_DIR, ALLISON_PROMPTS, "asterisk-core-sounds-en-wav", rate)


def alsa_clips(rate: int = 16000) -> list[VoiceClip]:
    """The ALSA announcements (:data:`ALSA_CLIPS`), resampled from 48 kHz."""
    return _read_group("alsa", ALSA_DIR, ALSA_CLIPS, "alsa-utils", rate)


def known_voices(rate: int = 16000) -> list[VoiceClip]:
    """Every clip of the three speakers: LibriVox, Allison, ALSA (raises ``TestDataMissing`` without the packages)."""
    librivox = [VoiceClip("librivox", c.name, c.audio) for c in librivox_clips(rate)]
    return librivox + allison_clips(rate) + alsa_clips(rate)


def interleave(clips: list[VoiceClip]) -> list[VoiceClip]:
    """Clips reordered so the speakers alternate (round robin over the groups), as in a conversation."""
    groups: dict[str, list[VoiceClip]] = {}
    for clip in clips:
        groups.setdefault(clip.speaker, []).append(clip)
    out: list[VoiceClip] = []
    queues = list(groups.values())
    while any(queues):
        for queue in queues:
            if queue:
                out.append(queue.pop(0))
    return out
