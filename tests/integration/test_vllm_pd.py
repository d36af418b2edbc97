"""The real 2P1D vLLM cluster on the test bed: an engine killed by hand comes back by itself while the
router keeps answering, stop_server stops gracefully, and clean_up leaves nothing of ours on the hosts."""
import json
import time
import urllib.request

from conftest import REPO, ansible_playbook, on_host

EXAMPLE = REPO / "tests" / "testbed" / "inventories" / "testbed_2p1d"
SITE = REPO / "playbooks" / "site.yml"
ROUTER = "http://172.31.240.14:10001"


def completion():
    body = json.dumps({"model": "tiny-llama", "prompt": "hello there", "max_tokens": 4}).encode()
    req = urllib.request.Request(ROUTER + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.status, json.loads(resp.read())


def healthy(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_kill_stop_start_and_clean_up(clean_bed):
    res = ansible_playbook(SITE, "-i", str(EXAMPLE))
    assert res.returncode == 0, res.stdout[-3000:]

    restarts = on_host("node2", "docker inspect -f '{{.RestartCount}}' llmserve-prefill-node2").stdout.strip()
    kill = on_host("node2", "kill -9 $(docker inspect -f '{{.State.Pid}}' llmserve-prefill-node2)")
    assert kill.returncode == 0, kill.stderr
    # the other prefill engine serves while this one is down or loading again
    answers = [completion() for _ in range(6)]
    assert all(status == 200 and body["choices"][0]["text"] for status, body in answers)
    # the restart policy brings it back, with no help from Ansible (polled, no fixed sleep)
    deadline = time.monotonic() + 300
    while not healthy("http://172.31.240.12:8000/health") and time.monotonic() < deadline:
        time.sleep(1)
    assert healthy("http://172.31.240.12:8000/health")
    after = on_host("node2", "docker inspect -f '{{.RestartCount}}' llmserve-prefill-node2").stdout.strip()
    assert int(after) == int(restarts) + 1

    # stop_server stops gracefully (SIGTERM: vLLM exits 0, not 137); a plain run starts them again
    res = ansible_playbook(SITE, "-i", str(EXAMPLE), "--tags", "stop_server")
    assert res.returncode == 0, res.stdout[-3000:]
    state = on_host("node3", "docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' llmserve-decode-node3").stdout
    assert state.split() == ["exited", "0"], state
    res = ansible_playbook(SITE, "-i", str(EXAMPLE))
    assert res.returncode == 0, res.stdout[-3000:]
    assert healthy("http://172.31.240.13:8000/health") and completion()[0] == 200

    res = ansible_playbook(SITE, "-i", str(EXAMPLE), "--tags", "clean_up")
    assert res.returncode == 0, res.stdout[-3000:]
    for host in ("node1", "node2", "node3", "node4"):
        left = on_host(host, "docker ps -aq --filter label=io.llmserve.cluster; ls /etc/llmserve 2>/dev/null")
        assert left.stdout.strip() == "", (host, left.stdout)
