"""Simulated engine: deterministic generation, latency model, metrics, and the
NixlConnector prefill/decode contract (including a side channel that decode
instances really connect to, like NIXL's handshake listener)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import re
import socket
import socketserver
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("llmserve_engine_sim")

NIXL_CONNECTORS = ("NixlConnector", "NixlPullConnector")
REQUIRED_REMOTE_KEYS = ("remote_engine_id", "remote_request_id", "remote_host", "remote_port")
FINISH_REASONS = ("stop", "length", "abort", "error", "repetition")

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
               5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
                   50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)

VOCAB = (
    "the of and to in is that for it as with was on be by this are or from at an "
    "which but not have has had were can all their there been one more some would "
    "other about into than then them these its only also over such after most made "
    "cluster prefill decode cache token model engine request batch stream latency"
).split()

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    return _TOKEN_RE.findall(text)


def token_id(tok: str) -> int:
    return int.from_bytes(hashlib.blake2s(tok.encode(), digest_size=4).digest(), "big") % 50000


def _env_float(env: dict, name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None


# --------------------------------------------------------------------------
# run-time knobs (env at start, /admin/config later)
# --------------------------------------------------------------------------
@dataclass
class Knobs:
    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    kv_transfer_ms: float = 0.0
    failure_rate: float = 0.0
    failure_codes: list = field(default_factory=lambda: [500])
    seed: int = 0
    output_tokens: int | None = None
    mode: str = "words"  # words | echo
    kv_pull_check: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def from_env(cls, env: dict) -> "Knobs":
        k = cls(
            ttft_ms=_env_float(env, "LLMSERVE_SIM_TTFT_MS", 0.0),
            itl_ms=_env_float(env, "LLMSERVE_SIM_ITL_MS", 0.0),
            kv_transfer_ms=_env_float(env, "LLMSERVE_SIM_KV_TRANSFER_MS", 0.0),
            failure_rate=_env_float(env, "LLMSERVE_SIM_FAILURE_RATE", 0.0),
            seed=int(_env_float(env, "LLMSERVE_SIM_SEED", 0)),
            mode=env.get("LLMSERVE_SIM_MODE", "words") or "words",
            kv_pull_check=(env.get("LLMSERVE_SIM_KV_PULL", "tcp") or "tcp") != "off",
        )
        codes = env.get("LLMSERVE_SIM_FAILURE_CODES")
        if codes:
            k.failure_codes = [int(c) for c in codes.replace(" ", "").split(",") if c]
        out = env.get("LLMSERVE_SIM_OUTPUT_TOKENS")
        if out:
            k.output_tokens = int(out)
        k.validate()
        k._rng.seed(k.seed)
        return k

    def validate(self) -> None:
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError("failure_rate must be within [0, 1]")
        for name in ("ttft_ms", "itl_ms", "kv_transfer_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.mode not in ("words", "echo"):
            raise ValueError("mode must be 'words' or 'echo'")
        for c in self.failure_codes:
            if not 400 <= int(c) <= 599:
                raise ValueError("failure_codes must be HTTP error codes")

    PUBLIC = ("ttft_ms", "itl_ms", "kv_transfer_ms", "failure_rate", "failure_codes", "seed",
              "output_tokens", "mode", "kv_pull_check")

    def as_dict(self) -> dict:
        with self._lock:
            return {k: getattr(self, k) for k in self.PUBLIC}

    def update(self, changes: dict) -> dict:
        unknown = [k for k in changes if k not in self.PUBLIC]
        if unknown:
            raise ValueError(f"unknown knob(s): {', '.join(unknown)}")
        with self._lock:
            old = {k: getattr(self, k) for k in self.PUBLIC}
            try:
                for k, v in changes.items():
                    if k in ("ttft_ms", "itl_ms", "kv_transfer_ms", "failure_rate"):
                        v = float(v)
                    elif k == "failure_codes":
                        v = [int(x) for x in (v if isinstance(v, list) else [v])]
                    elif k == "seed":
                        v = int(v)
                    elif k == "output_tokens":
                        v = None if v is None else int(v)
                    elif k == "kv_pull_check":
                        v = bool(v)
                    setattr(self, k, v)
                self.validate()
            except (ValueError, TypeError):
                for k, v in old.items():
                    setattr(self, k, v)
                raise
            if "seed" in changes:
                self._rng.seed(self.seed)
        return self.as_dict()

    def draw_failure(self) -> int | None:
        with self._lock:
            if self.failure_rate <= 0:
                return None
            if self._rng.random() < self.failure_rate:
                return int(self._rng.choice(self.failure_codes))
        return None


# --------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------
class Histogram:
    def __init__(self, buckets: tuple):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        for i, b in enumerate(self.buckets):
            if v <= b:
                self.counts[i] += 1
        self.sum += v
        self.count += 1


class Metrics:
    def __init__(self, model_name: str, engine: str = "0"):
        self.model_name = model_name
        self.engine = engine
        self.lock = threading.Lock()
        self.running = 0
        self.waiting = 0
        self.kv_usage = 0.0
        self.prompt_tokens = 0
        # vLLM's PromptTokenStats: where each prompt token's KV came from
        self.prompt_tokens_by_source = {"local_compute": 0, "local_cache_hit": 0, "external_kv_transfer": 0}
        self.generation_tokens = 0
        self.success = {r: 0 for r in FINISH_REASONS}
        self.ttft = Histogram(TTFT_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)
        self.e2e = Histogram(LATENCY_BUCKETS)
        self.queue = Histogram(LATENCY_BUCKETS)
        self.sim = {
            "kv_transfers_total": 0,
            "kv_transfer_failures_total": 0,
            "invalid_kv_transfer_params_total": 0,
            "kv_transfer_params_ignored_total": 0,
            "remote_decode_prefills_total": 0,
            "injected_failures_total": 0,
        }
        self.prefills_held = 0

    def _labels(self, extra: dict | None = None) -> str:
        lab = {"engine": self.engine, "model_name": self.model_name}
        if extra:
            lab.update(extra)
        return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(lab.items())) + "}"

    def render(self) -> str:
        out: list[str] = []
        with self.lock:
            def gauge(name, help_, value):
                out.extend([f"# HELP {name} {help_}", f"# TYPE {name} gauge",
                            f"{name}{self._labels()} {float(value)}"])

            def counter(name, help_, value, extra=None):
                out.extend([f"# HELP {name} {help_}", f"# TYPE {name} counter"])
                if isinstance(value, dict):
                    for lv, v in value.items():
                        out.append(f"{name}{self._labels({extra: lv})} {float(v)}")
                else:
                    out.append(f"{name}{self._labels()} {float(value)}")

            def hist(name, help_, h: Histogram):
                out.extend([f"# HELP {name} {help_}", f"# TYPE {name} histogram"])
                for b, c in zip(h.buckets, h.counts):
                    out.append(f"{name}_bucket{self._labels({'le': _fmt_le(b)})} {float(c)}")
                out.append(f"{name}_bucket{self._labels({'le': '+Inf'})} {float(h.count)}")
                out.append(f"{name}_count{self._labels()} {float(h.count)}")
                out.append(f"{name}_sum{self._labels()} {float(h.sum)}")

            gauge("vllm:num_requests_running", "Number of requests in model execution batches.",
                  self.running)
            gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
                  self.waiting)
            gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
                  self.kv_usage)
            counter("vllm:prompt_tokens_total", "Number of prefill tokens processed.",
                    self.prompt_tokens)
            counter("vllm:prompt_tokens_by_source_total", "Number of prompt tokens by source.",
                    self.prompt_tokens_by_source, "source")
            counter("vllm:generation_tokens_total", "Number of generation tokens processed.",
                    self.generation_tokens)
            counter("vllm:request_success_total", "Count of successfully processed requests.",
                    self.success, "finished_reason")
            hist("vllm:time_to_first_token_seconds",
                 "Histogram of time to first token in seconds.", self.ttft)
            hist("vllm:inter_token_latency_seconds",
                 "Histogram of inter-token latency in seconds.", self.itl)
            hist("vllm:e2e_request_latency_seconds",
                 "Histogram of e2e request latency in seconds.", self.e2e)
            hist("vllm:request_queue_time_seconds",
                 "Histogram of time spent in WAITING phase for request.", self.queue)
            helps = {
                "kv_transfers_total": "Remote prefills whose KV blocks were pulled (simulated NIXL read).",
                "kv_transfer_failures_total": "Remote KV pulls that failed (side channel unreachable, engine id mismatch).",
                "invalid_kv_transfer_params_total": "Decode requests with do_remote_prefill but incomplete params (vLLM: 'Got invalid KVTransferParams').",
                "kv_transfer_params_ignored_total": "Requests carrying kv_transfer_params that the engine ignored (no KV connector, or a connector the simulator does not emulate).",
                "remote_decode_prefills_total": "Prefill requests (do_remote_decode=true) that returned kv_transfer_params.",
                "injected_failures_total": "Requests failed on purpose (failure rate or X-Return-Error).",
            }
            for k, v in self.sim.items():
                counter(f"llmserve_sim:{k}", helps[k], v)
            gauge("llmserve_sim:prefills_held",
                  "Prefilled requests whose KV blocks wait for a decoder to pull them.",
                  self.prefills_held)
        return "\n".join(out) + "\n"


def _esc(v: Any) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt_le(b: float) -> str:
    return repr(float(b))


# --------------------------------------------------------------------------
# NIXL side channel (emulated handshake listener)
# --------------------------------------------------------------------------
class _SideChannelHandler(socketserver.StreamRequestHandler):
    timeout = 5

    def handle(self) -> None:
        engine: "Engine" = self.server.engine  # type: ignore[attr-defined]
        try:
            line = self.rfile.readline(65536)
            msg = json.loads(line or b"{}")
        except (OSError, ValueError):
            return
        reply: dict[str, Any] = {"engine_id": engine.engine_id, "ok": True}
        if msg.get("op") == "pull":
            reply["known_request"] = engine.release_prefill(str(msg.get("request_id")))
        try:
            self.wfile.write((json.dumps(reply) + "\n").encode())
        except OSError:
            pass


class _SideChannelServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


# --------------------------------------------------------------------------
# the engine
# --------------------------------------------------------------------------
class RequestFailed(Exception):
    def __init__(self, status: int, message: str, err_type: str, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.err_type = err_type
        self.param = param


class Engine:
    def __init__(self, ns, env: dict | None = None):
        env = dict(os.environ if env is None else env)
        self.env = env
        self.ns = ns
        self.knobs = Knobs.from_env(env)
        self.model_path = ns.model
        self.served_names = list(ns.served_model_name or [ns.model])
        self.model_name = self.served_names[0]
        mml = ns.max_model_len
        default_len = int(_env_float(env, "LLMSERVE_SIM_MAX_MODEL_LEN", 4096))
        self.max_model_len = default_len if mml in (None, -1) else int(mml)
        self.max_num_seqs = ns.max_num_seqs or 256
        self.block_size = ns.block_size or 16
        self.kv = ns.kv_transfer_config
        self.dp_rank = (ns.data_parallel_rank if ns.data_parallel_rank is not None
                        else (ns.data_parallel_start_rank or 0))
        self.tp_size = max(ns.tensor_parallel_size or 1, ns.decode_context_parallel_size or 1)
        self.pp_size = ns.pipeline_parallel_size or 1
        self.dcp_size = ns.decode_context_parallel_size or 1
        self.engine_id = (self.kv or {}).get("engine_id") or str(uuid.uuid4())
        self.connector = (self.kv or {}).get("kv_connector")
        self.nixl = self._is_nixl()
        self.side_host = env.get("VLLM_NIXL_SIDE_CHANNEL_HOST") or "localhost"
        self.side_port = int(env.get("VLLM_NIXL_SIDE_CHANNEL_PORT") or 5600) + int(self.dp_rank)
        extra = (self.kv or {}).get("kv_connector_extra_config") or {}
        self.kv_lease = float(extra.get("kv_lease_duration", 30))
        self.abort_timeout = float(env.get("VLLM_NIXL_ABORT_REQUEST_TIMEOUT") or 480)
        self.failure_policy = (self.kv or {}).get("kv_load_failure_policy", "fail")
        # ExampleConnector (vLLM's shared-storage example): KV saved to and loaded from a directory
        self.shared_path = (extra.get("shared_storage_path") or "/tmp") \
            if self.connector in ("ExampleConnector", "SharedStorageConnector") else None
        self.kv_role = (self.kv or {}).get("kv_role")
        self.metrics = Metrics(self.model_name, "0")
        self._cv = threading.Condition()
        self._running = 0
        self._held: dict[str, float] = {}
        self._held_lock = threading.Lock()
        self._next_block = 1
        self._side_server: _SideChannelServer | None = None
        self.side_channel_error: str | None = None
        self.server_load = 0
        self.last_request_kv_transfer_params: dict | None = None
        self.last_response_kv_transfer_params: dict | None = None

    def _is_nixl(self) -> bool:
        if self.kv is None:
            return False
        if self.connector in NIXL_CONNECTORS:
            return True
        if self.connector == "MultiConnector":
            subs = (self.kv.get("kv_connector_extra_config") or {}).get("connectors") or []
            return any(isinstance(s, dict) and s.get("kv_connector") in NIXL_CONNECTORS
                       for s in subs)
        return False

    # ---------------- side channel ----------------
    def start_side_channel(self) -> bool:
        """Bind the emulated NIXL handshake listener. vLLM binds
        tcp://VLLM_NIXL_SIDE_CHANNEL_HOST:(PORT+dp_rank) and waits for it; if the
        bind fails the engine never becomes ready. Returns False on failure."""
        if not self.nixl:
            return True
        host = self.side_host
        bind_host = "127.0.0.1" if host == "localhost" else host
        try:
            srv = _SideChannelServer((bind_host, self.side_port), _SideChannelHandler)
        except OSError as e:
            self.side_channel_error = f"{e}"
            log.error(
                "NIXL handshake listener could not bind tcp://%s:%d: %s. The engine will "
                "not become ready (vLLM waits forever for this listener).",
                host, self.side_port, e,
            )
            return False
        srv.engine = self  # type: ignore[attr-defined]
        self._side_server = srv
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1},
                         name="nixl_handshake_listener", daemon=True).start()
        log.info("Initializing NIXL Scheduler %s", self.engine_id)
        log.info("NIXL side channel listening on tcp://%s:%d (simulated)", host, self.side_port)
        threading.Thread(target=self._expire_loop, daemon=True).start()
        return True

    def stop(self) -> None:
        if self._side_server is not None:
            self._side_server.shutdown()
            self._side_server.server_close()

    def _expire_loop(self) -> None:
        while True:
            time.sleep(1.0)
            now = time.monotonic()
            with self._held_lock:
                expired = [r for r, t in self._held.items() if t <= now]
                for r in expired:
                    del self._held[r]
                self.metrics.prefills_held = len(self._held)
            for r in expired:
                log.warning("Releasing expired KV blocks for request %s which were retrieved "
                            "by 0 decode worker(s) within %.0f seconds.", r, self.kv_lease)

    def hold_prefill(self, request_id: str) -> None:
        with self._held_lock:
            self._held[request_id] = time.monotonic() + max(self.kv_lease, 1.0)
            self.metrics.prefills_held = len(self._held)

    def release_prefill(self, request_id: str) -> bool:
        with self._held_lock:
            known = self._held.pop(request_id, None) is not None
            self.metrics.prefills_held = len(self._held)
        return known

    def _alloc_blocks(self, n_tokens: int) -> list[int]:
        n = max(1, math.ceil(n_tokens / self.block_size)) if n_tokens > 0 else 0
        with self._held_lock:
            start = self._next_block
            self._next_block += n
            if self._next_block > 1_000_000:
                self._next_block = 1
        return list(range(start, start + n))

    # ---------------- scheduling ----------------
    def admit(self) -> float:
        t0 = time.monotonic()
        with self._cv:
            self.metrics.waiting += 1
            while self._running >= self.max_num_seqs:
                self._cv.wait()
            self.metrics.waiting -= 1
            self._running += 1
            with self.metrics.lock:
                self.metrics.running = self._running
                self.metrics.kv_usage = min(1.0, self._running / self.max_num_seqs)
        return time.monotonic() - t0

    def release(self) -> None:
        with self._cv:
            self._running -= 1
            with self.metrics.lock:
                self.metrics.running = self._running
                self.metrics.kv_usage = min(1.0, self._running / self.max_num_seqs)
            self._cv.notify()

    # ---------------- generation ----------------
    def plan_output(self, key_text: str, max_tokens: int, min_tokens: int, ignore_eos: bool,
                    seed: int | None, echo_source: str) -> tuple[list[str], str]:
        """Deterministic output for a prompt: `words` mode draws from a fixed
        vocabulary seeded by the prompt; `echo` mode repeats the prompt. The
        natural length is 8..31 tokens (or LLMSERVE_SIM_OUTPUT_TOKENS); it is
        capped by max_tokens (finish_reason "length") and raised to min_tokens."""
        h = hashlib.sha256(f"{self.model_name}\x00{key_text}\x00{seed}".encode()).digest()
        knobs = self.knobs
        src: list[str] = []
        if knobs.mode == "echo":
            src = tokenize(echo_source) or ["."]
            natural = len(src)
        else:
            natural = knobs.output_tokens if knobs.output_tokens else 8 + h[0] % 24
        natural = max(natural, min_tokens)
        if ignore_eos:
            natural = max(natural, max_tokens)
        n = min(natural, max_tokens)
        finish = "length" if natural >= max_tokens else "stop"
        if knobs.mode == "echo":
            return [src[i % len(src)] for i in range(n)], finish
        rng = random.Random(h)
        return [rng.choice(VOCAB) for _ in range(n)], finish

    def prefill_response_params(self, request_id: str, n_prompt: int, n_out: int) -> dict:
        """What NixlConnector.request_finished returns on a prefill (P) node."""
        num_computed = n_prompt + max(n_out, 1) - 1
        blocks = self._alloc_blocks(num_computed)
        delay_free = len(blocks) > 0
        if delay_free:
            self.hold_prefill(request_id)
        return {
            "do_remote_prefill": True,
            "do_remote_decode": False,
            "remote_block_ids": [blocks],
            "remote_engine_id": self.engine_id,
            "remote_request_id": request_id,
            "remote_host": self.side_host,
            "remote_port": self.side_port,
            "tp_size": self.tp_size,
            "dcp_size": self.dcp_size,
            "pp_size": self.pp_size,
            "remote_num_tokens": num_computed if delay_free else 0,
            "remote_blocks_expiry_time": None,
            "transfer_mode": "pull",
            "remote_prefill_cached_tokens": 0,
        }

    def pull_kv(self, params: dict, request_id: str) -> bool:
        """Decode (D) side: read the remote blocks; True when they arrived. Raises RequestFailed per
        kv_load_failure_policy=fail; logs and recomputes (False) with 'recompute'."""
        host = params.get("remote_host")
        port = params.get("remote_port")
        remote_engine = params.get("remote_engine_id")
        remote_req = params.get("remote_request_id")
        blocks = params.get("remote_block_ids") or []
        n_blocks = sum(len(g) for g in blocks if isinstance(g, list)) if blocks and isinstance(blocks[0], list) else len(blocks)
        delay = self.knobs.kv_transfer_ms / 1000.0
        err = None
        if self.knobs.kv_pull_check:
            try:
                with socket.create_connection((str(host), int(port)), timeout=5) as s:
                    s.sendall((json.dumps({"op": "pull", "engine_id": remote_engine,
                                           "request_id": remote_req,
                                           "from_engine": self.engine_id}) + "\n").encode())
                    f = s.makefile("rb")
                    reply = json.loads(f.readline() or b"{}")
                if reply.get("engine_id") != remote_engine:
                    err = (f"Remote NIXL agent engine ID mismatch. Expected {remote_engine},"
                           f"received {reply.get('engine_id')}.")
                elif not reply.get("known_request"):
                    log.warning("KV pull for request %s: prefill engine %s holds no blocks for "
                                "remote_request_id %s (already read or expired)",
                                request_id, remote_engine, remote_req)
            except (OSError, ValueError, TypeError) as e:
                err = f"NIXL handshake with {host}:{port} failed: {e}"
        if delay:
            time.sleep(delay)
        if err:
            with self.metrics.lock:
                self.metrics.sim["kv_transfer_failures_total"] += 1
            if self.failure_policy == "recompute":
                log.warning("KV load failed for request %s (%s); recomputing locally "
                            "(kv_load_failure_policy=recompute)", request_id, err)
                return False
            log.error("KV load failed for request %s: %s (kv_load_failure_policy=fail)",
                      request_id, err)
            raise RequestFailed(500, "Internal server error", "InternalServerError")
        with self.metrics.lock:
            self.metrics.sim["kv_transfers_total"] += 1
        log.info("KV pull (simulated NIXL read): request=%s remote_engine_id=%s "
                 "remote=%s:%s remote_request_id=%s blocks=%d", request_id, remote_engine,
                 host, port, remote_req, n_blocks)
        return True

    def shared_kv(self, prompt_ids: list[int]) -> bool:
        """ExampleConnector: True when the KV of the prompt's full blocks (but its last token) is in the shared
        directory, as a prefill engine left it there (a consumer loads it); a producer saves what it lacks. As
        vLLM's, the folder is named by a hash of the tokens."""
        n = (len(prompt_ids) - 1) // self.block_size * self.block_size
        if not n:
            return False
        folder = os.path.join(self.shared_path, hashlib.sha256(json.dumps(prompt_ids[:n]).encode()).hexdigest())
        if self.kv_role in ("kv_consumer", "kv_both") and os.path.exists(os.path.join(folder, "kv.json")):
            log.info("ExampleConnector: loaded the KV of %d tokens from %s", n, folder)
            return True
        if self.kv_role in ("kv_producer", "kv_both"):
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "kv.json"), "w") as f:
                json.dump({"tokens": n, "engine_id": self.engine_id}, f)
        return False

    def classify_kv_params(self, params: Any, request_id: str) -> str:
        """Return 'none' | 'ignored' | 'prefill' | 'decode' | 'invalid'."""
        if not params:
            return "none"
        if self.kv is None or not self.nixl:
            with self.metrics.lock:
                self.metrics.sim["kv_transfer_params_ignored_total"] += 1
            if self.kv is not None:
                log.warning("kv_transfer_params ignored: connector %s is not emulated by the "
                            "simulator", self.connector)
            return "ignored"
        if params.get("do_remote_decode"):
            return "prefill"
        if params.get("do_remote_prefill"):
            if params.get("remote_block_ids") and all(k in params for k in REQUIRED_REMOTE_KEYS):
                return "decode"
            with self.metrics.lock:
                self.metrics.sim["invalid_kv_transfer_params_total"] += 1
            log.warning("Got invalid KVTransferParams: %s. This request will not utilize "
                        "KVTransfer", params)
            return "invalid"
        return "none"
