"""faster-whisper (Whisper base from the registry) and pocketsphinx on LibriVox read speech."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mikupal.asr.faster_whisper import FasterWhisperTranscriber, resolve_device
from mikupal.asr.pocketsphinx import PocketsphinxTranscriber
from mikupal.registry import ModelNotFoundError
from mikupal.testing.audio_eval import boundary_errors, corpus_wer, normalize_text, speech_extent


@pytest.fixture(scope="module")
def clean_transcripts(whisper, speech_set):
    return [whisper.transcribe(c.audio, 16000) for c in speech_set.clips]


def test_whisper_clean_wer(clean_transcripts, speech_set):
    wer = corpus_wer(speech_set.references, [t.text for t in clean_transcripts])
    assert wer <= 0.05, [t.text for t in clean_transcripts]


def test_whisper_detects_english(clean_transcripts):
    for t in clean_transcripts:
        assert t.language == "en" and t.language_probability > 0.9


def test_whisper_word_timestamps(clean_transcripts, speech_set):
    for t, clip in zip(clean_transcripts, speech_set.clips):
        duration = len(clip.audio) / 16000
        starts = [w.start for w in t.words]
        assert all(0.0 <= w.start <= w.end <= duration for w in t.words)
        assert starts == sorted(starts)
        assert all(a.end <= b.start + 1e-6 for a, b in zip(t.words, t.words[1:]))
        assert normalize_text(" ".join(w.word for w in t.words)) == normalize_text(t.text)
        assert all(0.0 <= w.score <= 1.0 for w in t.words)
        # The words cover the speech: first starts near its onset, last ends near its offset (Whisper's word ends
        # come from 20 ms cross-attention alignment and run early on trailing fricatives: 0.52 s on one clip).
        onset, offset = speech_extent(clip.audio)
        assert abs(t.words[0].start - onset) < 0.3 and abs(t.words[-1].end - offset) < 0.6


def test_single_encoder_pass_language_detection_matches_faster_whisper(whisper, speech_set):
    """Our detect-then-decode path (one encoder pass) gives faster-whisper's own transcribe() result: same
    language, text, words and word times."""
    clip = speech_set.clips[3].audio
    ours = whisper.transcribe(clip, 16000)
    segments, info = whisper._model.transcribe(
        clip, language=None, beam_size=whisper.beam_size, word_timestamps=True, condition_on_previous_text=False
    )
    segments = list(segments)
    assert info.language == ours.language
    assert "".join(s.text for s in segments).strip() == ours.text
    theirs = [w for s in segments for w in s.words]
    assert [w.word.strip() for w in theirs] == [w.word for w in ours.words]
    assert np.allclose([w.start for w in theirs], [w.start for w in ours.words], atol=0.02)


def test_whisper_on_music_with_rnnoise_wer(whisper, rnnoise, speech_set, noisy_clips):
    """The offline preset's path (RNNoise, then Whisper base) on speech over real music at 3 dB SNR."""
    texts = [whisper.transcribe(rnnoise.separate(n, 16000), 16000).text for n in noisy_clips]
    assert corpus_wer(speech_set.references, texts) <= 0.12, texts


def test_whisper_on_silence_and_music_says_nothing(whisper, music_audio):
    """Beam search says "You" (word probability 0.04) on 2 s of silence; ``min_word_probability`` drops it."""
    assert whisper.min_word_probability > 0.04
    assert whisper.transcribe(np.zeros(32000, np.float32), 16000).text == ""
    assert whisper.transcribe(music_audio[16000 * 10 : 16000 * 15], 16000).text == ""
    assert whisper.transcribe(np.zeros(10, np.float32), 16000).words == []


def test_packed_transcription(whisper, speech_set):
    """Packing the five clips into shared windows: same accuracy, each clip keeps its own words and times."""
    assert whisper.pack_seconds and whisper.group_size > 1
    results = whisper.transcribe_many([c.audio for c in speech_set.clips], 16000)
    assert len(results) == len(speech_set.clips)
    assert corpus_wer(speech_set.references, [r.text for r in results]) <= 0.05
    for r, clip in zip(results, speech_set.clips):
        assert corpus_wer([clip.transcript], [r.text]) <= 0.15  # no words leak into a neighbour
        duration = len(clip.audio) / 16000
        assert all(0.0 <= w.start <= w.end <= duration for w in r.words)
        assert all(a.end <= b.start + 1e-6 for a, b in zip(r.words, r.words[1:]))
        onset, offset = speech_extent(clip.audio)
        assert abs(r.words[0].start - onset) < 0.3 and abs(r.words[-1].end - offset) < 0.6


def test_packing_shares_windows_and_saves_time(whisper, speech_set):
    """Ten short real utterances (LibriVox + cards): fewer decoded windows and far less CPU than one by one. CPU
    time, not wall time, so other processes on the machine do not decide the result."""
    import time

    from mikupal.media import read_audio
    from mikupal.testing.media import LIBRIVOX_DIR

    cards = sorted((LIBRIVOX_DIR.parent / "cards").glob("*.wav"))
    clips = [c.audio for c in speech_set.clips] + [read_audio(p) for p in cards]
    windows = []
    decode, decode_batch = whisper._decode, whisper._decode_batch
    whisper._decode = lambda audio, word_timestamps: windows.append(len(audio)) or decode(audio, word_timestamps)
    whisper._decode_batch = lambda audios: windows.extend(len(a) for a in audios) or decode_batch(audios)
    try:
        start = time.process_time()
        packed = whisper.transcribe_many(clips, 16000)
        packed_cpu = time.process_time() - start
    finally:
        del whisper._decode, whisper._decode_batch
    start = time.process_time()
    single = [whisper.transcribe(c, 16000) for c in clips]
    single_cpu = time.process_time() - start
    assert len(windows) <= 4 and max(windows) <= whisper.pack_seconds * 16000
    assert packed_cpu < 0.7 * single_cpu, (packed_cpu, single_cpu)
    assert all(p.text for p in packed) and len(packed) == len(single)


def test_whisper_fixed_language_and_resampled_input(speech_set):
    import soxr

    en = FasterWhisperTranscriber(language="en", device="cpu")
    en.setup()
    clip = speech_set.clips[1]
    result = en.transcribe(soxr.resample(clip.audio, 16000, 44100), 44100)
    assert result.language == "en" and result.language_probability is None
    assert corpus_wer([clip.transcript], [result.text]) <= 0.15


def test_whisper_bad_config_and_missing_model(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="beam_size"):
        FasterWhisperTranscriber(beam_size=0)
    with pytest.raises(ValueError, match="min_word_probability"):
        FasterWhisperTranscriber(min_word_probability=1.5)
    with pytest.raises(ValueError, match="device"):
        FasterWhisperTranscriber(device="tpu")
    with pytest.raises(ValueError, match="pack_seconds"):
        FasterWhisperTranscriber(pack_seconds=45)
    assert FasterWhisperTranscriber(pack_seconds=None).group_size == 1
    assert resolve_device("cuda:1") == ("cuda", 1) and resolve_device("cpu") == ("cpu", 0)
    bad_language = FasterWhisperTranscriber(language="xx", device="cpu")
    with pytest.raises(ValueError, match="not a Whisper language"):
        bad_language.setup()
    # A models folder without the assembled Whisper base: the registry says how to fix it.
    monkeypatch.setenv("MIKUPAL_MODELS_DIR", str(tmp_path / "models"))
    with pytest.raises(ModelNotFoundError, match="mikupal-models fetch whisper-base"):
        FasterWhisperTranscriber(device="cpu").setup()
    not_ct2 = tmp_path / "empty_model"
    not_ct2.mkdir()
    with pytest.raises(FileNotFoundError, match="model.bin"):
        FasterWhisperTranscriber(model=str(not_ct2), device="cpu").setup()


@pytest.fixture(scope="module")
def sphinx():
    backend = PocketsphinxTranscriber()
    backend.setup()
    return backend


def test_pocketsphinx_returns_timed_words(sphinx, speech_set):
    texts = []
    for clip in speech_set.clips:
        result = sphinx.transcribe(clip.audio, 16000)
        duration = len(clip.audio) / 16000
        assert result.language == "en" and result.words
        assert all(0.0 <= w.start < w.end <= duration for w in result.words)
        assert all(a.end <= b.start + 1e-6 for a, b in zip(result.words, result.words[1:]))
        assert all("(" not in w.word and not w.word.startswith("<") for w in result.words)
        assert result.text == " ".join(w.word for w in result.words)
        texts.append(result.text)
    assert corpus_wer(speech_set.references, texts) < 0.5  # measured 27%: a weak but real recogniser


def test_pocketsphinx_language_and_model_checks(tmp_path):
    with pytest.raises(ValueError, match="only an English model"):
        PocketsphinxTranscriber(language="de")
    with pytest.raises(FileNotFoundError, match="missing"):
        PocketsphinxTranscriber(model=str(tmp_path)).setup()


def test_pipeline_asr_on_video(speech_video, speech_set, media_dir, compose_cfg):
    """The whole offline audio path on an MP4 (AAC audio, still face): utterance text and word times in the
    source video's time line."""
    from mikupal.runner import run_pipeline

    path, _ = speech_video  # the same signal as speech_set.audio, through AAC in an MP4
    run_dir = media_dir / "run-asr-video"
    cfg = compose_cfg(f"input={path}", f"run_dir={run_dir}", "stages=[extract,separate,vad,asr,filter]", "fail_fast=true")
    summary = run_pipeline(cfg)
    assert summary["errors"] == 0
    utterances = [json.loads(line) for line in (run_dir / "utterances.jsonl").read_text().splitlines()]
    assert boundary_errors(speech_set.speech_intervals, [(u["start"], u["end"]) for u in utterances]).within(0.3)
    for u in utterances:
        assert u["language"] == "en" and u["audio"] == f"audio/{u['id']}.flac"
        assert all(u["start"] <= w["start"] <= w["end"] <= u["end"] for w in u["words"])
    text = " ".join(u["text"] for u in utterances)
    assert corpus_wer([" ".join(speech_set.references)], [text]) <= 0.05


def test_asr_stage_groups_survive_a_bad_item(speech_set, media_dir, compose_cfg):
    """With packing, the stage hands utterances over in groups; an unreadable utterance file fails alone (an
    item error), its neighbours are still transcribed."""
    from mikupal.media import write_audio
    from mikupal.runner import run_pipeline

    source = media_dir / "groups.wav"
    write_audio(source, speech_set.audio, 16000)
    run_dir = media_dir / "run-groups"
    common = [f"input={source}", f"run_dir={run_dir}", "separate=passthrough"]
    run_pipeline(compose_cfg(*common, "stages=[extract,separate,vad]"))
    drafts = sorted((run_dir / "audio").glob("*.flac"))
    assert len(drafts) == 5
    drafts[2].write_bytes(b"not audio")
    summary = run_pipeline(compose_cfg(*common, "stages=[extract,separate,vad,asr]"))
    assert summary["stages"]["asr"]["outputs"] == 4 and summary["errors_by_stage"] == {"asr": 1}
    errors = [json.loads(line) for line in (run_dir / "errors.jsonl").read_text().splitlines()]
    assert errors[0]["item_id"] == drafts[2].stem and "cannot read audio" in errors[0]["message"]


@pytest.fixture
def whisper_with_timestamp_tokens(whisper):
    """The backend with the settings this equality was established on: greedy decoding with Whisper's timestamp
    tokens (batched rounds that decode on), 28 s windows with 1 s gaps in groups of 16. With the offline preset's
    beam 5 and 30 s windows the words stay the same but int8 batches of other sizes break near-ties differently
    (a final "." on one card) and move one word end of a card by 0.04 s."""
    keys = ("timestamp_tokens", "beam_size", "pack_seconds", "pack_gap", "pack_group")
    saved = {k: getattr(whisper, k) for k in keys}
    for key, value in zip(keys, (True, 1, 28.0, 1.0, 16)):
        setattr(whisper, key, value)
    yield whisper
    for key, value in saved.items():
        setattr(whisper, key, value)


def _ten_clips(speech_set):
    from mikupal.media import read_audio
    from mikupal.testing.media import LIBRIVOX_DIR

    cards = sorted((LIBRIVOX_DIR.parent / "cards").glob("*.wav"))
    return [c.audio for c in speech_set.clips] + [read_audio(p) for p in cards]


def test_batched_windows_equal_one_by_one(whisper_with_timestamp_tokens, speech_set):
    """Packed windows decoded in one CTranslate2 batch with timestamp tokens give the same transcripts and word
    times as faster-whisper's own sequential decoder on each window (``batch_size=1``)."""
    whisper = whisper_with_timestamp_tokens
    clips = _ten_clips(speech_set)
    batches = []
    decode_batch = whisper._decode_batch
    whisper._decode_batch = lambda audios: batches.append(len(audios)) or decode_batch(audios)
    try:
        batched = whisper.transcribe_many(clips, 16000)
    finally:
        del whisper._decode_batch
    assert whisper.batch_size > 1 and batches and max(batches) > 1  # the batched path really ran
    whisper.batch_size, size = 1, whisper.batch_size
    try:
        single = whisper.transcribe_many(clips, 16000)
    finally:
        whisper.batch_size = size
    assert [b.text for b in batched] == [s.text for s in single]
    for b, s in zip(batched, single):
        assert [w.word for w in b.words] == [w.word for w in s.words]
        assert np.allclose([w.start for w in b.words], [w.start for w in s.words], atol=0.021)
        assert np.allclose([w.end for w in b.words], [w.end for w in s.words], atol=0.021)
        assert b.language == s.language


def test_batched_windows_without_timestamp_tokens(whisper, speech_set):
    """The configured decoding (no timestamp tokens): one batched pass per window (no further rounds), a lone
    window included, and a window's words and times do not depend on the windows batched with it."""
    assert not whisper.timestamp_tokens and whisper.batch_size > 1
    clips = [c.audio for c in speech_set.clips]
    calls = []
    ct2 = whisper._model.model

    class Counting:  # CTranslate2's model: attributes are read-only, so count generate() through a proxy
        def __getattr__(self, name):
            return getattr(ct2, name)

        def generate(self, features, prompts, **kwargs):
            calls.append(len(prompts))
            return ct2.generate(features, prompts, **kwargs)

    batches = []
    decode_batch = whisper._decode_batch
    whisper._decode_batch = lambda audios: batches.append(len(audios)) or decode_batch(audios)
    whisper._model.model = Counting()
    try:
        lone = whisper.transcribe_many(clips, 16000)  # the five clips fill one window
        del whisper._decode_batch
        assert batches == [1] and calls == [1]  # the lone window went through the batched decoder, in one pass
        windows = [np.concatenate(clips[:2]), np.concatenate(clips[2:4]), clips[4]]
        together = whisper._decode_batch(windows)
        assert calls[1:] == [3]
        alone = [whisper._decode_batch([w])[0] for w in windows]
    finally:
        whisper._model.model = ct2
        whisper.__dict__.pop("_decode_batch", None)
    assert corpus_wer(speech_set.references, [t.text for t in lone]) <= 0.03  # the reference's typo: 1 word
    for t, a in zip(together, alone):
        assert t is not None and a is not None and t[1] == a[1] == "en"
        assert [w.word for w in t[0]] == [w.word for w in a[0]] and len(t[0]) > 5
        assert np.allclose([w.start for w in t[0]], [w.start for w in a[0]], atol=0.021)
        assert np.allclose([w.end for w in t[0]], [w.end for w in a[0]], atol=0.021)


def test_batched_windows_without_packing(speech_set):
    """``pack_seconds: null`` with ``batch_size`` > 1: each utterance is its own window, decoded in one batch, with
    the text of transcribing it alone."""
    w = FasterWhisperTranscriber(device="cpu", language="en", pack_seconds=None, batch_size=4, pack_group=4)
    w.setup()
    assert w.group_size == 4
    clips = [c.audio for c in speech_set.clips[:3]]
    batched = w.transcribe_many(clips, 16000)
    single = [w.transcribe(c, 16000) for c in clips]
    assert [normalize_text(b.text) for b in batched] == [normalize_text(s.text) for s in single]
    with pytest.raises(ValueError, match="batch_size"):
        FasterWhisperTranscriber(batch_size=0)
