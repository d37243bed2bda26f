"""A real HTTP retrieval server for tests, over any retriever (usually ``bm25``), speaking both wire
formats the ``http`` retriever knows:

- Search-R1: ``POST /retrieve`` ``{"queries", "topk", "return_scores"}`` ->
  ``{"result": [[{"document": doc, "score": s}, ...], ...]}`` (the documents alone without
  ``return_scores``);
- ReSearch / FlashRAG: ``POST /search`` ``{"query", "top_n", "return_score"}`` ->
  ``[[doc, ...], [score, ...]]`` and ``POST /batch_search`` with a list of queries ->
  ``[[[doc, ...], ...], [[score, ...], ...]]`` (the documents alone without ``return_score``);
  an empty query on ``/search`` is refused with 400, as that server does.

``GET /health`` answers ``{"status": "healthy"}``. Switches to misbehave, each counting down
per request (set them on the running server): ``fail`` (answer 500), ``garbage`` (200 with a body
that is not JSON), ``wrong_shape`` (200 with JSON of the wrong shape), ``hang`` (wait
``hang_seconds`` before answering). ``scores = False`` answers without scores, ``ids = False``
with documents that have no id. Every request is logged in ``requests`` as ``(path, payload)``.

Standard library only (``http.server`` in a thread); :func:`serve` starts one on a free port.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class RetrievalServer:
    def __init__(self, retriever, host: str = "127.0.0.1", port: int = 0):
        self.retriever = retriever
        self.fail = self.garbage = self.wrong_shape = self.hang = 0
        self.hang_seconds = 5.0
        self.scores = True
        self.ids = True
        self.requests: list[tuple[str, object]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.app = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "RetrievalServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases hanging requests
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def take(self, switch: str) -> bool:
        """Whether this request misbehaves as ``switch`` (counting it down)."""
        with self._lock:
            left = getattr(self, switch)
            if left > 0:
                setattr(self, switch, left - 1)
                return True
            return False

    # -- the two wire formats ----------------------------------------------------------
    def _docs(self, queries: list[str], k: int):
        results = self.retriever.retrieve(queries, k)
        docs = [[{"id": d["id"], "contents": d["contents"]} if self.ids else {"contents": d["contents"]}
                 for d in row] for row in results]
        return docs, [[d["score"] for d in row] for row in results]

    def answer(self, path: str, payload) -> tuple[int, object]:
        if not isinstance(payload, dict):
            return 422, {"detail": "expected a JSON object"}
        if path == "/retrieve":
            docs, scores = self._docs([str(q) for q in payload.get("queries", [])], int(payload.get("topk") or 3))
            if self.scores and payload.get("return_scores"):
                return 200, {"result": [[{"document": d, "score": s} for d, s in zip(row, ss)]
                                        for row, ss in zip(docs, scores)]}
            return 200, {"result": docs}
        with_scores = self.scores and payload.get("return_score")
        k = int(payload.get("top_n") or 10)
        if path == "/search":
            query = payload.get("query")
            if not isinstance(query, str) or not query.strip():
                return 400, {"detail": "Query content cannot be empty"}
            docs, scores = self._docs([query], k)
            return 200, [docs[0], scores[0]] if with_scores else docs[0]
        if path == "/batch_search":
            docs, scores = self._docs([str(q) for q in payload.get("query", [])], k)
            return 200, [docs, scores] if with_scores else docs
        return 404, {"detail": "Not Found"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass

    def do_GET(self):
        if self.path == "/health":
            self._send(200, b'{"status": "healthy"}')
        else:
            self._send(404, b'{"detail": "Not Found"}')

    def do_POST(self):
        app: RetrievalServer = self.server.app
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            payload = json.loads(raw or b"null")
        except json.JSONDecodeError:
            payload = None
        with app._lock:
            app.requests.append((self.path, payload))
        if app.take("hang"):
            app._stopping.wait(app.hang_seconds)
        if app.take("fail"):
            return self._send(500, b'{"detail": "Internal Server Error"}')
        if app.take("garbage"):
            return self._send(200, b"<html>not json")
        if app.take("wrong_shape"):
            return self._send(200, b'{"unexpected": true}')
        status, body = app.answer(self.path, payload)
        self._send(status, json.dumps(body).encode())


@contextmanager
def serve(retriever, **switches):
    """A :class:`RetrievalServer` over ``retriever`` on a free local port, stopped afterwards;
    ``switches`` set its misbehaviour counters (``fail=2``) and flags (``scores=False``)."""
    server = RetrievalServer(retriever)
    for key, value in switches.items():
        if not hasattr(server, key):
            raise TypeError(f"no switch {key!r}")
        setattr(server, key, value)
    server.start()
    try:
        yield server
    finally:
        server.stop()
