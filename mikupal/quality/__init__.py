"""The ``quality`` stage: non-intrusive speech-quality scores (DNSMOS) for every utterance."""
