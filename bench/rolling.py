#!/usr/bin/env python3
"""Benchmark: failed requests and latency while the test bed's real-vLLM 2P1D (tests/testbed/inventories/testbed_2p1d:
two prefill engines, one decode, vllm-router in front) is upgraded, scaled out and scaled in.

    make demo    # the bed, the images in its registry
    .venv/bin/python bench/rolling.py [--modes igw pd] [--period 0.25]

For each router mode (llmserve_proxy_router_mode) it deploys the 2P1D, then under a steady request stream through the
front door (one completion every `period` s, each in its own thread):
- upgrade:   a changed argument of the prefill engines (--max-num-seqs 32), rolled by upgrade.yml (igw), or deployed
             by site.yml (pd: upgrade.yml refuses, the router cannot take an engine back);
- scale-out: node5 added to the prefill group, deployed by site.yml;
- scale-in:  node5 taken out by remove.yml (igw), or out of the inventory and site.yml (pd).
It prints, per step, the requests sent, those that failed and the p50/p99 latency of the answered ones, and writes
bench/results/rolling.json. Not a test: the figures depend on this machine's load.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from request_stream import Stream
from results_file import write_results

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
BASE = REPO / "tests" / "testbed" / "inventories" / "testbed_2p1d"
DOOR, MODEL = "http://172.31.240.14:10001", "tiny-llama"
THIRD = ("node5", "172.31.240.15")
CHANGED_ARGS = "--max-num-seqs 32"
ENV = dict(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
           ANSIBLE_VAULT_PASSWORD_FILE=str(REPO / ".testbed/secrets/vault_password"))


def inventory(folder, changed=False, third=False, mode=None):
    """The 2P1D inventory in `folder`: with the prefill engines' changed argument, with node5 as a third prefill,
    with a router mode."""
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(BASE, folder)
    hosts = (folder / "hosts.yml").read_text()
    if third:
        hosts = hosts.replace("          ansible_host: 172.31.240.12\n", "          ansible_host: 172.31.240.12\n"
                              "        %s:\n          ansible_host: %s\n" % THIRD, 1)
    (folder / "hosts.yml").write_text(hosts)
    extra = []
    if changed:
        extra.append("llmserve_vllm_extra_args: [--enforce-eager, --kv-cache-memory-bytes, 256M, --max-model-len, \"512\", "
                     + ", ".join(CHANGED_ARGS.split()) + "]")
    if extra:
        (folder / "group_vars" / "prefill.yml").write_text("\n".join(extra) + "\n")
    if mode:
        (folder / "group_vars" / "proxy.yml").write_text("llmserve_proxy_router_mode: %s\n" % mode)
    return folder


def playbook(name, folder, *args):
    """Run one of the collection's playbooks against the bed and `folder`; the CompletedProcess."""
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(REPO / ".testbed/inventory"), "-i", str(folder),
                           str(REPO / "playbooks" / name), *args], capture_output=True, text=True, timeout=1800,
                          stdin=subprocess.DEVNULL,
                          env={**os.environ, **ENV, "PATH": "%s:%s" % (BIN, os.environ["PATH"])})


def percentile(values, q):
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 3) if values else None


def under_stream(name, folder, *args, period=0.25):
    """Run a playbook while a request stream goes through the front door; (the run, its figures)."""
    stream = Stream(DOOR, MODEL, period).start()
    time.sleep(2)   # a steady state first
    started = time.time()
    run = playbook(name, folder, *args)
    took = time.time() - started
    time.sleep(2)
    results = stream.stop()
    answered = [end - start for start, end, status, text in results if status == 200 and text]
    failed = [(round(start - started, 1), status, text[:120]) for start, _, status, text in results
              if status != 200 or not text]
    return run, dict(playbook=name, rc=run.returncode, seconds=round(took, 1), requests=len(results),
                     failed=len(failed), first_failures=failed[:3], p50=percentile(answered, 0.5),
                     p99=percentile(answered, 0.99))


def steps(mode, workdir, period):
    """The upgrade, the scale-out and the scale-in of one router mode: {step: figures}."""
    base = inventory(Path(workdir) / "base", mode=mode)
    run = playbook("site.yml", base)
    if run.returncode:
        sys.exit("site.yml failed:\n" + run.stdout[-3000:])
    changed = inventory(Path(workdir) / "changed", changed=True, mode=mode)
    third = inventory(Path(workdir) / "third", changed=True, third=True, mode=mode)
    out = {}
    _, out["upgrade"] = under_stream("upgrade.yml" if mode == "igw" else "site.yml", changed, period=period)
    _, out["scale-out"] = under_stream("site.yml", third, period=period)
    if mode == "igw":
        _, out["scale-in"] = under_stream("remove.yml", third, "-e", "llmserve_remove=" + THIRD[0],
                                          "-e", "llmserve_confirm=yes", period=period)
    else:
        _, out["scale-in"] = under_stream("site.yml", changed, period=period)
        playbook("clean_up.yml", third, "--limit", THIRD[0])
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", choices=["igw", "pd"], default=["igw", "pd"])
    parser.add_argument("--period", type=float, default=0.25, help="seconds between requests (default 0.25)")
    args = parser.parse_args()
    results = dict(period=args.period, modes={})
    with tempfile.TemporaryDirectory() as workdir:
        for mode in args.modes:
            results["modes"][mode] = steps(mode, workdir, args.period)
            for step, f in results["modes"][mode].items():
                print("%-3s %-9s %-11s rc %d  %5.1f s  requests %4d  failed %3d  p50 %s s  p99 %s s"
                      % (mode, step, f["playbook"], f["rc"], f["seconds"], f["requests"], f["failed"], f["p50"],
                         f["p99"]), flush=True)
        playbook("clean_up.yml", inventory(Path(workdir) / "last", third=True), "--tags", "clean_up")
        playbook("site.yml", inventory(Path(workdir) / "base"))   # leave the cluster as the inventory says
    write_results("rolling", results)


if __name__ == "__main__":
    main()
