"""deploy_state, run by ansible against the stand-in Docker daemon of test_image_pull and a local health
endpoint: what it records, that a host left as recorded is converged, and that each kind of difference is found
and named. The playbooks around it (one module per host on a converged re-run, a difference deployed) are tested
on the test bed by tests/integration/test_vllm_pd.py."""
import json
import os
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from test_image_pull import IMAGE, REPO, daemon, home, run_module  # noqa: F401 (fixtures)

from ansible_collections.llmserve.cluster.plugins.action.deploy_state import host_lists, secret_refs

GOLDEN = REPO / "tests" / "unit" / "golden"


@pytest.fixture
def health():
    """A readiness endpoint whose answer the test sets."""
    answer = {"status": 200, "metrics": ""}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = answer["metrics"].encode() if self.path == "/metrics" else b""
            self.send_response(answer["status"] if self.path in ("/health", "/metrics") else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    answer["url"] = "http://127.0.0.1:%d" % server.server_port
    yield answer
    server.shutdown()
    server.server_close()


@pytest.fixture
def host(tmp_path, home, daemon, health):  # noqa: F811 (fixtures)
    """One engine as a deploy leaves it: its image pulled under the registry's digest, its container running on
    it, its env file written, its health 200; and the module's arguments for that host."""
    daemon.publish(IMAGE + ":1.0", "sha256:aaa")
    daemon.local[IMAGE + ":1.0"] = {"Id": "sha256:img-a", "RepoDigests": [IMAGE + "@sha256:aaa"]}
    daemon.containers["engine"] = {"Id": "c-1", "Image": "sha256:img-a", "State": {"Running": True, "Status": "running"}}
    env_file = tmp_path / "engine.env"
    env_file.write_text("A=1\n")
    args = dict(digest="d-1", images=[IMAGE + ":1.0"], containers=[dict(name="engine", image=IMAGE + ":1.0")],
                files=[str(env_file)], probes=[dict(name="engine", url=health["url"], path="/health")],
                path=str(tmp_path / "state" / "deploy_state.json"),
                docker_host="unix://%s" % (tmp_path / "docker.sock"))
    return dict(args=args, home=home, daemon=daemon, health=health, env_file=env_file)


def state(host, check_mode=False, **changes):
    rc, result = run_module("llmserve.cluster.deploy_state", dict(host["args"], **changes), host["home"], check_mode)
    assert rc == 0, result
    return result


def test_a_host_left_as_recorded_is_converged_and_healthy(host):
    assert state(host)["reasons"] == ["no deploy recorded on this host (%s)" % host["args"]["path"]]
    assert state(host, check_mode=True, state="record")["recorded"] is True
    assert state(host)["converged"] is False, "check mode wrote the record"

    recorded = state(host, state="record")
    assert recorded["recorded"] is True and recorded["changed"] is False, "bookkeeping, not a change of what runs"
    path = host["args"]["path"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(open(path).read())["containers"] == {"engine": "c-1"}
    assert state(host, state="record")["recorded"] is False, "the same state is not written twice"

    checked = state(host)
    assert checked["converged"] is True and checked["reasons"] == [] and checked["changed"] is False
    assert checked["health"] == [dict(name="engine", url=host["health"]["url"] + "/health", healthy=True, status=200)]


@pytest.mark.parametrize("drift, reason", [
    (lambda h: h["args"].update(digest="d-2"), "the inventory, its variables or the collection changed"),
    (lambda h: h["daemon"].containers["engine"]["State"].update(Running=False, Status="exited"),
     "container engine is exited"),
    (lambda h: h["daemon"].containers["engine"]["State"].update(Restarting=True, Status="restarting"),
     "container engine is restarting"),
    (lambda h: h["daemon"].containers["engine"].update(Id="c-2"), "container engine was replaced"),
    (lambda h: h["daemon"].containers.pop("engine"), "container engine is missing"),
    (lambda h: h["daemon"].publish(IMAGE + ":1.0", "sha256:bbb"), "the registry holds another digest"),
    (lambda h: h["daemon"].local.update({IMAGE + ":1.0": {"Id": "sha256:img-b", "RepoDigests": [IMAGE + "@sha256:aaa"]}}),
     "container engine runs another image than"),
    (lambda h: h["env_file"].write_text("A=2\n"), "engine.env is changed since the last deploy"),
    (lambda h: h["env_file"].unlink(), "engine.env is missing since the last deploy"),
    (lambda h: h["health"].update(status=503), "engine does not answer at"),
    (lambda h: h["args"].update(docker_host="unix:///nowhere.sock"), "cannot talk to the Docker daemon"),
])
def test_each_difference_from_the_record_is_named(host, drift, reason):
    state(host, state="record")
    drift(host)
    checked = state(host)
    assert checked["converged"] is False
    assert any(reason in line for line in checked["reasons"]), checked["reasons"]


def test_a_check_wants_its_line_in_the_answer(host):
    """An Xinference model READY in the supervisor's metrics, as the plan's checks ask for it."""
    plan = json.loads((GOLDEN / "testbed_xinference.json").read_text())
    check = dict(host_lists(plan["hosts"]["node1"])["probes"][1], url=host["health"]["url"])
    assert check["name"] == "model smollm2-135m-instruct" and check["path"] == "/metrics"
    host["health"]["metrics"] = ('# TYPE xinference:model_status gauge\n'
                                 'xinference:model_status{model_name="smollm2-135m-instruct",'
                                 'model_uid="smollm2-135m-instruct",status="READY"} 1.0\n')
    host["args"]["probes"].append(check)
    state(host, state="record")
    assert state(host)["converged"] is True
    # the model died with its worker: only the other one is READY
    host["health"]["metrics"] = 'xinference:model_status{model_name="b",model_uid="b",status="READY"} 1\n'
    checked = state(host)
    assert checked["converged"] is False and checked["reasons"] == [
        "model smollm2-135m-instruct does not answer at %s/metrics (no line of its answer matches %s)"
        % (host["health"]["url"], check["expect"])]


def test_a_workload_without_http_is_asked_by_its_ready_command(host):
    """GPUStack's PostgreSQL: pg_isready run in its container (docker exec), healthy when it exits 0."""
    plan = json.loads((GOLDEN / "testbed_gpustack.json").read_text())
    check = host_lists(plan["hosts"]["node1"])["probes"][0]
    assert check["name"] == "llmserve-gpustack-database" and check["command"][0] == "pg_isready", check
    host["daemon"].containers[check["name"]] = dict(host["daemon"].containers["engine"])
    host["args"]["probes"].append(check)
    host["args"]["containers"].append(dict(name=check["name"], image=IMAGE + ":1.0"))
    state(host, state="record")
    checked = state(host)
    assert checked["converged"] is True and checked["health"][1] == dict(
        name=check["name"], url="exec " + " ".join(check["command"]), healthy=True, status=0)
    assert host["daemon"].execs["e-1"] == (check["name"], check["command"])
    host["daemon"].exec_codes[check["name"]] = 2   # pg_isready: no response
    checked = state(host)
    assert checked["converged"] is False and checked["reasons"] == [
        "%s does not answer exec %s (exit code 2)" % (check["name"], " ".join(check["command"]))]
    host["daemon"].containers[check["name"]]["State"] = {"Running": False, "Status": "exited"}
    assert state(host)["reasons"] == ["container %s is exited" % check["name"],
                                      "%s does not answer exec %s (POST /containers/%s/exec: 409 Conflict (container %s"
                                      " is not running))" % (check["name"], " ".join(check["command"]), check["name"],
                                                             check["name"])]


def test_absent_forgets_the_record(host):
    state(host, state="record")
    assert state(host, check_mode=True, state="absent")["changed"] is True
    assert state(host, state="absent")["changed"] is True
    assert state(host, state="absent")["changed"] is False
    assert state(host)["reasons"][0].startswith("no deploy recorded")


def test_what_is_compared_comes_from_the_plan():
    plan = json.loads((GOLDEN / "testbed_mindie.json").read_text())
    controller = host_lists(plan["hosts"]["node5"])
    assert [c["name"] for c in controller["containers"]] == ["llmserve-mindie-controller", "llmserve-mindie-coordinator"]
    # the files each component restarts after (TLS material, rank table, configurations) are compared by checksum
    assert "/etc/llmserve/mindie/global_rank_table.json" in controller["files"]
    assert "/etc/llmserve/mindie/tls/key.pem" in controller["files"]
    assert all(p["url"].startswith("https://") and p["ca"] and p["cert"] and p["key"] for p in controller["probes"])

    ray = json.loads((GOLDEN / "testbed_ray.json").read_text())
    unit_host = host_lists(ray["hosts"]["node4"])
    assert unit_host["units"] == ["llmserve-ray-worker.service"] and unit_host["containers"] == []
    assert "/etc/systemd/system/llmserve-ray-worker.service" in unit_host["files"]
    # secrets are in the plan by reference; their values go into the digest
    assert set(secret_refs(ray)) == {("node%d" % i, "llmserve_ray_auth_token") for i in range(1, 5)}
