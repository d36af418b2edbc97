"""The status table (playbooks/templates/status_table.j2), rendered by ansible for a plan with workloads of every
readiness kind: one line each, healthy or DOWN with what the host's converged check (deploy_state) answered."""
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

GOLDEN = REPO / "tests" / "unit" / "golden"


def table(tmp_path, plan, health):
    """The table's lines for plan (a golden file's name), each host's deploy_state health list as given."""
    hosts = sorted(json.loads((GOLDEN / plan).read_text())["hosts"])
    (tmp_path / "inventory.yml").write_text(json.dumps({"all": {"hosts": {
        h: {"ansible_connection": "local", "llmserve_state": {"health": health.get(h, [])}} for h in hosts}}}))
    (tmp_path / "table.yml").write_text(json.dumps([{
        "hosts": "all", "gather_facts": False,
        "vars": {"llmserve_plan": "{{ lookup('ansible.builtin.file', '%s') | from_json }}" % (GOLDEN / plan)},
        "tasks": [{"ansible.builtin.debug": {
            "msg": "{{ lookup('ansible.builtin.template', '%s') }}" % (REPO / "playbooks/templates/status_table.j2")},
            "run_once": True}]}]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    res = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "inventory.yml"),
                          str(tmp_path / "table.yml")], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    result = json.loads(res.stdout)["plays"][0]["tasks"][0]["hosts"]
    return next(iter(result.values()))["msg"].strip().splitlines()


def test_every_workload_has_a_line_with_its_health_http_or_command(tmp_path):
    health = {"node1": [{"name": "llmserve-gpustack-database", "healthy": True, "status": 0}],
              "node2": [{"name": "llmserve-gpustack-server", "healthy": False, "status": 503}],
              "node4": [{"name": "llmserve-gpustack-worker", "healthy": True, "status": 200}]}
    lines = table(tmp_path, "testbed_gpustack.json", health)
    assert lines[0].split() == ["CONTAINER", "HOST", "INSTANCE", "URL", "HEALTH", "IMAGE"]
    rows = {(row.split()[0], row.split()[1]): row.split() for row in lines[1:]}
    assert sorted(rows) == [("llmserve-gpustack-database", "node1"), ("llmserve-gpustack-lb", "node3"),
                            ("llmserve-gpustack-server", "node2"), ("llmserve-gpustack-worker", "node4"),
                            ("llmserve-gpustack-worker", "node5")], lines
    database = rows["llmserve-gpustack-database", "node1"]
    assert database[3:6] == ["exec", "pg_isready", "healthy"], database
    assert rows["llmserve-gpustack-server", "node2"][4] == "DOWN(503)"
    assert rows["llmserve-gpustack-worker", "node4"][4] == "healthy"
    # a workload the check did not answer for (the host unreachable) is DOWN, not healthy
    assert rows["llmserve-gpustack-worker", "node5"][4] == "DOWN(-1)"
