"""Plan v2's workloads, as the runner role reads them: start order, restart rules, secrets by reference, groups;
and the stage playbooks built on them (groups)."""
import json
import os
import subprocess
from pathlib import Path

import pytest

import yaml

from plan_inventories import plan_of, workloads

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "unit" / "golden"
PLAYBOOK = [str(REPO / ".venv" / "bin" / "ansible-playbook")]
ENV = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_LOCALHOST_WARNING": "0"}


def golden(name):
    return json.loads((GOLDEN / (name + ".json")).read_text())


def test_mindie_starts_servers_then_controller_then_coordinator_and_restarts_the_later_kinds():
    plan = golden("testbed_mindie")
    servers = ["llmserve-mindie-server-node%d" % i for i in range(1, 5)]
    for i, name in enumerate(servers, 1):
        server = workloads(plan, "node%d" % i)[name]
        assert server["phase"] == 0 and server["ready"]["path"] == "/v2/health/ready"
        # a Server restarts for its own files and TLS material, never because another Server restarted
        assert all(r.startswith("/") for r in server["restart_after"])
        assert server["ready"]["ca"] and server["ready"]["cert"] and server["ready"]["key"]
    node5 = plan["hosts"]["node5"]["workloads"]
    assert [(w["name"], w["phase"]) for w in node5] == [("llmserve-mindie-controller", 1),
                                                        ("llmserve-mindie-coordinator", 2)]
    controller, coordinator = node5
    assert set(servers) <= set(controller["restart_after"])
    assert "llmserve-mindie-controller" not in controller["restart_after"]
    assert set(servers) | {"llmserve-mindie-controller"} <= set(coordinator["restart_after"])
    # the Controller reads the global rank table the ranktable stage writes
    assert any(r.endswith("global_rank_table.json") for r in controller["restart_after"])
    assert controller["container"]["user"] == "1001:1001" and "shm_size" not in controller["container"]


def test_ray_head_first_workers_after_restarted_by_a_new_token_and_service_nodes_as_units():
    plan = golden("testbed_ray")
    head = workloads(plan, "node1")["llmserve-ray-head"]
    assert head["phase"] == 0 and head["restart_after"] == ["/etc/llmserve/ray/auth_token"]
    assert head["ready"] is None   # the ray role checks the join at the dashboard
    assert "/etc/llmserve/ray" in head["remove"] and head["container"]["ipc_mode"] == "shareable"
    unit = workloads(plan, "node4")["llmserve-ray-worker"]
    assert unit["phase"] == 1 and unit["container"] is None
    assert unit["service"]["unit"] == "llmserve-ray-worker.service" and unit["service"]["success_exit_status"] == [1]
    assert unit["service"]["argv"][0].endswith("/bin/ray") and "RAY_AUTH_TOKEN_PATH" in unit["service"]["environment"]


def test_an_engine_is_one_container_with_its_env_file_health_wait_and_what_clean_up_removes():
    plan = golden("testbed_2p1d")
    engine = workloads(plan, "node3")["llmserve-decode-node3"]
    assert engine["container"]["entrypoint"] + engine["container"]["command"] == \
        plan["instances"][2]["members"][0]["argv"]
    assert engine["files"] == [dict(path=engine["container"]["env_file"], mode="0640",
                                    env={"VLLM_HOST_IP": "172.31.240.13"})]
    assert engine["ready"] == dict(url="http://172.31.240.13:8000", path="/health", wait=600, delay=2)
    assert engine["remove"] == [engine["container"]["env_file"]]
    assert plan["hosts"]["node4"]["groups"] == ["llmserve_cluster", "llmserve_front_door"]
    assert plan["hosts"]["node3"]["groups"] == ["llmserve_cluster", "llmserve_engines"]


def test_secrets_are_references_and_nginx_restarts_when_its_file_changed():
    key = "k" * 32
    plan = plan_of(*_replicas(key))
    text = json.dumps(plan)
    assert key not in text
    (replica,) = workloads(plan, "r0").values()
    assert replica["secrets"] == [dict(env="VLLM_API_KEY", variable="llmserve_api_key", host="router")]
    nginx = workloads(plan, "router")["llmserve-nginx"]
    config = nginx["restart_after"][0]
    assert config.endswith("/front-door/nginx.conf") and nginx["remove"] == [config.rsplit("/", 1)[0]]


def _replicas(key):
    groups = {"replica": ["r0"], "proxy": ["router"]}
    common = dict(llmserve_accelerator="cpu", llmserve_devices="0", llmserve_model="/m", llmserve_image="vllm:1",
                  llmserve_api_key=key)
    hostvars = {"r0": dict(common, ansible_host="10.0.0.1"), "router": dict(common, ansible_host="10.0.0.2")}
    return groups, hostvars


def test_knobs_reach_the_workloads():
    groups, hostvars = _replicas("k" * 32)
    for hv in hostvars.values():
        hv.update(llmserve_vllm_stop_timeout=7, llmserve_vllm_shm_size="3G", llmserve_vllm_health_retries=5,
                  llmserve_vllm_health_delay=3, llmserve_proxy_stop_timeout=4)
    plan = plan_of(groups, hostvars)
    (replica,) = workloads(plan, "r0").values()
    assert replica["container"]["stop_timeout"] == 7 and replica["container"]["shm_size"] == "3G"
    assert replica["ready"]["wait"] == 15 and replica["ready"]["delay"] == 3
    assert workloads(plan, "router")["llmserve-nginx"]["container"]["stop_timeout"] == 4


def run_playbook(inventory, *args):
    return subprocess.run(PLAYBOOK + ["-i", str(REPO / inventory), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=ENV)


def test_validate_plans_every_system_and_contacts_no_host():
    res = run_playbook("inventories/examples/gpustack_ha", "playbooks/site.yml", "--tags", "validate")
    assert res.returncode == 0 and "no problem found" in res.stdout, res.stdout[-2000:]
    assert "ESTABLISH" not in res.stdout and "UNREACHABLE" not in res.stdout


def test_stage_plays_target_groups_and_one_task_starts_every_container():
    """Only the first play (groups.yml, which plans and groups) and plan.yml run on all hosts; the roles and
    playbooks hold one docker_container task to start and one to stop or remove."""
    for path in sorted((REPO / "playbooks").glob("*.yml")):
        for play in yaml.safe_load(path.read_text()) or []:
            if "hosts" in play and path.name not in ("groups.yml", "plan.yml"):
                assert play["hosts"].startswith("llmserve_"), (path.name, play["name"], play["hosts"])
    tasks = [p for d in ("roles", "playbooks") for p in (REPO / d).rglob("*.yml")
             if "community.docker.docker_container:" in p.read_text()]
    assert sorted(str(p.relative_to(REPO)) for p in tasks) == ["roles/runner/tasks/start.yml",
                                                               "roles/runner/tasks/stop_phase.yml"]
    assert all(p.read_text().count("community.docker.docker_container:") == 1 for p in tasks)
