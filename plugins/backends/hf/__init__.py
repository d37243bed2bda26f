"""Backend ``hf``: transformers models in-process, CPU or CUDA.

Requests are token ids. Prompts are batched with left padding; each prompt is prefilled once
and its KV cache expanded to its ``n`` samples; every sample draws from its own seeded
generator, so a record can be regenerated alone. Finished rows leave the batch. The tensor
kernels (sampling, teacher-forced log-probs) are in :mod:`plugins.backends.hf.kernels`.
"""

from __future__ import annotations

from harness.backend_base import TokenizerBackend
from harness.hookspecs import hookimpl
from harness.types import Completion
from plugins.backends.hf.kernels import cache_arg, continuation_logprobs, out_cache, sample_rows


@hookimpl
def register_backends(register):
    register(HFBackend)


class HFBackend(TokenizerBackend):
    name = "hf"
    description = "transformers in-process (CPU/CUDA): batched, shared-prefix n-sampling, teacher-forced score()"

    def __init__(self, arm):
        super().__init__(arm)  # the tokenizer is the model's own, loaded with it
        self._model = None
        self.batch_rows = int(arm.options.get("batch_rows", 64))
        self.score_tokens = int(arm.options.get("score_batch_tokens", 16384))
        # rows x positions of vocabulary logits one prefill may hold when it also scores
        self.logit_rows = int(arm.options.get("prefill_logit_rows", 4096))
        self._warned_context = False

    @classmethod
    def from_loaded(cls, arm, model, tokenizer, device):
        """A backend over an already-loaded model (training samples from its live weights)."""
        backend = cls(arm)
        backend._model, backend._tokenizer, backend.device = model, tokenizer, device
        backend._cache_kw = cache_arg(model)
        return backend

    def _load(self):
        if self._model is None:
            from harness.modelspec import load_model

            self._model, self._tokenizer, self.device = load_model(self.arm)
            self._cache_kw = cache_arg(self._model)
        return self._model

    @property
    def model(self):
        return self._load()

    def load_tokenizer(self):
        """The model's own tokenizer, loaded with the model."""
        self._load()
        return self._tokenizer

    def generation_eos_ids(self):
        """The EOS ids of the model's generation config (often more than the tokenizer's)."""
        return getattr(self.model.generation_config, "eos_token_id", None)

    def info(self) -> dict:
        self._load()
        return {"device": str(self.device), "dtype": str(self._model.dtype).replace("torch.", ""),
                "model_class": type(self._model).__name__, "vocab_size": len(self.tokenizer)}

    def _check_context(self, prompt: int, new: int, what: str) -> None:
        """Warn once per backend (one arm in one run) when ``prompt + new`` tokens pass the
        model's ``max_position_embeddings``: the model runs, but past its context."""
        limit = getattr(getattr(self._model, "config", None), "max_position_embeddings", None)
        if self._warned_context or not isinstance(limit, int) or prompt + new <= limit:
            return
        self._warned_context = True
        import click

        click.echo(f"warning: arm {self.arm.name!r}: a prompt of {prompt} tokens + {what} = {prompt + new} > the "
                   f"model's context of {limit} tokens (max_position_embeddings); output past it is unreliable "
                   "(warned once per arm and run)", err=True)

    # -- generation ---------------------------------------------------------------------
    def generate(self, requests, progress=None):
        """One list of ``n`` :class:`Completion` per request, in request order."""
        self._load()
        if requests:
            worst = max(requests, key=lambda r: len(r.prompt_ids) + r.max_new_tokens)
            self._check_context(len(worst.prompt_ids), worst.max_new_tokens,
                                f"up to {worst.max_new_tokens} new tokens")
        results: list = [None] * len(requests)
        groups: dict = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.max_new_tokens, r.temperature, r.top_p, tuple(r.stop_strings)), []).append(i)
        for idxs in groups.values():
            idxs.sort(key=lambda i: len(requests[i].prompt_ids))
            batch: list[int] = []
            rows = longest = 0  # sample rows, and the longest score_ids, in the batch
            for i in idxs + [None]:
                grow = max(longest, len(requests[i].score_ids or ())) if i is not None else 0
                # the prefill holds (prompts x (longest score_ids + 1)) rows of vocabulary logits
                if i is not None and (not batch or (rows + requests[i].n <= self.batch_rows
                                                    and (len(batch) + 1) * (grow + 1) <= self.logit_rows)):
                    batch.append(i)
                    rows += requests[i].n
                    longest = grow
                    continue
                outs = self._generate_batch([requests[j] for j in batch])
                for j, o in zip(batch, outs):
                    results[j] = o
                if progress is not None:
                    progress(sum(requests[j].n for j in batch))
                if i is not None:
                    batch, rows, longest = [i], requests[i].n, len(requests[i].score_ids or ())
        return results

    def _generate_batch(self, reqs):
        import torch

        model, tok, dev = self._model, self.tokenizer, self.device
        first = reqs[0]
        pad = tok.pad_token_id
        width = max(len(r.prompt_ids) for r in reqs)
        extra = max(len(r.score_ids or ()) for r in reqs)
        # Prompts left-padded to ``width``; ids to score follow each prompt (right-padded), so one
        # prefill both scores them and fills the KV cache, which is then cropped back to the prompts.
        ids = torch.full((len(reqs), width + extra), pad, dtype=torch.long)
        attn = torch.zeros((len(reqs), width + extra), dtype=torch.long)
        for b, r in enumerate(reqs):
            if not r.prompt_ids:
                raise ValueError("empty prompt")
            ids[b, width - len(r.prompt_ids):width] = torch.tensor(r.prompt_ids)
            attn[b, width - len(r.prompt_ids):width] = 1
            if r.score_ids:
                ids[b, width:width + len(r.score_ids)] = torch.tensor(r.score_ids)
                attn[b, width:width + len(r.score_ids)] = 1
        ids, attn = ids.to(dev), attn.to(dev)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        row_req = [b for b, r in enumerate(reqs) for _ in range(r.n)]
        row_seed = [s for r in reqs for s in r.seeds]
        with torch.no_grad():
            cache_kw = self._cache_kw
            out = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True,
                        logits_to_keep=extra + 1)
            cache = out_cache(out)
            # out.logits[:, j] comes from position width - 1 + j: j = 0 predicts the first new
            # token, j >= 1 scores score_ids[j - 1].
            scored = [None] * len(reqs)
            for b, r in enumerate(reqs):
                if r.score_ids is not None:
                    target = torch.tensor(r.score_ids, device=dev, dtype=torch.long)
                    lp = out.logits[b, :len(r.score_ids)].float().log_softmax(-1)
                    scored[b] = lp.gather(-1, target[:, None])[:, 0].tolist()
            if extra:
                cache.crop(-extra)
            attn, pos = attn[:, :width], pos[:, :width]
            first_logits = out.logits[:, 0, :]
            del out
            expand = torch.tensor(row_req, device=dev)
            cache.batch_select_indices(expand)  # prefill once, expand to n samples per prompt
            logits = first_logits[expand]
            attn = attn[expand]
            next_pos = pos[:, -1][expand] + 1
            gens = []
            for s in row_seed:
                g = torch.Generator(device=dev)
                g.manual_seed(int(s) % (2**63))
                gens.append(g)
            eos = self.eos_ids
            stops = first.stop_strings
            look = max((len(s) for s in stops), default=0) + 8
            n_rows = len(row_req)
            tokens: list[list[int]] = [[] for _ in range(n_rows)]
            finish = ["length"] * n_rows
            active = list(range(n_rows))  # original row index of each live batch row
            for step in range(first.max_new_tokens):
                nxt = sample_rows(logits, first.temperature, first.top_p, [gens[a] for a in active]).tolist()
                keep = []
                for b, (row, t) in enumerate(zip(active, nxt)):
                    if t in eos:
                        finish[row] = "eos"
                        continue
                    tokens[row].append(t)
                    if stops:
                        tail = self.decode(tokens[row][-look:])
                        if any(s in tail for s in stops):
                            finish[row] = "stop"
                            continue
                    keep.append(b)
                if not keep or step == first.max_new_tokens - 1:
                    break
                if len(keep) < len(active):
                    sel = torch.tensor(keep, device=dev)
                    cache.batch_select_indices(sel)
                    attn, next_pos = attn[sel], next_pos[sel]
                    active = [active[b] for b in keep]
                    nxt = [nxt[b] for b in keep]
                attn = torch.cat([attn, attn.new_ones((len(active), 1))], dim=1)
                out = model(input_ids=torch.tensor(nxt, device=dev)[:, None], attention_mask=attn,
                            position_ids=next_pos[:, None], use_cache=True, **{cache_kw: cache})
                cache = out_cache(out)
                logits = out.logits[:, -1, :]
                next_pos = next_pos + 1
        results = []
        row = 0
        for r in reqs:
            comps = []
            for _ in range(r.n):
                ids_ = tokens[row]
                if finish[row] == "stop":
                    ids_ = self.cut_at_stop(ids_, stops)
                comps.append(Completion(token_ids=ids_, text=self.decode(ids_),
                                        finish_reason=finish[row], score_logprobs=scored[len(results)]))
                row += 1
            results.append(comps)
        return results

    # -- scoring ------------------------------------------------------------------------
    def score(self, requests):
        """Per-token log-probs (list of floats) of each request's continuation."""
        self._load()
        if requests:
            worst = max(requests, key=lambda r: len(r.context_ids) + len(r.continuation_ids))
            self._check_context(len(worst.context_ids), len(worst.continuation_ids),
                                f"{len(worst.continuation_ids)} scored tokens")
        pairs = [(r.context_ids, r.continuation_ids) for r in requests]
        lps = continuation_logprobs(self._model, pairs, self.tokenizer.pad_token_id, self.device,
                                    max_batch_tokens=self.score_tokens)
        return [lp.tolist() for lp in lps]
