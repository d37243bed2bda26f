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

Arm options: ``urls`` (list; ``--backend-url``) or ``url`` (comma-separated), ``served_model``
(the request's ``model``; default the arm's ``model``), ``tokenizer`` (a model spec for the local
tokenizer; default the arm's ``model``), ``prompt_mode`` (``auto`` | ``tokens`` | ``text``),
``concurrency`` (per server, 8), ``retries`` (4), ``timeout`` (seconds, 120), ``api_key_env``
(the environment variable holding a Bearer key, ``OPENAI_API_KEY``; the key is never recorded),
``top_k`` (the value that disables top-k on this server; default found by the first request:
-1, else 0), ``score_method`` (``auto`` | ``echo`` | ``grammar``), ``neutral_sampling`` (true:
also send ``min_p`` 0 and repetition penalties 1 so that server defaults never change the
distribution), ``extra_body`` (a table merged into every request, last).

Completion ids: the server's when it returns them (``token_ids`` with ``return_token_ids``: vLLM
>= 0.10.2, recent SGLang; or vLLM's ``token_id:N`` logprob tokens), else the text re-encoded
locally (noted). Seeds: vLLM honours each request's ``seed``; SGLang only with
``--enable-deterministic-inference``. ``cached_tokens`` needs vLLM's
``--enable-prompt-tokens-details`` or SGLang's ``--enable-cache-report``. Finish reasons: ``length``; ``stop`` with a
stop string (vLLM ``stop_reason``, SGLang ``matched_stop``; llama-cpp-python says neither, so a
text shorter than the server's completion token count means a stop string) else ``eos``.
"""

from __future__ import annotations

import os
import re
import threading
import urllib.parse

from harness.errors import BadInput
from harness.hookspecs import hookimpl
from harness.types import Completion

COMPLETIONS = "/v1/completions"
SEED_MODULUS = 2**31  # conservative (vLLM and SGLang take int64); the record keeps the harness's 63-bit seed
PROMPT_MODES = ("auto", "tokens", "text")

SCORE_METHODS = ("auto", "echo", "grammar")
CHECK_PROMPT = "The capital of France is"
CHECK_FORCED = " purple elephant"  # not what a model writes greedily after CHECK_PROMPT
CHECK_TOLERANCE = 0.05  # nats: the same log-prob asked two ways (off-by-one errors are nats apart)

NOTE_TEXT = ("text prompts: the server re-tokenises prompts, so stage 2 (prefix + thought + close tag) is not sent "
             "as the sampled token ids; completion ids are re-encoded locally")
NOTE_ECHO_TEXT = ("suffix log-probs: echo + logprobs on a text prompt, so they are over the server's tokenisation of "
                  "the true suffix (its tokens found by character offsets)")
NOTE_GRAMMAR = ("suffix log-probs: the server's echoed prompt log-probs failed the alignment check (llama-cpp-python "
                "shifts them by one token), so the true suffix is scored by greedy generation forced through its "
                "token ids by a grammar (<[id]> ...): the suffix ids are exact; the context is sent as the prompt")
NOTE_IDS = "completion token ids are re-encoded locally from the text (the server returned no ids)"
NOTE_FINISH = ("the server does not say whether 'stop' was a stop string or EOS; inferred from its completion "
               "token count against the text's")


@hookimpl
def register_backends(register):
    register(OpenAIBackend)


def _urls(arm) -> list[str]:
    urls = arm.options.get("urls")
    if urls is None:
        urls = arm.options.get("url")
    if isinstance(urls, str):
        urls = urls.split(",")
    return [u.strip() for u in (urls or []) if u and u.strip()]


def _base(url: str) -> str:
    """A server's base URL: trailing ``/`` and ``/v1`` dropped (the backend adds ``/v1/completions``)."""
    url = url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def _public_url(url: str) -> str:
    """``url`` without user:password, for the manifest."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _options(arm) -> dict:
    """The arm's options, validated (BadInput naming the arm and the option)."""
    o = arm.options
    where = f"arm {arm.name!r} (backend openai)"
    urls = _urls(arm)
    if not urls:
        raise BadInput(f"{where} needs a server URL: pass --backend-url http://HOST:PORT (repeatable) or set "
                       "options = { url = \"http://...\" } in the arms file", param_hint="--backend-url")
    for u in urls:
        if not u.startswith(("http://", "https://")):
            raise BadInput(f"{where}: server URL {u!r} must start with http:// or https://", param_hint="--backend-url")
    mode = str(o.get("prompt_mode", "auto")).lower()
    if mode not in PROMPT_MODES:
        raise BadInput(f"{where}: prompt_mode {mode!r}; valid: {', '.join(PROMPT_MODES)}", param_hint="--arms-file")
    score_method = str(o.get("score_method", "auto")).lower()
    if score_method not in SCORE_METHODS:
        raise BadInput(f"{where}: score_method {score_method!r}; valid: {', '.join(SCORE_METHODS)}",
                       param_hint="--arms-file")
    out = {"urls": [_base(u) for u in urls], "prompt_mode": mode, "score_method": score_method,
           "served_model": str(o.get("served_model") or arm.model),
           "tokenizer": str(o.get("tokenizer") or arm.model),
           "api_key_env": str(o.get("api_key_env", "OPENAI_API_KEY")),
           "neutral_sampling": _truthy(o.get("neutral_sampling", True))}
    numbers = (("concurrency", int, 8, 1), ("retries", int, 4, 0), ("timeout", float, 120.0, 0.001))
    for key, kind, default, low in numbers:
        try:
            out[key] = kind(o.get(key, default))
        except (TypeError, ValueError):
            raise BadInput(f"{where}: option {key} must be a number, got {o.get(key)!r}", param_hint="--arms-file")
        if out[key] < low:
            raise BadInput(f"{where}: option {key} must be at least {low}", param_hint="--arms-file")
    top_k = o.get("top_k")
    try:
        out["top_k"] = None if top_k in (None, "auto") else int(top_k)
    except (TypeError, ValueError):
        raise BadInput(f"{where}: option top_k must be an integer or \"auto\", got {top_k!r}", param_hint="--arms-file")
    extra = o.get("extra_body", {})
    if not isinstance(extra, dict):
        raise BadInput(f"{where}: option extra_body must be a table (dict)", param_hint="--arms-file")
    out["extra_body"] = dict(extra)
    return out


class OpenAIBackend:
    name = "openai"
    description = ("any OpenAI-compatible /v1/completions server (vLLM, SGLang, llama.cpp): token-id or text "
                   "prompts, one seeded request per sample, sharded by item, retries and failover")
    takes_url = True

    @classmethod
    def check(cls, arm) -> None:
        """Options valid and a server URL given (no network here: servers are asked at first use)."""
        from dataclasses import replace

        from harness.modelspec import resolve_path

        opts = _options(arm)
        resolve_path(replace(arm, model=opts["tokenizer"]))  # the local tokenizer must exist

    def __init__(self, arm):
        from harness.serving import ServerPool

        self.arm = arm
        self.opts = _options(arm)
        key = os.environ.get(self.opts["api_key_env"]) if self.opts["api_key_env"] else None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.pool = ServerPool(self.opts["urls"], concurrency=self.opts["concurrency"], retries=self.opts["retries"],
                               timeout=self.opts["timeout"], headers=headers)
        self._tok = None
        self._mode: str | None = None if self.opts["prompt_mode"] == "auto" else self.opts["prompt_mode"]
        self._top_k = self.opts["top_k"]
        self._resolved = False
        self._score_method: str | None = None if self.opts["score_method"] == "auto" else self.opts["score_method"]
        self._lock = threading.Lock()
        self._score_lock = threading.Lock()
        # A live dict, kept current: requests, retries, dead servers and notes found during the run
        # reach the manifest (the runner takes info() again when the arm is done). No secrets in it.
        self._info = {"backend": self.name, "servers": [_public_url(u) for u in self.pool.urls],
                      "prompt_mode": self._mode or "auto", "prompt_mode_option": self.opts["prompt_mode"],
                      "served_model": self.opts["served_model"], "tokenizer": self.opts["tokenizer"],
                      "top_k_sent": self._top_k, "seed_modulus": SEED_MODULUS,
                      "score_method": self._score_method or "auto (not needed yet)", "notes": [],
                      "requests": 0, "retries": 0, "dead_servers": self.pool.stats["dead_servers"]}

    # -- tokenizer ----------------------------------------------------------------------
    @property
    def tokenizer(self):
        if self._tok is None:
            from harness.modelspec import load_tokenizer

            self._tok = load_tokenizer(self.arm, self.opts["tokenizer"])
        return self._tok

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def _prompt_text(self, ids) -> str:
        """A token-id prompt as the text sent in text mode: special tokens kept (servers parse them)."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    @property
    def eos_ids(self) -> set[int]:
        eos = self.tokenizer.eos_token_id
        if isinstance(eos, int):
            return {eos}
        return set(eos or ())

    def chat_prompt(self, messages: list[dict]) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            raise BadInput(f"arm {self.arm.name!r}: the tokenizer {self.opts['tokenizer']} has no chat template; "
                           "use the plain prompt for it")
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

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
                          top_p=float(req.top_p), seed=int(seed) % SEED_MODULUS, stop=list(req.stop_strings),
                          return_token_ids=True)

    def _score_body(self, context_ids, continuation_ids, method: str | None = None) -> dict:
        if (method or self._score_method) == "grammar":
            grammar = "root ::= " + " ".join(f"<[{int(t)}]>" for t in continuation_ids)
            return self._body(context_ids, max_tokens=len(continuation_ids), temperature=0.0, top_p=1.0, seed=0,
                              stop=[], logprobs=1, grammar=grammar)
        # llama-cpp-python takes max_tokens <= 0 as "unlimited": generate one token and drop it.
        return self._body(list(context_ids) + list(continuation_ids), max_tokens=1, temperature=0.0, top_p=1.0,
                          seed=0, stop=[], echo=True, logprobs=1)

    # -- first contact: prompt mode and the top_k that disables top-k --------------------
    def _resolve(self) -> None:
        """Once: find a request form the servers accept (token ids, else text in auto mode; top_k -1,
        else 0, unless set). A 4xx or 500 answer refuses that form; anything else is raised."""
        if self._resolved:
            return
        from harness.serving import ServerError

        with self._lock:
            if self._resolved:
                return
            mode_opt = self.opts["prompt_mode"]
            modes = ["tokens", "text"] if mode_opt == "auto" else [mode_opt]
            top_ks = [-1, 0] if self.opts["top_k"] is None else [self.opts["top_k"]]
            probe_ids = self.encode("The")
            refused = []
            for mode in modes:
                for top_k in top_ks:
                    self._mode, self._top_k = mode, top_k
                    body = self._body(probe_ids, max_tokens=1, temperature=0.0, top_p=1.0, seed=0, stop=[])
                    reply, why = self._first_contact(body)
                    if reply is None:
                        refused.append(f"{mode} prompt, top_k={top_k}: {why}")
                        continue
                    if not isinstance(reply, dict) or not reply.get("choices"):
                        raise ServerError(f"{self._server()} answered {COMPLETIONS} without choices: "
                                          f"{str(reply)[:300]}")
                    self._info.update(prompt_mode=mode, top_k_sent=top_k)
                    self._info.pop("error", None)
                    if mode == "text":
                        self._info["notes"].insert(0, NOTE_TEXT)
                    self._resolved = True
                    return
            raise ServerError(f"no request form was accepted by {', '.join(self.pool.urls)}: " + " | ".join(refused))

    def _first_contact(self, body, url: str | None = None) -> tuple[dict | None, str | None]:
        """(reply, None), or (None, why) when the server refuses this request form: a 4xx, or a 500
        (llama-cpp-python answers a body it rejects, or a grammar it cannot parse, with 500). Only
        for the few requests that find what a server takes; connection trouble goes through the
        pool: retries, then failover to another server."""
        from harness.serving import ServerError, _Retryable, post_json

        refusal = re.compile(r"HTTP (4\d\d|500) ")
        url = url or self.pool.urls[self.pool.server_for(None)]
        try:
            reply = post_json(url + COMPLETIONS, body, self.pool.timeout, self.pool.headers)
        except ServerError as exc:
            if refusal.match(exc.message):
                return None, exc.message
            raise
        except _Retryable as exc:
            if refusal.match(str(exc)):
                return None, str(exc)
            try:
                return self.pool.post(COMPLETIONS, body), None
            except ServerError as exc2:
                if refusal.match(exc2.message):
                    return None, exc2.message
                raise
        self.pool.count_request()
        return reply, None

    # -- how to score: the alignment check ------------------------------------------------
    def _resolve_scoring(self) -> None:
        """Once, before the first scoring call: ``echo`` or ``grammar`` (``score_method = auto``).
        Greedy-generate two tokens after a fixed prompt with ``logprobs`` (generated tokens' log-probs
        are aligned on every server we know), then ask for those tokens' log-probs by echo, else by
        grammar forcing; the first method that gives the same values is used (grammar only when it
        also forces an unlikely text, so a server that ignores ``grammar`` is not taken). None
        does: ServerError."""
        from harness.serving import ServerError

        if self._score_method is not None:
            self._score_note()
            return
        with self._score_lock:
            if self._score_method is not None:
                return
            where = self._server()
            prompt = self.encode(CHECK_PROMPT)
            reply, why = self._first_contact(self._body(prompt, max_tokens=2, temperature=0.0, top_p=1.0, seed=0,
                                                        stop=[], logprobs=1, return_token_ids=True), where)
            choice = ((reply or {}).get("choices") or [{}])[0]
            want = (choice.get("logprobs") or {}).get("token_logprobs") if isinstance(choice, dict) else None
            if not want or any(v is None for v in want):
                raise ServerError(f"{where} returns no log-probs for generated tokens (logprobs=1"
                                  f"{': ' + why if why else ''}); it cannot score() the true suffix (the probe's "
                                  "suffix_logprob)")
            ids = self._server_ids(choice) or self.encode(choice.get("text") or "")
            tried = {}
            for method in ("echo", "grammar"):
                reply, why = self._first_contact(self._score_body(prompt, ids, method), where)
                if reply is None:
                    tried[method] = why
                    continue
                try:
                    got = self._parse_score(reply, prompt, ids, None, method)
                except ServerError as exc:
                    tried[method] = exc.message
                    continue
                tried[method] = [round(v, 4) for v in got]
                if len(got) != len(want) or any(abs(a - b) > CHECK_TOLERANCE for a, b in zip(got, want)):
                    continue
                if method == "grammar":  # forcing the greedy tokens proves nothing: force unlikely ones too
                    forced = self.encode(CHECK_FORCED)
                    reply, why = self._first_contact(self._score_body(prompt, forced, method), where)
                    text = (((reply or {}).get("choices") or [{}])[0] or {}).get("text")
                    if text != self.decode(forced):
                        tried[method] = (f"the grammar is not applied: forced {CHECK_FORCED!r}, got "
                                         f"{why if reply is None else repr(text)}")
                        continue
                self._score_method = method
                break
            check = {"prompt": CHECK_PROMPT, "generated_logprobs": [round(v, 4) for v in want], **tried}
            self._info["score_check"] = check
            if self._score_method is None:
                raise ServerError(
                    f"{where} cannot score() the true suffix: the log-probs of two greedy tokens "
                    f"({[round(v, 4) for v in want]}) came back neither by echo ({tried.get('echo')}) nor by grammar "
                    f"forcing ({tried.get('grammar')}); set the arm option score_method to force one")
            self._score_note()

    def _score_note(self) -> None:
        self._info["score_method"] = self._score_method
        if self._score_method == "grammar":
            self._note(NOTE_GRAMMAR)
        elif self._mode == "text":
            self._note(NOTE_ECHO_TEXT)

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
            keep = len(ids)  # server ids past the stop string: cut where it begins (as the hf backend)
            while keep > 0 and len(self.decode(ids[:keep])) > len(text):
                keep -= 1
            ids = ids[:keep]
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
