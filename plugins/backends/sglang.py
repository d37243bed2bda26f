"""Backend ``sglang``: SGLang servers through their native HTTP API, token ids in and out.

Verified at the protocol level (against SGLang's documented wire format, with a fake server in
the tests) until it is run against a real server on a GPU. This module never imports sglang:
it talks HTTP, and only a launched server runs ``python -m sglang.launch_server``.

Arm options:

- ``urls`` / ``url``: running servers (``harness run --backend-url URL`` fills ``urls``); or
  ``launch = true``: start one, ``<launch_command> --model-path MODEL --host 127.0.0.1 --port PORT
  [--dtype D] [--trust-remote-code] [--enable-deterministic-inference] <launch_args>``, in its own
  process group, waiting for ``GET /health_generate``; it is stopped at exit (or ``close()``).
  ``launch_command`` defaults to ``[python, "-m", "sglang.launch_server"]``; ``port`` to a free
  one; ``deterministic = true`` adds ``--enable-deterministic-inference``; ``launch_args`` is a
  list or a string; ``startup_timeout`` (s, default 1800). The log goes to
  ``$HARNESS_CACHE/sglang/<arm>-<port>.log``.
- ``tokenizer``: the model spec whose tokenizer encodes prompts and decodes ids locally (default:
  the arm's model); it must be the served model's tokenizer.
- ``concurrency`` (requests in flight per server, 64), ``retries`` (4), ``backoff`` (s, 0.5),
  ``timeout`` (s per request, 600).

Protocol. Every request is ``POST /generate`` with ``input_ids`` (never text, never the OpenAI chat
endpoint) and every sampling field explicit: ``temperature``, ``top_p``, ``top_k = -1``,
``min_p = 0``, ``max_new_tokens``, ``min_new_tokens = 0``, ``stop`` (the request's stop strings),
``stop_token_ids`` (the local EOS ids), neutral ``repetition_penalty``/``frequency_penalty``/
``presence_penalty``, ``ignore_eos = false``, ``n = 1``, ``sampling_seed``. ``/generate`` fills a
missing field from the server's ``--preferred-sampling-params``, then its built-in defaults (its
OpenAI chat endpoints use the model's ``generation_config.json`` instead: Qwen3's temperature 0.6,
top_p 0.95, top_k 20), so nothing that shapes the distribution is left to the server. A server
started with ``--preferred-sampling-params`` could still set fields the backend does not send
(``regex``, ``logit_bias``, ...): ``info()`` records what it reports there and notes it.

Seeds. A request with ``n`` samples becomes ``n`` requests, each with its own ``sampling_seed`` (the
sample's seed reduced to 31 bits, since some SGLang versions hold seeds in an int32 tensor). SGLang
uses ``sampling_seed`` only when the server runs with ``--enable-deterministic-inference``;
otherwise samples are not reproducible from their seeds (``info()`` says so). With that flag, one
request with ``n > 1`` and one seed would return ``n`` identical samples, which is why ``n`` is
expanded. Deterministic mode with the FlashInfer attention backend turns the radix cache off; use
``--attention-backend fa3`` or ``triton`` (``launch_args``) to keep prefix caching.

Replies. Token ids come from ``output_ids`` (else the ids in ``meta_info.output_token_logprobs``,
else, counted in the info notes, the local encoding of ``text``). ``meta_info.finish_reason``:
``{"type": "length"}`` -> ``"length"``; ``{"type": "stop", "matched": <str>}`` (a stop string) ->
``"stop"``, the ids cut before the token where the stop string begins (SGLang trims the string
from ``text`` only); ``{"type": "stop", "matched": <token id>}`` (EOS or a stop token) -> ``"eos"``,
the stop token dropped; ``{"type": "abort"}`` -> an error. As in the ``hf`` backend, an EOS or a
stop string on the last allowed token counts as ``"eos"``/``"stop"`` rather than ``"length"``.
``meta_info.cached_tokens`` (prompt tokens found in the server's prefix cache) goes into
``Completion.cached_tokens``. Each request carries the ``GenRequest``'s ``affinity`` (the item id),
so stage 2 of an item (prompt + thought + close tag) goes to the server that served stage 1 and
finds it in its radix cache.

Scoring (``score`` and ``GenRequest.score_ids``): ``/generate`` with ``input_ids = context +
continuation``, ``max_new_tokens = 0``, ``return_logprob = true`` and ``logprob_start_len =
len(context) - 1``. ``meta_info.input_token_logprobs`` then lists ``[logprob, token_id, text]`` for
the positions from ``logprob_start_len`` on; its first entry (the context's last token) has a null
log-prob, the others are the continuation's teacher-forced log-probs. The ids in the reply must
equal the continuation's; a mismatch is an error. Temperature and top_p are 1 in scoring requests
so the log-probs are the model's own whatever the server does with sampling settings.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shlex
import signal
import socket
import sys
import threading
import urllib.error
import urllib.request
import weakref
from dataclasses import replace

from harness.errors import BadInput
from harness.hookspecs import hookimpl
from harness.serving import ServerError
from harness.types import Completion

SEED_BITS = 31
DEFAULT_CONCURRENCY = 64


@hookimpl
def register_backends(register):
    register(SGLangBackend)


def default_launch_command() -> list[str]:
    return [sys.executable, "-m", "sglang.launch_server"]


def _urls(options: dict) -> list[str]:
    urls = options.get("urls") or options.get("url") or []
    if isinstance(urls, str):
        urls = [urls]
    return [str(u) for u in urls]


def _flag(options: dict, key: str, arm_name: str) -> bool:
    value = options.get(key, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no", ""):
        return value.lower() in ("true", "1", "yes")
    raise BadInput(f"arm {arm_name!r}: option {key} must be true or false, not {value!r}")


def _arg_list(value, key: str, arm_name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v) for v in value]
    raise BadInput(f"arm {arm_name!r}: option {key} must be a list of arguments or one string, not {value!r}")


def _number(options: dict, key: str, default, arm_name: str, kind=float, minimum=0.0):
    value = options.get(key, default)
    number = None
    if not isinstance(value, bool) and not (kind is int and isinstance(value, float)):
        try:
            number = kind(value)
        except (TypeError, ValueError):
            pass
    if number is None or number < minimum:
        raise BadInput(f"arm {arm_name!r}: option {key} must be a{'n integer' if kind is int else ' number'} "
                       f">= {minimum}, not {value!r}")
    return number


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str, timeout: float = 5.0):
    """GET ``url`` as JSON; None when it cannot be had (servers without that endpoint, say)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read().decode())
    except (OSError, ValueError, urllib.error.URLError, http.client.HTTPException):
        return None


def _stop(server) -> None:
    """Stop a launched server's process group. ``LaunchedServer.stop`` signals the group only
    while its leader lives; when the leader already died, what is left of the group (SGLang's
    scheduler and detokenizer processes, say) gets SIGTERM here."""
    server.stop()
    if server.proc is not None and server.proc.poll() is not None:
        try:
            os.killpg(server.proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass


def _affinity_of(ids) -> str:
    return "ids:" + hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16]


NAN_STOP = "NaN happened"  # SGLang's finish_reason "matched" when a sample's logits held NaN


class SGLangBackend:
    name = "sglang"
    description = "SGLang servers (native /generate, token ids, explicit sampling, per-sample seeds, item affinity)"
    takes_url = True

    # -- validation ---------------------------------------------------------------------
    @classmethod
    def check(cls, arm) -> None:
        """Validate the arm before anything runs: a server to talk to (URLs or ``launch``), sane
        option values, and a model/tokenizer spec that can be found."""
        from harness.modelspec import ModelSpecError, resolve_path

        o = arm.options
        urls, launch = _urls(o), _flag(o, "launch", arm.name)
        if not urls and not launch:
            raise BadInput(f"arm {arm.name!r} (backend sglang) needs a server: --backend-url URL, the arm option "
                           "url/urls, or launch = true to start one")
        if urls and launch:
            raise BadInput(f"arm {arm.name!r} (backend sglang) has both server URLs and launch = true; give one")
        for u in urls:
            if not re.match(r"^https?://[^/\s]+", u):
                raise BadInput(f"arm {arm.name!r}: server URL {u!r} is not http(s)://HOST[:PORT]")
        _flag(o, "deterministic", arm.name)
        _number(o, "concurrency", DEFAULT_CONCURRENCY, arm.name, int, 1)
        _number(o, "retries", 4, arm.name, int, 0)
        _number(o, "backoff", 0.5, arm.name)
        _number(o, "timeout", 600, arm.name, float, 0.001)
        _number(o, "startup_timeout", 1800, arm.name, float, 0.001)
        _arg_list(o.get("launch_args"), "launch_args", arm.name)
        if o.get("launch_command") is not None and not _arg_list(o["launch_command"], "launch_command", arm.name):
            raise BadInput(f"arm {arm.name!r}: option launch_command is empty")
        if o.get("port") is not None:
            _number(o, "port", None, arm.name, int, 1)
        if launch:
            kind, _ = resolve_path(arm)
            if kind == "random":
                raise BadInput(f"arm {arm.name!r}: {arm.model} is a random-init preset of the hf backend; "
                               "SGLang needs an HF model directory or a Hub id")
        spec = o.get("tokenizer") or arm.model
        try:
            resolve_path(replace(arm, model=spec))
        except ModelSpecError as exc:
            hint = "" if o.get("tokenizer") else " (set the arm option tokenizer to a local copy or Hub id of the served model)"
            raise BadInput(f"{exc.message}{hint}") from exc

    def __init__(self, arm):
        self.check(arm)
        self.arm = arm
        o = arm.options
        self.urls = _urls(o)
        self.launch = _flag(o, "launch", arm.name)
        self.deterministic_option = _flag(o, "deterministic", arm.name)
        self.concurrency = _number(o, "concurrency", DEFAULT_CONCURRENCY, arm.name, int, 1)
        self.retries = _number(o, "retries", 4, arm.name, int, 0)
        self.backoff = _number(o, "backoff", 0.5, arm.name)
        self.timeout = _number(o, "timeout", 600, arm.name, float, 0.001)
        self.startup_timeout = _number(o, "startup_timeout", 1800, arm.name, float, 0.001)
        self.tokenizer_spec = o.get("tokenizer") or arm.model
        self._tokenizer = None
        self._eos = None
        self._pool = None
        self._server = None
        self._servers_info: list[dict] = []
        self._lock = threading.Lock()
        self._counts = {"ids_from_logprobs": 0, "ids_from_text": 0, "stop_not_found": 0, "scored": 0}
        self._info: dict | None = None

    # -- tokenizer ----------------------------------------------------------------------
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from harness.modelspec import load_tokenizer

            self._tokenizer = load_tokenizer(self.arm, self.tokenizer_spec)
        return self._tokenizer

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    @property
    def eos_ids(self) -> set[int]:
        """The tokenizer's EOS plus the model's generation_config EOS ids when they can be read
        locally (as the hf backend does); sent as ``stop_token_ids`` with every request."""
        if self._eos is None:
            ids = set()
            sources = [self.tokenizer.eos_token_id, self._generation_config_eos()]
            for source in sources:
                if isinstance(source, int):
                    ids.add(source)
                elif source:
                    ids.update(int(t) for t in source)
            self._eos = ids
        return self._eos

    def _generation_config_eos(self):
        from harness.modelspec import resolve_path

        try:
            kind, where = resolve_path(replace(self.arm, model=self.tokenizer_spec))
            if kind not in ("dir", "hub"):
                return None
            from transformers import GenerationConfig

            return GenerationConfig.from_pretrained(where).eos_token_id
        except Exception:  # no generation_config.json (or offline): the tokenizer's EOS alone
            return None

    def chat_prompt(self, messages: list[dict]) -> str:
        """``messages`` in the local tokenizer's chat template, up to the assistant's turn (the
        rendered text is then encoded locally and sent as ids, like every prompt)."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise BadInput(f"arm {self.arm.name!r} has no chat template; use the plain prompt for it "
                           "(its arm option reasoning_prompt = \"plain\")")
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    # -- servers ------------------------------------------------------------------------
    def _get_pool(self):
        with self._lock:
            if self._pool is None:
                from harness.serving import ServerPool

                urls = [self._start()] if self.launch else self.urls
                self._pool = ServerPool(urls, concurrency=self.concurrency, retries=self.retries,
                                        timeout=self.timeout, backoff=self.backoff)
                self._servers_info = [self._probe(u) for u in self._pool.urls]
        return self._pool

    def _launch_cmd(self, port: int) -> list[str]:
        from harness.modelspec import resolve_path

        o = self.arm.options
        _, where = resolve_path(self.arm)
        cmd = _arg_list(o.get("launch_command"), "launch_command", self.arm.name) or default_launch_command()
        cmd += ["--model-path", where, "--host", "127.0.0.1", "--port", str(port)]
        if self.arm.dtype and self.arm.dtype != "auto":
            cmd += ["--dtype", self.arm.dtype]
        if self.arm.trust_remote_code:
            cmd += ["--trust-remote-code"]
        if self.deterministic_option:
            cmd += ["--enable-deterministic-inference"]
        return cmd + _arg_list(o.get("launch_args"), "launch_args", self.arm.name)

    def _start(self) -> str:
        from harness.modelspec import cache_dir
        from harness.serving import LaunchedServer

        port = int(self.arm.options.get("port") or _free_port())
        url = f"http://127.0.0.1:{port}"
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.arm.name)
        log_path = str(cache_dir() / "sglang" / f"{safe}-{port}.log")
        server = LaunchedServer(self._launch_cmd(port), url + "/health_generate", log_path,
                                startup_timeout=self.startup_timeout)
        try:
            server.start()
        except ServerError as exc:
            _stop(server)
            raise ServerError(f"arm {self.arm.name!r}: the SGLang server did not start (log: {log_path}): "
                              f"{exc.message}") from exc
        self._server = server
        self._finalizer = weakref.finalize(self, _stop, server)  # stopped when the backend goes away
        return url

    def close(self) -> None:
        """Stop the launched server (its whole process group); nothing for connected servers."""
        if self._server is not None:
            _stop(self._server)

    def _probe(self, url: str) -> dict:
        """What the server says about itself: served model and whether deterministic inference
        is on (``/get_model_info``, ``/get_server_info``); fields are None when it does not say."""
        model = _get_json(url + "/get_model_info") or {}
        server = _get_json(url + "/get_server_info") or {}
        det = server.get("enable_deterministic_inference") if isinstance(server, dict) else None
        preferred = model.get("preferred_sampling_params") if isinstance(model, dict) else None
        return {"url": url, "model_path": model.get("model_path") if isinstance(model, dict) else None,
                "deterministic": det if isinstance(det, bool) else None,
                "version": server.get("version") if isinstance(server, dict) else None,
                "preferred_sampling_params": preferred or None}

    def _deterministic(self):
        flags = [s["deterministic"] for s in self._servers_info]
        if flags and all(f is True for f in flags):
            return True
        if any(f is False for f in flags):
            return False
        return self.deterministic_option if self.launch else None

    def _died(self) -> ServerError | None:
        if self._server is not None and self._server.died():
            return ServerError(f"arm {self.arm.name!r}: the launched SGLang server exited with status "
                               f"{self._server.proc.returncode} (log: {self._server.log_path}):\n"
                               f"{self._server.log_tail()}")
        return None

    def _post_all(self, jobs, progress=None) -> list:
        """POST every ``(payload, affinity, counts_for_progress)`` job to ``/generate`` with at most
        ``concurrency`` in flight per server; replies in job order. The first failure cancels what
        has not started and is raised (as the launched server's death, with its log, if it died)."""
        pool = self._get_pool()
        dead = self._died()
        if dead:
            raise dead
        try:
            return pool.map([("/generate", payload, affinity) for payload, affinity, _ in jobs],
                            [counted for _, _, counted in jobs], progress)
        except Exception as exc:
            dead = self._died()
            if dead:
                raise dead from exc
            raise
        finally:
            self._update_info()

    # -- requests -----------------------------------------------------------------------
    def generation_payload(self, r, seed: int) -> dict:
        """The ``/generate`` request for one sample of ``r``."""
        return {
            "input_ids": [int(t) for t in r.prompt_ids],
            "sampling_params": {
                "max_new_tokens": int(r.max_new_tokens),
                "min_new_tokens": 0,
                "temperature": float(r.temperature),
                "top_p": float(r.top_p),
                "top_k": -1,
                "min_p": 0.0,
                "repetition_penalty": 1.0,
                "frequency_penalty": 0.0,
                "presence_penalty": 0.0,
                "stop": list(r.stop_strings),
                "stop_token_ids": sorted(self.eos_ids),
                "ignore_eos": False,
                "skip_special_tokens": True,
                "n": 1,
                "sampling_seed": int(seed) & ((1 << SEED_BITS) - 1),
            },
            "stream": False,
        }

    @staticmethod
    def score_payload(context, continuation) -> dict:
        """The teacher-forcing ``/generate`` request: log-probs from the context's last token on."""
        if not context:
            raise ValueError("scoring needs a non-empty context (the first token has no log-prob)")
        return {
            "input_ids": [int(t) for t in list(context) + list(continuation)],
            "sampling_params": {"max_new_tokens": 0, "temperature": 1.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0},
            "return_logprob": True,
            "logprob_start_len": len(context) - 1,
            "top_logprobs_num": 0,
            "stream": False,
        }

    def generate(self, requests, progress=None):
        """One list of ``n`` :class:`Completion` per request, in request order: ``n`` requests
        per :class:`GenRequest` (own seeds), plus one scoring request when it has ``score_ids``."""
        jobs, where = [], []
        for i, r in enumerate(requests):
            if not r.prompt_ids:
                raise ValueError("empty prompt")
            if len(r.seeds) != r.n:
                raise ValueError(f"request {i} has n={r.n} but {len(r.seeds)} seeds")
            for s in range(r.n):
                jobs.append((self.generation_payload(r, r.seeds[s]), r.affinity, True))
                where.append((i, s))
            if r.score_ids:
                jobs.append((self.score_payload(r.prompt_ids, r.score_ids), r.affinity, False))
                where.append((i, None))
        replies = self._post_all(jobs, progress)
        results = [[None] * r.n for r in requests]
        scores = [[] if r.score_ids is not None else None for r in requests]
        for (i, s), reply in zip(where, replies):
            if s is None:
                scores[i] = self._continuation_logprobs(reply, requests[i].prompt_ids, requests[i].score_ids)
            else:
                results[i][s] = self._completion(requests[i], reply)
        for out, lp in zip(results, scores):
            for c in out:
                c.score_logprobs = lp
        self._update_info()
        return results

    def score(self, requests):
        """Per-token log-probs (list of floats) of each request's continuation."""
        jobs, where = [], []
        for i, r in enumerate(requests):
            if r.continuation_ids:
                jobs.append((self.score_payload(r.context_ids, r.continuation_ids), _affinity_of(r.context_ids), False))
                where.append(i)
        out = [[] for _ in requests]
        for i, reply in zip(where, self._post_all(jobs)):
            out[i] = self._continuation_logprobs(reply, requests[i].context_ids, requests[i].continuation_ids)
        self._update_info()
        return out

    # -- replies ------------------------------------------------------------------------
    def _single(self, reply) -> dict:
        if isinstance(reply, list) and len(reply) == 1:
            reply = reply[0]
        if not isinstance(reply, dict) or not isinstance(reply.get("meta_info"), dict):
            raise ServerError(f"arm {self.arm.name!r}: unexpected /generate reply (no meta_info): {str(reply)[:300]}")
        return reply

    def _continuation_logprobs(self, reply, context, continuation) -> list[float]:
        reply = self._single(reply)
        self._check_abort(reply["meta_info"])
        entries = reply["meta_info"].get("input_token_logprobs")
        if not isinstance(entries, list):
            raise ServerError(f"arm {self.arm.name!r}: the scoring reply has no meta_info.input_token_logprobs")
        # entries[k] is the token at position logprob_start_len + k = len(context) - 1 + k: the
        # first is the context's last token (null log-prob), the rest the continuation's.
        want = [int(context[-1])] + [int(t) for t in continuation]
        try:
            got_ids = [int(e[1]) for e in entries]
        except (TypeError, ValueError, IndexError) as exc:
            raise ServerError(f"arm {self.arm.name!r}: malformed input_token_logprobs: {str(entries)[:300]}") from exc
        if got_ids != want:
            raise ServerError(f"arm {self.arm.name!r}: the server scored other tokens than sent (continuation "
                              f"of {len(continuation)} tokens, reply ids {got_ids[1:][:20]}... vs sent "
                              f"{want[1:][:20]}...)")
        lps = [e[0] for e in entries[1:]]
        if any(not isinstance(v, (int, float)) for v in lps):
            raise ServerError(f"arm {self.arm.name!r}: a continuation token has no log-prob in the scoring reply")
        with self._lock:
            self._counts["scored"] += 1
        return [float(v) for v in lps]

    def _check_abort(self, meta: dict) -> None:
        fr = meta.get("finish_reason")
        kind = fr.get("type") if isinstance(fr, dict) else fr
        if kind == "abort":
            why = (fr.get("message") if isinstance(fr, dict) else None) or "no reason given"
            raise ServerError(f"arm {self.arm.name!r}: the SGLang server aborted a request: {why}")

    def _completion(self, r, reply) -> Completion:
        reply = self._single(reply)
        meta = reply["meta_info"]
        self._check_abort(meta)
        fr = meta.get("finish_reason")
        kind, matched = (fr.get("type"), fr.get("matched")) if isinstance(fr, dict) else (fr, None)
        ids = reply.get("output_ids")
        if ids is None and isinstance(meta.get("output_token_logprobs"), list):
            ids = [e[1] for e in meta["output_token_logprobs"]]
            with self._lock:
                self._counts["ids_from_logprobs"] += 1
        if ids is None:
            if not isinstance(reply.get("text"), str):
                raise ServerError(f"arm {self.arm.name!r}: the /generate reply has neither output_ids nor text")
            ids = self.encode(reply["text"])
            with self._lock:
                self._counts["ids_from_text"] += 1
        ids = [int(t) for t in ids]
        eos = self.eos_ids
        if kind == "length":
            reason = "length"
            if ids and ids[-1] in eos:  # EOS on the last allowed token (older SGLang checked length first)
                ids, reason = ids[:-1], "eos"
        elif kind == "stop":
            if matched == NAN_STOP and NAN_STOP not in r.stop_strings:
                raise ServerError(f"arm {self.arm.name!r}: the SGLang server stopped a sample because its logits "
                                  "held NaN (finish_reason matched 'NaN happened'); check the model's dtype")
            if isinstance(matched, str):
                reason = "stop"
            else:  # a stop token (EOS or stop_token_ids): output_ids keep it, only text drops it
                reason = "eos"
                stop_tokens = set(matched) if isinstance(matched, list) else ({matched} if isinstance(matched, int) else set())
                if ids and ids[-1] in (stop_tokens | eos):
                    ids = ids[:-1]
        else:
            raise ServerError(f"arm {self.arm.name!r}: unexpected finish_reason in a /generate reply: {fr!r}")
        stops = [s for s in r.stop_strings if s]
        if stops and reason in ("stop", "length"):
            text = self.decode(ids)
            if any(s in text for s in stops):
                ids, reason = self._cut_at_stop(ids, stops, text), "stop"
            elif reason == "stop":
                with self._lock:
                    self._counts["stop_not_found"] += 1
        cached = meta.get("cached_tokens")
        return Completion(token_ids=ids, text=self.decode(ids), finish_reason=reason,
                          cached_tokens=int(cached) if isinstance(cached, (int, float)) else None)

    def _cut_at_stop(self, ids, stops, text) -> list[int]:
        """Drop the tokens from the one where the first stop string begins onwards."""
        at = min(text.find(s) for s in stops if s in text)
        keep = len(ids)
        while keep > 0 and len(self.decode(ids[:keep])) > at:
            keep -= 1
        return list(ids[:keep])

    # -- info ---------------------------------------------------------------------------
    def info(self) -> dict:
        """Servers, launch and determinism settings, request counters and notes. The same dict
        is kept up to date after every call, so a caller that records it at the end of a run
        sees the final counters and notes."""
        self._get_pool()
        if self._info is None:
            self._info = {}
        self._update_info()
        return self._info

    def _update_info(self) -> None:
        if self._info is None or self._pool is None:
            return
        det = self._deterministic()
        notes = ["sglang: prompts go to /generate as token ids with every sampling field explicit "
                 "(top_k=-1, min_p=0, neutral penalties), so server sampling defaults never apply"]
        preferred = [s["url"] for s in self._servers_info if s.get("preferred_sampling_params")]
        if preferred:
            notes.append(f"sglang: {', '.join(preferred)} set --preferred-sampling-params (recorded under servers), "
                         "which fills any /generate field the backend leaves out")
        if det is False:
            notes.append("sglang: the server runs without --enable-deterministic-inference: sampling_seed is "
                         "ignored and samples are not reproducible from their seeds")
        elif det is None:
            notes.append("sglang: could not tell whether the server runs with --enable-deterministic-inference "
                         "(no /get_server_info); per-request seeds only take effect with it")
        if self._counts["scored"]:
            notes.append("sglang: true-suffix log-probs come from a separate teacher-forced /generate call "
                         "(max_new_tokens 0, input_token_logprobs), not the sampling prefill")
        if self._counts["ids_from_logprobs"]:
            notes.append(f"sglang: {self._counts['ids_from_logprobs']} replies had no output_ids; ids were taken "
                         "from output_token_logprobs")
        if self._counts["ids_from_text"]:
            notes.append(f"sglang: {self._counts['ids_from_text']} replies had no output_ids; ids were re-encoded "
                         "from their text and may differ from the sampled ones")
        if self._counts["stop_not_found"]:
            notes.append(f"sglang: {self._counts['stop_not_found']} completions stopped on a stop string the local "
                         "tokenizer does not decode; their ids were kept whole (is the tokenizer the served one?)")
        for s in self._servers_info:
            if s["model_path"] and not self.launch and s["model_path"] != self.arm.model:
                notes.append(f"sglang: {s['url']} serves {s['model_path']} (arm model: {self.arm.model})")
        stats = self._pool.stats
        self._info.update({
            "backend": "sglang",
            "servers": [dict(s) for s in self._servers_info],
            "launched": self._server is not None,
            "launch_command": self._server.cmd if self._server is not None else None,
            "log": self._server.log_path if self._server is not None else None,
            "deterministic": det,
            "tokenizer": self.tokenizer_spec,
            "concurrency": self.concurrency,
            "notes": notes,
            "requests": stats["requests"],
            "retries": stats["retries"],
            "dead_servers": list(stats["dead_servers"]),
        })
