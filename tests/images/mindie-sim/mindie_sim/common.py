"""Shared helpers of the MindIE stand-in: loud errors, file/permission checks, JSON key checks, TLS, HTTP."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import ssl
import stat
import sys
import threading
import time
import http.client
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STDOUT_LOCK = threading.Lock()


def log(comp: str, msg: str) -> None:
    with STDOUT_LOCK:
        print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] [{comp}] {msg}", flush=True)


def die(comp: str, lines: list[str]) -> None:
    """Print every line as `ERROR ...` on stderr (`docker logs` shows it) and exit 1."""
    with STDOUT_LOCK:
        sys.stdout.flush()
        for line in lines:
            print(f"ERROR [{comp}] {line}", file=sys.stderr, flush=True)
    os._exit(1)


def check_files_enabled() -> bool:
    return os.environ.get("MINDIE_CHECK_INPUTFILES_PERMISSION") != "0"


def motor_config(comp: str, env_var: str, default: str):
    """A Motor component's file: named by env_var (then MINDIE_CHECK_INPUTFILES_PERMISSION=0 may relax the
    permission check) or ./conf/<default> of the working directory (always checked). Exits on a bad file.
    Returns (path, check, parsed, errors)."""
    env = os.environ.get(env_var)
    path = env or "./conf/" + default
    check = env is None or check_files_enabled()
    errs = Errors(comp)
    cfg = read_json(path, errs, path, check=check)
    errs.exit_if_any()
    return path, check, cfg, errs


class Errors:
    def __init__(self, comp: str):
        self.comp, self.lines = comp, []

    def add(self, file: str, key: str, msg: str) -> None:
        self.lines.append(f"{file}: {key}: {msg}")

    def exit_if_any(self) -> None:
        if self.lines:
            die(self.comp, self.lines)


def mode_ok(path: str, max_mode: int, errs: Errors, file: str, key: str, owner: bool = True,
            check: bool | None = None) -> bool:
    """MindIE's rule: no permission bit beyond max_mode, owner == this process's uid, no symlink."""
    try:
        st = os.lstat(path)
    except OSError as e:
        errs.add(file, key, f"cannot stat {path}: {e.strerror}")
        return False
    if stat.S_ISLNK(st.st_mode):
        errs.add(file, key, f"{path} is a symbolic link, which MindIE refuses")
        return False
    if not (check_files_enabled() if check is None else check):
        return True
    perm = st.st_mode & 0o777
    if perm & ~max_mode:
        errs.add(file, key, f"permission of {path} is {perm:04o}, MindIE requires no greater than {max_mode:04o} "
                            "(or MINDIE_CHECK_INPUTFILES_PERMISSION=0)")
        return False
    if owner and st.st_uid != os.getuid():
        errs.add(file, key, f"owner uid of {path} is {st.st_uid} but the process runs as uid {os.getuid()}")
        return False
    return True


def read_json(path: str, errs: Errors, what: str, max_mode: int = 0o640, check: bool | None = None):
    if not os.path.isfile(path):
        errs.add(what, "path", f"file {path} does not exist")
        return None
    if not mode_ok(path, max_mode, errs, what, "file mode", check=check):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        errs.add(what, "json", f"{path} is not valid JSON: {e}")
        return None


def is_ip(value, allow_zero: bool = False) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ip = ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return allow_zero or not ip.is_unspecified


TYPES = {"int": int, "bool": bool, "str": str, "list": list, "dict": dict, "number": (int, float)}


class Keys:
    """Typed access to one JSON object of a file; every problem is recorded with file and key path."""

    def __init__(self, errs: Errors, file: str, obj, prefix: str = ""):
        self.errs, self.file, self.obj, self.prefix = errs, file, obj if isinstance(obj, dict) else {}, prefix

    def sub(self, key: str) -> "Keys":
        return Keys(self.errs, self.file, self.get(key, "dict"), self.prefix + key + ".")

    def get(self, key, typ, required=True, lo=None, hi=None, choices=None, default=None):
        name = self.prefix + key
        if key not in self.obj:
            if required:
                self.errs.add(self.file, name, "required key is missing")
            return default
        val = self.obj[key]
        if typ == "port":
            typ, lo, hi = "int", 1024, 65535
        if typ == "strport":  # the Coordinator's ports are JSON strings holding a number
            if not isinstance(val, str) or not val.isdigit():
                self.errs.add(self.file, name, f"must be a string holding a port number, got {json.dumps(val)}")
                return default
            if not 1024 <= int(val) <= 65535:
                self.errs.add(self.file, name, f"port {val} is out of range [1024, 65535]")
                return default
            return int(val)
        want = TYPES[typ]
        if (typ in ("int", "number") and isinstance(val, bool)) or not isinstance(val, want):
            self.errs.add(self.file, name, f"must be of JSON type {typ}, got {type(val).__name__} {json.dumps(val)}")
            return default
        if lo is not None and val < lo or hi is not None and val > hi:
            self.errs.add(self.file, name, f"value {val} is out of range [{lo}, {hi}]")
            return default
        if choices is not None and val not in choices:
            self.errs.add(self.file, name, f"value {json.dumps(val)} is not one of {choices}")
            return default
        return val


# ------------------------------------------------------------------ TLS
def _handshake_check(cert: str, key: str, cafiles: list[str]) -> str | None:
    """Check that cert/key match and that the cert chains to one of the CA files (in-memory TLS handshake)."""
    try:
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(cert, key, password=lambda: b"")
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.check_hostname = False
        for ca in cafiles:
            cctx.load_verify_locations(ca)
    except (ssl.SSLError, OSError) as e:
        return f"cannot load certificate/key/CA ({e}); an encrypted key needs MindIE's KMC, the stand-in takes " \
               "unencrypted PEM keys only"
    a_in, a_out, b_in, b_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    srv = sctx.wrap_bio(a_in, a_out, server_side=True)
    cli = cctx.wrap_bio(b_in, b_out, server_side=False)
    done = [False, False]
    for _ in range(20):
        for i, (obj, out, peer_in) in enumerate(((cli, b_out, a_in), (srv, a_out, b_in))):
            if not done[i]:
                try:
                    obj.do_handshake()
                    done[i] = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError as e:
                    return f"certificate {cert} is not signed by the CA {', '.join(cafiles)} ({e.reason})"
            data = out.read()
            if data:
                peer_in.write(data)
        if all(done):
            return None
    return "TLS self-check did not complete"


def tls_files(errs: Errors, file: str, key: str, ca: list[str], cert: str, pk: str, key_mode: int) -> bool:
    ok = True
    for what, path in [("CA", p) for p in ca] + [("certificate", cert), ("private key", pk)]:
        if not path or not os.path.isfile(path):
            errs.add(file, key, f"{what} file {path!r} does not exist")
            ok = False
        elif not os.access(path, os.R_OK):
            errs.add(file, key, f"{what} file {path} is not readable")
            ok = False
    if ok and not mode_ok(pk, key_mode, errs, file, key + " (private key)"):
        ok = False
    if ok:
        problem = _handshake_check(cert, pk, ca)
        if problem:
            errs.add(file, key, problem)
            ok = False
    return ok


def server_ctx(ca: list[str], cert: str, pk: str) -> ssl.SSLContext:
    """Mutual TLS, as MindIE's servers do (verify_peer | fail_if_no_peer_cert)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, pk)
    for f in ca:
        ctx.load_verify_locations(f)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_ctx(ca: list[str], cert: str, pk: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # MindIE checks the CA chain, not host names
    for f in ca:
        ctx.load_verify_locations(f)
    ctx.load_cert_chain(cert, pk)
    return ctx


# ------------------------------------------------------------------ HTTP
class Req:
    def __init__(self, h: BaseHTTPRequestHandler, body: bytes, match):
        self.method, self.path, self.headers, self.body, self.match = h.command, h.path, h.headers, body, match
        self.client = h.client_address[0]

    def json(self):
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


def reply(status: int, body=None, headers=None):
    return status, body, headers or {}


def serve(comp: str, host: str, port: int, routes: list, ctx: ssl.SSLContext | None = None, name: str = ""):
    """routes: [(METHOD, regex, fn(Req) -> (status, body, headers))]. Binds or dies loudly."""
    compiled = [(m, re.compile(p + r"(\?.*)?$"), fn) for m, p, fn in routes]

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _do(self):
            n = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(n) if n else b""
            for m, rx, fn in compiled:
                mt = rx.match(self.path)
                if mt and m == self.command:
                    try:
                        status, out, hdrs = fn(Req(self, body, mt))
                    except Exception as e:  # noqa: BLE001 - report, keep serving
                        log(comp, f"handler error on {self.path}: {e!r}")
                        status, out, hdrs = 500, {"error": str(e)}, {}
                    break
            else:
                status, out, hdrs = 404, {"error": f"no route {self.command} {self.path}"}, {}
            if isinstance(out, (dict, list)):
                data, ctype = json.dumps(out).encode(), "application/json"
            else:
                data, ctype = (out or "").encode(), hdrs.pop("content-type", "text/plain; charset=utf-8")
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(data)))
            for k, v in hdrs.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _do

    class S(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

        def get_request(self):
            sock, addr = self.socket.accept()
            if ctx is not None:
                sock.settimeout(10)
                sock = ctx.wrap_socket(sock, server_side=True)  # handshake errors are logged, not fatal
                sock.settimeout(None)
            return sock, addr

        def handle_error(self, request, client_address):
            log(comp, f"{name or port}: connection from {client_address[0]} failed: {sys.exc_info()[1]!r}")

    try:
        srv = S((host, port), H)
    except OSError as e:
        die(comp, [f"{name or 'listener'}: Socket bind failed on {host}:{port}: {e.strerror}"])
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    log(comp, f"{name or 'listener'} listening on {'https' if ctx else 'http'}://{host}:{port}")
    return srv


def call(method: str, url: str, body=None, headers=None, ctx=None, timeout: float = 5.0, source: str | None = None):
    """HTTP(S) request; returns (status, parsed body, headers). Connection/TLS errors raise OSError."""
    u = urllib.parse.urlsplit(url)
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("content-type", "application/json")
    src = (source, 0) if source and source != "0.0.0.0" else None
    if u.scheme == "https":
        conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=timeout, context=ctx, source_address=src)
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout, source_address=src)
    try:
        conn.request(method, u.path + (f"?{u.query}" if u.query else ""), body=data, headers=hdrs)
        r = conn.getresponse()
        raw, status, rh = r.read(), r.status, dict(r.headers)
    except (OSError, http.client.HTTPException) as e:
        raise OSError(f"{type(e).__name__}: {e}") from e
    finally:
        conn.close()
    try:
        return status, json.loads(raw) if raw else None, rh
    except ValueError:
        return status, raw.decode(errors="replace"), rh


def url(ctx, ip: str, port) -> str:
    return f"{'https' if ctx else 'http'}://{ip}:{port}"


def tcp_listen(comp: str, host: str, port: int, handler, ctx=None, name: str = ""):
    """Line-oriented JSON over TCP (the stand-in's P->D KV hand-off on interCommPort)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
    except OSError as e:
        die(comp, [f"{name}: Socket bind failed on {host}:{port}: {e.strerror}"])
    s.listen(64)

    def one(conn, addr):
        try:
            if ctx is not None:
                conn = ctx.wrap_socket(conn, server_side=True)
            f = conn.makefile("rwb")
            line = f.readline()
            if line:
                out = handler(json.loads(line), addr[0])
                f.write(json.dumps(out).encode() + b"\n")
                f.flush()
        except Exception as e:  # noqa: BLE001
            log(comp, f"{name}: connection from {addr[0]} failed: {e!r}")
        finally:
            conn.close()

    def loop():
        while True:
            conn, addr = s.accept()
            threading.Thread(target=one, args=(conn, addr), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    log(comp, f"{name} listening on tcp{'+tls' if ctx else ''}://{host}:{port}")


def tcp_send(host: str, port: int, msg: dict, ctx=None, timeout: float = 5.0, source: str | None = None) -> dict:
    with socket.create_connection((host, port), timeout=timeout, source_address=(source, 0) if source else None) as s:
        if ctx is not None:
            s = ctx.wrap_socket(s)
        f = s.makefile("rwb")
        f.write(json.dumps(msg).encode() + b"\n")
        f.flush()
        return json.loads(f.readline())


def words(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text)


def wait_forever():
    while True:
        time.sleep(3600)
