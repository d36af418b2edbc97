#!/usr/bin/env python3
"""Benchmark: the collection's own deploy overhead on the test bed, with the engine simulator
(zero start-up delay) standing in for vLLM so only the collection's work is measured.

    .venv/bin/python bench/deploy.py [--hosts 4 16]

For each size: bring the bed to that many hosts, remove the engines and the image from every host,
then time a cold `site.yml` (split into pull, start and health from each task's own duration), a
no-change re-run (deploy_state finds the cluster converged), the same with every task (llmserve_full_run), and
Ansible's own floor on the same hosts (one play running ansible.builtin.ping). For each
run it counts the module executions per host (bench/callback_plugins/count_modules.py: results of actions that
run on the host, each loop item one; set_fact, group_by, assert and the like run on the controller and cost none).
Prints the figures and writes bench/results/deploy.json. Goals (issue 13): a no-change re-run of a host running
one engine in at most 6 module executions, and in at most 2.5 x the floor. Not a test.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import write_results

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
TESTBED = [str(BIN / "python"), str(REPO / "tests/testbed/testbed.py")]
SIM = "llmserve/engine-sim:0.1.0"
ROUTER = "llmserve/vllm-router:0.1.17"
STAGES = {  # words of a task name (role tasks are named "role : name") -> stage
    "Pull the images": "pull", "Start the engines": "start", "Start the front": "start",
    "Wait until every engine": "health", "Wait until the front door": "health",
    # the runner role (plan v2)
    "Start the containers": "start", "Wait until each is ready": "health",
}
ENV = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
           ANSIBLE_VAULT_PASSWORD_FILE=str(REPO / ".testbed/secrets/vault_password"))


# Ansible's own floor on the same hosts: connect and run one module on each
FLOOR = Path(tempfile.gettempdir()) / "llmserve-bench-floor.yml"
FLOOR.write_text(json.dumps([dict(name="Floor", hosts="all", gather_facts=False,
                                  tasks=[dict(name="Ping", **{"ansible.builtin.ping": {}})])]))


def inventory(tmp, hosts, registry):
    """Half prefill, the rest decode, the last host the router; one simulated engine per host."""
    names = ["node%d" % i for i in range(1, hosts + 1)]
    half = (hosts - 1) // 2
    groups = {"prefill": names[:half], "decode": names[half:-1], "proxy": names[-1:]}
    doc = {"all": {"children": {g: {"hosts": {h: None for h in hs}} for g, hs in groups.items()}}}
    (tmp / "hosts.yml").write_text(json.dumps(doc))
    (tmp / "group_vars").mkdir()
    (tmp / "group_vars" / "all.yml").write_text(json.dumps(dict(
        llmserve_accelerator="cpu", llmserve_devices="0", llmserve_model="/models/sim", llmserve_served_model_name="sim",
        llmserve_image="%s/%s" % (registry, SIM), llmserve_proxy_image="%s/%s" % (registry, ROUTER),
        llmserve_kv_connector="NixlConnector", llmserve_vllm_health_delay=1, llmserve_proxy_health_delay=1)))
    return tmp


def site(inv, *args, playbook=REPO / "playbooks/site.yml"):
    """Run a playbook; its wall time, the json callback's report, and the module executions per host."""
    with tempfile.NamedTemporaryFile(suffix=".json") as counts:
        started = time.perf_counter()
        res = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(REPO / ".testbed/inventory"), "-i", str(inv),
                              str(playbook), *args], capture_output=True, text=True, cwd=REPO,
                             env=dict(ENV, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", LLMSERVE_COUNT_FILE=counts.name,
                                      ANSIBLE_CALLBACK_PLUGINS=str(REPO / "bench" / "callback_plugins"),
                                      ANSIBLE_CALLBACKS_ENABLED="count_modules"))
        wall = time.perf_counter() - started
        if res.returncode != 0:
            sys.exit("%s failed:\n%s%s" % (playbook.name, res.stdout[-3000:], res.stderr[-2000:]))
        run = json.loads(res.stdout)
        run["executions"] = json.loads(Path(counts.name).read_text() or "{}")
    return wall, run


def engine_host_executions(run, hosts):
    """Module executions on the hosts that run one engine and nothing else (the decode hosts; the most of them)."""
    return max(run["executions"].get("node%d" % i, 0) for i in range((hosts - 1) // 2 + 1, hosts))


def stages(run):
    """Wall time of each stage: from its first task's start to its last task's end, over all hosts."""
    spans = {}
    for play in run["plays"]:
        for task in play["tasks"]:
            stage = next((s for p, s in STAGES.items() if p in task["task"]["name"]), None)
            if stage:
                start, end = task["task"]["duration"]["start"], task["task"]["duration"]["end"]
                lo, hi = spans.get(stage, (start, end))
                spans[stage] = (min(lo, start), max(hi, end))
    from datetime import datetime
    parse = lambda t: datetime.fromisoformat(t.replace("Z", "+00:00"))  # noqa: E731
    return {s: round((parse(hi) - parse(lo)).total_seconds(), 2) for s, (lo, hi) in spans.items()}


def changed(run):
    return sum(h.get("changed", 0) for h in run["stats"].values())


def measure(hosts):
    subprocess.run(TESTBED + ["up", "--hosts", str(hosts)], check=True, stdout=subprocess.DEVNULL)
    registry = json.loads(subprocess.run([str(BIN / "ansible-inventory"), "-i", str(REPO / ".testbed/inventory"),
                                          "--host", "node1"], capture_output=True, text=True, check=True,
                                         env=ENV).stdout)["llmserve_registry_url"]
    subprocess.run(TESTBED + ["push", SIM, ROUTER], check=True, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as tmp:
        inv = inventory(Path(tmp), hosts, registry)
        site(inv, "--tags", "clean_up")
        for i in range(1, hosts + 1):   # cold: no image on any host
            subprocess.run(["docker", "exec", "llmserve-tb-node%d" % i, "sh", "-c",
                            "docker rmi -f %s/%s %s/%s >/dev/null 2>&1 || true" % (registry, SIM, registry, ROUTER)])
        cold, cold_run = site(inv)
        rerun, rerun_run = site(inv)
        # every task of every stage, as a re-run went before deploy_state (and as molecule's idempotence step runs)
        full, full_run = site(inv, "-e", "llmserve_full_run=true")
        floor, floor_run = site(inv, playbook=FLOOR)
        site(inv, "--tags", "clean_up")
    return dict(hosts=hosts, cold_seconds=round(cold, 2), cold_stages=stages(cold_run), cold_changed=changed(cold_run),
                cold_executions_engine_host=engine_host_executions(cold_run, hosts),
                rerun_seconds=round(rerun, 2), rerun_changed=changed(rerun_run),
                rerun_executions_engine_host=engine_host_executions(rerun_run, hosts),
                full_rerun_seconds=round(full, 2), full_rerun_changed=changed(full_run),
                full_rerun_executions_engine_host=engine_host_executions(full_run, hosts),
                full_rerun_over_floor=round(full / floor, 2),
                floor_seconds=round(floor, 2), floor_executions_per_host=max(floor_run["executions"].values()),
                rerun_over_floor=round(rerun / floor, 2), cold_over_floor=round(cold / floor, 2))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--hosts", type=int, nargs="+", default=[4, 16])
    args = p.parse_args()
    results = [measure(n) for n in args.hosts]
    subprocess.run(TESTBED + ["up", "--hosts", "4"], check=True, stdout=subprocess.DEVNULL)
    for r in results:
        print("%2d hosts: cold %.1f s (%s; changed=%d), re-run %.1f s (changed=%d), floor (ping) %.1f s" % (
            r["hosts"], r["cold_seconds"], ", ".join("%s %.1f s" % kv for kv in sorted(r["cold_stages"].items())),
            r["cold_changed"], r["rerun_seconds"], r["rerun_changed"], r["floor_seconds"]))
        print("          module executions on an engine host: cold %d, re-run %d (floor %d); re-run / floor %.2f, "
              "cold / floor %.2f" % (r["cold_executions_engine_host"], r["rerun_executions_engine_host"],
                                     r["floor_executions_per_host"], r["rerun_over_floor"], r["cold_over_floor"]))
        print("          every task (llmserve_full_run): %.1f s (changed=%d), %d module executions on an engine host, "
              "/ floor %.2f" % (r["full_rerun_seconds"], r["full_rerun_changed"], r["full_rerun_executions_engine_host"],
                                r["full_rerun_over_floor"]))
    if len(results) > 1:
        print("cold %d hosts / %d hosts: %.2f" % (results[-1]["hosts"], results[0]["hosts"],
                                                  results[-1]["cold_seconds"] / results[0]["cold_seconds"]))
    write_results("deploy", results)


if __name__ == "__main__":
    main()
