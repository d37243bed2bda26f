"""The ``sglang`` backend's servers: running ones given by URL, or one it launches in its own
process group; each is asked once what it serves and whether it runs deterministic inference.

A launched server is ``<launch_command> --model-path MODEL --host 127.0.0.1 --port PORT [--dtype D]
[--trust-remote-code] [--enable-deterministic-inference] <launch_args>``, waited for on
``GET /health_generate``, and stopped (its whole process group) by :meth:`SGLangServers.close`,
when the backend goes away, or at exit. Its log is ``$HARNESS_CACHE/sglang/<arm>-<port>.log``.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import sys
import threading
import urllib.error
import urllib.request
import weakref

from harness.serving import ServerError


def default_launch_command() -> list[str]:
    return [sys.executable, "-m", "sglang.launch_server"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str, timeout: float = 5.0):
    """GET ``url`` as JSON; None when it cannot be had (servers without that endpoint, say)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read().decode())
    except (OSError, ValueError, urllib.error.URLError, http.client.HTTPException):
        return None


def _stop(server) -> None:
    """Stop a launched server's process group. ``LaunchedServer.stop`` signals the group only
    while its leader lives; when the leader already died, what is left of the group (SGLang's
    scheduler and detokenizer processes, say) gets SIGTERM here."""
    server.stop()
    if server.proc is not None and server.proc.poll() is not None:
        try:
            os.killpg(server.proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass


def probe(url: str) -> dict:
    """What the server says about itself: served model and whether deterministic inference
    is on (``/get_model_info``, ``/get_server_info``); fields are None when it does not say."""
    model = _get_json(url + "/get_model_info") or {}
    server = _get_json(url + "/get_server_info") or {}
    det = server.get("enable_deterministic_inference") if isinstance(server, dict) else None
    preferred = model.get("preferred_sampling_params") if isinstance(model, dict) else None
    return {"url": url, "model_path": model.get("model_path") if isinstance(model, dict) else None,
            "deterministic": det if isinstance(det, bool) else None,
            "version": server.get("version") if isinstance(server, dict) else None,
            "preferred_sampling_params": preferred or None}


class SGLangServers:
    """One arm's servers (``opts``: its :class:`~plugins.backends.sglang.options.SGLangOptions`),
    connected or launched at the first :meth:`get_pool`; ``probed`` holds what each said."""

    def __init__(self, arm, opts):
        self.arm, self.opts = arm, opts
        self.pool = None
        self.launched = None  # the LaunchedServer, when this backend started one
        self.probed: list[dict] = []
        self._lock = threading.Lock()

    def get_pool(self):
        with self._lock:
            if self.pool is None:
                from harness.serving import ServerPool

                urls = [self._start()] if self.opts.launch else self.opts.urls
                self.pool = ServerPool(urls, concurrency=self.opts.concurrency, retries=self.opts.retries,
                                       timeout=self.opts.timeout, backoff=self.opts.backoff)
                self.probed = [probe(u) for u in self.pool.urls]
        return self.pool

    def launch_command(self, port: int) -> list[str]:
        from harness.modelspec import resolve_path

        _, where = resolve_path(self.arm)
        cmd = list(self.opts.launch_command) or default_launch_command()
        cmd += ["--model-path", where, "--host", "127.0.0.1", "--port", str(port)]
        if self.arm.dtype and self.arm.dtype != "auto":
            cmd += ["--dtype", self.arm.dtype]
        if self.arm.trust_remote_code:
            cmd += ["--trust-remote-code"]
        if self.opts.deterministic:
            cmd += ["--enable-deterministic-inference"]
        return cmd + list(self.opts.launch_args)

    def _start(self) -> str:
        from harness.modelspec import cache_dir
        from harness.serving import LaunchedServer

        port = self.opts.port or _free_port()
        url = f"http://127.0.0.1:{port}"
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.arm.name)
        log_path = str(cache_dir() / "sglang" / f"{safe}-{port}.log")
        server = LaunchedServer(self.launch_command(port), url + "/health_generate", log_path,
                                startup_timeout=self.opts.startup_timeout)
        try:
            server.start()
        except ServerError as exc:
            _stop(server)
            raise ServerError(f"arm {self.arm.name!r}: the SGLang server did not start (log: {log_path}): "
                              f"{exc.message}") from exc
        self.launched = server
        self._finalizer = weakref.finalize(self, _stop, server)  # stopped when the backend goes away
        return url

    def close(self) -> None:
        """Stop the launched server (its whole process group); nothing for connected servers."""
        if self.launched is not None:
            _stop(self.launched)

    def deterministic(self) -> bool | None:
        """Whether every server runs with --enable-deterministic-inference (None: cannot tell)."""
        flags = [s["deterministic"] for s in self.probed]
        if flags and all(f is True for f in flags):
            return True
        if any(f is False for f in flags):
            return False
        return self.opts.deterministic if self.opts.launch else None

    def died(self) -> ServerError | None:
        if self.launched is not None and self.launched.died():
            return ServerError(f"arm {self.arm.name!r}: the launched SGLang server exited with status "
                               f"{self.launched.proc.returncode} (log: {self.launched.log_path}):\n"
                               f"{self.launched.log_tail()}")
        return None

    def post_all(self, jobs, progress=None) -> list:
        """POST every ``(payload, affinity, counts_for_progress)`` job to ``/generate`` with at most
        ``concurrency`` in flight per server; replies in job order. The first failure cancels what
        has not started and is raised (as the launched server's death, with its log, if it died)."""
        pool = self.get_pool()
        dead = self.died()
        if dead:
            raise dead
        try:
            return pool.map([("/generate", payload, affinity) for payload, affinity, _ in jobs],
                            [counted for _, _, counted in jobs], progress)
        except Exception as exc:
            dead = self.died()
            if dead:
                raise dead from exc
            raise
