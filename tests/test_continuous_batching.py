"""Continuous batching in the ``hf`` backend: refilling finished rows from pending requests
changes which rows share a batch, never a sample's tokens."""

import pytest

torch = pytest.importorskip("torch")

from harness.types import Arm, GenRequest
from plugins.backends.hf import HFBackend


class ManyEOS(HFBackend):
    """EOS on a few common byte tokens, so that rows end early, late or at the length limit."""

    eos_ids = set(range(100, 106))


def _backend(continuous: bool, batch_rows: int = 7) -> HFBackend:
    return ManyEOS(Arm(name="tiny", model="random:tiny-qwen3", device="cpu", dtype="float32",
                       options={"seed": 0, "batch_rows": batch_rows, "continuous_batching": continuous}))


def _workload(b: HFBackend) -> list[GenRequest]:
    words = "sand drifts along the shore while rivers carry silt and waves sort the finest grains".split()
    stops = tuple(b.decode([t]) for t in range(40, 50)) + ("</think>",)  # ten one-character tokens
    reqs = []
    for k in range(18):
        prompt = b.encode(" ".join(words[(k + j) % len(words)] for j in range(1 + (k * 5) % 17)))
        truth = b.encode(" it settles offshore"[: 3 + k % 9]) if k % 3 else None
        n = (1, 2, 4, 1, 3)[k % 5]
        seeds = [1000 * k + s for s in range(n)]
        settings = [dict(max_new_tokens=40, top_p=0.9), dict(max_new_tokens=9, temperature=0.7),
                    dict(max_new_tokens=24, stop_strings=stops)][k % 3]
        reqs.append(GenRequest(prompt, n=n, seeds=seeds, score_ids=truth, **settings))
    return reqs


def test_continuous_batching_keeps_every_sample():
    on, off = _backend(True), _backend(False)
    reqs = _workload(on)
    a, b = on.generate(reqs), off.generate(reqs)
    assert on.refills > 0 and off.refills == 0  # rows were refilled, and only with it on
    reasons = set()
    for r, ca, cb in zip(reqs, a, b):
        assert len(ca) == len(cb) == r.n
        for x, y in zip(ca, cb):
            assert x.token_ids == y.token_ids and x.text == y.text
            assert x.finish_reason == y.finish_reason
            reasons.add(x.finish_reason)
            if r.score_ids is None:
                assert x.score_logprobs is None and y.score_logprobs is None
            else:
                assert len(x.score_logprobs) == len(r.score_ids)
                assert x.score_logprobs == pytest.approx(y.score_logprobs, abs=1e-5)
    assert reasons == {"eos", "stop", "length"}  # the workload exercises every way a row ends


def test_continuous_batching_matches_one_request_at_a_time():
    on = _backend(True, batch_rows=4)
    reqs = _workload(on)[:6]
    alone = [on.generate([r])[0] for r in reqs]
    together = on.generate(reqs)
    for x, y in zip(together, alone):
        assert [c.token_ids for c in x] == [c.token_ids for c in y]
        assert [c.finish_reason for c in x] == [c.finish_reason for c in y]


def test_zero_new_tokens_only_scores():
    b = _backend(True)
    p, t = b.encode("Waves."), b.encode(" Sand")
    out = b.generate([GenRequest(p, n=2, seeds=[1, 2], max_new_tokens=0, score_ids=t)])[0]
    assert [c.token_ids for c in out] == [[], []] and {c.finish_reason for c in out} == {"length"}
    assert len(out[0].score_logprobs) == len(t)


def test_flag_parsing():
    assert _backend(True).continuous and not _backend(False).continuous
    off = HFBackend(Arm(name="tiny", model="random:tiny-qwen3", options={"continuous_batching": "false"}))
    assert not off.continuous
