"""The ``speakers`` stage: speaker embeddings of each utterance's vocals, clustered into speakers per video."""
