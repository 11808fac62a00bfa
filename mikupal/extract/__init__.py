"""``extract`` stage: video file → 16 kHz mono audio + video stream properties."""
