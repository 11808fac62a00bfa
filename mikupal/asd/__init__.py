"""``asd`` stage: active speaker detection (offline lip-sync detector) and face-crop clips."""
