"""The ``sglang`` backend's arm options, checked once: :func:`parse_options` (BadInput naming the arm)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace

from harness.backend_base import ServerBackend
from harness.errors import BadInput

DEFAULT_CONCURRENCY = 64


@dataclass(frozen=True)
class SGLangOptions:
    urls: list[str]             # running servers; empty when ``launch``
    launch: bool
    deterministic: bool         # launch with --enable-deterministic-inference
    concurrency: int            # requests in flight per server
    retries: int
    backoff: float
    timeout: float              # seconds per request
    startup_timeout: float      # seconds for a launched server to become healthy
    launch_command: list[str]   # empty: python -m sglang.launch_server
    launch_args: list[str]
    port: int | None            # None: a free one
    tokenizer: str              # the local tokenizer's spec


def parse_options(arm) -> SGLangOptions:
    """The arm's options, validated, with their defaults: a server to talk to (URLs or ``launch``),
    sane values, and a model/tokenizer spec that can be found."""
    from harness.modelspec import ModelSpecError, resolve_path

    o = arm.options
    urls, launch = ServerBackend.server_urls(arm), _flag(o, "launch", arm.name)
    if not urls and not launch:
        raise BadInput(f"arm {arm.name!r} (backend sglang) needs a server: --backend-url URL, the arm option "
                       "url/urls, or launch = true to start one")
    if urls and launch:
        raise BadInput(f"arm {arm.name!r} (backend sglang) has both server URLs and launch = true; give one")
    opts = SGLangOptions(
        urls=urls, launch=launch, deterministic=_flag(o, "deterministic", arm.name),
        concurrency=_number(o, "concurrency", DEFAULT_CONCURRENCY, arm.name, int, 1),
        retries=_number(o, "retries", 4, arm.name, int, 0),
        backoff=_number(o, "backoff", 0.5, arm.name),
        timeout=_number(o, "timeout", 600, arm.name, float, 0.001),
        startup_timeout=_number(o, "startup_timeout", 1800, arm.name, float, 0.001),
        launch_command=_arg_list(o.get("launch_command"), "launch_command", arm.name),
        launch_args=_arg_list(o.get("launch_args"), "launch_args", arm.name),
        port=None if o.get("port") is None else _number(o, "port", None, arm.name, int, 1),
        tokenizer=ServerBackend.tokenizer_of(arm))
    if o.get("launch_command") is not None and not opts.launch_command:
        raise BadInput(f"arm {arm.name!r}: option launch_command is empty")
    if launch:
        kind, _ = resolve_path(arm)
        if kind == "random":
            raise BadInput(f"arm {arm.name!r}: {arm.model} is a random-init preset of the hf backend; "
                           "SGLang needs an HF model directory or a Hub id")
    try:
        resolve_path(replace(arm, model=opts.tokenizer))
    except ModelSpecError as exc:
        hint = "" if o.get("tokenizer") else " (set the arm option tokenizer to a local copy or Hub id of the served model)"
        raise BadInput(f"{exc.message}{hint}") from exc
    return opts


def _flag(options: dict, key: str, arm_name: str) -> bool:
    value = options.get(key, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no", ""):
        return value.lower() in ("true", "1", "yes")
    raise BadInput(f"arm {arm_name!r}: option {key} must be true or false, not {value!r}")


def _arg_list(value, key: str, arm_name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v) for v in value]
    raise BadInput(f"arm {arm_name!r}: option {key} must be a list of arguments or one string, not {value!r}")


def _number(options: dict, key: str, default, arm_name: str, kind=float, minimum=0.0):
    value = options.get(key, default)
    number = None
    if not isinstance(value, bool) and not (kind is int and isinstance(value, float)):
        try:
            number = kind(value)
        except (TypeError, ValueError):
            pass
    if number is None or number < minimum:
        raise BadInput(f"arm {arm_name!r}: option {key} must be a{'n integer' if kind is int else ' number'} "
                       f">= {minimum}, not {value!r}")
    return number
