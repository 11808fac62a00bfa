"""Our MiniLM encoder (mikupal.models.minilm) gives sentence-transformers' embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from mikupal.models.minilm import MiniLMEncoder, model_folder

TEXTS = ["I can't believe you did that to me!", "Okay.", "", "What? Really?", "Ünïcode café, naïve façade",
         "so " * 300, "Haha, that's hilarious."]


@pytest.fixture(scope="module")
def folder():
    from mikupal.registry import resolve

    try:
        return model_folder(resolve("minilm"))
    except (FileNotFoundError, KeyError) as e:
        pytest.skip(f"MiniLM not installed: {e}")


def test_embeddings_equal_sentence_transformers(folder):
    st = pytest.importorskip("sentence_transformers")
    ours = MiniLMEncoder(folder).encode(TEXTS, batch_size=3)
    theirs = st.SentenceTransformer(str(folder), device="cpu").encode(
        TEXTS, normalize_embeddings=True, batch_size=3, show_progress_bar=False)
    assert ours.shape == (len(TEXTS), 384)
    assert np.abs(ours - theirs).max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_batching_does_not_change_embeddings(folder):
    enc = MiniLMEncoder(folder)
    assert np.abs(enc.encode(TEXTS, batch_size=1) - enc.encode(TEXTS, batch_size=64)).max() < 1e-5
    assert enc.encode([]).shape == (0, 384)


def test_missing_folder_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="minilm"):
        MiniLMEncoder(tmp_path)
