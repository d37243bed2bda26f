"""Backend ``openai``: any OpenAI-compatible ``/v1/completions`` server (vLLM, SGLang, llama.cpp).

The harness keeps the tokenizer (``encode``/``decode``/chat template) locally and sends one HTTP
request per sample, each with its own seed and explicit sampling settings, through
:class:`harness.serving.ServerPool`: requests of one item (``affinity``) go to one server, at most
``concurrency`` are in flight per server, retryable failures are retried with backoff, and a server
that keeps failing is marked dead and its items move to the live ones.

Prompts are token ids where the server accepts them (vLLM, SGLang) and text otherwise
(llama-cpp-python's server): with ``prompt_mode = "auto"`` the first request tries a token-id
prompt and falls back to text when the server refuses it. Text prompts are re-tokenised by the
server, so stage 2 of the probe (prefix + thought + close tag) then reaches the model as the
server's tokens, not the sampled ids; ``info()["notes"]`` says so and the report prints it.

``score`` (and ``score_ids`` on a :class:`GenRequest`) is a separate call per request, by one of
two methods, chosen once by an alignment check (``score_method = "auto"``): greedy-generate two
tokens with ``logprobs``, then ask for the same tokens' log-probs each way; a method is used only
when it gives back the generated tokens' own log-probs.

- ``echo``: ``echo`` + ``logprobs`` with context + continuation as the prompt (one token is
  generated and dropped); the continuation's prompt-token log-probs (in text mode: the server's
  tokens whose text lies in the continuation, found by character offsets). vLLM, SGLang.
- ``grammar``: the context as the prompt and a grammar of the continuation's token ids
  (``root ::= <[id]> <[id]> ...``) forcing greedy generation through exactly those ids, whose
  log-probs (of the unconstrained distribution) are read. llama-cpp-python, whose echoed prompt
  log-probs are shifted by one token (each is the token's log-prob *after* itself,
  abetlen/llama-cpp-python#1983): the check finds that and picks this.

Arm options: ``urls`` (``--backend-url``) or ``url`` (a list or a comma-separated string),
``served_model`` (the request's ``model``; default the arm's ``model``), ``tokenizer`` (a model spec for the local
tokenizer; default the arm's ``model``), ``prompt_mode`` (``auto`` | ``tokens`` | ``text``),
``concurrency`` (per server, 8), ``retries`` (4), ``timeout`` (seconds, 120), ``api_key_env``
(the environment variable holding a Bearer key, ``OPENAI_API_KEY``; the key is never recorded),
``top_k`` (the value that disables top-k on this server; default found by the first request:
-1, else 0), ``score_method`` (``auto`` | ``echo`` | ``grammar``), ``neutral_sampling`` (true:
also send ``min_p`` 0 and repetition penalties 1 so that server defaults never change the
distribution), ``extra_body`` (a table merged into every request, last). They are checked in
:mod:`.options`; the first contact (prompt mode, ``top_k``, scoring method) is :mod:`.discovery`.

Completion ids: the server's when it returns them (``token_ids`` with ``return_token_ids``: vLLM
>= 0.10.2, recent SGLang; or vLLM's ``token_id:N`` logprob tokens), else the text re-encoded
locally (noted). Seeds: each request's ``seed`` is the sample's seed reduced to 31 bits
(:meth:`harness.backend_base.ServerBackend.server_seed`); vLLM honours it, SGLang only with
``--enable-deterministic-inference``. A sample is reproducible from its seed only where the server
is batch invariant; vLLM does not say whether it is, so where the server's ``system_fingerprint``
(recorded in ``info()``) says vLLM the backend notes that samples may not be reproducible.
``cached_tokens`` needs vLLM's ``--enable-prompt-tokens-details`` or SGLang's ``--enable-cache-report``.
Finish reasons: ``length``; ``stop`` with a stop string (vLLM ``stop_reason``, SGLang ``matched_stop``;
llama-cpp-python says neither, so a text shorter than the server's completion token count means a
stop string) else ``eos``.
"""

from __future__ import annotations

import os
import threading

from harness.backend_base import SEED_MODULUS, ServerBackend
from harness.hookspecs import hookimpl
from harness.types import Completion
from plugins.backends.openai.discovery import (COMPLETIONS, NOTE_ECHO_TEXT, NOTE_GRAMMAR, NOTE_SEEDS_VLLM, NOTE_TEXT,
                                               Discovery)
from plugins.backends.openai.options import parse_options, public_url

__all__ = ["NOTE_ECHO_TEXT", "NOTE_FINISH", "NOTE_GRAMMAR", "NOTE_IDS", "NOTE_SEEDS_VLLM", "NOTE_TEXT", "SEED_MODULUS",
           "OpenAIBackend"]

NOTE_IDS = "completion token ids are re-encoded locally from the text (the server returned no ids)"
NOTE_FINISH = ("the server does not say whether 'stop' was a stop string or EOS; inferred from its completion "
               "token count against the text's")


@hookimpl
def register_backends(register):
    register(OpenAIBackend)


class OpenAIBackend(ServerBackend, Discovery):
    name = "openai"
    description = ("any OpenAI-compatible /v1/completions server (vLLM, SGLang, llama.cpp): token-id or text "
                   "prompts, one seeded request per sample, sharded by item, retries and failover")

    @classmethod
    def check(cls, arm) -> None:
        """Options valid and a server URL given (no network here: servers are asked at first use)."""
        from dataclasses import replace

        from harness.modelspec import resolve_path

        opts = parse_options(arm)
        resolve_path(replace(arm, model=opts["tokenizer"]))  # the local tokenizer must exist

    def __init__(self, arm):
        from harness.serving import ServerPool

        super().__init__(arm)  # the local tokenizer: ServerBackend.tokenizer_of(arm)
        self.opts = parse_options(arm)
        key = os.environ.get(self.opts["api_key_env"]) if self.opts["api_key_env"] else None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.pool = ServerPool(self.opts["urls"], concurrency=self.opts["concurrency"], retries=self.opts["retries"],
                               timeout=self.opts["timeout"], headers=headers)
        self._mode: str | None = None if self.opts["prompt_mode"] == "auto" else self.opts["prompt_mode"]
        self._top_k = self.opts["top_k"]
        self._resolved = False
        self._score_method: str | None = None if self.opts["score_method"] == "auto" else self.opts["score_method"]
        self._lock = threading.Lock()
        self._score_lock = threading.Lock()
        # A live dict, kept current: requests, retries, dead servers and notes found during the run
        # reach the manifest (the runner takes info() again when the arm is done). No secrets in it.
        self._info = {"backend": self.name, "servers": [public_url(u) for u in self.pool.urls],
                      "prompt_mode": self._mode or "auto", "prompt_mode_option": self.opts["prompt_mode"],
                      "served_model": self.opts["served_model"], "tokenizer": self.opts["tokenizer"],
                      "top_k_sent": self._top_k, "seed_modulus": SEED_MODULUS, "system_fingerprint": None,
                      "score_method": self._score_method or "auto (not needed yet)", "notes": [],
                      "requests": 0, "retries": 0, "dead_servers": self.pool.stats["dead_servers"]}

    # -- info ---------------------------------------------------------------------------
    def info(self) -> dict:
        """What the run records (a live dict, also taken as the final info at the end of a run).
        The first call finds the prompt mode; a server that cannot be reached is not an error here
        (the first generate() raises it), so a failing run still records its info."""
        from harness.serving import ServerError

        try:
            self._resolve()
        except ServerError as exc:
            self._info["error"] = exc.message
        self._sync_stats()
        return self._info

    def _note(self, note: str) -> None:
        with self._lock:
            if note not in self._info["notes"]:
                self._info["notes"].append(note)

    def _sync_stats(self) -> None:
        self._info["requests"] = self.pool.stats["requests"]
        self._info["retries"] = self.pool.stats["retries"]

    # -- request bodies -----------------------------------------------------------------
    def _prompt_text(self, ids) -> str:
        """A token-id prompt as the text sent in text mode: special tokens kept (servers parse them)."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def _sampling(self) -> dict:
        body = {"n": 1, "stream": False, "top_k": self._top_k}
        if self.opts["neutral_sampling"]:
            body.update(min_p=0.0, repeat_penalty=1.0, repetition_penalty=1.0, presence_penalty=0.0,
                        frequency_penalty=0.0)
        return body

    def _body(self, prompt_ids, **fields) -> dict:
        prompt = list(prompt_ids) if self._mode == "tokens" else self._prompt_text(prompt_ids)
        return {"model": self.opts["served_model"], "prompt": prompt, **self._sampling(), **fields,
                **self.opts["extra_body"]}

    def _gen_body(self, req, seed: int) -> dict:
        return self._body(req.prompt_ids, max_tokens=int(req.max_new_tokens), temperature=float(req.temperature),
                          top_p=float(req.top_p), seed=self.server_seed(seed), stop=list(req.stop_strings),
                          return_token_ids=True)

    def _score_body(self, context_ids, continuation_ids, method: str | None = None) -> dict:
        if (method or self._score_method) == "grammar":
            grammar = "root ::= " + " ".join(f"<[{int(t)}]>" for t in continuation_ids)
            return self._body(context_ids, max_tokens=len(continuation_ids), temperature=0.0, top_p=1.0, seed=0,
                              stop=[], logprobs=1, grammar=grammar)
        # llama-cpp-python takes max_tokens <= 0 as "unlimited": generate one token and drop it.
        return self._body(list(context_ids) + list(continuation_ids), max_tokens=1, temperature=0.0, top_p=1.0,
                          seed=0, stop=[], echo=True, logprobs=1)

    def _server(self, affinity: str | None = None) -> str:
        try:
            return self.pool.urls[self.pool.server_for(affinity)]
        except Exception:
            return ", ".join(self.pool.urls)

    # -- generation ---------------------------------------------------------------------
    def generate(self, requests, progress=None):
        """One list of ``n`` :class:`Completion` per request (one HTTP request per sample)."""
        self._resolve()
        if any(r.score_ids for r in requests):
            self._resolve_scoring()
        jobs, where = [], []  # where: (request index, sample index) or (request index, "score")
        for i, r in enumerate(requests):
            if len(r.seeds) != r.n:
                raise ValueError(f"request {i}: {r.n} samples but {len(r.seeds)} seeds")
            if r.max_new_tokens > 0:
                for s, seed in enumerate(r.seeds):
                    jobs.append((COMPLETIONS, self._gen_body(r, seed), r.affinity))
                    where.append((i, s))
            if r.score_ids:
                jobs.append((COMPLETIONS, self._score_body(r.prompt_ids, r.score_ids), r.affinity))
                where.append((i, "score"))

        try:
            replies = self.pool.map(jobs, [s != "score" for _, s in where], progress)
        finally:
            self._sync_stats()
        results: list[list] = [[None] * r.n for r in requests]
        scores: list = [None] * len(requests)
        for (i, s), job, reply in zip(where, jobs, replies):
            r = requests[i]
            if s == "score":
                scores[i] = self._parse_score(reply, r.prompt_ids, r.score_ids, job[2])
            else:
                results[i][s] = self._parse_completion(reply, r, job[2])
        for i, r in enumerate(requests):
            if r.score_ids is not None and scores[i] is None:
                scores[i] = []  # empty score_ids
            for s in range(r.n):
                if results[i][s] is None:  # max_new_tokens <= 0: nothing to sample
                    results[i][s] = Completion(token_ids=[], text="", finish_reason="length")
                results[i][s].score_logprobs = scores[i]
        return results

    def _parse_completion(self, reply: dict, req, affinity) -> Completion:
        from harness.serving import ServerError

        try:
            choice = reply["choices"][0]
            text = choice.get("text") or ""
        except (KeyError, IndexError, TypeError):
            raise ServerError(f"{self._server(affinity)} returned no completion choice: {str(reply)[:300]}")
        ids = self._server_ids(choice)
        if ids is None:
            self._note(NOTE_IDS if self._mode == "tokens" else NOTE_TEXT)
            ids = self.encode(text)
        finish = self._finish(choice, reply, req, text)
        if finish == "eos":
            eos = self.eos_ids
            while ids and ids[-1] in eos:
                ids = ids[:-1]
        elif finish == "stop" and ids and len(self.decode(ids)) > len(text):
            ids = self.cut_at(ids, len(text))  # server ids past the stop string: cut where it begins
        usage = reply.get("usage") or {}
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        return Completion(token_ids=list(ids), text=text, finish_reason=finish,
                          cached_tokens=int(cached) if isinstance(cached, int) else None)

    @staticmethod
    def _server_ids(choice: dict) -> list[int] | None:
        """Completion token ids when the server returns them: ``token_ids`` (vLLM ``return_token_ids``)
        or logprob tokens written ``token_id:123`` (vLLM ``return_tokens_as_token_ids``)."""
        ids = choice.get("token_ids")
        if isinstance(ids, list) and all(isinstance(t, int) for t in ids):
            return list(ids)
        tokens = ((choice.get("logprobs") or {}).get("tokens")) if isinstance(choice.get("logprobs"), dict) else None
        if tokens and all(isinstance(t, str) and t.startswith("token_id:") for t in tokens):
            try:
                return [int(t.split(":", 1)[1]) for t in tokens]
            except ValueError:
                return None
        return None

    def _finish(self, choice: dict, reply: dict, req, text: str) -> str:
        """The harness's ``stop`` (a stop string), ``eos`` or ``length`` from the server's answer."""
        reason = choice.get("finish_reason")
        if reason == "length":
            return "length"
        if reason != "stop":
            return "length"  # None, "abort", ...: ended without EOS or a stop string
        if not req.stop_strings:
            return "eos"
        for key in ("stop_reason", "matched_stop"):  # vLLM, SGLang: the stop string, or a token id / None for EOS
            if key in choice:
                return "stop" if isinstance(choice[key], str) else "eos"
        # llama-cpp-python: "stop" for both. A stop string cuts the text before tokens the server
        # counted (the ones that spell it); at EOS the text holds every counted token.
        self._note(NOTE_FINISH)
        counted = (reply.get("usage") or {}).get("completion_tokens")
        if isinstance(counted, int):
            return "stop" if counted > len(self.encode(text)) else "eos"
        return "stop"

    # -- scoring ------------------------------------------------------------------------
    def score(self, requests):
        """Per-token log-probs of each continuation (echo + logprobs; in text mode over the server's tokens)."""
        self._resolve()
        todo = [k for k, r in enumerate(requests) if r.continuation_ids]
        if todo:
            self._resolve_scoring()
        jobs = [(COMPLETIONS, self._score_body(requests[k].context_ids, requests[k].continuation_ids), None)
                for k in todo]
        try:
            replies = self.pool.map(jobs)
        finally:
            self._sync_stats()
        out = [[] for _ in requests]
        for k, reply in zip(todo, replies):
            out[k] = self._parse_score(reply, requests[k].context_ids, requests[k].continuation_ids, None)
        return out

    def _parse_score(self, reply: dict, context_ids, continuation_ids, affinity,
                     method: str | None = None) -> list[float]:
        from harness.serving import ServerError

        method = method or self._score_method
        if not continuation_ids:
            return []
        try:
            lp = reply["choices"][0].get("logprobs")
        except (KeyError, IndexError, TypeError, AttributeError):
            lp = None
        token_lps = lp.get("token_logprobs") if isinstance(lp, dict) else None
        what = "prompt log-probs for echo + logprobs" if method == "echo" else "log-probs of the forced tokens"
        if not isinstance(token_lps, list):
            raise ServerError(f"{self._server(affinity)} returned no {what} (choices[0].logprobs.token_logprobs "
                              "missing); it cannot score() the true suffix, which the probe records as suffix_logprob")
        if method == "grammar":
            if len(token_lps) != len(continuation_ids):
                raise ServerError(f"{self._server(affinity)}: grammar-forced scoring gave {len(token_lps)} log-probs "
                                  f"for {len(continuation_ids)} continuation tokens (the grammar was not applied)")
            out = token_lps
        elif self._mode == "tokens":
            start, stop = len(context_ids), len(context_ids) + len(continuation_ids)
            if len(token_lps) < stop:
                raise ServerError(f"{self._server(affinity)} echoed {len(token_lps)} prompt log-probs for a "
                                  f"{stop}-token prompt; it does not return prompt log-probs with echo")
            out = token_lps[start:stop]
        else:
            offsets = lp.get("text_offset")
            if not isinstance(offsets, list) or len(offsets) != len(token_lps) or \
                    any(not isinstance(o, int) or o < 0 for o in offsets):
                raise ServerError(f"{self._server(affinity)} returned no usable text_offset with its echoed "
                                  "log-probs (SGLang sends -1); text-mode scoring needs character offsets: use "
                                  "prompt_mode = \"tokens\" where the server takes token ids")
            full = self._prompt_text(list(context_ids) + list(continuation_ids))
            head = self._prompt_text(context_ids)
            boundary = len(os.path.commonprefix([full, head]))
            # the server's prompt tokens (offsets inside the prompt text) that carry continuation text
            prompt_idx = [k for k, off in enumerate(offsets) if off < len(full)]
            out = []
            for n, k in enumerate(prompt_idx):
                end = offsets[prompt_idx[n + 1]] if n + 1 < len(prompt_idx) else len(full)
                if end > boundary:
                    out.append(token_lps[k])
            if not out:
                raise ServerError(f"{self._server(affinity)}: no echoed token lies in the continuation "
                                  f"(prompt {len(full)} chars, continuation from char {boundary})")
        if any(v is None for v in out):
            raise ServerError(f"{self._server(affinity)} gave no log-prob for a continuation token "
                              "(the first prompt token has none: score with a non-empty context)")
        return [float(v) for v in out]
