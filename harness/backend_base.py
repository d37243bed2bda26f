"""What backends that own a tokenizer share (the idea of lm-eval's ``TemplateLM``).

:class:`TokenizerBackend` holds an arm's tokenizer, loaded at first use, and what follows from it
alone: ``encode``/``decode``, ``eos_ids``, ``chat_prompt`` and cutting a completion's ids at a stop
string. :class:`ServerBackend` adds what backends that talk to servers share: the server URLs in
an arm's options, the local tokenizer's spec, and a sample's seed as a server takes it.

A backend class need not subclass these (any class with the members of
``harness.protocols.KINDS["backends"]`` is a backend); the built-in ``hf``, ``openai`` and
``sglang`` do. Only the standard library is imported here; the tokenizer's libraries load at first
use, so ``harness --help`` stays light.
"""

from __future__ import annotations

import urllib.parse

from harness.errors import BadInput

SEED_BITS = 31
SEED_MODULUS = 2 ** SEED_BITS  # what ServerBackend.server_seed reduces a sample's seed modulo


class TokenizerBackend:
    """A backend with a local tokenizer (``tokenizer_spec``, default the arm's model).

    Subclasses call ``super().__init__(arm, tokenizer_spec)`` and may override
    :meth:`load_tokenizer` (``hf``: the tokenizer that comes with the loaded model) and
    :meth:`generation_eos_ids` (EOS ids the model's generation config adds).
    """

    def __init__(self, arm, tokenizer_spec: str | None = None):
        self.arm = arm
        self.tokenizer_spec = str(tokenizer_spec or arm.model)
        self._tokenizer = None
        self._eos: set[int] | None = None

    # -- the tokenizer ------------------------------------------------------------------
    @property
    def tokenizer(self):
        """The tokenizer, loaded at first use."""
        if self._tokenizer is None:
            self._tokenizer = self.load_tokenizer()
        return self._tokenizer

    def load_tokenizer(self):
        """The tokenizer of ``tokenizer_spec`` alone (:func:`harness.modelspec.load_tokenizer`)."""
        from harness.modelspec import load_tokenizer

        return load_tokenizer(self.arm, self.tokenizer_spec)

    def encode(self, text: str) -> list[int]:
        """``text`` as ids, no special tokens added (the pipeline concatenates encoded pieces)."""
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def decode(self, ids) -> str:
        """``ids`` as text, special tokens dropped."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    @property
    def eos_ids(self) -> set[int]:
        """The tokenizer's EOS id(s) and those of :meth:`generation_eos_ids`, found once."""
        if self._eos is None:
            ids: set[int] = set()
            for source in (self.tokenizer.eos_token_id, self.generation_eos_ids()):
                if isinstance(source, int):
                    ids.add(source)
                elif source:
                    ids.update(int(t) for t in source)
            self._eos = ids
        return self._eos

    def generation_eos_ids(self):
        """EOS ids the model's generation config adds to the tokenizer's: an int, a list or None
        (here: None, the tokenizer's EOS alone)."""
        return None

    def chat_prompt(self, messages: list[dict], **template_kw) -> str:
        """``messages`` rendered by the tokenizer's chat template, ending where the assistant's turn
        begins; ``template_kw`` go to the template (e.g. Qwen3's ``enable_thinking``). BadInput
        naming the arm when the tokenizer has no chat template."""
        if not getattr(self.tokenizer, "chat_template", None):
            where = "" if self.tokenizer_spec == self.arm.model else f" (tokenizer {self.tokenizer_spec})"
            raise BadInput(f"arm {self.arm.name!r} has no chat template{where}; use the plain prompt for it "
                           "(its arm option reasoning_prompt = \"plain\")")
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **template_kw)

    # -- stop strings -------------------------------------------------------------------
    @staticmethod
    def first_stop(text: str, stops) -> int | None:
        """Where the first of ``stops`` to occur begins in ``text``; None when none is in it."""
        return min((text.find(s) for s in stops if s in text), default=None)

    def cut_at_stop(self, ids, stops) -> list[int]:
        """``ids`` ending before the token where the first stop string begins in their text (as
        ``harness.types.GenRequest`` documents); all of them when no stop string is in it."""
        at = self.first_stop(self.decode(ids), stops)
        return list(ids) if at is None else self.cut_at(ids, at)

    def cut_at(self, ids, chars: int) -> list[int]:
        """The longest head of ``ids`` whose text is at most ``chars`` characters long: the ids end
        before the token that holds character ``chars`` (a token the cut falls inside goes too)."""
        keep = len(ids)
        while keep > 0 and len(self.decode(ids[:keep])) > chars:
            keep -= 1
        return list(ids[:keep])


class ServerBackend(TokenizerBackend):
    """A :class:`TokenizerBackend` whose model runs on servers: ``--backend-url`` fills the arm's
    ``urls`` (``takes_url``); the local tokenizer is the arm option ``tokenizer``, else the arm's
    model, and must be the served model's."""

    takes_url = True

    def __init__(self, arm):
        super().__init__(arm, self.tokenizer_of(arm))

    @staticmethod
    def tokenizer_of(arm) -> str:
        """The spec of an arm's local tokenizer: its option ``tokenizer``, else its model."""
        return str(arm.options.get("tokenizer") or arm.model)

    @staticmethod
    def server_seed(seed: int) -> int:
        """A sample's seed as a server takes it: ``seed % 2**31``, its low 31 bits (the same number
        as ``seed & (2**31 - 1)``, never negative). The harness's seeds are 63-bit; vLLM takes
        int64, but some SGLang versions hold seeds in an int32 tensor, so every server backend sends
        31 bits. The record keeps the harness's own seed."""
        return int(seed) % SEED_MODULUS

    @staticmethod
    def server_urls(arm) -> list[str]:
        """The server base URLs in an arm's options, in order: ``urls`` (``--backend-url`` fills it),
        else ``url``; each a string or a list of strings, a string split on commas, blanks dropped,
        a trailing ``/`` dropped. Each must be ``http(s)://HOST[:PORT][/PATH]`` (no spaces, query or
        fragment): anything else is BadInput naming the arm and the URL. An empty list when none is
        given (the backend says what it needs instead)."""
        where = f"arm {arm.name!r} (backend {arm.backend})"
        given = arm.options.get("urls") or arm.options.get("url") or []
        if isinstance(given, str):
            given = [given]
        if not isinstance(given, (list, tuple)) or not all(isinstance(u, str) for u in given):
            raise BadInput(f"{where}: the server URLs (option url/urls) must be strings, not {given!r}",
                           param_hint="--backend-url")
        urls = [u.strip() for entry in given for u in entry.split(",") if u.strip()]
        for u in urls:
            if not _well_formed(u):
                raise BadInput(f"{where}: server URL {u!r} is not http(s)://HOST[:PORT][/PATH]",
                               param_hint="--backend-url")
        return [u.rstrip("/") for u in urls]


def _well_formed(url: str) -> bool:
    """``http(s)://HOST[:PORT][/PATH]``: a host, a port (if any) in 1-65535, no spaces, query or fragment."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # ValueError for a port that is not a number in 0-65535
    except ValueError:
        return False
    return (url.startswith(("http://", "https://")) and bool(parts.hostname) and port != 0
            and not parts.query and not parts.fragment and not any(c.isspace() for c in url))
