# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start vllm-router in --enable-igw mode and register the workers of a JSON file with it.

    python3 router_start.py WORKERS.json vllm-router --enable-igw --host H --port P ...

vllm-router in igw mode starts with no worker and keeps none over a restart: this is the container's entrypoint, so
that a router its restart policy brings back serves the plan's workers again with no deploy. The file lists
{url, worker_type, model_id}; the deploy (llmserve.cluster.router_workers) changes the running router's list, this
only fills a new one. Signals go to the router, and its exit code is this one's."""
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request


def option(argv, name, default):
    return argv[argv.index(name) + 1] if name in argv[:-1] else default


def call(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def main():
    workers_file, argv = sys.argv[1], sys.argv[2:]
    router = subprocess.Popen(argv)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _: router.send_signal(number))
    host = option(argv, "--host", "127.0.0.1")
    base = "http://%s:%s" % ("127.0.0.1" if host == "0.0.0.0" else host, option(argv, "--port", "30000"))
    with open(workers_file) as f:
        workers = json.load(f)
    pending = list(workers)
    while pending and router.poll() is None:
        try:
            call("POST", base + "/workers", {k: pending[0][k] for k in ("url", "worker_type", "model_id")})
            pending.pop(0)
        except urllib.error.HTTPError as err:   # refused: say so, and go on with the others
            print("router_start: %s refused: %s %s" % (pending.pop(0)["url"], err.code, err.read()[:200]), flush=True)
        except OSError:
            time.sleep(0.2)   # not listening yet
    print("router_start: registered %d workers from %s" % (len(workers) - len(pending), workers_file), flush=True)
    sys.exit(router.wait())


if __name__ == "__main__":
    main()
