"""The ``hf`` backend's prefix store and in-place KV cache change how much a prompt costs, never
what it yields: the probe's two stages give the same tokens and scores with the store on, off, or
empty when stage 2 starts (a resumed run), and a training backend (live weights) keeps no prefixes."""

import pytest

torch = pytest.importorskip("torch")

from harness.types import Arm, GenRequest
from plugins.backends.hf import HFBackend
from plugins.backends.hf.prefix import PrefixStore


def _backend(**options) -> HFBackend:
    return HFBackend(Arm(name="tiny", model="random:tiny-qwen3", device="cpu", dtype="float32",
                         options={"seed": 0, "batch_rows": 6, **options}))


def _two_stages(b: HFBackend):
    """Stage 1: thoughts after prefix + open tag (all prefix, kept); stage 2: suffixes after
    prefix + open tag + thought + close tag, split after the prefix."""
    stage1 = _stage1(b)
    thoughts = b.generate(stage1)
    return thoughts, b.generate(_stage2(b, [r.prompt_ids for r in stage1], thoughts))


def _stage1(b):
    words = "tide pools hold crabs and anemones while gulls circle the rocks at low water".split()
    firsts = [b.encode(" ".join(words[k:k + 3 + 2 * k]) + " <think>") for k in range(5)]
    return [GenRequest(p, n=2, seeds=[10 * k, 10 * k + 1], max_new_tokens=12, top_p=0.9, prefix_len=len(p))
            for k, p in enumerate(firsts)]


def _stage2(b, firsts, thoughts):
    close = b.encode(" </think>")
    truth = b.encode(" the tide turns")
    stage2 = [GenRequest(p + c.token_ids + close, n=1, seeds=[100 * k + s], max_new_tokens=10, top_p=0.9,
                         score_ids=truth, prefix_len=len(p)) for k, (p, out) in enumerate(zip(firsts, thoughts))
              for s, c in enumerate(out)]
    stage2 += [GenRequest(p + close, n=3, seeds=[7, 8, 9], max_new_tokens=10, score_ids=truth, prefix_len=len(p))
               for p in firsts]
    stage2.append(GenRequest(b.encode("unrelated"), n=1, seeds=[5], max_new_tokens=10, score_ids=truth))
    return stage2


def test_prefix_store_and_spare_positions_keep_every_sample():
    on, off = _backend(), _backend(prefix_cache_mb=0, kv_spare=0)
    t_on, s_on = _two_stages(on)
    t_off, s_off = _two_stages(off)
    assert on.prefixes is not None and off.prefixes is None
    assert len(on.prefixes) == 5 and on.prefixes.hits == 15  # 10 thought prompts + 5 blank ones started from it
    assert on.prefixes.reused_tokens > 0
    resumed = _backend()  # a new process: thoughts stored, the prefix store empty
    s_resumed = resumed.generate(_stage2(resumed, [r.prompt_ids for r in _stage1(resumed)], t_on))
    # computed for stage 2's first batch, then kept for its later ones
    assert len(resumed.prefixes) == 5 and resumed.prefixes.hits < on.prefixes.hits
    for a, b in zip(t_on, t_off):
        assert [c.token_ids for c in a] == [c.token_ids for c in b]
    for a, b, c in zip(s_on, s_off, s_resumed):
        assert [x.token_ids for x in a] == [x.token_ids for x in b] == [x.token_ids for x in c]
        assert [x.finish_reason for x in a] == [x.finish_reason for x in b] == [x.finish_reason for x in c]
        # float rounding: the rows that share a forward change its shapes (as with continuous batching)
        assert a[0].score_logprobs == pytest.approx(b[0].score_logprobs, abs=1e-5)
        assert a[0].score_logprobs == pytest.approx(c[0].score_logprobs, abs=1e-5)


def test_spare_positions_alone_give_identical_logits():
    """In-place KV writes are the same arithmetic as concatenation: identical scores, bit for bit."""
    on, off = _backend(prefix_cache_mb=0), _backend(prefix_cache_mb=0, kv_spare=0)
    assert (on.kv_spare, off.kv_spare) == (64, 0)
    p = on.encode("waves fold over the sandbar")
    reqs = [GenRequest(p, n=3, seeds=[1, 2, 3], max_new_tokens=90, score_ids=on.encode(" and retreat"))]
    a, b = on.generate(reqs)[0], off.generate(reqs)[0]
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    assert a[0].score_logprobs == b[0].score_logprobs


def test_training_backend_keeps_no_prefixes():
    b = _backend()
    b.model  # noqa: B018 (load)
    live = HFBackend.from_loaded(b.arm, b.model, b.tokenizer, b.device)
    assert live.prefixes is None


def test_prefix_store_is_lru_bounded():
    one = [(torch.zeros(1, 1, 4, 2), torch.zeros(1, 1, 4, 2))]  # 64 bytes
    store = PrefixStore(max_bytes=150)
    store.put([1, 2, 3, 4], one)
    store.put([1, 2], [(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))])
    assert store.get([1, 2, 3, 4]) is one and store.get([1, 2, 3]) is None
    store.get([1, 2, 3, 4])  # used: [1, 2] is now the least recently used
    store.put([7, 7, 7, 7], one)  # over 150 bytes: the least recently used entry goes
    assert store.get([1, 2]) is None and store.get([1, 2, 3, 4]) is one and store.get([7, 7, 7, 7]) is one
    assert store.bytes == 128 and len(store) == 2
