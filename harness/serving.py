"""What server backends share: a pool of base URLs with item affinity, bounded concurrency,
retries with backoff, failover when a server dies, and launching a server in its own process
group. Standard library only (urllib, threads), so ``harness --help`` stays light.

Affinity: a request's ``affinity`` key (the item id) is placed on a server the first time the pool
sees it (round robin over the live servers, in the order the backend submits requests, so a run's
items split evenly whatever their ids) and stays there, so stage 2 of an item goes to the server
that holds stage 1 in its prefix cache. When that server dies its keys are placed again on the
live ones.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

import click

from harness.redact import redact_text

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class ServerError(click.ClickException):
    """A server could not answer: every server is dead, or it refused a request outright."""


class RetryableError(Exception):
    pass


def post_json(url: str, payload: dict, timeout: float, headers: dict | None = None) -> dict:
    """POST ``payload`` as JSON; returns the decoded reply. Raises :class:`RetryableError` for
    connection errors, timeouts and 408/429/5xx, :class:`ServerError` for other HTTP errors."""
    data = json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read().decode())
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")[:500]
        if exc.code in RETRY_STATUS:
            raise RetryableError(f"HTTP {exc.code} from {url}: {body}") from exc
        raise ServerError(f"HTTP {exc.code} from {url}: {body}") from exc
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, http.client.HTTPException,
            json.JSONDecodeError) as exc:
        raise RetryableError(f"{type(exc).__name__} from {url}: {exc}") from exc


def get_ok(url: str, timeout: float = 5.0) -> bool:
    """Whether GET ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, http.client.HTTPException):
        return False


class ServerPool:
    """Base URLs serving the same model. ``post(path, payload, affinity)`` retries a server with
    exponential backoff (``retries`` times) on retryable errors; a server that keeps failing is
    marked dead, said so once, and its requests go to the live servers. At most ``concurrency``
    requests are in flight per server (callers post from their own threads)."""

    def __init__(self, urls: list[str], *, concurrency: int = 8, retries: int = 4, timeout: float = 120.0,
                 backoff: float = 0.5, max_backoff: float = 8.0, headers: dict | None = None, log=None):
        if not urls:
            raise ServerError("no server URL given (--backend-url or the arm option url)")
        self.urls = [u.rstrip("/") for u in urls]
        self.alive = [True] * len(self.urls)
        self.concurrency, self.retries, self.timeout = concurrency, retries, timeout
        self.backoff, self.max_backoff = backoff, max_backoff
        self.headers = headers or {}
        self.log = log or (lambda msg: click.echo(redact_text(msg), err=True))
        self.stats = {"requests": 0, "retries": 0, "dead_servers": []}
        self._lock = threading.Lock()
        self._slots = [threading.Semaphore(concurrency) for _ in self.urls]
        self._placed: dict[str, int] = {}
        self._next = 0

    def server_for(self, affinity: str | None) -> int:
        """The live server for ``affinity``: where the key was placed, else (a new key, or its server
        died) the next live server in round-robin order (None: any live server, chosen at random)."""
        live = [i for i, ok in enumerate(self.alive) if ok]
        if not live:
            raise ServerError(f"every server is dead ({', '.join(self.urls)}); finished records are kept, "
                              "rerun the same command to resume")
        if affinity is None:
            return random.choice(live)
        with self._lock:
            i = self._placed.get(affinity)
            if i is None or not self.alive[i]:
                i = self._placed[affinity] = live[self._next % len(live)]
                self._next += 1
        return i

    def place(self, affinities) -> None:
        """Place new keys in this order (call before submitting requests from threads, so that the
        split over servers does not depend on thread timing)."""
        for key in affinities:
            if key is not None:
                self.server_for(key)

    def _mark_dead(self, i: int, why: str) -> None:
        with self._lock:
            if not self.alive[i]:
                return
            self.alive[i] = False
            self.stats["dead_servers"].append({"url": self.urls[i], "error": why})
            left = [u for u, ok in zip(self.urls, self.alive) if ok]
        more = f"; its requests go to {', '.join(left)}" if left else ""
        self.log(f"server {self.urls[i]} is not answering after {self.retries + 1} tries ({why}){more}")

    def post(self, path: str, payload: dict, affinity: str | None = None) -> dict:
        while True:
            i = self.server_for(affinity)
            last = None
            for attempt in range(self.retries + 1):
                if not self.alive[i]:
                    break
                try:
                    with self._slots[i]:
                        reply = post_json(self.urls[i] + path, payload, self.timeout, self.headers)
                    with self._lock:
                        self.stats["requests"] += 1
                    return reply
                except RetryableError as exc:
                    last = str(exc)
                    if attempt < self.retries:
                        with self._lock:
                            self.stats["retries"] += 1
                        delay = min(self.max_backoff, self.backoff * 2 ** attempt)
                        time.sleep(delay * (0.5 + random.random() / 2))
            if last is not None:
                self._mark_dead(i, last)

    def map(self, jobs: list[tuple[str, dict, str | None]], ticks=None, progress=None) -> list[dict]:
        """``post`` every ``(path, payload, affinity)`` job from threads (``concurrency`` in flight
        per server; new affinity keys placed in job order first); replies in job order.
        ``progress(1)`` after each job whose ``ticks`` entry is true (all, without ``ticks``). The
        first failure cancels the jobs not started yet and is raised once those in flight end."""
        if not jobs:
            return []
        self.place(job[2] for job in jobs)
        ticks = ticks if ticks is not None else [True] * len(jobs)

        def one(k):
            reply = self.post(*jobs[k])
            if progress is not None and ticks[k]:
                progress(1)
            return reply

        ex = ThreadPoolExecutor(max_workers=max(1, min(len(jobs), self.concurrency * len(self.urls))))
        try:
            futures = [ex.submit(one, k) for k in range(len(jobs))]
            wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in futures if f.done() and f.exception() is not None), None)
            if failed is not None:
                raise failed.exception()
            return [f.result() for f in futures]
        finally:
            ex.shutdown(wait=True, cancel_futures=True)

    def count_request(self) -> None:
        """Count a request a caller sent itself (``post_json``), outside :meth:`post`."""
        with self._lock:
            self.stats["requests"] += 1


class LaunchedServer:
    """A server process started by the harness in its own process group; ``start()`` waits until
    ``health_url`` answers 200 and fails early, with the tail of its log, if the process dies.
    ``stop()`` (also run at exit) terminates the whole group."""

    def __init__(self, cmd: list[str], health_url: str, log_path: str, startup_timeout: float = 900.0,
                 env: dict | None = None):
        self.cmd, self.health_url, self.log_path = cmd, health_url, log_path
        self.startup_timeout, self.env = startup_timeout, env
        self.proc: subprocess.Popen | None = None

    def start(self) -> "LaunchedServer":
        os.makedirs(os.path.dirname(os.path.abspath(self.log_path)), exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, **(self.env or {})})
        atexit.register(self.stop)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"server exited with status {self.proc.returncode} while starting: "
                                  f"{' '.join(self.cmd)}\n{self.log_tail()}")
            if get_ok(self.health_url, timeout=5):
                return self
            time.sleep(1.0)
        self.stop()
        raise ServerError(f"server did not become healthy at {self.health_url} within {self.startup_timeout:.0f}s "
                          f"({' '.join(self.cmd)})\n{self.log_tail()}")

    def died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                return b"".join(fh.readlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, PermissionError):
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        finally:
            self._log.close()
