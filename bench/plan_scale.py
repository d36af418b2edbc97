#!/usr/bin/env python3
"""Benchmark: plan a 1,024-host x 16-device PD cluster; print the figures and write a results file.

    .venv/bin/python bench/plan_scale.py [--hosts 1024] [--devices 16] [--repeat 5] [--playbook]

Times build_plan alone (the planner's own cost) and, with --playbook, the whole
`ansible-playbook playbooks/plan.yml` run on a generated inventory (hostvars collection included).
Goal from the issue: under 2 s for 1,024 hosts x 16 devices. Not a test: these machines are noisy.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import write_results

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".collections"))

from ansible_collections.llmserve.cluster.plugins.plugin_utils._planner import build_plan  # noqa: E402


def topology(hosts, devices):
    """Half prefill, half decode; decode instances span 4 hosts (DP over hosts); TP 8."""
    names = ["n%04d" % i for i in range(hosts)]
    half = hosts // 2
    groups = {"prefill": names[:half], "decode": names[half:], "proxy": ["router"]}
    hostvars = {"router": {"ansible_host": "10.255.0.1"}}
    common = dict(llmserve_model="/models/m", llmserve_image="vllm:latest", llmserve_devices="0-%d" % (devices - 1),
                  llmserve_tensor_parallel_size=8, llmserve_kv_connector="NixlConnector")
    for i, name in enumerate(names):
        hostvars[name] = dict(common, ansible_host="10.%d.%d.%d" % (1 + i // 65536, (i // 256) % 256, i % 256))
        if i >= half:
            hostvars[name]["llmserve_instance"] = "d%d" % ((i - half) // 4)
    return groups, hostvars


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--hosts", type=int, default=1024)
    p.add_argument("--devices", type=int, default=16)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--playbook", action="store_true", help="also time ansible-playbook plan.yml")
    args = p.parse_args()
    groups, hostvars = topology(args.hosts, args.devices)
    times = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        plan = build_plan(groups, hostvars)
        times.append(time.perf_counter() - started)
    results = dict(hosts=args.hosts, devices_per_host=args.devices, instances=len(plan["instances"]),
                   listeners=sum(len(h["listeners"]) for h in plan["hosts"].values()),
                   build_plan_seconds=dict(min=min(times), median=statistics.median(times), max=max(times)))
    print("build_plan: %d hosts x %d devices, %d instances, %d listeners: median %.3f s (min %.3f, max %.3f)"
          % (args.hosts, args.devices, results["instances"], results["listeners"], results["build_plan_seconds"]["median"],
             min(times), max(times)))
    if args.playbook:
        with tempfile.TemporaryDirectory() as tmp:
            inv = Path(tmp) / "hosts.yml"
            doc = {"all": {"children": {g: {"hosts": {h: hostvars[h] for h in hs}} for g, hs in groups.items()}}}
            inv.write_text(json.dumps(doc))
            env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
            started = time.perf_counter()
            subprocess.run([str(REPO / ".venv/bin/ansible-playbook"), "-i", str(inv), str(REPO / "playbooks/plan.yml"),
                            "-e", "llmserve_plan_file=%s/plan.json" % tmp], check=True, env=env, cwd=REPO,
                           stdout=subprocess.DEVNULL)
            results["playbook_seconds"] = time.perf_counter() - started
        print("ansible-playbook plan.yml (inventory parse, hostvars, plan, JSON file): %.2f s" % results["playbook_seconds"])
    write_results("plan_scale", results)


if __name__ == "__main__":
    main()
