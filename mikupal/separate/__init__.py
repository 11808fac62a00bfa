"""``separate`` stage: keep the vocals of a recording (passthrough, RNNoise, MDX-Net)."""
