"""A bounded stream of completions at a steady rate, as a client of the front door sees it: one request every
`period` seconds, each in its own thread (a slow answer does not hold the next one back), each recorded with
its start and its outcome. Shared by bench/failover.py and the failover integration test."""
import json
import threading
import time
import urllib.error
import urllib.request
import uuid


def ask(door, model, key=None, timeout=60):
    """One completion with a prompt no earlier one shares (cache_aware balances it as a new conversation), with the
    API key when given. Returns (HTTP status or error name, the answer's text or the error body)."""
    body = json.dumps({"model": model, "prompt": "Say something about %s." % uuid.uuid4().hex,
                       "max_tokens": 4}).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": "Bearer " + key} if key else {})}
    request = urllib.request.Request(door + "/v1/completions", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())["choices"][0]["text"]
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")[:200]
    except OSError as err:
        return type(err).__name__, str(err)[:200]


class Stream:
    """Requests to `door` every `period` s from start() until stop(); `results` holds
    (start, end, status, text), times in seconds since the epoch (the clock failover.kill notes a fault's moment
    with)."""

    def __init__(self, door, model, period=0.25, key=None):
        self.door, self.model, self.period, self.key = door, model, period, key
        self.results, self._threads, self._stop = [], [], threading.Event()
        self._pacer = threading.Thread(target=self._pace, daemon=True)

    def _one(self):
        start = time.time()
        status, text = ask(self.door, self.model, self.key)
        self.results.append((start, time.time(), status, text))

    def _pace(self):
        due = time.monotonic()
        while not self._stop.is_set():
            thread = threading.Thread(target=self._one, daemon=True)
            thread.start()
            self._threads.append(thread)
            due += self.period
            self._stop.wait(max(0.0, due - time.monotonic()))

    def start(self):
        self._pacer.start()
        return self

    def stop(self):
        self._stop.set()
        self._pacer.join()
        for thread in self._threads:
            thread.join()
        return sorted(self.results)


def failures(results, fault_at):
    """The failed requests, as (start after the fault in s, status, text); a 200 without text counts as failed."""
    return [(round(start - fault_at, 2), status, text) for start, _, status, text in results
            if status != 200 or not text]


def summary(results, fault_at, grace=1.0):
    """Figures of one fault: requests, failed, the failure window (first to last failed start, s after the
    fault) and the failed requests that started `grace` s or more after it."""
    failed = failures(results, fault_at)
    return dict(requests=len(results), failed=len(failed),
                window=[failed[0][0], failed[-1][0]] if failed else None,
                failed_after_grace=len([f for f in failed if f[0] >= grace]),
                first_failures=[list(f) for f in failed[:3]])
