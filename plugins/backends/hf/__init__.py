"""Backend ``hf``: transformers models in-process, CPU or CUDA.

Requests are token ids. Prompts are batched with left padding; each prompt is prefilled once
and its KV cache expanded to its ``n`` samples; every sample draws from its own seeded
generator, so a record can be regenerated alone. Finished rows leave the batch and, with
continuous batching (on by default), pending requests take their place (the running batch is
:mod:`plugins.backends.hf.batching`). The tensor kernels (sampling, teacher-forced log-probs)
are in :mod:`plugins.backends.hf.kernels`.
"""

from __future__ import annotations

from harness.backend_base import TokenizerBackend
from harness.hookspecs import hookimpl
from harness.types import Completion
from plugins.backends.hf.batching import DecodeBatch
from plugins.backends.hf.kernels import cache_arg, continuation_logprobs, sample_rows
from plugins.backends.hf.prefix import PrefixStore


def _flag(value) -> bool:
    """An arm option's truth value (TOML gives a bool; a string "false", "0", "no" or "off" is false)."""
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "off", "")
    return bool(value)


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
        # refill finished rows from pending requests (continuous batching); off: batch by batch
        self.continuous = _flag(arm.options.get("continuous_batching", True))
        self.refills = 0  # prefills merged into a running batch, for tests and benchmarks
        # free KV-cache positions a layer keeps, so a decode step writes in place (0: transformers' own
        # cache, which copies itself to append each position)
        self.kv_spare = int(arm.options.get("kv_spare", 64))
        # the KV caches of requests' prefixes (prefix_len: the probe's item prompt) are kept for the
        # later prompts that start with them, up to this many MiB (0: computed again each time)
        mib = float(arm.options.get("prefix_cache_mb", 1024))
        self.prefixes = PrefixStore(int(mib * 2**20)) if mib > 0 else None
        self._warned_context = False

    @classmethod
    def from_loaded(cls, arm, model, tokenizer, device):
        """A backend over an already-loaded model (training samples from its live weights)."""
        backend = cls(arm)
        backend._model, backend._tokenizer, backend.device = model, tokenizer, device
        backend.prefixes = None  # the weights change between calls: a stored prefix would be stale
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
        from harness.modelspec import cpu_bf16_flags, resolve_dtype

        self._load()
        rule = resolve_dtype(self.arm.dtype, str(self.device), self.arm.model)[1]
        info = {"device": str(self.device), "dtype": str(self._model.dtype).replace("torch.", ""),
                "dtype_requested": self.arm.dtype, "dtype_rule": rule, "model_class": type(self._model).__name__,
                "vocab_size": len(self.tokenizer), "continuous_batching": self.continuous,
                "kv_spare": self.kv_spare, "prefix_cache_mb": self.prefixes.max_bytes / 2**20 if self.prefixes else 0}
        if str(self.device) == "cpu":
            info["cpu_bf16_flags"] = cpu_bf16_flags()  # what dtype "auto" consults on a CPU
        if info["dtype"] != "float32":
            info["notes"] = [f"{info['dtype']}: a sample's tokens can depend on which rows shared its batch, so a "
                             "resumed or re-batched run may hold other (equally valid) samples for the same seeds; "
                             "dtype float32 (--dtype float32) makes them reproducible on a CPU"]
        return info

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
            for i, out in zip(idxs, self._generate_group([requests[i] for i in idxs], progress)):
                results[i] = out
        return results

    def _admit(self, queue, reqs, batch) -> list[int]:
        """The requests at the head of ``queue`` that ``batch`` takes now: as many as fit in
        ``batch_rows`` sample rows and the prefill's logit budget, at least one when the batch is
        empty. A running batch takes none unless continuous batching is on."""
        if len(batch) and not (self.continuous and batch.can_merge):
            return []
        take: list[int] = []
        rows, longest = len(batch), 0  # sample rows, and the longest score_ids of the prefill
        while queue:
            r = reqs[queue[0]]
            grow = max(longest, len(r.score_ids or ()))
            # the prefill holds (prompts x (longest score_ids + 1)) rows of vocabulary logits
            fits = rows + r.n <= self.batch_rows and (len(take) + 1) * (grow + 1) <= self.logit_rows
            if (take or rows) and not fits:
                break
            take.append(queue.popleft())
            rows, longest = rows + r.n, grow
        return take

    def _generate_group(self, reqs, progress):
        """Completions of ``reqs``, which share their sampling settings, sorted by prompt length.

        Requests are prefilled in batches of up to ``batch_rows`` sample rows. With continuous
        batching (the arm option ``continuous_batching``, on by default) rows that finish are
        refilled from the pending requests, whose prefill merges into the running batch; without
        it a batch runs until its last row finishes. Every row samples from its own generator, so
        a sample's tokens do not depend on which rows it shared the batch with, up to the float
        rounding that batch shapes change (in float32 the tokens are the same; in bfloat16 a
        rounding difference can flip a draw)."""
        from collections import deque

        first = reqs[0]
        eos, stops, limit = self.eos_ids, first.stop_strings, first.max_new_tokens
        look = max((len(s) for s in stops), default=0) + 8
        batch = DecodeBatch(self._model, self.tokenizer.pad_token_id, self.device, self._cache_kw, self.prefixes,
                            self.kv_spare)
        queue = deque(range(len(reqs)))
        tokens = [[[] for _ in range(r.n)] for r in reqs]
        finish = [["length"] * r.n for r in reqs]
        left = [r.n for r in reqs]  # unfinished samples per request
        scored: list = [None] * len(reqs)
        results: list = [None] * len(reqs)
        while True:
            take = self._admit(queue, reqs, batch)
            if take:
                self.refills += bool(len(batch))
                labels = [(i, s) for i in take for s in range(reqs[i].n)]
                for i, lp in zip(take, batch.add([reqs[i] for i in take], labels)):
                    scored[i] = lp
            if not len(batch):
                break
            nxt = (sample_rows(batch.logits, first.temperature, first.top_p, batch.gens).tolist() if limit > 0
                   else [None] * len(batch))
            keep = []
            for b, ((i, s), t) in enumerate(zip(batch.rows, nxt)):
                reason = self._advance(tokens[i][s], t, eos, stops, look, limit)
                if reason is None:
                    keep.append(b)
                    continue
                finish[i][s] = reason
                left[i] -= 1
                if not left[i]:
                    results[i] = self._completions(tokens[i], finish[i], scored[i], stops)
                    if progress is not None:
                        progress(reqs[i].n)
            batch.keep(keep)
            if len(batch):
                batch.step([nxt[b] for b in keep])
        return results

    def _advance(self, toks: list[int], t, eos, stops, look: int, limit: int):
        """Append sampled token ``t`` to a row's ``toks``; why the row ends, or None while it runs."""
        if t is None:  # max_new_tokens 0: the prefill only scores
            return "length"
        if t in eos:
            return "eos"
        toks.append(t)
        if stops:
            tail = self.decode(toks[-look:])
            if any(s in tail for s in stops):
                return "stop"
        return "length" if len(toks) >= limit else None

    def _completions(self, tokens, finish, scored, stops) -> list:
        comps = []
        for ids, why in zip(tokens, finish):
            if why == "stop":
                ids = self.cut_at_stop(ids, stops)
            comps.append(Completion(token_ids=ids, text=self.decode(ids), finish_reason=why, score_logprobs=scored))
        return comps

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
