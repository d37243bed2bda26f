"""Backend ``hf``: transformers models in-process, CPU or CUDA.

Requests are token ids. Prompts are batched with left padding; each prompt is prefilled once
and its KV cache expanded to its ``n`` samples; every sample draws from its own seeded
generator, so a record can be regenerated alone. Finished rows leave the batch.
"""

from __future__ import annotations

from harness.hookspecs import hookimpl
from harness.types import Completion


@hookimpl
def register_backends(register):
    register(HFBackend)


def sample_rows(logits, temperature: float, top_p: float, generators, top_k_first: int = 1024):
    """Sample one token per row, each row from its own seeded generator (temperature 0 = greedy).

    Nucleus sampling is exact: the candidates are the ``top_k_first`` most likely tokens when they
    already hold ``top_p`` of the mass (almost always), else the row's whole sorted vocabulary.
    Each row draws one uniform number from its generator and inverts its (truncated) CDF, so a
    row's token depends only on its own logits and seed, never on the rest of the batch.
    """
    import torch

    if temperature <= 0:
        return logits.argmax(-1)
    probs = (logits.float() / temperature).softmax(-1)
    vocab = probs.shape[-1]
    idx = None
    vals = probs
    if top_p < 1.0:
        k = min(top_k_first, vocab)
        vals, idx = probs.topk(k, dim=-1)
        short = (vals.sum(-1) < top_p).nonzero().flatten().tolist()
        if short and k < vocab:  # the nucleus is wider than top_k_first: sort those rows in full
            full_vals, full_idx = probs[short].sort(-1, descending=True)
            vals = torch.cat([vals, vals.new_zeros(len(vals), vocab - k)], 1)
            idx = torch.cat([idx, idx.new_zeros(len(idx), vocab - k)], 1)
            vals[short], idx[short] = full_vals, full_idx
        # keep a token while the mass before it is below top_p (the most likely token always stays)
        vals = vals.masked_fill(vals.cumsum(-1) - vals >= top_p, 0.0)
    cum = vals.double().cumsum(-1)
    total = cum[:, -1:]
    u = torch.cat([torch.rand(1, generator=g, device=g.device, dtype=torch.float64) for g in generators])
    pick = torch.searchsorted(cum, u[:, None] * total, right=True)
    last_positive = (cum < total).sum(-1, keepdim=True)  # guards the u * total == total rounding edge
    pick = torch.minimum(pick, last_positive)
    return pick[:, 0] if idx is None else idx.gather(-1, pick)[:, 0]


def _cache_arg(model) -> str:
    """The forward() keyword for the KV cache: ``cache`` in newer transformers, else ``past_key_values``."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _out_cache(out):
    return out.cache if getattr(out, "cache", None) is not None else out.past_key_values


class HFBackend:
    name = "hf"
    description = "transformers in-process (CPU/CUDA): batched, shared-prefix n-sampling, teacher-forced score()"

    def __init__(self, arm):
        self.arm = arm
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
        backend._model, backend.tokenizer, backend.device = model, tokenizer, device
        backend._cache_kw = _cache_arg(model)
        return backend

    def _load(self):
        if self._model is None:
            from harness.modelspec import load_model

            self._model, self.tokenizer, self.device = load_model(self.arm)
            self._cache_kw = _cache_arg(self._model)
        return self._model

    @property
    def model(self):
        return self._load()

    def encode(self, text: str) -> list[int]:
        self._load()
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def decode(self, ids) -> str:
        self._load()
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    @property
    def eos_ids(self) -> set[int]:
        self._load()
        ids = set()
        for source in (self.tokenizer.eos_token_id, getattr(self._model.generation_config, "eos_token_id", None)):
            if isinstance(source, int):
                ids.add(source)
            elif source:
                ids.update(source)
        return ids

    def chat_prompt(self, messages: list[dict]) -> str:
        """``messages`` rendered by the tokenizer's chat template, ending where the assistant's
        turn begins (a ``ValueError`` naming the arm when the model has no chat template)."""
        self._load()
        if not getattr(self.tokenizer, "chat_template", None):
            from harness.errors import BadInput

            raise BadInput(f"arm {self.arm.name!r} has no chat template; use the plain prompt for it "
                           "(its arm option reasoning_prompt = \"plain\")")
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

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
            cache = _out_cache(out)
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
                        tail = tok.decode(tokens[row][-look:], skip_special_tokens=True)
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
                cache = _out_cache(out)
                logits = out.logits[:, -1, :]
                next_pos = next_pos + 1
        results = []
        row = 0
        for r in reqs:
            comps = []
            for _ in range(r.n):
                ids_ = tokens[row]
                if finish[row] == "stop":
                    ids_ = self._cut_at_stop(ids_, stops)
                comps.append(Completion(token_ids=ids_, text=tok.decode(ids_, skip_special_tokens=True),
                                        finish_reason=finish[row], score_logprobs=scored[len(results)]))
                row += 1
            results.append(comps)
        return results

    def _cut_at_stop(self, ids, stops):
        """Drop the tokens from the one where the first stop string begins onwards."""
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        at = min(text.find(s) for s in stops if s in text)
        keep = len(ids)
        while keep > 0 and len(self.tokenizer.decode(ids[:keep], skip_special_tokens=True)) > at:
            keep -= 1
        return list(ids[:keep])

    # -- scoring ------------------------------------------------------------------------
    def score(self, requests):
        """Per-token log-probs (list of floats) of each request's continuation."""
        from training.logprobs import continuation_logprobs

        self._load()
        if requests:
            worst = max(requests, key=lambda r: len(r.context_ids) + len(r.continuation_ids))
            self._check_context(len(worst.context_ids), len(worst.continuation_ids),
                                f"{len(worst.continuation_ids)} scored tokens")
        pairs = [(r.context_ids, r.continuation_ids) for r in requests]
        lps = continuation_logprobs(self._model, pairs, self.tokenizer.pad_token_id, self.device,
                                    max_batch_tokens=self.score_tokens)
        return [lp.tolist() for lp in lps]
