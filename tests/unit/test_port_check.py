"""port_check, run by ansible on localhost against this machine's real sockets and processes, and the stand-in
Docker daemon of test_image_pull for which processes are the plan's containers."""
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from sim_process import free_port
from test_image_pull import daemon, home, run_module  # noqa: F401 (fixtures)


@pytest.fixture
def server():
    """A process of nobody's plan listening on a port: Python's http.server."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=1)
            break
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, "http.server did not start"
            time.sleep(0.1)
    yield port, proc.pid
    proc.kill()
    proc.wait()


def check(tmp_path, home, listeners, containers=(), **args):  # noqa: F811 (fixture)
    return run_module("llmserve.cluster.port_check", dict(
        listeners=listeners, containers=list(containers),
        docker_host="unix://%s" % (tmp_path / "docker.sock"), **args), home)


def test_a_port_held_by_another_process_is_named_with_that_process_and_the_variable(tmp_path, home, daemon, server):
    port, pid = server
    free = free_port()
    rc, result = check(tmp_path, home, [
        dict(port=free, service="vllm-api", instance="prefill-node1", variable="llmserve_vllm_port"),
        dict(port=port, service="vllm-api", instance="decode-node2", variable="llmserve_vllm_port")])
    assert rc != 0
    assert result["msg"].startswith("port %d (vllm-api of decode-node2) is held by PID %d (%s -m http.server %d "
                                    % (port, pid, sys.executable, port)), result["msg"]
    assert result["msg"].endswith("); stop it, or move the port (llmserve_vllm_port)"), result["msg"]
    assert [(x["port"], x["state"]) for x in result["listeners"]] == [(free, "free"), (port, "taken")]


def test_a_port_held_by_a_container_of_the_plan_is_its_own(tmp_path, home, daemon, server):
    port, pid = server
    # the container's main process is the server's parent (this test), as a container's init is its processes'
    daemon.containers["llmserve-decode-node2"] = {"Id": "c-1", "State": {"Running": True, "Pid": os.getpid()}}
    rc, result = check(tmp_path, home, [dict(port=port, service="vllm-api", instance="decode-node2")],
                       ["llmserve-decode-node2", "llmserve-not-started-yet"])
    assert rc == 0, result
    assert result["listeners"] == [dict(port=port, service="vllm-api", instance="decode-node2", state="ours", pid=pid,
                                        owner="llmserve-decode-node2",
                                        process="%s -m http.server %d --bind 127.0.0.1" % (sys.executable, port))]
    # another container of the plan holds nothing of it
    daemon.containers["llmserve-decode-node2"]["State"]["Pid"] = 1
    assert check(tmp_path, home, [dict(port=port)], ["llmserve-decode-node2"])[0] != 0


def test_without_docker_it_cannot_tell_whose_a_port_is_and_says_so(tmp_path, home):  # noqa: F811 (fixture)
    rc, result = check(tmp_path, home, [dict(port=free_port())], ["llmserve-decode-node2"])
    assert rc != 0 and result["msg"].startswith("cannot ask the Docker daemon at unix://"), result
    assert check(tmp_path, home, [dict(port=free_port())])[0] == 0
