"""Backend ``sglang``: SGLang servers through their native HTTP API, token ids in and out.

Verified at the protocol level (against SGLang's documented wire format, with a fake server in
the tests) until it is run against a real server on a GPU. This module never imports sglang:
it talks HTTP, and only a launched server runs ``python -m sglang.launch_server``.

Arm options:

- ``urls`` / ``url``: running servers, a list or a comma-separated string (``harness run
  --backend-url URL`` fills ``urls``); or ``launch = true``: start one, ``<launch_command>
  --model-path MODEL --host 127.0.0.1 --port PORT [--dtype D] [--trust-remote-code]
  [--enable-deterministic-inference] <launch_args>``, in its own process group, waiting for
  ``GET /health_generate``; it is stopped at exit (or ``close()``). ``launch_command`` defaults to
  ``[python, "-m", "sglang.launch_server"]``; ``port`` to a free one; ``deterministic = true``
  adds ``--enable-deterministic-inference``; ``launch_args`` is a list or a string;
  ``startup_timeout`` (s, default 1800). The log goes to ``$HARNESS_CACHE/sglang/<arm>-<port>.log``.
  Launching and probing servers: :mod:`.servers`.
- ``tokenizer``: the model spec whose tokenizer encodes prompts and decodes ids locally (default:
  the arm's model); it must be the served model's tokenizer.
- ``concurrency`` (requests in flight per server, 64), ``retries`` (4), ``backoff`` (s, 0.5),
  ``timeout`` (s per request, 600). All options are checked once, by :mod:`.options`.

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
sample's seed reduced to 31 bits, since some SGLang versions hold seeds in an int32 tensor:
:meth:`harness.backend_base.ServerBackend.server_seed`). SGLang
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
import threading
from dataclasses import replace

from harness.backend_base import ServerBackend
from harness.hookspecs import hookimpl
from harness.serving import ServerError
from harness.types import Completion
from plugins.backends.sglang.options import parse_options
from plugins.backends.sglang.servers import SGLangServers

NAN_STOP = "NaN happened"  # SGLang's finish_reason "matched" when a sample's logits held NaN


@hookimpl
def register_backends(register):
    register(SGLangBackend)


def _affinity_of(ids) -> str:
    return "ids:" + hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16]


class SGLangBackend(ServerBackend):
    name = "sglang"
    description = "SGLang servers (native /generate, token ids, explicit sampling, per-sample seeds, item affinity)"

    @classmethod
    def check(cls, arm) -> None:
        """Validate the arm before anything runs: a server to talk to (URLs or ``launch``), sane
        option values, and a model/tokenizer spec that can be found."""
        parse_options(arm)

    def __init__(self, arm):
        super().__init__(arm)  # the local tokenizer: ServerBackend.tokenizer_of(arm)
        self.opts = parse_options(arm)
        self.servers = SGLangServers(arm, self.opts)
        self._lock = threading.Lock()
        self._counts = {"ids_from_logprobs": 0, "ids_from_text": 0, "stop_not_found": 0, "scored": 0}
        self._info: dict | None = None

    # -- tokenizer ----------------------------------------------------------------------
    def generation_eos_ids(self):
        """The model's generation_config EOS ids when they can be read locally (as the hf backend
        has them); with the tokenizer's, sent as ``stop_token_ids`` with every request."""
        from harness.modelspec import resolve_path

        try:
            kind, where = resolve_path(replace(self.arm, model=self.tokenizer_spec))
            if kind not in ("dir", "hub"):
                return None
            from transformers import GenerationConfig

            return GenerationConfig.from_pretrained(where).eos_token_id
        except Exception:  # no generation_config.json (or offline): the tokenizer's EOS alone
            return None

    # -- servers ------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the launched server (its whole process group); nothing for connected servers."""
        self.servers.close()

    def _post_all(self, jobs, progress=None) -> list:
        try:
            return self.servers.post_all(jobs, progress)
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
                "sampling_seed": self.server_seed(seed),
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
            at = self.first_stop(self.decode(ids), stops)
            if at is not None:
                ids, reason = self.cut_at(ids, at), "stop"
            elif reason == "stop":
                with self._lock:
                    self._counts["stop_not_found"] += 1
        cached = meta.get("cached_tokens")
        return Completion(token_ids=ids, text=self.decode(ids), finish_reason=reason,
                          cached_tokens=int(cached) if isinstance(cached, (int, float)) else None)

    # -- info ---------------------------------------------------------------------------
    def info(self) -> dict:
        """Servers, launch and determinism settings, request counters and notes. The same dict
        is kept up to date after every call, so a caller that records it at the end of a run
        sees the final counters and notes."""
        self.servers.get_pool()
        if self._info is None:
            self._info = {}
        self._update_info()
        return self._info

    def _update_info(self) -> None:
        if self._info is None or self.servers.pool is None:
            return
        det = self.servers.deterministic()
        notes = ["sglang: prompts go to /generate as token ids with every sampling field explicit "
                 "(top_k=-1, min_p=0, neutral penalties), so server sampling defaults never apply"]
        preferred = [s["url"] for s in self.servers.probed if s.get("preferred_sampling_params")]
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
        for s in self.servers.probed:
            if s["model_path"] and not self.opts.launch and s["model_path"] != self.arm.model:
                notes.append(f"sglang: {s['url']} serves {s['model_path']} (arm model: {self.arm.model})")
        stats, launched = self.servers.pool.stats, self.servers.launched
        self._info.update({
            "backend": "sglang",
            "servers": [dict(s) for s in self.servers.probed],
            "launched": launched is not None,
            "launch_command": launched.cmd if launched is not None else None,
            "log": launched.log_path if launched is not None else None,
            "deterministic": det,
            "tokenizer": self.tokenizer_spec,
            "concurrency": self.opts.concurrency,
            "notes": notes,
            "requests": stats["requests"],
            "retries": stats["retries"],
            "dead_servers": list(stats["dead_servers"]),
        })
