"""Worker processes that grade ``(gold, predicted)`` pairs with a per-item deadline.

Symbolic comparison can hang (sympy on adversarial input) or eat memory, so :class:`GradingPool`
runs it in spawned worker processes: the deadline is enforced from outside (a hang costs one item,
never the run) and each worker's address space is capped with ``RLIMIT_AS`` (a runaway allocation
costs one item and that worker). The deadline is wall-clock, so on a loaded machine an answer that
normally grades in milliseconds can run out of time: a timed-out item is retried once with a longer
deadline before it is graded wrong.
"""

from __future__ import annotations

import importlib
import os
import time
from collections import deque
from dataclasses import dataclass

DEFAULT_MEMORY_LIMIT = 2 << 30  # bytes of address space per worker (a warmed math_verify worker uses ~0.2 GiB)


@dataclass
class Grade:
    """One graded answer: ``reason`` is "match", "mismatch", "no_answer", "timeout" or "error: ...".

    ``retried`` is True when the item timed out once and was graded on its retry (its reason then
    ends with " (retried)"); "timeout" means both tries ran out of time."""

    correct: bool
    reason: str
    retried: bool = False


def _cap_memory(limit: int | None) -> None:
    """Cap this process's address space at ``limit`` bytes (never above the hard limit)."""
    import resource

    if not limit:
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))


def _worker_main(conn, fn_path: str, parent_pid: int, memory_limit: int | None = None) -> None:
    """Worker process: cap memory, resolve ``fn_path``, warm up, then answer ``(idx, gold, pred)`` jobs."""
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle

    def orphan_watch():  # a worker stuck in sympy must not outlive a killed parent
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=orphan_watch, daemon=True).start()
    try:
        _cap_memory(memory_limit)
        module_name, _, fn_name = fn_path.partition(":")
        module = importlib.import_module(module_name)
        fn = getattr(module, fn_name)
        if callable(getattr(module, "warm_up", None)):
            module.warm_up()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        return conn.send(("init_error", f"{type(exc).__name__}: {exc}"))
    conn.send(("ready", None))
    while (job := conn.recv()) is not None:
        try:
            conn.send(("ok", bool(fn(job[1], job[2]))))
        except MemoryError:  # the address-space cap: report it, then leave (the parent replaces us)
            conn.send(("oom", None))
            os._exit(3)
        except Exception as exc:  # noqa: BLE001 - one job's error is that job's grade
            conn.send(("err", f"{type(exc).__name__}: {str(exc)[:300]}"))


class _Worker:
    """One worker process, the parent's end of its pipe, and the job it is running."""

    def __init__(self, ctx, fn_path: str, memory_limit: int | None):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, fn_path, os.getpid(), memory_limit), daemon=True)
        self.proc.start()
        child.close()  # so that the parent reads EOF when the worker dies
        self.started, self.ready, self.job, self.deadline, self.done = time.monotonic(), False, None, 0.0, 0

    def stop(self) -> None:
        """Stop the process (terminate, then kill) and reap it; it holds no state worth a goodbye."""
        for end in (self.proc.terminate, self.proc.kill):
            if self.proc.is_alive():
                end()
                self.proc.join(2.0)
        self.proc.join()
        self.conn.close()


class GradingPool:
    """Grade ``(gold, predicted)`` pairs with ``fn`` in spawned worker processes, one deadline each.

    ``fn`` is a ``"module:function"`` path returning a truth value. Workers start on the first
    :meth:`grade` call (spawned, never forked: the parent may hold torch/CUDA state), cap their
    address space at ``memory_limit`` bytes (``RLIMIT_AS``; default 2 GiB, None for no cap), run
    their module's ``warm_up()`` if it has one, then take one job at a time.

    A job running longer than ``timeout_s`` has its worker killed and replaced and is queued once
    more with ``timeout_s * retry_factor`` (default 4x; ``retry_factor=0`` disables the retry): a
    retry that finishes gives "match (retried)" / "mismatch (retried)" (``Grade.retried``), one that
    times out again gives "timeout". A job whose worker runs out of memory gives
    "error: out of memory (worker limit N MiB)"; one whose worker dies otherwise gives
    "error: worker died" (no retry); an exception in ``fn`` gives "error: <Type>: <msg>". Workers
    are replaced after ``max_tasks_per_worker`` jobs. Close it, or use it in ``with``.
    """

    startup_timeout_s = 120.0

    def __init__(self, workers: int | None = None, timeout_s: float = 5.0, max_tasks_per_worker: int = 2000,
                 fn: str = "tasks.grading:verify_math", retry_factor: float = 4.0,
                 memory_limit: int | None = DEFAULT_MEMORY_LIMIT):
        self.workers = workers or min(os.cpu_count() or 1, 4)
        self.timeout_s, self.max_tasks_per_worker, self.fn = timeout_s, max_tasks_per_worker, fn
        self.retry_factor, self.memory_limit = retry_factor, memory_limit
        self._pool: list[_Worker] = []

    def grade(self, jobs: list[tuple[str, str | None]], progress=None) -> list[Grade]:
        """Grade ``(gold, predicted)`` jobs; one :class:`Grade` per job, in order.

        A None prediction is ``"no_answer"`` without reaching a worker. ``progress``, if given, is
        called with the number of newly finished jobs.
        """
        results: list = [Grade(False, "no_answer") if pred is None else None for _, pred in jobs]
        queue = deque((i, gold, pred) for i, (gold, pred) in enumerate(jobs) if pred is not None)
        if progress and len(queue) < len(jobs):
            progress(len(jobs) - len(queue))
        try:
            self._run(queue, results, progress)
        except BaseException:
            self.close()  # in-flight state is unknown: start afresh on the next call
            raise
        return results

    def _spawn(self, ctx) -> _Worker:
        return _Worker(ctx, self.fn, self.memory_limit)

    def _run(self, queue: deque, results: list, progress) -> None:
        """Keep every worker busy with one job until all queued jobs have a grade."""
        import multiprocessing
        from multiprocessing.connection import wait

        ctx = multiprocessing.get_context("spawn")
        while len(self._pool) < min(self.workers, len(queue)):
            self._pool.append(self._spawn(ctx))
        left, retried = len(queue), set()
        while left:
            for w in self._pool:
                if w.ready and w.job is None and queue:
                    w.job = queue.popleft()
                    w.deadline = time.monotonic() + self.timeout_s * (self.retry_factor if w.job[0] in retried else 1)
                    try:
                        w.conn.send(w.job)
                    except OSError:  # it died while idle: the job never started, requeue it
                        queue.appendleft(w.job)
                        w.job = None
            limits = [w.deadline if w.job else w.started + self.startup_timeout_s
                      for w in self._pool if w.job or not w.ready]
            wait([w.conn for w in self._pool] + [w.proc.sentinel for w in self._pool],
                 max(0.0, min(limits, default=time.monotonic() + 1.0) - time.monotonic()))
            for w in list(self._pool):
                grade, replace = self._event(w, time.monotonic())
                if grade is not None:
                    i = w.job[0]
                    if grade.reason == "timeout" and self.retry_factor and i not in retried:
                        retried.add(i)
                        queue.append(w.job)  # at the back: a passing load spike has time to pass
                    else:
                        if i in retried and grade.reason in ("match", "mismatch"):
                            grade = Grade(grade.correct, f"{grade.reason} (retried)", retried=True)
                        results[i], left = grade, left - 1
                        if progress:
                            progress(1)
                    w.job = None
                if replace or w.done >= self.max_tasks_per_worker:
                    w.stop()  # replaced only while there is work left; grade() tops the pool up
                    self._pool[self._pool.index(w)] = self._spawn(ctx) if queue else None
            self._pool = [w for w in self._pool if w is not None]
            while queue and len(self._pool) < min(self.workers, len(queue)):
                self._pool.append(self._spawn(ctx))  # a retry queued after its worker went away

    def _event(self, w: _Worker, now: float) -> tuple[Grade | None, bool]:
        """Take one event from ``w``: ``(grade of its job or None, whether to replace it)``."""
        try:
            kind, value = w.conn.recv() if w.conn.poll() else (None, None)
        except (EOFError, OSError):
            kind, value = "died", None
        if kind is None and not w.proc.is_alive():
            kind = "died"
        if kind == "init_error" or (kind == "died" and not w.ready):
            hint = (f" (worker memory limit {self.memory_limit >> 20} MiB: see GradingPool(memory_limit=...))"
                    if self.memory_limit and value and "MemoryError" in value else "")
            raise RuntimeError(f"grading worker for {self.fn!r} failed to start{hint}: {value or 'it died'}")
        if kind == "ready":
            w.ready = True
        elif kind in ("ok", "err"):
            w.done += 1
            return (Grade(value, "match" if value else "mismatch") if kind == "ok"
                    else Grade(False, f"error: {value}")), False
        elif kind == "oom":
            return Grade(False, f"error: out of memory (worker limit {(self.memory_limit or 0) >> 20} MiB)"), True
        elif kind == "died":
            return (Grade(False, "error: worker died") if w.job else None), True
        elif w.job and now >= w.deadline:
            return Grade(False, "timeout"), True
        elif not w.ready and now >= w.started + self.startup_timeout_s:
            raise RuntimeError(f"grading worker for {self.fn!r} not ready after {self.startup_timeout_s} s")
        return None, False

    def close(self) -> None:
        """Stop and reap every worker; a later :meth:`grade` starts new ones."""
        pool, self._pool = self._pool, []
        for w in pool:
            w.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
