"""The sglang backend against a fake SGLang server (protocol level: no sglang, no GPU).

``FakeSGLang`` implements the documented native API: ``POST /generate`` (one request or a batch;
``input_ids``, ``sampling_params``, ``return_logprob``, ``logprob_start_len``; reply ``text``,
``output_ids``, ``meta_info`` with ``finish_reason``, ``prompt_tokens``, ``completion_tokens``,
``cached_tokens``, ``input_token_logprobs``), ``GET /health_generate``, ``/get_model_info`` and
``/get_server_info``. Like SGLang it keeps the matched stop string / stop token in ``output_ids``
and trims it from ``text`` only, pads the first input log-prob with null, checks length before
EOS and stop strings, and reports as cached the longest prefix it has already served. It records
every request body. Run as a script (``--fake-sglang ...``) it is the launched "server".
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORDS = ("the river carries sand to the sea where waves sort grains by size and slowly build long beaches "
         "</think> that shift with each storm").split()


def fake_logprob(position: int, token: int) -> float:
    return -round(((token * 7 + position * 3) % 50) / 10 + 0.05, 4)


class FakeSGLang:
    def __init__(self, encode=None, decode=None, eos_id=None, deterministic=True, model_path="fake/model",
                 unhealthy_for=0.0):
        self.encode = encode or (lambda s: list(s.encode()))
        self.decode = decode or (lambda ids: bytes(i for i in ids if i < 256).decode(errors="replace"))
        self.eos_id = eos_id
        self.deterministic = deterministic
        self.model_path = model_path
        self.preferred = None       # what /get_model_info reports as preferred_sampling_params
        self.healthy_at = time.monotonic() + unhealthy_for
        self.received: list[tuple[str, dict]] = []
        self.health_log: list[int] = []
        self.fail_next = 0          # answer this many /generate calls with 503
        self.reply_fn = None        # body -> reply, instead of generating
        self.sequences: list[list[int]] = []  # the "radix cache": everything served so far
        self.lock = threading.Lock()
        self.httpd = None

    # -- the API --------------------------------------------------------------------------
    def generate(self, body: dict):
        ids = body["input_ids"]
        if ids and isinstance(ids[0], list):  # a batch: one reply per prompt
            params = body.get("sampling_params") or {}
            return [self.generate({**body, "input_ids": one,
                                   "sampling_params": params[k] if isinstance(params, list) else params})
                    for k, one in enumerate(ids)]
        if self.reply_fn is not None:
            return self.reply_fn(body)
        sp = body.get("sampling_params") or {}
        max_new = sp.get("max_new_tokens", 128)
        seed = sp.get("sampling_seed", 42) if self.deterministic else random.random()
        rng = random.Random(f"{ids}|{seed}|{sp.get('temperature')}|{sp.get('top_p')}")
        stream = self.encode(" ".join(rng.choice(WORDS) for _ in range(max_new + 1)))
        stop_ids = set(sp.get("stop_token_ids") or ()) | ({self.eos_id} if self.eos_id is not None else set())
        stops = sp.get("stop") or []
        stops = [stops] if isinstance(stops, str) else stops
        out, finish = [], {"type": "length", "length": max_new}
        for t in stream:
            if len(out) >= max_new:
                break
            if self.eos_id is not None and rng.random() < 0.03:
                t = self.eos_id
            out.append(t)
            if len(out) >= max_new:  # SGLang checks length first
                break
            if t in stop_ids:
                finish = {"type": "stop", "matched": t}
                break
            tail = self.decode(out)
            hit = next((s for s in stops if s in tail), None)
            if hit:
                finish = {"type": "stop", "matched": hit}
                break
        if isinstance(finish.get("matched"), int):
            text = self.decode(out[:-1])
        elif isinstance(finish.get("matched"), str):
            full = self.decode(out)
            text = full[:full.find(finish["matched"])]
        else:
            text = self.decode(out)
        with self.lock:
            cached = max((self._common(ids, s) for s in self.sequences), default=0)
            self.sequences.append(list(ids) + out)
        meta = {"id": f"r{len(self.received)}", "finish_reason": finish, "prompt_tokens": len(ids),
                "completion_tokens": len(out), "cached_tokens": min(cached, len(ids) - 1)}
        if body.get("return_logprob"):
            start = body.get("logprob_start_len", -1)
            start = len(ids) - 1 if start is None or start < 0 else start
            meta["input_token_logprobs"] = [[None, ids[start], None]] + [
                [fake_logprob(p, ids[p]), ids[p], None] for p in range(start + 1, len(ids))]
            meta["output_token_logprobs"] = [[-1.0, t, None] for t in out]
        return {"text": text, "output_ids": out, "meta_info": meta}

    @staticmethod
    def _common(a, b) -> int:
        n = 0
        for x, y in zip(a, b):
            if x != y:
                break
            n += 1
        return n

    # -- HTTP -----------------------------------------------------------------------------
    def start(self, port: int = 0) -> "FakeSGLang":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/health_generate":
                    code = 200 if time.monotonic() >= fake.healthy_at else 503
                    fake.health_log.append(code)
                    self._send(code, {} if code == 200 else {"error": "loading"})
                elif self.path == "/get_model_info":
                    self._send(200, {"model_path": fake.model_path, "tokenizer_path": fake.model_path,
                                     "is_generation": True, "preferred_sampling_params": fake.preferred})
                elif self.path == "/get_server_info":
                    self._send(200, {"model_path": fake.model_path, "version": "fake-0",
                                     "enable_deterministic_inference": fake.deterministic})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.received.append((self.path, body))
                    fail = fake.fail_next > 0
                    fake.fail_next -= fail
                if self.path != "/generate":
                    return self._send(404, {"error": "not found"})
                if fail:
                    return self._send(503, {"error": "overloaded"})
                self._send(200, fake.generate(body))

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # many requests arrive at once (the default 5 drops SYNs)

        self.httpd = Server(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def bodies(self):
        return [b for p, b in self.received if p == "/generate"]


def _serve_as_launched(argv: list[str]) -> None:
    """The launched 'server': records its argv and a child's pid, answers 503 on /health_generate
    for a second, then serves the fake API until killed."""
    port = int(argv[argv.index("--port") + 1])
    out = os.environ["FAKE_SGLANG_DIR"]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(os.path.join(out, "launched.json"), "w") as fh:
        json.dump({"argv": argv, "pid": os.getpid(), "child": child.pid}, fh)
    print("fake sglang: loading weights", flush=True)
    fake = FakeSGLang(unhealthy_for=1.0, deterministic="--enable-deterministic-inference" in argv).start(port)
    while True:
        time.sleep(0.2)
        with open(os.path.join(out, "health.json"), "w") as fh:
            json.dump(fake.health_log, fh)


if __name__ == "__main__" and sys.argv[1:2] == ["--fake-sglang"]:
    _serve_as_launched(sys.argv[2:])
    sys.exit(0)


# ----------------------------------------------------------------------------------------
import pytest  # noqa: E402

pytest.importorskip("transformers")

from click.testing import CliRunner  # noqa: E402

from harness.errors import BadInput  # noqa: E402
from harness.serving import ServerError  # noqa: E402
from harness.types import Arm, GenRequest, ScoreRequest  # noqa: E402
from plugins.backends.sglang import SGLangBackend  # noqa: E402

TOK = "random:tiny-qwen3"


@pytest.fixture(scope="module")
def tok():
    from harness.modelspec import byte_tokenizer

    return byte_tokenizer()


@pytest.fixture
def fakes(tok):
    made = []

    def make(**kw):
        kw.setdefault("encode", lambda s: tok(s, add_special_tokens=False).input_ids)
        kw.setdefault("decode", lambda ids: tok.decode(ids, skip_special_tokens=True))
        kw.setdefault("eos_id", tok.eos_token_id)
        made.append(FakeSGLang(**kw).start())
        return made[-1]

    yield make
    for f in made:
        f.stop()


def _backend(urls, **options):
    opts = {"urls": list(urls), "tokenizer": TOK, "backoff": 0.01, **options}
    return SGLangBackend(Arm(name="sg", model="fake/model", backend="sglang", options=opts))


def test_request_json_is_explicit_and_n_is_expanded(fakes, tok):
    fake = fakes()
    b = _backend([fake.url])
    prompt = b.encode("Sand moves. <think>")
    big = (1 << 62) + 12345
    req = GenRequest(prompt, n=3, seeds=[7, 8, big], max_new_tokens=9, temperature=0.7, top_p=0.9,
                     stop_strings=("</think>",), affinity="item-1")
    out = b.generate([req])
    assert [len(o) for o in out] == [3]
    bodies = fake.bodies()
    assert len(bodies) == 3 and all(p == "/generate" for p, _ in fake.received)
    expected = [{
        "input_ids": prompt,
        "sampling_params": {"max_new_tokens": 9, "min_new_tokens": 0, "temperature": 0.7, "top_p": 0.9, "top_k": -1,
                            "min_p": 0.0, "repetition_penalty": 1.0, "frequency_penalty": 0.0,
                            "presence_penalty": 0.0, "stop": ["</think>"], "stop_token_ids": [tok.eos_token_id],
                            "ignore_eos": False, "skip_special_tokens": True, "n": 1, "sampling_seed": seed},
        "stream": False} for seed in (7, 8, big & 0x7FFFFFFF)]
    assert sorted(bodies, key=lambda x: x["sampling_params"]["sampling_seed"]) == \
        sorted(expected, key=lambda x: x["sampling_params"]["sampling_seed"])
    # each sample is its own seed's: asking again for one seed alone gives the same ids
    again = b.generate([GenRequest(prompt, n=1, seeds=[8], max_new_tokens=9, temperature=0.7, top_p=0.9,
                                   stop_strings=("</think>",))])[0][0]
    assert again.token_ids == out[0][1].token_ids and again.token_ids != out[0][0].token_ids


def _scripted(replies):
    """reply_fn answering by the request's sampling_seed."""
    def reply(body):
        return replies[body["sampling_params"]["sampling_seed"]]
    return reply


def test_finish_reasons_ids_and_cached_tokens(fakes, tok):
    fake = fakes()
    b = _backend([fake.url])
    enc, eos = b.encode, tok.eos_token_id

    def r(ids, finish, text="", cached=None, **extra):
        meta = {"finish_reason": finish, "prompt_tokens": 3, "completion_tokens": len(ids or []),
                "cached_tokens": cached}
        meta.update(extra.pop("meta", {}))
        return {"text": text, **({"output_ids": ids} if ids is not None else {}), "meta_info": meta}

    fake.reply_fn = _scripted({
        1: r(enc("sand sea"), {"type": "length", "length": 8}, "sand sea", cached=5),
        2: r(enc("waves</think>"), {"type": "stop", "matched": "</think>"}, "waves", cached=0),
        3: r(enc("grains") + [eos], {"type": "stop", "matched": eos}, "grains"),
        4: r(enc("sort") + [eos], {"type": "length", "length": 5}, "sort"),
        5: r(enc("by size</think>"), {"type": "length", "length": 15}, "by size</think>"),
        6: r(None, {"type": "stop", "matched": eos}, "beach",
             meta={"output_token_logprobs": [[-0.5, t, None] for t in enc("beach") + [eos]]}),
        7: r(None, {"type": "length", "length": 4}, "tide"),
    })
    comps = b.generate([GenRequest(enc("x"), n=7, seeds=list(range(1, 8)), max_new_tokens=20,
                                   stop_strings=("</think>",))])[0]
    got = [(c.token_ids, c.text, c.finish_reason, c.cached_tokens) for c in comps]
    assert got == [
        (enc("sand sea"), "sand sea", "length", 5),
        (enc("waves"), "waves", "stop", 0),          # the stop string's tokens are cut from the ids
        (enc("grains"), "grains", "eos", None),      # the EOS token is dropped
        (enc("sort"), "sort", "eos", None),          # EOS on the last allowed token counts as eos
        (enc("by size"), "by size", "stop", None),   # a stop string on the last allowed token too
        (enc("beach"), "beach", "eos", None),        # ids from output_token_logprobs
        (enc("tide"), "tide", "length", None),       # ids re-encoded from text
    ]
    notes = " ".join(b.info()["notes"])
    assert "1 replies had no output_ids; ids were taken from output_token_logprobs" in notes
    assert "1 replies had no output_ids; ids were re-encoded from their text" in notes


def test_stop_string_starting_inside_a_token_cuts_that_token(fakes, tok):
    fake = fakes()
    b = _backend([fake.url])
    # ids [... "a<", "/think>"] as one merged token would be; with the byte tokenizer every byte is
    # a token, so check the general rule: ids end before the token where the stop string begins
    ids = b.encode("ab</think>cd")
    fake.reply_fn = lambda body: {"text": "ab", "output_ids": ids,
                                  "meta_info": {"finish_reason": {"type": "stop", "matched": "</think>"}}}
    c = b.generate([GenRequest(b.encode("x"), n=1, seeds=[1], max_new_tokens=20, stop_strings=("</think>",))])[0][0]
    assert c.token_ids == b.encode("ab") and c.finish_reason == "stop"


def test_abort_is_a_clear_error(fakes):
    fake = fakes()
    b = _backend([fake.url])
    fake.reply_fn = lambda body: {"text": "", "output_ids": [], "meta_info": {
        "finish_reason": {"type": "abort", "message": "The input (9000 tokens) is longer than the model's context"}}}
    with pytest.raises(ServerError, match="aborted a request: The input .9000 tokens. is longer"):
        b.generate([GenRequest([5, 6], n=1, seeds=[1], max_new_tokens=4)])


def test_score_uses_input_token_logprobs_from_the_last_context_token(fakes):
    fake = fakes()
    b = _backend([fake.url])
    ctx, cont = [10, 11, 12, 13], [20, 21, 22]
    ctx2, cont2 = [40], [41, 42]
    lps = b.score([ScoreRequest(ctx, cont), ScoreRequest(ctx2, cont2), ScoreRequest(ctx, [])])
    assert lps[0] == [fake_logprob(4 + k, t) for k, t in enumerate(cont)]
    assert lps[1] == [fake_logprob(1 + k, t) for k, t in enumerate(cont2)]
    assert lps[2] == []
    bodies = sorted(fake.bodies(), key=lambda x: len(x["input_ids"]))
    assert bodies == [
        {"input_ids": ctx2 + cont2, "sampling_params": {"max_new_tokens": 0, "temperature": 1.0, "top_p": 1.0,
                                                        "top_k": -1, "min_p": 0.0},
         "return_logprob": True, "logprob_start_len": 0, "top_logprobs_num": 0, "stream": False},
        {"input_ids": ctx + cont, "sampling_params": {"max_new_tokens": 0, "temperature": 1.0, "top_p": 1.0,
                                                      "top_k": -1, "min_p": 0.0},
         "return_logprob": True, "logprob_start_len": 3, "top_logprobs_num": 0, "stream": False},
    ]
    # score_ids in a generation request: every completion carries the same teacher-forced log-probs
    outs = b.generate([GenRequest(ctx, n=2, seeds=[1, 2], max_new_tokens=3, score_ids=cont, affinity="i")])
    assert [c.score_logprobs for c in outs[0]] == [lps[0], lps[0]]
    assert "separate teacher-forced /generate call" in " ".join(b.info()["notes"])


def test_score_reply_with_other_tokens_is_an_error(fakes):
    fake = fakes()
    b = _backend([fake.url])
    fake.reply_fn = lambda body: {"text": "", "output_ids": [], "meta_info": {
        "finish_reason": {"type": "length", "length": 0},
        "input_token_logprobs": [[None, 13, None], [-1.0, 20, None], [-1.0, 99, None]]}}
    with pytest.raises(ServerError, match="scored other tokens"):
        b.score([ScoreRequest([10, 13], [20, 21])])
    fake.reply_fn = lambda body: {"text": "", "output_ids": [], "meta_info": {
        "finish_reason": {"type": "length", "length": 0}, "input_token_logprobs": [[None, 13, None], [None, 20, None]]}}
    with pytest.raises(ServerError, match="no log-prob"):
        b.score([ScoreRequest([10, 13], [20])])


def test_affinity_keeps_an_item_on_one_server_and_stage2_hits_its_cache(fakes):
    a, c = fakes(), fakes()
    b = _backend([a.url, c.url])
    items = [f"item-{k}" for k in range(8)]
    prompts = {i: b.encode(f"{i}: waves sort sand. <think>") for i in items}
    stage1 = b.generate([GenRequest(prompts[i], n=2, seeds=[1, 2], max_new_tokens=6, stop_strings=("</think>",),
                                    affinity=i) for i in items])
    close = b.encode("</think>")
    stage2 = b.generate([GenRequest(prompts[i] + t.token_ids + close, n=1, seeds=[3], max_new_tokens=5,
                                    score_ids=b.encode(" the sea"), affinity=i)
                         for i, out in zip(items, stage1) for t in out[:1]])
    served = {}
    for name, fake in (("a", a), ("c", c)):
        for body in fake.bodies():
            owner = next(i for i in items if body["input_ids"][:len(prompts[i])] == prompts[i])
            served.setdefault(owner, set()).add(name)
    assert all(len(s) == 1 for s in served.values()) and len(served) == len(items)
    assert {n for s in served.values() for n in s} == {"a", "c"}  # both servers got work
    for i, out1, out2 in zip(items, stage1, stage2):
        # stage 2 found prompt + thought in its server's prefix cache
        assert out2[0].cached_tokens >= len(prompts[i]) + len(out1[0].token_ids)


def test_retries_on_503_then_succeeds(fakes):
    fake = fakes()
    b = _backend([fake.url], retries=3)
    fake.fail_next = 2
    out = b.generate([GenRequest([5, 6, 7], n=1, seeds=[1], max_new_tokens=4)])
    assert len(out[0][0].token_ids) <= 4
    info = b.info()
    assert info["retries"] == 2 and info["requests"] == 1 and info["dead_servers"] == []
    assert len(fake.bodies()) == 3 and fake.bodies()[0] == fake.bodies()[2]


def test_info_reports_servers_and_determinism(fakes):
    fake = fakes(deterministic=False)
    info = _backend([fake.url]).info()
    assert info["backend"] == "sglang" and info["launched"] is False and info["deterministic"] is False
    assert info["servers"] == [{"url": fake.url, "model_path": "fake/model", "deterministic": False,
                                "version": "fake-0", "preferred_sampling_params": None}]
    assert any("sampling_seed is ignored" in n for n in info["notes"])
    assert not any("preferred-sampling-params" in n for n in info["notes"])
    # a server started with --preferred-sampling-params: recorded, and noted
    fake.preferred = {"regex": "[a-z]+", "temperature": 0.6}
    info = _backend([fake.url]).info()
    assert info["servers"][0]["preferred_sampling_params"] == fake.preferred
    assert any(fake.url in n and "preferred-sampling-params" in n for n in info["notes"])


def test_nan_stop_is_an_error(fakes):
    fake = fakes()
    b = _backend([fake.url])
    fake.reply_fn = lambda body: {"text": "", "output_ids": [7], "meta_info": {
        "finish_reason": {"type": "stop", "matched": "NaN happened"}}}
    with pytest.raises(ServerError, match="logits held NaN"):
        b.generate([GenRequest([5, 6], n=1, seeds=[1], max_new_tokens=4, stop_strings=("</think>",))])


@pytest.mark.parametrize("options, message", [
    ({}, "needs a server: --backend-url URL"),
    ({"urls": ["http://127.0.0.1:1"], "launch": True}, "both server URLs and launch"),
    ({"url": "localhost:30000"}, "is not http"),
    ({"urls": ["http://h:1"], "concurrency": 0}, "concurrency must be an integer >= 1"),
    ({"urls": ["http://h:1"], "launch_args": {"a": 1}}, "launch_args must be a list"),
    ({"urls": ["http://h:1"], "deterministic": "maybe"}, "deterministic must be true or false"),
    ({"urls": ["http://h:1"], "tokenizer": "./no/such/tokenizer"}, "not found"),
])
def test_check_refuses_bad_arms(options, message):
    with pytest.raises(BadInput, match=message):
        SGLangBackend.check(Arm(name="sg", model="fake/model", backend="sglang", options=options))


def test_check_refuses_launching_a_random_preset():
    with pytest.raises(BadInput, match="random-init preset"):
        SGLangBackend.check(Arm(name="sg", model="random:tiny-qwen3", backend="sglang", options={"launch": True}))


def test_server_urls_follow_one_rule_in_both_server_backends():
    # before: sglang took "http://a:1,http://b:2" as one server (its check passed it); openai split it
    from harness.backend_base import ServerBackend
    from plugins.backends.openai import OpenAIBackend

    options = {"url": " http://127.0.0.1:1/, https://gpu-box:30000/sub ,,", "tokenizer": TOK}
    want = ["http://127.0.0.1:1", "https://gpu-box:30000/sub"]
    for name, cls in (("sglang", SGLangBackend), ("openai", OpenAIBackend)):
        arm = Arm(name="s", model="fake/model", backend=name, options=options)
        assert ServerBackend.server_urls(arm) == want
        cls.check(arm)
    assert SGLangBackend(Arm(name="s", model="fake/model", backend="sglang", options=options)).opts.urls == want
    # urls (what --backend-url fills) wins over url; a list may hold comma-separated strings too
    arm = Arm(name="s", model="m", backend="sglang", options={"urls": ["http://a:1,http://b:2"], "url": "http://c:3"})
    assert ServerBackend.server_urls(arm) == ["http://a:1", "http://b:2"]
    assert ServerBackend.server_urls(Arm(name="s", model="m", backend="sglang")) == []


@pytest.mark.parametrize("url", ["localhost:30000", "http://a:1 http://b:2", "ftp://h:1", "http://:8000",
                                 "http://h:99999", "http://h:0", "http://h:port", "http://h:1/?x=1", "http://h:1/#f",
                                 "http//h:1"])
@pytest.mark.parametrize("backend", ["sglang", "openai"])
def test_a_malformed_server_url_is_refused_naming_it(url, backend):
    from plugins.backends.openai import OpenAIBackend

    cls = SGLangBackend if backend == "sglang" else OpenAIBackend
    with pytest.raises(BadInput, match=r"--backend-url: arm 's' \(backend %s\): server URL .* is not "
                       r"http\(s\)://HOST\[:PORT\]" % backend):
        cls.check(Arm(name="s", model="fake/model", backend=backend, options={"url": url, "tokenizer": TOK}))
    with pytest.raises(BadInput, match="must be strings"):
        cls.check(Arm(name="s", model="fake/model", backend=backend, options={"urls": [8000], "tokenizer": TOK}))


def test_server_seed_is_the_low_31_bits_in_both_server_backends():
    from harness.backend_base import SEED_MODULUS, ServerBackend
    from plugins.backends.openai import SEED_MODULUS as OPENAI_SEED_MODULUS

    assert SEED_MODULUS == OPENAI_SEED_MODULUS == 2**31
    for seed in (0, 7, 2**31 - 1, 2**31, (1 << 62) + 12345, 2**63 - 1):
        assert ServerBackend.server_seed(seed) == seed % 2**31 == seed & 0x7FFFFFFF


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has exited
    except FileNotFoundError:
        return True


def _wait_gone(pid, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not _gone(pid):
        time.sleep(0.05)
    return _gone(pid)


def test_launch_waits_for_health_and_stops_the_process_group(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SGLANG_DIR", str(tmp_path))
    arm = Arm(name="sg launch", model="fake/model", backend="sglang", options={
        "launch": True, "deterministic": True, "launch_args": "--attention-backend fa3",
        "launch_command": [sys.executable, os.path.abspath(__file__), "--fake-sglang"],
        "tokenizer": TOK, "startup_timeout": 60})
    b = SGLangBackend(arm)
    try:
        info = b.info()
        launched = json.loads((tmp_path / "launched.json").read_text())
        port = int(launched["argv"][launched["argv"].index("--port") + 1])
        assert launched["argv"] == ["--model-path", "fake/model", "--host", "127.0.0.1", "--port", str(port),
                                    "--enable-deterministic-inference", "--attention-backend", "fa3"]
        assert info["launched"] is True and info["deterministic"] is True
        assert info["servers"][0]["url"] == f"http://127.0.0.1:{port}"
        assert info["log"].endswith(f"sglang/sg_launch-{port}.log") and os.path.exists(info["log"])
        out = b.generate([GenRequest([72, 105], n=2, seeds=[1, 2], max_new_tokens=5, affinity="i")])
        assert [len(c.token_ids) for c in out[0]] == [5, 5]
        time.sleep(0.3)
        health = json.loads((tmp_path / "health.json").read_text())
        assert 503 in health and health[-1] == 200  # start() waited through the 503s
    finally:
        b.close()
    assert _wait_gone(launched["pid"]) and _wait_gone(launched["child"])  # the whole group is stopped


def test_launched_server_that_dies_mid_run_is_reported_with_its_log(tmp_path, monkeypatch):
    import signal

    monkeypatch.setenv("FAKE_SGLANG_DIR", str(tmp_path))
    b = SGLangBackend(Arm(name="sg", model="fake/model", backend="sglang", options={
        "launch": True, "launch_command": [sys.executable, os.path.abspath(__file__), "--fake-sglang"],
        "tokenizer": TOK, "retries": 0}))
    try:
        b.generate([GenRequest([72, 105], n=1, seeds=[1], max_new_tokens=3)])
        launched = json.loads((tmp_path / "launched.json").read_text())
        os.kill(launched["pid"], signal.SIGKILL)
        _wait_gone(launched["pid"])
        with pytest.raises(ServerError, match=r"(?s)launched SGLang server exited with status -9 .*loading weights"):
            b.generate([GenRequest([72, 105], n=1, seeds=[2], max_new_tokens=3)])
    finally:
        b.close()
    assert _wait_gone(launched["child"])  # close() stopped what was left of the group


def test_launched_server_that_dies_at_startup_is_a_clear_error(tmp_path):
    script = "import sys; print('loading weights'); print('RuntimeError: CUDA out of memory'); sys.exit(3)"
    b = SGLangBackend(Arm(name="sg", model="fake/model", backend="sglang", options={
        "launch": True, "launch_command": [sys.executable, "-c", script], "tokenizer": TOK}))
    with pytest.raises(ServerError) as err:
        b.info()
    msg = err.value.message
    assert "the SGLang server did not start" in msg and "exited with status 3" in msg
    assert "CUDA out of memory" in msg and "sglang/sg-" in msg


def test_harness_run_thought_probe_against_a_fake_server(fakes, tmp_path):
    from harness.cli import cli
    from tests.helpers import write_chunks

    fake = fakes()
    arms = tmp_path / "arms.toml"
    arms.write_text('[arms.sg]\nmodel = "fake/model"\nbackend = "sglang"\n'
                    f'options = {{ tokenizer = "{TOK}", backoff = 0.01 }}\n')
    data = write_chunks(tmp_path / "d.jsonl", n=3)
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, [
        "run", "--plugin", "thought_probe", "--arms-file", str(arms), "--arm", "sg", "--backend-url", fake.url,
        "--judge", "lexical", "--quiet", "--data-file", str(data), "--limit", "2", "--samples", "2",
        "--suffix-max-tokens", "12", "--thought-max-tokens", "8", "--intervention", "normal",
        "--intervention", "blank", "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in open(out / "samples.jsonl")]
    assert len(records) == 2 * 2 * 2
    assert all(isinstance(r["cached_tokens"], int) for r in records)
    assert all(r["suffix_logprob"] is not None and r["true_suffix_tokens"] > 0 for r in records)
    assert all(r["cached_tokens"] > 0 for r in records if r["condition"] == "normal")
    bodies = fake.bodies()
    assert all("input_ids" in body and "text" not in body for body in bodies)
    assert {body["sampling_params"]["top_p"] for body in bodies if "sampling_seed" in body["sampling_params"]} == {0.95}
    manifest = json.loads((out / "manifest.json").read_text())
    assert "urls" not in manifest["config"]["arms"][0]["options"]
    info = manifest["invocations"][-1]["backends"]["sg"]
    assert info["backend"] == "sglang" and info["requests"] == len(bodies) and info["deterministic"] is True
    assert any("token ids" in n for n in info["notes"])
