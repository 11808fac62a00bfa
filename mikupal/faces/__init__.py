"""``faces`` stage: face detection (BlazeFace, Haar), face mesh mouth opening, scene cuts and IoU tracking."""
