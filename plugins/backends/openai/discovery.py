"""First contact of the ``openai`` backend with its servers: what they take and how they score.

:class:`Discovery` is a part of :class:`plugins.backends.openai.OpenAIBackend` (which inherits it):

- the prompt mode and the ``top_k`` that disables top-k (``_resolve``): a one-token request with a
  token-id prompt, else (``prompt_mode = "auto"``) a text prompt, each with ``top_k`` -1, else 0;
  the first form a server accepts is used for the whole run;
- the scoring method (``_resolve_scoring``, before the first scoring call): greedy-generate two
  tokens with ``logprobs``, then ask for the same tokens' log-probs by ``echo`` and by ``grammar``
  forcing; the first that gives them back is used.

It uses the backend's ``pool``, ``opts``, ``_info``, ``_lock``/``_score_lock``, ``_mode``,
``_top_k``, ``_resolved``, ``_score_method`` and its request and reply methods (``_body``,
``_score_body``, ``_parse_score``, ``_server_ids``, ``_server``, ``_note``).
"""

from __future__ import annotations

import re

COMPLETIONS = "/v1/completions"

CHECK_PROMPT = "The capital of France is"
CHECK_FORCED = " purple elephant"  # not what a model writes greedily after CHECK_PROMPT
CHECK_TOLERANCE = 0.05  # nats: the same log-prob asked two ways (off-by-one errors are nats apart)

NOTE_TEXT = ("text prompts: the server re-tokenises prompts, so stage 2 (prefix + thought + close tag) is not sent "
             "as the sampled token ids; completion ids are re-encoded locally")
NOTE_ECHO_TEXT = ("suffix log-probs: echo + logprobs on a text prompt, so they are over the server's tokenisation of "
                  "the true suffix (its tokens found by character offsets)")
NOTE_SEEDS_VLLM = ("samples may not be reproducible from their seeds: vLLM does not say whether it runs batch "
                   "invariant (VLLM_BATCH_INVARIANT=1, GPUs only; the CPU build has none), and without it a sample's "
                   "log-probs depend slightly on which requests shared its batch, so a rare sampled token, and what "
                   "follows it, can differ on a rerun")
NOTE_GRAMMAR = ("suffix log-probs: the server's echoed prompt log-probs failed the alignment check (llama-cpp-python "
                "shifts them by one token), so the true suffix is scored by greedy generation forced through its "
                "token ids by a grammar (<[id]> ...): the suffix ids are exact; the context is sent as the prompt")


class Discovery:
    """The backend's first contact with its servers (a mixin of ``OpenAIBackend``)."""

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
                    fingerprint = reply.get("system_fingerprint")  # vLLM: vllm-<version>-<config hash>
                    fingerprint = fingerprint if isinstance(fingerprint, str) else None
                    self._info.update(prompt_mode=mode, top_k_sent=top_k, system_fingerprint=fingerprint)
                    self._info.pop("error", None)
                    if mode == "text":
                        self._info["notes"].insert(0, NOTE_TEXT)
                    if fingerprint and fingerprint.startswith("vllm") and NOTE_SEEDS_VLLM not in self._info["notes"]:
                        self._info["notes"].append(NOTE_SEEDS_VLLM)
                    self._resolved = True
                    return
            raise ServerError(f"no request form was accepted by {', '.join(self.pool.urls)}: " + " | ".join(refused))

    def _first_contact(self, body, url: str | None = None) -> tuple[dict | None, str | None]:
        """(reply, None), or (None, why) when the server refuses this request form: a 4xx, or a 500
        (llama-cpp-python answers a body it rejects, or a grammar it cannot parse, with 500). Only
        for the few requests that find what a server takes; connection trouble goes through the
        pool: retries, then failover to another server."""
        from harness.serving import ServerError, RetryableError, post_json

        refusal = re.compile(r"HTTP (4\d\d|500) ")
        url = url or self.pool.urls[self.pool.server_for(None)]
        try:
            reply = post_json(url + COMPLETIONS, body, self.pool.timeout, self.pool.headers)
        except ServerError as exc:
            if refusal.match(exc.message):
                return None, exc.message
            raise
        except RetryableError as exc:
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
