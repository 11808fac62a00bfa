"""``asr`` stage: transcript, language and word timestamps of each utterance."""
