"""``vad`` stage: speech spans of a recording, merged and split into utterances of bounded length."""
