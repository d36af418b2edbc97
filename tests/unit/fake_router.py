"""vllm-router 0.1.17's admin API in igw mode, as observed on the real router (docs/deploy.md, Upgrade and scale):
GET /workers lists {"workers": [{id, url, model_id, priority, cost, worker_type, is_healthy, ...}], "total": N, ...};
POST /workers adds (a URL posted twice is listed twice, as the real one does); DELETE /workers/{url percent-encoded}
removes, or answers 400 WORKER_NOT_FOUND; /v1/models lists the workers' model ids as {"models": [...]}. Every call
goes into `calls`. Also an engine's /metrics with
vllm:num_requests_running taken from a list of values, one per read. Run as a script it is a router process:
    python fake_router.py --host 127.0.0.1 --port P    (exits 7 on SIGTERM, so that a test sees the code passed on)"""
import json
import signal
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


class Router(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port=0, host="127.0.0.1"):
        super().__init__((host, port), Handler)
        self.workers, self.calls, self.busy = [], [], []
        self.url = "http://%s:%d" % (host, self.server_address[1])

    def __enter__(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        router = self.server
        if self.path == "/workers":
            self.answer(200, {"workers": router.workers, "total": len(router.workers)})
        elif self.path == "/health":
            self.answer(200, "RouterManager is healthy")
        elif self.path == "/v1/models":   # not OpenAI's shape; 503 with no worker
            models = sorted({w["model_id"] for w in router.workers})
            self.answer(200, {"models": models}) if models else self.answer(503, "No models available")
        elif self.path == "/metrics":
            running = router.busy.pop(0) if router.busy else 0
            self.answer(200, 'vllm:num_requests_running{engine="0",model_name="m"} %s\n'
                             'vllm:num_requests_waiting{engine="0",model_name="m"} 0.0\n' % float(running))
        else:
            self.answer(404, "not found")

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.calls.append(("POST", body["url"]))
        worker = {"id": str(uuid.uuid4()), "url": body["url"], "model_id": body.get("model_id", "unknown"),
                  "priority": 50, "cost": 1.0, "worker_type": body.get("worker_type", "regular"), "is_healthy": True,
                  "load": 0, "connection_mode": "Http", "metadata": {"model_id": body.get("model_id", "unknown")}}
        self.server.workers.append(worker)
        self.answer(200, {"success": True, "message": "Worker %s added successfully" % worker["id"], "worker": worker})

    def do_DELETE(self):
        url = unquote(self.path[len("/workers/"):])
        self.server.calls.append(("DELETE", url))
        kept = [w for w in self.server.workers if w["url"] != url]
        if len(kept) == len(self.server.workers):
            self.answer(400, {"error": "Worker with URL %s not found" % url, "code": "WORKER_NOT_FOUND"})
            return
        self.server.workers[:] = kept
        self.answer(200, {"success": True, "message": "Worker %s removed successfully" % url})


if __name__ == "__main__":
    argv = sys.argv[1:]
    server = Router(int(argv[argv.index("--port") + 1]), argv[argv.index("--host") + 1])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
    print("serving", flush=True)
    server.serve_forever()
