"""CMU PocketSphinx as the small, stable fallback ``asr`` backend.

Model: the CMU Sphinx US English continuous-density HMM acoustic model (``en-us``), the generic US English 3-gram
language model (``en-us.lm.bin``) and the CMU pronouncing dictionary (``cmudict-en-us.dict``). Licence:
BSD-2-Clause. Weights: ``pocketsphinx/model/en-us/`` in the PyPI wheel ``pocketsphinx==5.1.1`` (registry name
``pocketsphinx-en-us``). Expected input: mono float32 at 16 kHz (other rates are resampled), converted to 16-bit
PCM. English only, and far less accurate than Whisper (about 28% WER on clean LibriVox read speech against
Whisper base's ~3%), but small, fast to load and fully deterministic.

Word segments come from the decoder's best path in 10 ms frames (``start_frame``/``end_frame``); fillers
(``<s>``, ``</s>``, ``<sil>``, ``[NOISE]`` …) are left out, and alternate pronunciations (``was(2)``) are mapped to
the word. The score of a word is its posterior probability from the decoder's lattice.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from mikupal.asr.base import Transcriber, Transcript
from mikupal.media import resample
from mikupal.records import Word

log = logging.getLogger(__name__)

RATE = 16000
_ALTERNATE = re.compile(r"\(\d+\)$")


class PocketsphinxTranscriber(Transcriber):
    """PocketSphinx decoding with word segments (see the module docstring).

    Args:
        language: only ``en`` is shipped; other languages need their own model folder (``model``).
        model: registry name, or a folder laid out like the wheel's ``model/en-us/``: an acoustic model folder
            ``en-us/``, a language model ``en-us.lm.bin`` and a dictionary ``cmudict-en-us.dict`` (names set by
            ``acoustic_model``, ``language_model``, ``dictionary``).
        acoustic_model, language_model, dictionary: file names inside the model folder.
    """

    #: Python packages setup() imports (import name -> what to install); checked before a run starts.
    requires = {"pocketsphinx": "pocketsphinx==5.1.1"}
    #: Attributes holding a model-registry name or path; their files are checked before a run starts.
    model_keys = ("model",)

    def __init__(
        self,
        language: str = "en",
        model: str = "pocketsphinx-en-us",
        acoustic_model: str = "en-us",
        language_model: str = "en-us.lm.bin",
        dictionary: str = "cmudict-en-us.dict",
    ) -> None:
        if model == "pocketsphinx-en-us" and language != "en":
            raise ValueError(
                f"asr=pocketsphinx ships only an English model; got language={language!r}. Use asr=faster_whisper, "
                "or give asr.model=<folder> with a PocketSphinx model for that language"
            )
        self.language = language
        self.model = model
        self.acoustic_model = acoustic_model
        self.language_model = language_model
        self.dictionary = dictionary
        self._decoder: Any = None

    def setup(self) -> None:
        from mikupal.registry import resolve

        resolved = resolve(self.model)
        folder = resolved.parent if resolved.is_file() else resolved
        paths = {
            "hmm": folder / self.acoustic_model,
            "lm": folder / self.language_model,
            "dict": folder / self.dictionary,
        }
        missing = [str(p) for p in paths.values() if not Path(p).exists()]
        if missing:
            raise FileNotFoundError(
                f"PocketSphinx model incomplete, missing {missing}. Fix: pip install --force-reinstall pocketsphinx==5.1.1, "
                "or point asr.model at a folder holding the acoustic model, language model and dictionary"
            )
        try:
            from pocketsphinx import Decoder
        except ImportError as e:
            raise ImportError(f"asr=pocketsphinx needs pocketsphinx ({e}). Fix: pip install pocketsphinx==5.1.1") from e
        self._decoder = Decoder(
            hmm=str(paths["hmm"]), lm=str(paths["lm"]), dict=str(paths["dict"]), samprate=RATE, loglevel="ERROR"
        )
        self._frame_rate = int(self._decoder.config["frate"])
        log.info("PocketSphinx loaded from %s", folder)

    def teardown(self) -> None:
        self._decoder = None

    def transcribe(self, audio: np.ndarray, sampling_rate: int) -> Transcript:
        """Transcribe one utterance; word times are seconds from its start."""
        if self._decoder is None:
            raise RuntimeError("PocketsphinxTranscriber.setup() must be called before transcribe()")
        audio = resample(np.asarray(audio, dtype=np.float32).reshape(-1), sampling_rate, RATE)
        duration = len(audio) / RATE
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
        decoder = self._decoder
        decoder.start_utt()
        decoder.process_raw(pcm.tobytes(), no_search=False, full_utt=True)
        decoder.end_utt()
        words: list[Word] = []
        step = 1.0 / self._frame_rate
        for seg in decoder.seg():
            token = seg.word
            if not token or token.startswith(("<", "[", "+")):
                continue
            token = _ALTERNATE.sub("", token)
            start = min(seg.start_frame * step, duration)
            end = min((seg.end_frame + 1) * step, duration)
            words.append(Word(word=token, start=round(start, 3), end=round(end, 3), score=round(min(max(float(seg.prob), 0.0), 1.0), 4)))
        text = " ".join(w.word for w in words)
        return Transcript(text=text, language=self.language, words=words, language_probability=None)
