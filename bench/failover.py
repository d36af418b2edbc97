#!/usr/bin/env python3
"""Benchmark: how long the front door fails when an engine dies, on the test bed's real-vLLM 2P1D
(tests/testbed/inventories/testbed_2p1d: two prefill engines, one decode, vllm-router in front).

    make demo    # the bed, the images in its registry, the cluster
    .venv/bin/python bench/failover.py [--settings before after] [--faults prefill decode router] [--period 0.5]

For each settings ("before": the router's health checks every 5 s, 3 failed checks to take a backend out, as
the collection had them; "after": the defaults, 1 s and 1) it deploys the cluster with site.yml, then for each
fault sends a completion every `period` s (each in its own thread, 60 s timeout) from 4 s before the fault to
15 s after it (for the decode: until it is back), and:
- prefill: kills (SIGKILL) the prefill engine that served the most of the stream so far;
- decode: kills the decode engine (the only one: nothing can serve until its restart policy brings it back);
- router: stops the router (SIGTERM); its restart policy starts it again.
Faults are signalled from this machine to the process (the bed's hosts are its containers), at a moment noted
to the millisecond. Then it waits until the killed engine is healthy again and, for a prefill, has served again
(used again with no deploy; asked two requests at a time, as the router's cache_aware policy sends a lone one to
the first prefill). It prints the failed requests, the failure window (first to last failed start, s after the
fault), the failures among requests that started 1 s or more after it, and when the engine was back.
Writes bench/results/failover.json. Not a test: the figures depend on this machine's load.
"""
import argparse
import concurrent.futures
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from request_stream import Stream, ask, summary
from results_file import write_results

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
INVENTORY = REPO / "tests" / "testbed" / "inventories" / "testbed_2p1d"
DOOR, MODEL = "http://172.31.240.14:10001", "tiny-llama"
PREFILL = {"node1": "172.31.240.11", "node2": "172.31.240.12"}
DECODE = ("node3", "172.31.240.13")
SETTINGS = {
    "before": dict(llmserve_proxy_health_check_interval=5, llmserve_proxy_max_fails=3, llmserve_proxy_fail_timeout=10),
    "after": {},
}
ENV = dict(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
           ANSIBLE_VAULT_PASSWORD_FILE=str(REPO / ".testbed/secrets/vault_password"))


def on_host(host, command):
    return subprocess.run(["docker", "exec", "llmserve-tb-" + host, "sh", "-c", command],
                          capture_output=True, text=True, timeout=120)


def healthy(address, port=8000):
    try:
        with urllib.request.urlopen("http://%s:%d/health" % (address, port), timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def wait(probe, timeout=300):
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def served(host, container):
    """Completions an engine answered so far, from its access log."""
    logs = on_host(host, "docker logs %s 2>&1" % container).stdout
    return logs.count('"POST /v1/completions HTTP/1.1" 200')


def deploy(knobs):
    extra = [a for k, v in knobs.items() for a in ("-e", "%s=%s" % (k, v))]
    res = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(REPO / ".testbed/inventory"), "-i", str(INVENTORY),
                          str(REPO / "playbooks/site.yml"), *extra], capture_output=True, text=True,
                         env={**os.environ, **ENV, "PATH": "%s:%s" % (BIN, os.environ["PATH"])})
    if res.returncode:
        sys.exit("site.yml failed:\n" + res.stdout[-3000:] + res.stderr[-2000:])


def main_pid(host, container):
    """This machine's PID of the container's main process. The bed's hosts are containers of this machine, so the
    engines' processes are this machine's too: signalled from here, a fault happens at the moment we note, not
    whenever a `docker exec` gets through to the host."""
    cid = on_host(host, "docker inspect -f '{{.Id}}' " + container).stdout.strip()
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or not cid or cid not in (proc / "cgroup").read_text():
                continue
            nspid = next(line.split()[1:] for line in (proc / "status").read_text().splitlines()
                         if line.startswith("NSpid:"))
        except (OSError, StopIteration):
            continue
        if nspid[-1] == "1":   # PID 1 inside the container
            return int(proc.name)
    raise RuntimeError("no process of %s on %s found on this machine" % (container, host))


def kill(host, container, sig=signal.SIGKILL):
    """Signal the container's main process (SIGKILL: it dies at once; SIGTERM: it stops as on a restart, and its
    restart policy starts it again); return when, in seconds since the epoch."""
    pid = main_pid(host, container)
    at = time.time()
    os.kill(pid, sig)
    return at


def used_again(host, container, since, door=DOOR, model=MODEL, timeout=120):
    """Completions two at a time until `container` has served one more than `since`; True when it has. (The router's
    cache_aware policy sends a lone request to the first prefill with the least load: a pair reaches both.)"""
    deadline = time.monotonic() + timeout
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        while served(host, container) <= since:
            if time.monotonic() > deadline:
                return False
            list(pool.map(lambda _: ask(door, model), range(2)))
    return True


def fault(name, period, after=15):
    """Run one fault under a bounded request stream (4 s before it, `after` s after it, or until the killed
    decode is back); return its figures."""
    wait(lambda: all(healthy(a) for a in list(PREFILL.values()) + [DECODE[1]]))
    before = {h: served(h, "llmserve-prefill-" + h) for h in PREFILL}
    stream = Stream(DOOR, MODEL, period).start()
    time.sleep(4)   # a steady state before the fault
    figures = {}
    if name == "prefill":
        counts = {h: served(h, "llmserve-prefill-" + h) - before[h] for h in PREFILL}
        host = max(counts, key=counts.get)   # the one the router sends this stream to
        at = kill(host, "llmserve-prefill-" + host)
        after_kill = served(host, "llmserve-prefill-" + host)
        time.sleep(after)
        results = stream.stop()
        back = wait(lambda: healthy(PREFILL[host]))
        figures.update(killed=host, served_before=counts, back_after=round(time.time() - at, 1) if back else None)
        # used again with no deploy: the router's health check takes it back and the policy sends it requests
        again = back and used_again(host, "llmserve-prefill-" + host, after_kill)
        figures["used_again_after"] = round(time.time() - at, 1) if again else None
    elif name == "decode":
        host, address = DECODE
        at = kill(host, "llmserve-decode-" + host)
        back = wait(lambda: healthy(address))
        figures.update(killed=host, back_after=round(time.time() - at, 1) if back else None)
        time.sleep(3)
        results = stream.stop()
    else:
        at = kill("node4", "llmserve-router", signal.SIGTERM)
        time.sleep(after)
        results = stream.stop()
    figures.update(summary(results, at))
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--faults", nargs="+", choices=["prefill", "decode", "router"],
                        default=["prefill", "decode", "router"])
    parser.add_argument("--period", type=float, default=0.5, help="seconds between requests (default 0.5)")
    args = parser.parse_args()
    results = dict(period=args.period, settings={})
    for settings in args.settings:
        deploy(SETTINGS[settings])
        results["settings"][settings] = dict(knobs=SETTINGS[settings] or "defaults", faults={})
        for name in args.faults:
            figures = fault(name, args.period)
            results["settings"][settings]["faults"][name] = figures
            print("%-7s %-8s requests %4d  failed %3d  window %-14s failed >=1 s after %3d  back %s  used again %s"
                  % (settings, name, figures["requests"], figures["failed"],
                     "%s-%s s" % tuple(figures["window"]) if figures["window"] else "-",
                     figures["failed_after_grace"], figures.get("back_after", "-"),
                     figures.get("used_again_after", "-")), flush=True)
    deploy({})   # leave the cluster as the inventory says
    write_results("failover", results)


if __name__ == "__main__":
    main()
