"""Run the engine simulator (tests/images/engine-sim) as a process on loopback, for tests."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SIM_DIR = REPO / "tests" / "images" / "engine-sim"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body=None, headers=None, timeout=10.0, raw=False):
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("content-type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            payload = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        payload = e.read()
        status = e.code
    if raw:
        return status, payload.decode()
    try:
        return status, json.loads(payload) if payload else None
    except ValueError:
        return status, payload.decode()


class Sim:
    def __init__(self, args: list[str], env: dict | None = None, wait_ready=True,
                 port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="engine-sim-", suffix=".log", delete=False)
        e = dict(os.environ)
        e.update({"PYTHONPATH": str(SIM_DIR), "PYTHONUNBUFFERED": "1"})
        e.setdefault("VLLM_NIXL_SIDE_CHANNEL_PORT", str(free_port()))
        e.update(env or {})
        self.argv = [sys.executable, "-m", "llmserve_engine_sim", "serve", *args,
                     "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(self.argv, env=e, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=str(SIM_DIR))
        if wait_ready:
            self.wait_health(200)

    def wait_health(self, code: int, timeout: float = 10.0) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise AssertionError(f"simulator exited {self.proc.returncode}:\n{self.output()}")
            try:
                st, _ = http("GET", self.url + "/health", timeout=1)
                if st == code:
                    return time.monotonic() - t0
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"/health never returned {code}:\n{self.output()}")

    def output(self) -> str:
        return Path(self.log.name).read_text()

    def metric(self, name: str, **labels) -> float:
        st, text = http("GET", self.url + "/metrics", raw=True)
        assert st == 200
        total = 0.0
        found = False
        for line in text.splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            head, val = line.rsplit(" ", 1)
            mname = head.split("{", 1)[0]
            if mname != name:
                continue
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(val)
                found = True
        assert found, f"metric {name} {labels} not found in:\n{text}"
        return total

    def admin(self) -> dict:
        return http("GET", self.url + "/admin/config")[1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)


@contextlib.contextmanager
def sim(*args: str, env: dict | None = None, wait_ready=True):
    s = Sim(list(args), env=env, wait_ready=wait_ready)
    try:
        yield s
    finally:
        s.stop()
