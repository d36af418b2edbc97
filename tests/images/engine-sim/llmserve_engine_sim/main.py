"""Process entry points: `vllm ...` shim and `python -m llmserve_engine_sim ...`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

from . import __version__
from . import flags as _flags
from .cli import StartupError, parse_vllm_argv, post_validate

log = logging.getLogger("llmserve_engine_sim")


class _VllmFormatter(logging.Formatter):
    """`(APIServer pid=N) INFO 11-22 08:00:00 [file.py:12] message`, like vLLM."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(asctime)s [%(filename)s:%(lineno)d] %(message)s",
                         datefmt="%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return f"(APIServer pid={os.getpid()}) " + super().format(record)


def _setup_logging(level: str = "INFO") -> None:
    try:
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        pass
    h = logging.StreamHandler(sys.stdout)
    h.setFormatter(_VllmFormatter())
    log.handlers[:] = [h]
    log.setLevel(getattr(logging, level.upper(), logging.INFO))
    log.propagate = False


def _non_default_args(ns: argparse.Namespace) -> dict:
    defaults = {}
    for a in _flags.load()["serve"]["actions"]:
        defaults[a["dest"]] = a["default"]
    out = {}
    for k, v in vars(ns).items():
        if k in ("subparser", "model") or k not in defaults:
            continue
        d = defaults[k]
        if isinstance(d, dict) and ("__dataclass__" in d or "__repr__" in d) and v is None:
            continue
        if isinstance(v, dict) and k == "kv_transfer_config":
            out[k] = v
        elif v != d:
            out[k] = v
    return out


def _startup_delay(env) -> float:
    raw = env.get("LLMSERVE_SIM_STARTUP_DELAY") or "0"
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise StartupError(f"LLMSERVE_SIM_STARTUP_DELAY must be a number, got {raw!r}") from None


def serve(ns: argparse.Namespace) -> int:
    from .engine import Engine
    from .server import SimState, activate, make_server

    env = os.environ
    level = os.environ.get("VLLM_LOGGING_LEVEL", "INFO")
    _setup_logging(level)
    delay = _startup_delay(env)
    mode = (env.get("LLMSERVE_SIM_STARTUP_MODE") or "503").lower()
    if mode not in ("503", "refuse"):
        raise StartupError("LLMSERVE_SIM_STARTUP_MODE must be '503' or 'refuse'")
    vllm_version = _flags.vllm_version()
    log.info("vLLM API server version %s", vllm_version)
    log.info("llmserve engine simulator %s (stand-in for vLLM %s; no model is loaded)",
             __version__, vllm_version)
    log.info("non-default args: %s", _non_default_args(ns))
    engine = Engine(ns, dict(env))
    stop = threading.Event()

    def _term(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)

    if ns.headless:
        log.info("Launching engine in headless mode (simulated): no API server is started.")
        while not stop.wait(0.1):
            pass
        return 0

    if engine.kv is not None:
        log.info("Creating v1 connector with name: %s and engine_id: %s",
                 engine.connector, engine.engine_id)
    state = SimState(engine, ns)
    host = ns.host
    try:
        srv = make_server(state, host, ns.port)
    except OSError as e:
        log.error("Could not bind %s:%s: %s", host or "0.0.0.0", ns.port, e)
        return 1
    scheme = "https" if (ns.ssl_certfile and ns.ssl_keyfile) else "http"
    listen = f"{scheme}://{host or '0.0.0.0'}:{ns.port}"
    if mode == "503":
        activate(srv)
    if delay:
        log.info("Simulated model loading: %.1f s (LLMSERVE_SIM_STARTUP_DELAY, mode=%s)", delay, mode)
    deadline = time.monotonic() + delay
    while not stop.is_set() and time.monotonic() < deadline:
        stop.wait(min(0.05, max(0.0, deadline - time.monotonic())))
    if stop.is_set():
        return 0
    side_ok = engine.start_side_channel()
    if mode == "refuse":
        activate(srv)
    if side_ok:
        log.info("Starting vLLM server on %s", listen)
        print(f"INFO:     Started server process [{os.getpid()}]", flush=True)
        print("INFO:     Waiting for application startup.", flush=True)
        print("INFO:     Application startup complete.", flush=True)
        state.ready.set()
    threading.Thread(target=_stats_logger, args=(engine, ns, stop), daemon=True).start()
    while not stop.wait(0.1):
        pass
    log.info("Shutting down FastAPI HTTP server.")
    print("INFO:     Shutting down", flush=True)
    srv.shutdown()
    srv.server_close()
    engine.stop()
    return 0


def _stats_logger(engine, ns, stop: threading.Event) -> None:
    if ns.disable_log_stats:
        return
    m = engine.metrics
    last = (m.prompt_tokens, m.generation_tokens, time.monotonic())
    while not stop.wait(10.0):
        p, g, t = m.prompt_tokens, m.generation_tokens, time.monotonic()
        if (p, g) != last[:2] or m.running or m.waiting:
            dt = max(t - last[2], 1e-6)
            log.info("Engine 000: Avg prompt throughput: %.1f tokens/s, Avg generation "
                     "throughput: %.1f tokens/s, Running: %d reqs, Waiting: %d reqs, GPU KV "
                     "cache usage: %.1f%%, Prefix cache hit rate: 0.0%%",
                     (p - last[0]) / dt, (g - last[1]) / dt, m.running, m.waiting,
                     m.kv_usage * 100)
        last = (p, g, t)


def vllm_main(argv: list[str] | None = None) -> int:
    """`vllm <subcommand> ...` as the container command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        ns = parse_vllm_argv(argv)
    except StartupError as e:
        print(f"ValueError: {e}", file=sys.stderr)
        return 1
    sub = getattr(ns, "subparser", None)
    if sub is None:
        print("usage: vllm [-h] [-v] {" + ",".join(_flags.load()["top_level"]["subcommands"])
              + "} ...", file=sys.stderr)
        return 0
    if sub != "serve":
        print(f"llmserve engine simulator: only `vllm serve` is implemented (got `vllm {sub}`)",
              file=sys.stderr)
        return 2
    try:
        post_validate(ns)
        return serve(ns)
    except StartupError as e:
        print(f"ValueError: {e}", file=sys.stderr)
        return 1


def module_main(argv: list[str] | None = None) -> int:
    """`python3 -m llmserve_engine_sim serve MODEL [flags]` (same argv as `vllm`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["--sim-version"],):
        print(__version__)
        return 0
    return vllm_main(argv)
