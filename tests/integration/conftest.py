"""Integration tests run against the real test bed that `make integration` brings up."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / ".testbed" / "inventory"
VAULT_PASSWORD_FILE = REPO / ".testbed" / "secrets" / "vault_password"


@pytest.fixture(scope="session")
def testbed():
    if not INVENTORY.exists():
        if os.environ.get("LLMSERVE_REQUIRE_TESTBED"):
            pytest.fail("the test bed is not up: run `make testbed`")
        pytest.skip("the test bed is not up (make testbed)")
    return INVENTORY


@pytest.fixture(scope="session")
def registry_password(testbed):
    return (REPO / ".testbed" / "secrets" / "registry_password").read_text().strip()


def ansible_playbook(playbook, *args, env=None):
    """Run a playbook against the test bed; return the CompletedProcess (output captured)."""
    bin_dir = Path(sys.executable).parent
    cmd = [str(bin_dir / "ansible-playbook"), "-i", str(INVENTORY), str(playbook), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900, env={
        **os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_VAULT_PASSWORD_FILE": str(VAULT_PASSWORD_FILE), **(env or {})})


def task_results(playbook, *args):
    """Run a playbook with the JSON callback; return {task name: {host: result}} and the run."""
    res = ansible_playbook(playbook, *args, env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    run = json.loads(res.stdout)
    return {t["task"]["name"]: t["hosts"] for play in run["plays"] for t in play["tasks"]}, run


BED_HOSTS = ("node1", "node2", "node3", "node4")


@pytest.fixture
def clean_bed(testbed):
    """No container or file of ours on the bed hosts before a deployment test, whatever ran before it
    (another inventory's engines would hold the ports this one plans)."""
    for host in BED_HOSTS:
        on_host(host, "docker rm -f $(docker ps -aq --filter label=io.llmserve.cluster) >/dev/null 2>&1; "
                      "rm -rf /etc/llmserve /var/lib/llmserve")
    return testbed


def on_host(host, command):
    """Run a shell command on a bed host (inside its container)."""
    return subprocess.run(["docker", "exec", "llmserve-tb-" + host, "sh", "-c", command],
                          capture_output=True, text=True, timeout=120)
