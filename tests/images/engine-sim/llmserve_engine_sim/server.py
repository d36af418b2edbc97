"""HTTP front end of the simulator: vLLM 0.32's OpenAI-compatible routes,
response shapes, error JSON and /metrics, on http.server (stdlib only)."""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import __version__
from . import flags as _flags
from .engine import Engine, RequestFailed, tokenize, token_id
from .kvconfig import _validate_field

log = logging.getLogger("llmserve_engine_sim")

PYDANTIC_URL = "https://errors.pydantic.dev/2.14/v/"
GUARDED_PREFIX = ("/v1", "/v2", "/inference", "/cohere")

ROUTES = {
    "/health": ("GET",),
    "/ping": ("GET", "POST"),
    "/load": ("GET",),
    "/version": ("GET",),
    "/v1/models": ("GET",),
    "/v1/completions": ("POST",),
    "/v1/chat/completions": ("POST",),
    "/metrics": ("GET",),
    "/tokenize": ("POST",),
    "/detokenize": ("POST",),
    "/v1/completions/render": ("POST",),
    "/v1/chat/completions/render": ("POST",),
    "/admin/config": ("GET", "POST"),
}

ERR_TYPES = {
    400: "BadRequestError",
    401: "Unauthorized",
    404: "NotFoundError",
    422: "UnprocessableEntityError",
    500: "InternalServerError",
    501: "NotImplementedError",
    503: "ServiceUnavailableError",
}

COMPLETION_FIELDS = {
    "model": {"kind": "str", "nullable": True},
    "max_tokens": {"kind": "int", "nullable": True},
    "n": {"kind": "int", "nullable": False},
    "stream": {"kind": "bool", "nullable": True},
    "echo": {"kind": "bool", "nullable": True},
    "stream_options": {"kind": "dict", "nullable": True},
    "kv_transfer_params": {"kind": "dict", "nullable": True},
    "min_tokens": {"kind": "int", "nullable": False},
    "ignore_eos": {"kind": "bool", "nullable": False},
    "seed": {"kind": "int", "nullable": True},
    "temperature": {"kind": "float", "nullable": True},
    "top_p": {"kind": "float", "nullable": True},
    "return_token_ids": {"kind": "bool", "nullable": True},
}
CHAT_FIELDS = dict(COMPLETION_FIELDS, max_completion_tokens={"kind": "int", "nullable": True},
                   echo={"kind": "bool", "nullable": False})


def random_uuid() -> str:
    return uuid.uuid4().hex[:16]


def _summarize(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:200] + "...[truncated]"
    if isinstance(value, (list, tuple, dict)):
        return f"<{type(value).__name__} of {len(value)} items>"
    return str(value)


def validation_error(etype: str, loc: str, msg: str, inp: Any) -> RequestFailed:
    """RequestValidationError as vLLM renders it (type 'Bad Request')."""
    err = {"type": etype, "loc": loc, "msg": msg, "input": _summarize(inp),
           "url": PYDANTIC_URL + etype}
    return RequestFailed(400, f"1 validation error:\n  {err}", "Bad Request", param=loc)


def vllm_validation_error(message: str, parameter: str | None = None, value: Any = None) -> RequestFailed:
    extras = []
    if parameter is not None:
        extras.append(f"parameter={parameter}")
    if value is not None:
        extras.append(f"value={value}")
    text = f"{message} ({', '.join(extras)})" if extras else message
    return RequestFailed(400, text, "BadRequestError", param=parameter)


def _lax_float(name: str, value: Any) -> None:
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return
    if isinstance(value, str):
        try:
            float(value)
            return
        except ValueError:
            raise validation_error("float_parsing", f"body.{name}",
                                   "Input should be a valid number, unable to parse string as a number",
                                   value) from None
    raise validation_error("float_type", f"body.{name}", "Input should be a valid number", value)


def check_fields(body: dict, table: dict) -> dict:
    out = dict(body)
    for name, spec in table.items():
        if name not in body:
            continue
        if spec["kind"] == "float":
            _lax_float(name, body[name])
            continue
        v, e = _validate_field(name, spec, body[name])
        if e:
            raise validation_error(e["type"], f"body.{name}", e["msg"], body[name])
        out[name] = v
    so = out.get("stream_options")
    if isinstance(so, dict):
        for k in ("include_usage", "continuous_usage_stats"):
            if k in so:
                v, e = _validate_field(k, {"kind": "bool", "nullable": True}, so[k])
                if e:
                    raise validation_error(e["type"], f"body.stream_options.{k}", e["msg"], so[k])
    return out


# --------------------------------------------------------------------------
# prompt handling
# --------------------------------------------------------------------------
def completion_prompts(prompt: Any) -> list[tuple[str, list[int]]]:
    """Return [(text, token_ids)] for each prompt of a /v1/completions request."""
    def is_int_list(x):
        return isinstance(x, list) and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in x)

    if isinstance(prompt, str):
        toks = tokenize(prompt)
        return [(prompt, [token_id(t) for t in toks])]
    if is_int_list(prompt) and prompt:
        return [(" ".join(str(i) for i in prompt), list(prompt))]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return [(p, [token_id(t) for t in tokenize(p)]) for p in prompt]
    if isinstance(prompt, list) and prompt and all(is_int_list(p) and p for p in prompt):
        return [(" ".join(str(i) for i in p), list(p)) for p in prompt]
    raise validation_error("string_type", "body.prompt", "Input should be a valid string", prompt)


def chat_prompt(messages: Any) -> tuple[str, list[int], str]:
    if not isinstance(messages, list):
        raise validation_error("list_type", "body.messages", "Input should be a valid list", messages)
    parts = []
    last_user = ""
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise validation_error("model_type", f"body.messages.{i}",
                                   "Input should be a valid dictionary or object", m)
        role = m.get("role")
        if not isinstance(role, str):
            raise validation_error("missing", f"body.messages.{i}.role", "Field required", m)
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        content = "" if content is None else str(content)
        if role == "user":
            last_user = content
        parts.append(f"<|{role}|>\n{content}\n")
    parts.append("<|assistant|>\n")
    text = "".join(parts)
    return text, [token_id(t) for t in tokenize(text)], last_user


# --------------------------------------------------------------------------
# server
# --------------------------------------------------------------------------
class SimState:
    def __init__(self, engine: Engine, ns):
        self.engine = engine
        self.ns = ns
        self.ready = threading.Event()
        keys = list(ns.api_key or [])
        if not keys and os.environ.get("VLLM_API_KEY"):
            keys = [os.environ["VLLM_API_KEY"]]
        self.api_keys = keys
        self.access_log = not ns.disable_uvicorn_access_log and ns.uvicorn_log_level in ("trace", "debug", "info")
        self.log_requests = bool(ns.enable_log_requests)
        self.load_tracking = bool(ns.enable_server_load_tracking)
        self.request_id_headers = bool(ns.enable_request_id_headers)
        self.force_usage = bool(ns.enable_force_include_usage)
        self.vllm_version = _flags.vllm_version()


class SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
    state: SimState


class SimHTTPServer6(SimHTTPServer):
    address_family = socket.AF_INET6


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SimHTTPServer

    # ------------- plumbing -------------
    def version_string(self) -> str:
        return "uvicorn"

    def log_message(self, fmt: str, *args) -> None:  # silence default logging
        pass

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        st = self.server.state
        if not st.access_log:
            return
        try:
            phrase = HTTPStatus(int(code)).phrase
        except (ValueError, TypeError):
            phrase = ""
        host, port = self.client_address[:2]
        print(f'INFO:     {host}:{port} - "{self.requestline}" {code} {phrase}', flush=True)

    @property
    def st(self) -> SimState:
        return self.server.state

    def _send(self, status: int, body: bytes, ctype: str = "application/json",
              headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _error(self, status: int, message: str, err_type: str | None = None,
               param: str | None = None, headers: dict | None = None) -> None:
        self._json(status, error_body(status, message, err_type, param), headers=headers)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            chunks = []
            while True:
                line = self.rfile.readline()
                size = int(line.strip().split(b";")[0] or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    # ------------- dispatch -------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        try:
            body = self._read_body() if method in ("POST", "PUT") else b""
        except (ValueError, OSError):
            self.close_connection = True
            return
        if path not in ROUTES:
            self._json(404, {"detail": "Not Found"})
            return
        if method not in ROUTES[path]:
            self._json(405, {"detail": "Method Not Allowed"}, headers={"allow": ", ".join(ROUTES[path])})
            return
        if self.st.api_keys and path.startswith(GUARDED_PREFIX) and not self._authorized():
            self._json(401, {"error": "Unauthorized"})
            return
        if path == "/admin/config":
            self._admin(method, body)
            return
        if path == "/metrics":
            self._send(200, self.st.engine.metrics.render().encode(),
                       "text/plain; version=0.0.4; charset=utf-8")
            return
        if not self.st.ready.is_set():
            if path in ("/health", "/ping"):
                self._send(503, b"", "application/json")
            else:
                self._error(503, "The server is starting up (simulated model loading).",
                            "ServiceUnavailableError")
            return
        if path in ("/health", "/ping"):
            self._send(200, b"", "application/json")
        elif path == "/load":
            self._json(200, {"server_load": self.st.engine.server_load})
        elif path == "/version":
            self._json(200, {"version": self.st.vllm_version})
        elif path == "/v1/models":
            self._json(200, self._models())
        elif path == "/v1/completions":
            self._generate(body, chat=False)
        elif path == "/v1/chat/completions":
            self._generate(body, chat=True)
        else:
            self._aux(path, body)

    def _aux(self, path: str, raw: bytes) -> None:
        """/tokenize, /detokenize and the render endpoints (vllm-router calls
        /v1/*/render and /tokenize to get token ids for cache-aware routing)."""
        eng = self.st.engine
        try:
            body = self._json_object(raw)
            model = body.get("model")
            if model and model not in eng.served_names:
                raise RequestFailed(
                    404, f"The model `{model}` does not exist. Valid aliases: {', '.join(eng.served_names)}.",
                    "NotFoundError", param="model")
            if path == "/detokenize":
                toks = body.get("tokens")
                if not isinstance(toks, list):
                    raise validation_error("missing", "body.tokens", "Field required", body)
                self._json(200, {"prompt": " ".join(f"<{t}>" for t in toks)})
                return
            if "messages" in body:
                text, ids, _ = chat_prompt(body["messages"])
                prompts = [(text, ids)]
            else:
                if body.get("prompt") in (None, ""):
                    raise vllm_validation_error(
                        "Either prompt or prompt_embeds must be provided and non-empty.", "prompt")
                prompts = completion_prompts(body.get("prompt"))
            if path == "/tokenize":
                ids = prompts[0][1]
                self._json(200, {"count": len(ids), "max_model_len": eng.max_model_len,
                                 "tokens": ids, "token_strs": None})
                return
            items = []
            for i, (_text, ids) in enumerate(prompts):
                items.append({
                    "request_id": f"{random_uuid()}", "token_ids": ids, "token_offsets": None,
                    "features": None, "content_parts": None,
                    "sampling_params": {"max_tokens": body.get("max_tokens") or body.get("max_completion_tokens"),
                                        "n": body.get("n") or 1},
                    "model": model, "reasoning_ended": None, "reasoning_parser_kwargs": None,
                    "return_token_ids": None, "output_mode": "tokens",
                    "stream": bool(body.get("stream")),
                    "stream_options": body.get("stream_options") if body.get("stream") else None,
                    "cache_salt": None, "priority": 0,
                    "kv_transfer_params": body.get("kv_transfer_params"), "ec_transfer_params": None})
            self._json(200, items if path == "/v1/completions/render" else items[0])
        except RequestFailed as e:
            self._error(e.status, e.message, e.err_type, e.param)

    def _authorized(self) -> bool:
        auth = self.headers.get("authorization") or ""
        scheme, _, param = auth.partition(" ")
        return scheme.lower() == "bearer" and param in self.st.api_keys

    def _admin(self, method: str, body: bytes) -> None:
        eng = self.st.engine
        if method == "POST":
            try:
                changes = json.loads(body or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("body must be a JSON object")
                eng.knobs.update(changes)
            except (ValueError, TypeError) as e:
                self._error(400, str(e))
                return
            log.info("Simulator knobs updated: %s", changes)
        self._json(200, {
            **eng.knobs.as_dict(),
            "ready": self.st.ready.is_set(),
            "engine_id": eng.engine_id,
            "kv_connector": eng.connector,
            "side_channel": f"{eng.side_host}:{eng.side_port}" if eng.nixl else None,
            "side_channel_error": eng.side_channel_error,
            "last_request_kv_transfer_params": eng.last_request_kv_transfer_params,
            "last_response_kv_transfer_params": eng.last_response_kv_transfer_params,
            "sim_version": __version__,
            "vllm_version": self.st.vllm_version,
        })

    def _models(self) -> dict:
        eng = self.st.engine
        now = int(time.time())
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": now, "owned_by": "vllm",
             "root": eng.model_path, "parent": None, "max_model_len": eng.max_model_len,
             "permission": [{
                 "id": f"modelperm-{random_uuid()}", "object": "model_permission",
                 "created": now, "allow_create_engine": False, "allow_sampling": True,
                 "allow_logprobs": True, "allow_search_indices": False, "allow_view": True,
                 "allow_fine_tuning": False, "organization": "*", "group": None,
                 "is_blocking": False}]}
            for name in eng.served_names]}

    # ------------- generation -------------
    def _generate(self, raw: bytes, chat: bool) -> None:
        eng = self.st.engine
        t_arrival = time.monotonic()
        forced = self.headers.get("x-return-error")
        if forced:
            try:
                code = int(forced)
            except ValueError:
                code = 500
            with eng.metrics.lock:
                eng.metrics.sim["injected_failures_total"] += 1
            self._error(code, f"Injected error (X-Return-Error: {code})", ERR_TYPES.get(code))
            return
        try:
            req = self._parse_request(raw, chat)
        except RequestFailed as e:
            self._error(e.status, e.message, e.err_type, e.param)
            return
        if req["kvp"] is not None:
            eng.last_request_kv_transfer_params = req["kvp"]
        code = eng.knobs.draw_failure()
        if code is not None:
            with eng.metrics.lock:
                eng.metrics.sim["injected_failures_total"] += 1
            log.info("Injecting failure %d for request %s", code, req["request_id"])
            self._error(code, "Injected failure (LLMSERVE_SIM_FAILURE_RATE)", ERR_TYPES.get(code))
            return
        if self.st.log_requests:
            log.info("Received request %s: params: %s, prompt: %r", req["request_id"],
                     {k: req["body"].get(k) for k in ("max_tokens", "stream", "kv_transfer_params")},
                     req["prompts"][0][0][:200])
        if self.st.load_tracking:
            with eng.metrics.lock:
                eng.server_load += 1
        try:
            if req["stream"]:
                self._run_stream(req, chat, t_arrival)
            else:
                self._run_plain(req, chat, t_arrival)
        finally:
            if self.st.load_tracking:
                with eng.metrics.lock:
                    eng.server_load -= 1

    def _json_object(self, raw: bytes) -> dict:
        """The request body as vLLM's FastAPI layer accepts it: JSON, an object; its errors otherwise."""
        ctype = (self.headers.get("content-type") or "").lower().split(";", 1)[0].strip()
        if ctype != "application/json":
            raise RequestFailed(
                400, "1 validation error:\n  Unsupported Media Type: Only 'application/json' is allowed",
                "Bad Request")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise validation_error("json_invalid", "body.0", "JSON decode error", str(e)) from None
        if not isinstance(body, dict):
            raise validation_error("model_attributes_type", "body",
                                   "Input should be a valid dictionary or object to extract fields from",
                                   body)
        return body

    def _parse_request(self, raw: bytes, chat: bool) -> dict:
        eng = self.st.engine
        body = self._json_object(raw)
        # model_validator(mode="before") checks
        if body.get("stream_options") and not body.get("stream"):
            raise vllm_validation_error("Stream options can only be defined when `stream=True`.",
                                        "stream_options")
        if chat:
            if "messages" not in body:
                raise validation_error("missing", "body.messages", "Field required", body)
        else:
            p = body.get("prompt")
            if (p is None or p == "") and not body.get("prompt_embeds"):
                raise vllm_validation_error(
                    "Either prompt or prompt_embeds must be provided and non-empty.", "prompt")
        body = check_fields(body, CHAT_FIELDS if chat else COMPLETION_FIELDS)
        kvp = body.get("kv_transfer_params")
        # model check (404)
        model = body.get("model")
        if model and model not in eng.served_names:
            raise RequestFailed(
                404, f"The model `{model}` does not exist. Valid aliases: {', '.join(eng.served_names)}.",
                "NotFoundError", param="model")
        base_id = self.headers.get("x-request-id") or random_uuid()
        if chat:
            text, ids, last_user = chat_prompt(body["messages"])
            prompts = [(text, ids)]
            echo_src = [last_user]
            request_id = f"chatcmpl-{base_id}"
            req_max = body.get("max_completion_tokens") or body.get("max_tokens")
        else:
            prompts = completion_prompts(body["prompt"])
            echo_src = [p[0] for p in prompts]
            request_id = f"cmpl-{base_id}"
            req_max = body.get("max_tokens")
            if req_max is None:
                req_max = 16
        max_tokens_list = []
        for _text, ids in prompts:
            n = len(ids)
            if n > eng.max_model_len:
                raise vllm_validation_error(
                    f"This model's maximum context length is {eng.max_model_len} tokens. However, "
                    f"your prompt contains {n} input tokens, which exceeds this limit even without "
                    "any output tokens. Please reduce the length of the input prompt.",
                    "input_tokens", n)
            room = eng.max_model_len - n
            mt = room if req_max is None else min(req_max, room)
            if mt < 1:
                raise vllm_validation_error(f"max_tokens must be at least 1, got {mt}.", "max_tokens", mt)
            max_tokens_list.append(mt)
        n_choices = body.get("n") or 1
        if n_choices < 1:
            raise vllm_validation_error(f"n must be at least 1, got {n_choices}.", "n", n_choices)
        so = body.get("stream_options") or {}
        return {
            "body": body,
            "request_id": request_id,
            "prompts": prompts,
            "echo_src": echo_src,
            "max_tokens": max_tokens_list,
            "n": n_choices,
            "stream": bool(body.get("stream")),
            "include_usage": bool(so.get("include_usage")) or self.st.force_usage,
            "continuous_usage": bool(so.get("continuous_usage_stats")),
            "kvp": kvp,
            "model_name": eng.model_name if not model else model,
            "created": int(time.time()),
            "echo": bool(body.get("echo")) and not chat,
            "return_token_ids": bool(body.get("return_token_ids")),
        }

    def _plan(self, req: dict) -> list[dict]:
        """One entry per (prompt, choice) with its output tokens."""
        eng = self.st.engine
        body = req["body"]
        subs = []
        for pi, (text, ids) in enumerate(req["prompts"]):
            for ci in range(req["n"]):
                toks, finish = eng.plan_output(
                    f"{text}\x00{ci}" if ci else text, req["max_tokens"][pi],
                    int(body.get("min_tokens") or 0), bool(body.get("ignore_eos")),
                    body.get("seed"), req["echo_src"][min(pi, len(req["echo_src"]) - 1)])
                texts = [" " + t for t in toks]
                subs.append({"index": pi * req["n"] + ci, "prompt_index": pi, "prompt_text": text,
                             "prompt_ids": ids, "texts": texts,
                             "ids": [token_id(t) for t in toks], "finish": finish})
        return subs

    def _kv_prelude(self, req: dict) -> tuple[str, float]:
        """Classify kv_transfer_params and run the decode-side pull. Returns
        (role, ttft_seconds). Raises RequestFailed when the pull fails."""
        eng = self.st.engine
        suffix = random_uuid()[:8]
        if req["request_id"].startswith("chatcmpl-"):
            internal = f"{req['request_id']}-{suffix}"
        else:
            internal = f"{req['request_id']}-0-{suffix}"
        req["internal_id"] = internal
        role = eng.classify_kv_params(req["kvp"], internal)
        if eng.shared_path:
            req["kv_pulled"] = eng.shared_kv(req["prompts"][0][1])
        ttft = eng.knobs.ttft_ms / 1000.0
        if role == "decode":
            req["kv_pulled"] = eng.pull_kv(req["kvp"], internal)  # sleeps kv_transfer_ms; may raise
            return role, 0.0
        return role, ttft

    def _finish_metrics(self, req: dict, subs: list[dict], t_first: float, t_arrival: float,
                        queue_s: float, itls: list[float]) -> None:
        m = self.st.engine.metrics
        now = time.monotonic()
        with m.lock:
            prompt = sum(len(ids) for _t, ids in req["prompts"])
            # as vLLM: the pulled KV covers the prompt's full blocks but the last token, which decode computes
            pulled = (prompt - 1) // self.st.engine.block_size * self.st.engine.block_size if req.get("kv_pulled") else 0
            m.prompt_tokens += prompt
            m.prompt_tokens_by_source["external_kv_transfer"] += pulled
            m.prompt_tokens_by_source["local_compute"] += prompt - pulled
            for s in subs:
                m.generation_tokens += len(s["ids"])
                m.success[s["finish"]] += 1
            m.ttft.observe(max(0.0, t_first - t_arrival))
            for v in itls:
                m.itl.observe(v)
            m.e2e.observe(now - t_arrival)
            m.queue.observe(queue_s)

    def _prefill_params(self, req: dict, subs: list[dict], role: str) -> dict | None:
        if role != "prefill":
            return None
        eng = self.st.engine
        first = subs[0]
        params = eng.prefill_response_params(req["internal_id"], len(first["prompt_ids"]),
                                             len(first["ids"]))
        with eng.metrics.lock:
            eng.metrics.sim["remote_decode_prefills_total"] += 1
        eng.last_response_kv_transfer_params = params
        return params

    def _usage(self, req: dict, subs: list[dict]) -> dict:
        p = sum(len(ids) for _t, ids in req["prompts"])
        c = sum(len(s["ids"]) for s in subs)
        return {"prompt_tokens": p, "total_tokens": p + c, "completion_tokens": c,
                "prompt_tokens_details": None, "completion_tokens_details": None}

    def _resp_headers(self, req: dict) -> dict:
        return {"x-request-id": req["request_id"].split("-", 1)[1]} if self.st.request_id_headers else {}

    def _run_plain(self, req: dict, chat: bool, t_arrival: float) -> None:
        eng = self.st.engine
        queue_s = eng.admit()
        try:
            try:
                role, ttft = self._kv_prelude(req)
            except RequestFailed as e:
                self._error(e.status, e.message, e.err_type, e.param)
                return
            subs = self._plan(req)
            if ttft:
                time.sleep(ttft)
            t_first = time.monotonic()
            n_max = max(len(s["ids"]) for s in subs)
            itl = eng.knobs.itl_ms / 1000.0
            if itl and n_max > 1:
                time.sleep(itl * (n_max - 1))
            itls = [itl] * max(0, n_max - 1) if itl else []
            kvtp = self._prefill_params(req, subs, role)
            usage = self._usage(req, subs)
            if chat:
                choices = [{"index": s["index"],
                            "message": {"role": "assistant", "content": "".join(s["texts"]).lstrip(),
                                        "refusal": None, "annotations": None, "audio": None,
                                        "function_call": None, "reasoning": None},
                            "logprobs": None, "finish_reason": s["finish"], "stop_reason": None,
                            "token_ids": s["ids"] if req["return_token_ids"] else None,
                            "routed_experts": None} for s in subs]
                resp = {"id": req["request_id"], "object": "chat.completion",
                        "created": req["created"], "model": req["model_name"], "choices": choices,
                        "service_tier": None, "system_fingerprint": None, "usage": usage,
                        "prompt_logprobs": None, "prompt_token_ids": None, "prompt_text": None,
                        "kv_transfer_params": kvtp, "ec_transfer_params": None, "metrics": None}
            else:
                choices = []
                for s in subs:
                    text = "".join(s["texts"])
                    if req["echo"]:
                        text = s["prompt_text"] + text
                    choices.append({"index": s["index"], "text": text, "logprobs": None,
                                    "finish_reason": s["finish"], "stop_reason": None,
                                    "token_ids": s["ids"] if req["return_token_ids"] else None,
                                    "prompt_logprobs": None,
                                    "prompt_token_ids": s["prompt_ids"] if req["return_token_ids"] else None,
                                    "routed_experts": None})
                resp = {"id": req["request_id"], "object": "text_completion",
                        "created": req["created"], "model": req["model_name"], "choices": choices,
                        "service_tier": None, "system_fingerprint": None, "usage": usage,
                        "kv_transfer_params": kvtp, "ec_transfer_params": None, "metrics": None}
            self._finish_metrics(req, subs, t_first, t_arrival, queue_s, itls)
            self._json(200, resp, headers=self._resp_headers(req))
        finally:
            eng.release()

    # streaming ------------------------------------------------------------
    def _start_stream(self, req: dict) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("transfer-encoding", "chunked")
        for k, v in self._resp_headers(req).items():
            self.send_header(k, v)
        self.end_headers()

    def _chunk(self, data: str) -> None:
        raw = data.encode()
        self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
        self.wfile.flush()

    def _event(self, obj: Any) -> None:
        self._chunk(f"data: {json.dumps(obj, separators=(',', ':'))}\n\n")

    def _run_stream(self, req: dict, chat: bool, t_arrival: float) -> None:
        eng = self.st.engine
        queue_s = eng.admit()
        aborted = False
        try:
            self._start_stream(req)
            try:
                role, ttft = self._kv_prelude(req)
            except RequestFailed as e:
                self._event(error_body(e.status, e.message, e.err_type, e.param))
                self._chunk("data: [DONE]\n\n")
                self._chunk("")
                return
            subs = self._plan(req)
            if ttft:
                time.sleep(ttft)
            t_first = time.monotonic()
            itl = eng.knobs.itl_ms / 1000.0
            itls: list[float] = []
            base = {"id": req["request_id"],
                    "object": "chat.completion.chunk" if chat else "text_completion",
                    "created": req["created"], "model": req["model_name"]}
            p_tokens = {s["index"]: len(s["prompt_ids"]) for s in subs}
            if chat:
                for s in subs:
                    self._event({**base, "choices": [{"index": s["index"],
                                 "delta": {"role": "assistant", "content": ""},
                                 "logprobs": None, "finish_reason": None}],
                                 "prompt_token_ids": None, "prompt_text": None})
            n_max = max(len(s["ids"]) for s in subs)
            last_t = time.monotonic()
            for k in range(n_max):
                if k and itl:
                    time.sleep(itl)
                    now = time.monotonic()
                    itls.append(now - last_t)
                    last_t = now
                for s in subs:
                    if k >= len(s["ids"]):
                        continue
                    last = k == len(s["ids"]) - 1
                    tok = s["texts"][k]
                    if chat and k == 0:
                        tok = tok.lstrip()
                    if chat:
                        choice = {"index": s["index"], "delta": {"content": tok}, "logprobs": None,
                                  "finish_reason": s["finish"] if last else None}
                        if last:
                            choice["stop_reason"] = None
                        choice["token_ids"] = [s["ids"][k]] if req["return_token_ids"] else None
                    else:
                        if req["echo"] and k == 0:
                            tok = s["prompt_text"] + tok
                        choice = {"index": s["index"], "text": tok, "logprobs": None,
                                  "finish_reason": s["finish"] if last else None,
                                  "stop_reason": None,
                                  "prompt_token_ids": s["prompt_ids"] if (req["return_token_ids"] and k == 0) else None,
                                  "token_ids": [s["ids"][k]] if req["return_token_ids"] else None}
                    chunk = {**base, "choices": [choice]}
                    if req["continuous_usage"] and req["include_usage"]:
                        pt = p_tokens[s["index"]]
                        chunk["usage"] = {"prompt_tokens": pt, "total_tokens": pt + k + 1,
                                          "completion_tokens": k + 1}
                    self._event(chunk)
            # P side still pins blocks in streaming mode, but streamed chunks carry
            # no kv_transfer_params (CompletionStreamResponse has no such field).
            self._prefill_params(req, subs, role)
            if req["include_usage"]:
                u = self._usage(req, subs)
                self._event({**base, "choices": [], "usage": {
                    "prompt_tokens": u["prompt_tokens"], "total_tokens": u["total_tokens"],
                    "completion_tokens": u["completion_tokens"]}})
            self._chunk("data: [DONE]\n\n")
            self._chunk("")
            self._finish_metrics(req, subs, t_first, t_arrival, queue_s, itls)
        except (BrokenPipeError, ConnectionResetError):
            aborted = True
            self.close_connection = True
        finally:
            eng.release()
            if aborted:
                with eng.metrics.lock:
                    eng.metrics.success["abort"] += 1


def error_body(status: int, message: str, err_type: str | None = None, param: str | None = None) -> dict:
    if err_type is None:
        err_type = ERR_TYPES.get(status)
        if err_type is None:
            try:
                err_type = HTTPStatus(status).phrase
            except ValueError:
                err_type = "Error"
    return {"error": {"message": message, "type": err_type, "param": param, "code": status}}


def make_server(state: SimState, host: str | None, port: int) -> SimHTTPServer:
    bind_host = host if host else "0.0.0.0"
    cls = SimHTTPServer6 if ":" in bind_host else SimHTTPServer
    srv = cls((bind_host, port), Handler, bind_and_activate=False)
    srv.state = state
    srv.server_bind()
    ns = state.ns
    if ns.ssl_certfile and ns.ssl_keyfile:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(ns.ssl_certfile, ns.ssl_keyfile)
        if ns.ssl_ca_certs:
            ctx.load_verify_locations(ns.ssl_ca_certs)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    return srv


def activate(srv: SimHTTPServer) -> None:
    srv.server_activate()
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, name="http",
                     daemon=True).start()

