"""The cluster systems of the plan: Ray (vLLM over TP x PP), Xinference and GPUStack, good and bad inventories."""
import copy
import json
from pathlib import Path

import pytest
import yaml

from ansible_collections.llmserve.cluster.plugins.plugin_utils._planner import PlanError, build_plan, wanted_variable
from plan_inventories import check_contract, flag

REPO = Path(__file__).resolve().parents[2]
IMAGE = "registry.example.com:5000/vllm/vllm-openai:v0.32.0"
XINF = "registry.example.com:5000/xprobe/xinference:v4.1.0"
GPUSTACK = "registry.example.com:5000/gpustack/gpustack:v2.3.0"
SECRET = "s3cr3t-value-that-must-not-leak"


def plan_of(groups, hostvars):
    return build_plan(copy.deepcopy(groups), copy.deepcopy(hostvars))


def problems_of(groups, hostvars):
    with pytest.raises(PlanError) as err:
        build_plan(copy.deepcopy(groups), copy.deepcopy(hostvars))
    return [str(p) for p in err.value.problems]


def inventory(layout, common=None, **per_host):
    """layout: {group: [host, ...]}; hosts get addresses 10.7.0.1... in order of first appearance."""
    hostvars = {}
    for hosts in layout.values():
        for host in hosts:
            if host not in hostvars:
                hostvars[host] = dict(common or {}, ansible_host="10.7.0.%d" % (len(hostvars) + 1))
    for host, extra in per_host.items():
        hostvars[host].update(extra)
    return {g: list(h) for g, h in layout.items()}, hostvars


def the(plan, name):
    (found,) = [i for i in plan["instances"] if i["name"] == name]
    return found


def listeners(plan, host):
    return {entry["port"]: entry["service"] for entry in plan["hosts"][host]["listeners"]}


def example(name):
    """An example inventory as the plan action plugin hands it over: groups in order, variables merged."""
    root = REPO / "inventories" / "examples" / name
    common = {}
    for path in sorted((root / "group_vars" / "all").glob("*.yml")):
        common.update(yaml.safe_load(path.read_text()) or {})
    groups, hostvars = {}, {}
    for group, body in yaml.safe_load((root / "hosts.yml").read_text())["all"]["children"].items():
        for host, own in (body.get("hosts") or {}).items():
            groups.setdefault(group, []).append(host)
            hostvars.setdefault(host, dict(common)).update(own or {})
    return groups, {h: {k: v for k, v in hv.items() if wanted_variable(k)} for h, hv in hostvars.items()}


# ================================================================ Ray

RAY_COMMON = dict(llmserve_model="/models/m", llmserve_image=IMAGE, llmserve_devices="0-7", llmserve_ray_auth_token=SECRET)


def ray(workers=1, common=None, **per_host):
    layout = {"ray_head": ["head"], "ray_worker": ["w%d" % i for i in range(workers)]}
    return inventory(layout, dict(RAY_COMMON, **(common or {})), **per_host)


def test_ray_two_nodes_default_to_tp_per_node_and_pp_per_node_count():
    plan = plan_of(*ray(1))
    check_contract(plan)
    head, worker = the(plan, "ray-head"), the(plan, "ray-worker")
    assert (head["tensor_parallel_size"], head["pipeline_parallel_size"], head["devices_total"]) == (8, 2, 16)
    hm = head["members"][0]
    assert hm["argv"][:5] == ["ray", "start", "--block", "--node-ip-address", "10.7.0.1"]
    assert "--head" in hm["argv"] and flag(hm["argv"], "--port") == "6379"
    assert flag(hm["argv"], "--dashboard-host") == "10.7.0.1" and flag(hm["argv"], "--dashboard-port") == "8265"
    assert flag(hm["argv"], "--ray-client-server-port") == "10001" and flag(hm["argv"], "--num-gpus") == "8"
    assert flag(hm["argv"], "--min-worker-port") == "10002" and flag(hm["argv"], "--max-worker-port") == "10999"
    assert hm["env"] == {"VLLM_HOST_IP": "10.7.0.1", "RAY_NODE_IP_ADDRESS": "10.7.0.1",
                         "RAY_OVERRIDE_NODE_IP_ADDRESS": "10.7.0.1", "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7",
                         "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "/etc/llmserve/ray/auth_token"}
    assert hm["serve_argv"] == ["vllm", "serve", "/models/m", "--host", "10.7.0.1", "--port", "8000",
                                "--tensor-parallel-size", "8", "--pipeline-parallel-size", "2",
                                "--distributed-executor-backend", "ray"]
    assert hm["serve_env"] == {"RAY_ADDRESS": "10.7.0.1:6379"}
    assert listeners(plan, "head") == {
        6379: "ray-gcs", 6380: "ray-node-manager", 6381: "ray-object-manager", 6382: "ray-runtime-env-agent",
        6383: "ray-dashboard-agent-grpc", 8000: "vllm-api", 8080: "ray-metrics", 8265: "ray-dashboard",
        10001: "ray-client", 52365: "ray-dashboard-agent"}
    wm = worker["members"][0]
    assert flag(wm["argv"], "--address") == "10.7.0.1:6379" and "--head" not in wm["argv"]
    assert wm["env"]["VLLM_HOST_IP"] == wm["env"]["RAY_NODE_IP_ADDRESS"] == "10.7.0.2"
    assert "serve_argv" not in wm and 8000 not in listeners(plan, "w0") and 6379 not in listeners(plan, "w0")
    assert wm["port_ranges"] == [{"first": 10002, "last": 10999, "service": "ray-worker"}]
    assert wm["health"] == ["http://10.7.0.2:52365/api/local_raylet_healthz"]
    assert hm["health"] == ["http://10.7.0.1:8265/api/gcs_healthz", "http://10.7.0.1:52365/api/local_raylet_healthz"]
    assert hm["ipc_mode"] == "shareable" and "/tmp/llmserve-ray:/tmp/ray" in hm["volumes"]
    # vLLM over Ray: its own container on the head's host, in the head's process and IPC namespaces
    (vm,) = the(plan, "ray-vllm")["members"]
    assert vm["host"] == "head" and vm["container"] == "llmserve-ray-vllm" and vm["argv"] == hm["serve_argv"]
    assert vm["ipc_mode"] == vm["pid_mode"] == "container:llmserve-ray-head"
    assert vm["volumes"] == ["/tmp/llmserve-ray:/tmp/ray", "/etc/llmserve/ray/auth_token:/etc/llmserve/ray/auth_token:ro"]
    assert vm["env"] == {"RAY_ADDRESS": "10.7.0.1:6379", "VLLM_HOST_IP": "10.7.0.1", "RAY_NODE_IP_ADDRESS": "10.7.0.1",
                         "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "/etc/llmserve/ray/auth_token"}
    assert vm["health_url"] == "http://10.7.0.1:8000/health" and vm["env_file"] == "/etc/llmserve/llmserve-ray-vllm.env"
    assert head["ready"] == {"url": "http://10.7.0.1:8265/api/v0/nodes", "alive_nodes": 2, "devices": 16,
                             "command": ["ray", "status", "--address", "10.7.0.1:6379"],
                             "nodes": {"10.7.0.1": {"GPU": 8}, "10.7.0.2": {"GPU": 8}}}
    assert plan["front_door"] == {"kind": "vllm-ray", "host": "head", "url": "http://10.7.0.1:8000",
                                  "backends": {"engine": ["http://10.7.0.1:8000"]},
                                  "health": "http://10.7.0.1:8000/health"}
    assert head["auth"] == {"mode": "token", "token_variable": "llmserve_ray_auth_token"}


def test_ray_one_given_size_derives_the_other_and_a_lone_head_is_a_cluster():
    plan = plan_of(*ray(3, common=dict(llmserve_tensor_parallel_size=4)))
    head = the(plan, "ray-head")
    assert (head["tensor_parallel_size"], head["pipeline_parallel_size"]) == (4, 8)
    plan = plan_of(*ray(1, common=dict(llmserve_pipeline_parallel_size=4)))
    assert (the(plan, "ray-head")["tensor_parallel_size"], the(plan, "ray-head")["pipeline_parallel_size"]) == (4, 4)
    plan = plan_of(*ray(0))
    assert [i["name"] for i in plan["instances"]] == ["ray-head", "ray-vllm"]
    assert flag(the(plan, "ray-head")["members"][0]["serve_argv"], "--pipeline-parallel-size") == "1"
    plan = plan_of(*ray(0, common=dict(llmserve_ray_vllm=False)))   # a Ray cluster alone: no vLLM, no port
    assert [i["name"] for i in plan["instances"]] == ["ray-head"] and plan["front_door"] is None
    assert 8000 not in listeners(plan, "head")


def test_ray_sizes_that_fit_in_fewer_devices_are_accepted():
    plan = plan_of(*ray(1, common=dict(llmserve_tensor_parallel_size=4, llmserve_pipeline_parallel_size=2)))
    assert the(plan, "ray-head")["devices_total"] == 16
    assert flag(the(plan, "ray-head")["members"][0]["serve_argv"], "--tensor-parallel-size") == "4"


def test_ray_token_auth_is_on_by_default_a_0600_file_per_node_from_its_own_variable():
    plan = plan_of(*ray(1))
    for inst in [i for i in plan["instances"] if i["kind"] != "ray_vllm"]:
        assert inst["auth"] == {"mode": "token", "token_variable": "llmserve_ray_auth_token"}
        for m in inst["members"]:
            path = "/etc/llmserve/ray/auth_token"
            assert m["env"]["RAY_AUTH_MODE"] == "token" and m["env"]["RAY_AUTH_TOKEN_PATH"] == path
            assert "RAY_AUTH_TOKEN" not in m["env"] and "secret_env" not in m   # never in `docker inspect`
            # each node's own variable: a host whose token differs fails to join, and says so
            assert m["token"] == {"path": path, "variable": "llmserve_ray_auth_token", "host": m["host"]}
            assert m["volumes"][-1:] == ["%s:%s:ro" % (path, path)]
    assert SECRET not in json.dumps(plan)
    plan = plan_of(*ray(1, common=dict(llmserve_ray_auth_mode="disabled")))
    for m in the(plan, "ray-worker")["members"]:
        assert "token" not in m and "RAY_AUTH_MODE" not in m["env"] and m["volumes"] == []


def test_ray_resources_object_store_and_cpus_come_from_the_inventory():
    plan = plan_of(*ray(1, w0=dict(llmserve_ray_resources={"worker_marker": 1, "half": "0.5"}, llmserve_ray_num_cpus=2,
                                   llmserve_ray_object_store_memory=100000000,
                                   llmserve_ray_object_store_dir="/srv/ray-objects")))
    wm = the(plan, "ray-worker")["members"][0]
    assert json.loads(flag(wm["argv"], "--resources")) == {"half": 0.5, "worker_marker": 1}
    assert flag(wm["argv"], "--num-cpus") == "2" and flag(wm["argv"], "--object-store-memory") == "100000000"
    assert flag(wm["argv"], "--plasma-directory") == "/srv/ray-objects"
    assert "/srv/ray-objects:/srv/ray-objects" in wm["volumes"]
    assert the(plan, "ray-head")["ready"]["nodes"]["10.7.0.2"] == {"GPU": 8, "CPU": 2, "half": 0.5, "worker_marker": 1}
    assert "--resources" not in the(plan, "ray-head")["members"][0]["argv"]


def test_ray_ascend_nodes_announce_npus_and_extra_settings_reach_every_node():
    plan = plan_of(*ray(1, common=dict(llmserve_accelerator="ascend_a3", llmserve_devices="0-15",
                                       llmserve_ray_socket_ifname="eth1", llmserve_vllm_env={"NCCL_DEBUG": "INFO"},
                                       llmserve_ray_client_port=None, llmserve_ray_num_cpus=32,
                                       llmserve_vllm_extra_args=["--max-model-len", 4096],
                                       llmserve_served_model_name="big")))
    for inst in [i for i in plan["instances"] if i["kind"] != "ray_vllm"]:
        m = inst["members"][0]
        assert flag(m["argv"], "--resources") == '{"NPU":16}' and flag(m["argv"], "--num-gpus") == "0"
        assert flag(m["argv"], "--num-cpus") == "32"
        assert m["env"]["ASCEND_RT_VISIBLE_DEVICES"] == ",".join(str(i) for i in range(16))
        assert m["env"]["NCCL_SOCKET_IFNAME"] == m["env"]["GLOO_SOCKET_IFNAME"] == "eth1"
        assert m["env"]["NCCL_DEBUG"] == "INFO"
    head = the(plan, "ray-head")["members"][0]
    assert "--ray-client-server-port" not in head["argv"] and 10001 not in listeners(plan, "head")
    vm = the(plan, "ray-vllm")["members"][0]   # NCCL/Gloo interfaces and the extra environment reach vLLM too
    assert vm["env"]["NCCL_SOCKET_IFNAME"] == "eth1" and vm["env"]["NCCL_DEBUG"] == "INFO"
    assert head["serve_argv"][3:5] == ["--served-model-name", "big"] and head["serve_argv"][-2:] == ["--max-model-len", "4096"]


def test_ray_service_nodes_run_ray_from_their_venv_and_mix_with_containers():
    plan = plan_of(*ray(2, w1=dict(llmserve_ray_runtime="service", llmserve_ray_venv="/srv/ray/",
                                   llmserve_ray_pip_packages=["ray[default]==2.60.0"],
                                   llmserve_ray_pip_env={"PIP_NO_INDEX": 1, "PIP_FIND_LINKS": "/srv/wheels"})))
    w0, w1 = the(plan, "ray-worker")["members"]
    assert w0["runtime"] == "container" and w0["container"] == "llmserve-ray-worker" and w0["image"] == IMAGE
    assert w1["runtime"] == "service" and w1["unit"] == "llmserve-ray-worker.service" and w1["venv"] == "/srv/ray"
    assert "container" not in w1 and "image" not in w1 and "device_nodes" not in w1
    # the same ray start as a container node's, from the venv
    assert w1["argv"][0] == "/srv/ray/bin/ray"
    assert w1["argv"][1:] == [("10.7.0.3" if a == "10.7.0.2" else a) for a in w0["argv"][1:]]
    assert w1["pip"] == {"packages": ["ray[default]==2.60.0"], "env": {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/srv/wheels"}}
    assert w1["env"]["RAY_AUTH_TOKEN_PATH"] == "/etc/llmserve/ray/auth_token"
    assert plan["hosts"]["w1"]["images"] == [] and plan["hosts"]["w0"]["images"] == [IMAGE]
    # a cluster of services alone needs no image when vLLM is not started over it
    plan = plan_of(*ray(1, common=dict(llmserve_ray_runtime="service", llmserve_image=None, llmserve_ray_vllm=False)))
    assert [m["argv"][0] for m in plan["instances"][0]["members"]] == ["/opt/llmserve/ray-venv/bin/ray"]
    assert the(plan, "ray-worker")["members"][0]["pip"]["packages"] == []


def test_ray_ascend_containers_get_the_device_nodes_and_driver_mounts_and_vllm_too():
    plan = plan_of(*ray(1, common=dict(llmserve_accelerator="ascend_a2", llmserve_devices="0-3"),
                        w0=dict(llmserve_devices="4-7")))
    head, vm = the(plan, "ray-head")["members"][0], the(plan, "ray-vllm")["members"][0]
    worker = the(plan, "ray-worker")["members"][0]
    assert head["device_nodes"][:4] == ["/dev/davinci%d:/dev/davinci%d:rwm" % (n, n) for n in range(4)]
    assert len(worker["device_nodes"]) == 8 + 3 and worker["device_nodes"][-1] == "/dev/hisi_hdc:/dev/hisi_hdc:rwm"
    assert "/usr/local/Ascend/driver:/usr/local/Ascend/driver:ro" in worker["volumes"]
    assert vm["device_nodes"] == head["device_nodes"] and "/etc/hccn.conf:/etc/hccn.conf:ro" in vm["volumes"]
    assert head["device_requests"] == []
    plan = plan_of(*ray(1))   # NVIDIA: devices by device request, no nodes
    assert the(plan, "ray-head")["members"][0]["device_nodes"] == []
    assert the(plan, "ray-worker")["members"][0]["device_requests"][0]["device_ids"] == [str(n) for n in range(8)]


RAY_BAD = {
    "two heads": (
        lambda: inventory({"ray_head": ["h0", "h1"], "ray_worker": ["w0"]}, RAY_COMMON),
        "inventory: ray_head: has 2 hosts (h0, h1); a Ray cluster has exactly one head"),
    "workers without head": (
        lambda: inventory({"ray_worker": ["w0", "w1"]}, RAY_COMMON),
        "inventory: ray_head: has no host, but ray_worker has w0, w1; put the Ray head in the ray_head group"),
    "TP x PP larger than the cluster": (
        lambda: ray(1, common=dict(llmserve_tensor_parallel_size=8, llmserve_pipeline_parallel_size=4)),
        "head: llmserve_tensor_parallel_size: TP 8 x PP 4 = 32 devices, but the Ray cluster has 16 (head: 8, w0: 8); "
        "lower the sizes or add ray_worker hosts"),
    "TP that does not divide": (
        lambda: ray(1, common=dict(llmserve_tensor_parallel_size=3)),
        "head: llmserve_tensor_parallel_size: 3 does not divide the cluster's 16 devices"),
    "uneven nodes without sizes": (
        lambda: ray(1, w0=dict(llmserve_devices="0-3")),
        "head: llmserve_tensor_parallel_size: the Ray nodes have different device counts (head: 8, w0: 4)"),
    "missing model": (
        lambda: ray(1, common=dict(llmserve_model=None)),
        "head: llmserve_model: is not set; give the model path or name vLLM serves"),
    "missing image": (
        lambda: ray(1, common=dict(llmserve_image="")),
        "head: llmserve_image: is not set; give the vLLM image with Ray"),
    "two images": (
        lambda: ray(1, w0=dict(llmserve_image="other:1")),
        "w0: llmserve_image: 'other:1' differs from '%s' on head; every Ray node must run the same Ray and Python" % IMAGE),
    "token mode without token": (
        lambda: ray(1, w0=dict(llmserve_ray_auth_token="")),
        "w0: llmserve_ray_auth_token: is not set, but llmserve_ray_auth_mode is token (the default)"),
    "unknown auth mode": (
        lambda: ray(1, common=dict(llmserve_ray_auth_mode="password")),
        "head: llmserve_ray_auth_mode: 'password' is not one of disabled, token"),
    "host in head and worker": (
        lambda: inventory({"ray_head": ["h0"], "ray_worker": ["h0", "w1"]}, RAY_COMMON),
        "h0: groups: is in both ray_head and ray_worker"),
    "missing devices": (
        lambda: ray(1, w0=dict(llmserve_devices=None)),
        "w0: llmserve_devices: is not set"),
    "worker range over the vLLM port": (
        lambda: ray(0, common=dict(llmserve_vllm_port=10005)),
        "head: llmserve_vllm_port: port 10005 of vllm-api (ray-vllm) is already taken by reserved (ray-worker "
        "(ray-head)); move one of them"),
    "worker range backwards": (
        lambda: ray(0, common=dict(llmserve_ray_min_worker_port=20000, llmserve_ray_max_worker_port=19000)),
        "head: llmserve_ray_max_worker_port: 19000 is below llmserve_ray_min_worker_port 20000"),
    "unknown runtime": (
        lambda: ray(1, w0=dict(llmserve_ray_runtime="systemd")),
        "w0: llmserve_ray_runtime: 'systemd' is not one of container, service"),
    "relative venv": (
        lambda: ray(1, w0=dict(llmserve_ray_runtime="service", llmserve_ray_venv="venvs/ray")),
        "w0: llmserve_ray_venv: 'venvs/ray' is not an absolute path"),
    "service head under vLLM": (
        lambda: ray(1, head=dict(llmserve_ray_runtime="service")),
        "head: llmserve_ray_runtime: is service on the head, but vLLM over Ray (llmserve_ray_vllm, default true) "
        "runs in a container"),
    "mixed accelerators": (
        lambda: ray(1, w0=dict(llmserve_accelerator="ascend_a2")),
        "w0: llmserve_accelerator: 'ascend_a2' differs from 'nvidia' on head"),
}


@pytest.mark.parametrize("case", sorted(RAY_BAD))
def test_ray_bad_inventory(case):
    build, message = RAY_BAD[case]
    found = problems_of(*build())
    assert any(p.startswith(message) for p in found), found


# ================================================================ Xinference

XINF_COMMON = dict(llmserve_xinference_image=XINF, llmserve_xinference_admin_password=SECRET)


def xinference(workers=("w0", "w1"), common=None, **per_host):
    layout = {"xinference_supervisor": ["sup"], "xinference_worker": list(workers)}
    return inventory(layout, dict(XINF_COMMON, **(common or {})), **per_host)


def test_xinference_supervisor_and_workers_use_fixed_ports():
    plan = plan_of(*xinference(w0=dict(llmserve_devices="0-3")))
    check_contract(plan)
    sup, workers = the(plan, "xinference-supervisor"), the(plan, "xinference-worker")
    sm = sup["members"][0]
    assert sm["argv"] == ["xinference-supervisor", "-H", "10.7.0.1", "-p", "9997", "--supervisor-port", "9999"]
    assert sm["env"] == {"XINFERENCE_HOME": "/var/lib/xinference"} and sm["health"] == ["http://10.7.0.1:9997/status"]
    assert listeners(plan, "sup") == {9997: "xinference-api", 9999: "xinference-supervisor-rpc"}
    w0, w1 = workers["members"]
    assert w0["argv"] == ["xinference-worker", "-e", "http://10.7.0.1:9997", "-H", "10.7.0.2", "--worker-port", "30001",
                          "-MH", "10.7.0.2", "--metrics-exporter-port", "30002"]
    assert w0["env"]["CUDA_VISIBLE_DEVICES"] == "0,1,2,3" and "CUDA_VISIBLE_DEVICES" not in w1["env"]
    assert listeners(plan, "w1") == {30001: "xinference-worker-rpc", 30002: "xinference-worker-metrics"}
    assert sup["ready"] == {"url": "http://10.7.0.1:9997/status", "workers": ["10.7.0.2:30001", "10.7.0.3:30001"]}
    assert sup["auth"] == {"enabled": True, "admin_user": "admin",
                           "admin_password_variable": "llmserve_xinference_admin_password",
                           "setup_status_url_path": "/v1/admin/setup/status", "api_key_name": "llmserve",
                           "api_key_file": "~/.config/llmserve/xinference-10.7.0.1-9997.api_key"}
    assert [m["joined_as"] for m in workers["members"]] == sup["ready"]["workers"]
    assert plan["front_door"]["url"] == "http://10.7.0.1:9997" and plan["front_door"]["workers"] == sup["ready"]["workers"]
    assert {m["image"] for i in plan["instances"] for m in i["members"]} == {XINF}
    assert SECRET not in json.dumps(plan)


def test_xinference_workloads_start_the_supervisor_first_with_home_devices_and_readiness():
    plan = plan_of(*xinference(common=dict(llmserve_accelerator="nvidia", llmserve_xinference_shm_size="8G",
                                           llmserve_xinference_allowed_ips="10.7.0.0/24"),
                               w0=dict(llmserve_devices="4-7", llmserve_xinference_volumes=["/models:/models:ro"])))
    sup = {w["name"]: w for w in plan["hosts"]["sup"]["workloads"]}["llmserve-xinference-supervisor"]
    w0 = {w["name"]: w for w in plan["hosts"]["w0"]["workloads"]}["llmserve-xinference-worker"]
    w1 = {w["name"]: w for w in plan["hosts"]["w1"]["workloads"]}["llmserve-xinference-worker"]
    assert (sup["phase"], w0["phase"]) == (0, 1) and w0["restart_after"] == []
    assert sup["ready"] == {"url": "http://10.7.0.1:9997", "path": "/status", "wait": 300, "delay": 1}
    assert w0["ready"] == {"url": "http://10.7.0.2:30002", "path": "/metrics", "wait": 300, "delay": 1}
    assert sup["container"]["volumes"] == ["/var/lib/xinference:/var/lib/xinference"]
    assert w0["container"]["volumes"] == ["/var/lib/xinference:/var/lib/xinference", "/models:/models:ro"]
    assert sup["container"]["shm_size"] == "8G" and sup["container"]["entrypoint"] == ["xinference-supervisor"]
    # GPUs 4-7 of w0 are 0-3 inside its container; w1 names none, so it is given all of its GPUs
    assert w0["container"]["device_requests"] == [{"driver": "nvidia", "device_ids": ["4", "5", "6", "7"],
                                                   "capabilities": [["gpu"]]}]
    assert w0["files"][0]["env"]["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    assert w1["container"]["device_requests"] == [{"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}]
    assert w1["files"][0]["env"] == {"XINFERENCE_HOME": "/var/lib/xinference", "XINFERENCE_ALLOWED_IPS": "10.7.0.0/24"}
    assert w1["container"]["env_file"] == w1["files"][0]["path"] == "/etc/llmserve/llmserve-xinference-worker.env"
    # clean_up keeps XINFERENCE_HOME (the auth database, caches) unless asked
    assert w1["remove"] == ["/etc/llmserve/llmserve-xinference-worker.env"]
    plan = plan_of(*xinference(common=dict(llmserve_xinference_remove_home=True)))
    assert "/var/lib/xinference" in plan["hosts"]["w1"]["workloads"][0]["remove"]


@pytest.mark.parametrize("value,words", [
    ("10.0.0.0/33", "'10.0.0.0/33' is neither an IPv4 address nor a network in CIDR form"),
    ("10.0.0.1,fd00::1", "'fd00::1' is neither an IPv4 address nor a network in CIDR form, so Xinference would skip "
                         "it; did you mean fd00::1/128?"),
    ("10.0.0.1/24", "'10.0.0.1/24' is neither an IPv4 address nor a network in CIDR form, so Xinference would skip "
                    "it; did you mean 10.0.0.0/24?"),
    ("lan", "'lan' is neither an IPv4 address nor a network in CIDR form, so Xinference would skip it; write "
            "10.0.0.0/24, or fd00::1/128 for one IPv6 address"),
])
def test_xinference_allowed_ips_are_read_as_xinference_reads_them(value, words):
    problems = problems_of(*xinference(common=dict(llmserve_xinference_allowed_ips=value)))
    assert len(problems) == 1 and problems[0].startswith("sup: llmserve_xinference_allowed_ips: "), problems
    assert words in problems[0], problems
    plan = plan_of(*xinference(common=dict(llmserve_xinference_allowed_ips="10.0.0.0/24, 127.0.0.1,fd00::/64")))
    assert plan["hosts"]["w0"]["workloads"][0]["files"][0]["env"]["XINFERENCE_ALLOWED_IPS"] == \
        "10.0.0.0/24, 127.0.0.1,fd00::/64"


SMOL = {"model_name": "smollm2", "model_family": "llama-3.1-instruct", "model_specs": []}


def test_xinference_models_are_placed_by_worker_name_and_a_changed_spec_changes_the_digest():
    models = [{"model_name": "smollm2", "model_engine": "transformers", "worker": "w1", "register": SMOL},
              {"model_name": "minilm", "model_type": "embedding", "model_uid": "emb", "enable_virtual_env": True}]
    plan = plan_of(*xinference(common=dict(llmserve_xinference_models=models)))
    sup = the(plan, "xinference-supervisor")
    smol, emb = sup["models"]
    assert smol["launch"] == {"model_name": "smollm2", "model_engine": "transformers", "model_uid": "smollm2",
                              "model_type": "LLM", "enable_virtual_env": False, "worker_ip": "10.7.0.3"}
    assert smol["registration"] == SMOL
    assert emb["uid"] == "emb" and emb["launch"]["enable_virtual_env"] is True and "worker_ip" not in emb["launch"]
    assert sup["models_record"] == "/etc/llmserve/xinference-models.json"
    changed = [dict(models[0], model_engine="llama.cpp"), models[1]]
    again = the(plan_of(*xinference(common=dict(llmserve_xinference_models=changed))), "xinference-supervisor")
    assert again["models"][0]["digest"] != smol["digest"] and again["models"][1]["digest"] == emb["digest"]


@pytest.mark.parametrize("models,words", [
    ([{"model_name": "a", "worker": "sup"}], "a: worker 'sup' is not a host of xinference_worker (w0, w1)"),
    ([{"model_name": "a"}, {"model_name": "b", "model_uid": "a"}], "launches the uid a twice"),
    ([{"model_name": "a", "register": {"model_name": "b"}}], "a: register must be the model's registration, a "
                                                              "mapping whose model_name is a"),
    ([{"model_engine": "vllm"}], "must be a list of launch requests, each a mapping with at least model_name"),
    ([{"model_name": "a", "worker": ["w0"]}], "a: worker must be a string, e.g. model_name: qwen2.5-instruct"),
    ([{"model_name": ["a"], "model_uid": 7}], "['a']: model_name and model_uid must be a string"),
])
def test_xinference_bad_models_are_named(models, words):
    problems = problems_of(*xinference(common=dict(llmserve_xinference_models=models)))
    assert len(problems) == 1 and problems[0].startswith("sup: llmserve_xinference_models: ") and words in problems[0], \
        problems


def test_xinference_ascend_workers_name_their_npus():
    problems = problems_of(*xinference(common=dict(llmserve_accelerator="ascend_a2"), w0=dict(llmserve_devices="0-1")))
    assert [str(p) for p in problems] == [
        'w1: llmserve_devices: is not set; an Ascend worker is given the NPUs it lists (the container needs their '
        '/dev/davinciN), e.g. llmserve_devices: "0-7"']
    plan = plan_of(*xinference(common=dict(llmserve_accelerator="ascend_a2", llmserve_devices="2,3")))
    w0 = plan["hosts"]["w0"]["workloads"][0]
    assert w0["container"]["devices"][:4] == ["/dev/davinci%d:/dev/davinci%d:rwm" % (n, n) for n in range(4)]
    assert w0["files"][0]["env"]["ASCEND_RT_VISIBLE_DEVICES"] == "2,3"


def test_xinference_auth_off_and_keys_by_name_and_a_supervisor_that_also_serves():
    plan = plan_of(*xinference(["sup", "w0"], common=dict(llmserve_xinference_auth=False,
                                                          llmserve_xinference_admin_password=None)))
    assert the(plan, "xinference-supervisor")["auth"] == {"enabled": False}
    for inst in plan["instances"]:
        assert all(m["env"]["XINFERENCE_AUTH_ADVANCED"] == "false" for m in inst["members"])
    assert listeners(plan, "sup") == {9997: "xinference-api", 9999: "xinference-supervisor-rpc",
                                      30001: "xinference-worker-rpc", 30002: "xinference-worker-metrics"}
    plan = plan_of(*xinference(common=dict(llmserve_xinference_auth_jwt_secret_key=SECRET,
                                           llmserve_xinference_models=[{"model_name": "qwen2.5-instruct",
                                                                        "model_engine": "vllm"}])))
    sup = the(plan, "xinference-supervisor")
    assert sup["members"][0]["secret_env"] == {
        "XINFERENCE_AUTH_JWT_SECRET_KEY": {"variable": "llmserve_xinference_auth_jwt_secret_key", "host": "sup"}}
    (model,) = sup["models"]
    assert model["launch"] == {"model_name": "qwen2.5-instruct", "model_engine": "vllm", "model_uid": "qwen2.5-instruct",
                               "model_type": "LLM", "enable_virtual_env": False}
    assert model["uid"] == "qwen2.5-instruct" and model["registration"] is None and len(model["digest"]) == 16
    assert SECRET not in json.dumps(plan)


XINF_BAD = {
    "two supervisors": (
        lambda: inventory({"xinference_supervisor": ["s0", "s1"], "xinference_worker": ["w0"]}, XINF_COMMON),
        "inventory: xinference_supervisor: has 2 hosts (s0, s1); Xinference supervisor runs on exactly one host"),
    "workers without supervisor": (
        lambda: inventory({"xinference_worker": ["w0"]}, XINF_COMMON),
        "inventory: xinference_supervisor: has no host, but xinference_worker has w0"),
    "supervisor without workers": (
        lambda: xinference([]),
        "inventory: xinference_worker: has no host; the supervisor runs no model itself"),
    "missing image": (
        lambda: xinference(common=dict(llmserve_xinference_image=None)),
        "sup: llmserve_xinference_image: is not set; give the Xinference image"),
    "auth without admin password": (
        lambda: xinference(common=dict(llmserve_xinference_admin_password=None)),
        "sup: llmserve_xinference_admin_password: is not set, but llmserve_xinference_auth is on"),
    "worker port on the supervisor's port": (
        lambda: xinference(["sup"], common=dict(llmserve_xinference_worker_port=9997)),
        "sup: llmserve_xinference_worker_port: port 9997 of xinference-worker-rpc (xinference-worker) is already "
        "taken by xinference-api (xinference-supervisor); move one of them"),
    "two images": (
        lambda: xinference(w1=dict(llmserve_xinference_image="xprobe/xinference:v3.0.0")),
        "w1: llmserve_xinference_image: 'xprobe/xinference:v3.0.0' differs"),
    "models without names": (
        lambda: xinference(common=dict(llmserve_xinference_models=[{"model_engine": "vllm"}])),
        "sup: llmserve_xinference_models: must be a list of launch requests"),
    "auth not a boolean": (
        lambda: xinference(common=dict(llmserve_xinference_auth="maybe")),
        "sup: llmserve_xinference_auth: must be true or false (bool), e.g. true, got 'maybe'"),
}


@pytest.mark.parametrize("case", sorted(XINF_BAD))
def test_xinference_bad_inventory(case):
    build, message = XINF_BAD[case]
    found = problems_of(*build())
    assert any(p.startswith(message) for p in found), found


# ================================================================ GPUStack

GPS_COMMON = dict(llmserve_gpustack_image=GPUSTACK, llmserve_gpustack_token=SECRET,
                  llmserve_gpustack_bootstrap_password=SECRET)
GPS_HA = dict(GPS_COMMON, llmserve_gpustack_jwt_secret_key=SECRET, llmserve_gpustack_distributed_coordinator=True,
              llmserve_gpustack_database_password=SECRET)


def gpustack(servers=("s0",), workers=("w0",), db_hosts=(), lb_hosts=(), common=None, **per_host):
    layout = {"gpustack_server": list(servers), "gpustack_worker": list(workers), "gpustack_database": list(db_hosts),
              "gpustack_lb": list(lb_hosts)}
    return inventory(layout, dict(GPS_COMMON, **(common or {})), **per_host)


def settings(member):
    """The configuration file of a GPUStack member, as gpustack start --config-file reads it (YAML)."""
    assert member["argv"][:2] == ["--config-file", member["config"]["path"]]
    assert "%s:%s:ro" % (member["config"]["path"], member["config"]["path"]) in member["volumes"]
    return yaml.safe_load(member["config"]["content"])


def test_gpustack_single_server_keeps_its_embedded_database_and_gives_workers_the_token():
    plan = plan_of(*gpustack(workers=("w0", "w1")))
    check_contract(plan)
    server, workers = the(plan, "gpustack-server"), the(plan, "gpustack-worker")
    sm = server["members"][0]
    assert sm["keep_image_entrypoint"] and sm["config"]["path"] == "/etc/llmserve/llmserve-gpustack-server.yaml"
    assert settings(sm) == {"data_dir": "/var/lib/gpustack", "advertise_address": "10.7.0.1", "gateway_mode": "embedded",
                            "disable_worker": True, "disable_update_check": True, "port": 80, "api_port": 30080,
                            "proxy_port": 30079, "metrics_port": 10161, "database_port": 5432,
                            "builtin_prometheus_port": 19090, "builtin_grafana_port": 13000}
    assert sm["secret_env"] == {"GPUSTACK_TOKEN": {"variable": "llmserve_gpustack_token", "host": "s0"},
                                "GPUSTACK_BOOTSTRAP_PASSWORD": {"variable": "llmserve_gpustack_bootstrap_password",
                                                                "host": "s0"}}
    assert listeners(plan, "s0")[5432] == "gpustack-embedded-postgresql"
    assert listeners(plan, "s0")[30080] == "gpustack-api" and listeners(plan, "s0")[15000] == "gpustack-gateway"
    assert sm["health"] == ["http://10.7.0.1:80/healthz", "http://10.7.0.1:80/readyz"]
    wm = workers["members"][0]
    assert settings(wm) == {"data_dir": "/var/lib/gpustack-worker", "server_url": "http://10.7.0.1:80",
                            "advertise_address": "10.7.0.2", "worker_name": "w0", "worker_port": 10150,
                            "worker_metrics_port": 10151, "service_port_range": "40000-40063",
                            "ray_port_range": "41000-41999"}
    assert wm["privileged"] and wm["runtime"] == "nvidia" and "/var/run/docker.sock:/var/run/docker.sock" in wm["volumes"]
    # a worker registers again at every start, so it always has the token, as its host sees it
    assert wm["secret_env"] == {"GPUSTACK_TOKEN": {"variable": "llmserve_gpustack_token", "host": "w0"}}
    assert wm["port_ranges"] == [{"first": 40000, "last": 40063, "service": "gpustack-inference"},
                                 {"first": 41000, "last": 41999, "service": "gpustack-ray"}]
    assert listeners(plan, "w0") == {10150: "gpustack-worker", 10151: "gpustack-worker-metrics"}
    assert wm["health"] == ["http://10.7.0.2:10150/healthz"]
    assert server["high_availability"] is False and server["database"] == "embedded"
    assert server["ready"]["workers"] == ["w0", "w1"]
    assert plan["front_door"] == {"kind": "gpustack", "host": "s0", "url": "http://10.7.0.1:80",
                                  "backends": {"server": ["http://10.7.0.1:80"]}, "external_url": None,
                                  "health": "http://10.7.0.1:80/readyz"}
    assert SECRET not in json.dumps(plan)


def test_gpustack_without_its_gateway_serves_on_the_api_port():
    plan = plan_of(*gpustack(common=dict(llmserve_gpustack_gateway_mode="disabled",
                                         llmserve_gpustack_container_registry="registry.example.com:5000")))
    sm = the(plan, "gpustack-server")["members"][0]
    found = settings(sm)
    assert found["gateway_mode"] == "disabled" and "port" not in found and found["api_port"] == 30080
    assert found["system_default_container_registry"] == "registry.example.com:5000"
    assert 80 not in listeners(plan, "s0") and 15000 not in listeners(plan, "s0")
    assert sm["health"][-1] == "http://10.7.0.1:30080/readyz"
    assert settings(the(plan, "gpustack-worker")["members"][0])["server_url"] == "http://10.7.0.1:30080"


def test_gpustack_ha_with_database_host_and_load_balancer():
    plan = plan_of(*gpustack(("s0", "s1"), ("w0",), db_hosts=("db",), lb_hosts=("lb",), common=GPS_HA))
    check_contract(plan)
    db = the(plan, "gpustack-database")["members"][0]
    assert db["argv"] == ["postgres", "-p", "5432", "-c", "listen_addresses=10.7.0.4"]
    assert db["env"] == {"POSTGRES_DB": "gpustack", "POSTGRES_USER": "gpustack"}
    assert db["secret_env"] == {"POSTGRES_PASSWORD": {"variable": "llmserve_gpustack_database_password", "host": "db"}}
    assert listeners(plan, "db") == {5432: "postgresql"}
    server = the(plan, "gpustack-server")
    assert server["high_availability"] and server["server_url"] == "http://10.7.0.5:80"
    for m, host in zip(server["members"], ("s0", "s1")):
        found = settings(m)
        assert found["server_external_url"] == "http://10.7.0.5:80" and "database_port" not in found
        assert 5432 not in listeners(plan, host)
        assert m["env"]["GPUSTACK_SERVER_ID"] == host
        assert m["secret_env"] == {
            "GPUSTACK_DATABASE_URL": {"variable": "llmserve_gpustack_database_password", "host": "db",
                                      "format": "postgresql://gpustack:{}@10.7.0.4:5432/gpustack"},
            "GPUSTACK_TOKEN": {"variable": "llmserve_gpustack_token", "host": "s0"},
            "GPUSTACK_JWT_SECRET_KEY": {"variable": "llmserve_gpustack_jwt_secret_key", "host": "s0"},
            "GPUSTACK_BOOTSTRAP_PASSWORD": {"variable": "llmserve_gpustack_bootstrap_password", "host": "s0"}}
    wm = the(plan, "gpustack-worker")["members"][0]
    assert settings(wm)["server_url"] == "http://10.7.0.5:80"
    assert wm["secret_env"] == {"GPUSTACK_TOKEN": {"variable": "llmserve_gpustack_token", "host": "w0"}}
    door = plan["front_door"]
    assert (door["kind"], door["host"], door["url"], door["backend_health_path"]) == (
        "gpustack-lb", "lb", "http://10.7.0.5:80", "/readyz")
    assert door["backends"] == {"server": ["http://10.7.0.1:80", "http://10.7.0.2:80"]}
    assert listeners(plan, "lb") == {80: "gpustack-lb"}
    lb = the(plan, "gpustack-lb")["members"][0]
    assert lb["argv"] == ["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
    assert lb["volumes"] == ["/etc/llmserve/llmserve-gpustack-lb.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"]
    config = lb["config"]["content"]
    assert "    bind 10.7.0.5:80\n" in config and "    option httpchk GET /readyz\n" in config
    assert [line.split()[:3] for line in config.splitlines() if line.strip().startswith("server ")] == [
        ["server", "s0", "10.7.0.1:80"], ["server", "s1", "10.7.0.2:80"]]
    assert SECRET not in json.dumps(plan)


def test_gpustack_workloads_start_database_servers_balancer_workers_in_turn():
    plan = plan_of(*gpustack(("s0",), ("w0",), db_hosts=("db",), lb_hosts=("lb",),
                             common=dict(GPS_HA, llmserve_gpustack_remove_data=True)))
    found = {w["name"]: w for host in plan["hosts"].values() for w in host["workloads"]}
    assert [found[n]["phase"] for n in ("llmserve-gpustack-database", "llmserve-gpustack-server",
                                        "llmserve-gpustack-lb", "llmserve-gpustack-worker")] == [0, 1, 2, 3]
    db = found["llmserve-gpustack-database"]
    assert db["ready"]["command"][0] == "pg_isready" and "url" not in db["ready"]
    assert "/var/lib/llmserve-gpustack-postgres" in db["remove"]
    server = found["llmserve-gpustack-server"]
    assert server["ready"]["url"] == "http://10.7.0.1:80" and server["ready"]["path"] == "/readyz"
    assert server["restart_after"] == ["/etc/llmserve/llmserve-gpustack-server.env",
                                       "/etc/llmserve/llmserve-gpustack-server.yaml"]
    assert [f["mode"] for f in server["files"]] == ["0640", "0600"]
    assert found["llmserve-gpustack-lb"]["ready"]["url"] == "http://10.7.0.4:80"
    worker = found["llmserve-gpustack-worker"]
    assert worker["container"]["privileged"] is True and worker["ready"]["path"] == "/healthz"


GPS_BAD = {
    "no registration token": (
        lambda: gpustack(common=dict(llmserve_gpustack_token=None)),
        "s0: llmserve_gpustack_token: is not set; give the registration token"),
    "no registration token for a worker": (
        lambda: gpustack(common=dict(llmserve_gpustack_token=None), s0=dict(llmserve_gpustack_token=SECRET)),
        "w0: llmserve_gpustack_token: is not set for this worker"),
    "no admin password": (
        lambda: gpustack(common=dict(llmserve_gpustack_bootstrap_password="")),
        "s0: llmserve_gpustack_bootstrap_password: is not set; give the admin's password"),
    "gateway mode of the help text": (
        lambda: gpustack(common=dict(llmserve_gpustack_gateway_mode="in-cluster")),
        "s0: llmserve_gpustack_gateway_mode:"),
    "HA without a database": (
        lambda: gpustack(("s0", "s1"), lb_hosts=("lb",), common=dict(GPS_HA)),
        "s0: llmserve_gpustack_database_url: 2 gpustack_server hosts (HA) need one shared database"),
    "HA without a load balancer": (
        lambda: gpustack(("s0", "s1"), db_hosts=("db",), common=GPS_HA),
        "inventory: gpustack_lb: 2 gpustack_server hosts (HA) need one address for users and workers"),
    "HA without a shared token": (
        lambda: gpustack(("s0", "s1"), db_hosts=("db",), lb_hosts=("lb",), common=dict(GPS_HA, llmserve_gpustack_token=None)),
        "s0: llmserve_gpustack_token: is not set; 2 servers (HA) must share the registration token"),
    "HA without a JWT key": (
        lambda: gpustack(("s0", "s1"), db_hosts=("db",), lb_hosts=("lb",), common=dict(GPS_HA, llmserve_gpustack_jwt_secret_key="")),
        "s0: llmserve_gpustack_jwt_secret_key: is not set; 2 servers (HA) must share the JWT key"),
    "HA without a coordinator plugin": (
        lambda: gpustack(("s0", "s1"), db_hosts=("db",), lb_hosts=("lb",),
                         common=dict(GPS_HA, llmserve_gpustack_distributed_coordinator=False)),
        "s0: llmserve_gpustack_distributed_coordinator: is false, but 2 gpustack_server hosts need a coordinator plugin"),
    "unreleased server_urls": (
        lambda: gpustack(common=dict(llmserve_gpustack_server_urls=["http://a", "http://b"])),
        "s0: llmserve_gpustack_server_urls: comes from GPUStack's unmerged pull request #4358"),
    "unreleased flag in extra args": (
        lambda: gpustack(common=dict(llmserve_gpustack_server_extra_args=["--scheduling-mode=distributed"])),
        "s0: llmserve_gpustack_server_extra_args: --scheduling-mode comes from GPUStack's unmerged pull request"),
    "unreleased key in env": (
        lambda: gpustack(common=dict(llmserve_gpustack_env={"GPUSTACK_COORDINATOR_URL": "http://c"})),
        "s0: llmserve_gpustack_env: GPUSTACK_COORDINATOR_URL comes from GPUStack's unmerged pull request"),
    "database URL and database host": (
        lambda: gpustack(db_hosts=("db",), common=dict(GPS_HA, llmserve_gpustack_database_url="postgresql://x@y/z")),
        "db: llmserve_gpustack_database_url: is set and gpustack_database has a host; use one"),
    "database URL of another kind": (
        lambda: gpustack(common=dict(llmserve_gpustack_database_url="sqlite:///%s.db" % SECRET)),
        "s0: llmserve_gpustack_database_url: must start with postgresql:// or mysql://"),
    "database host without password": (
        lambda: gpustack(db_hosts=("db",)),
        "db: llmserve_gpustack_database_password: is not set"),
    "workers without server": (
        lambda: gpustack((), ("w0",), lb_hosts=("lb",)),
        "inventory: gpustack_server: has no host, but gpustack_worker and gpustack_lb have hosts"),
    "missing image": (
        lambda: gpustack(common=dict(llmserve_gpustack_image=None)),
        "s0: llmserve_gpustack_image: is not set; give the GPUStack v2 image"),
    "v0 image": (
        lambda: gpustack(common=dict(llmserve_gpustack_image="gpustack/gpustack:v0.7.1")),
        "s0: llmserve_gpustack_image: 'gpustack/gpustack:v0.7.1' is GPUStack v0.x"),
    "two load balancers": (
        lambda: gpustack(lb_hosts=("lb0", "lb1")),
        "inventory: gpustack_lb: has 2 hosts (lb0, lb1); load balancer in front of the GPUStack servers runs on exactly"),
    "same server id twice": (
        lambda: gpustack(("s0", "s1"), db_hosts=("db",), lb_hosts=("lb",), common=dict(GPS_HA, llmserve_gpustack_server_id="one")),
        "s1: llmserve_gpustack_server_id: 'one' is also s0's; every server needs its own id"),
    "inference range over the worker port": (
        lambda: gpustack(common=dict(llmserve_gpustack_service_ports="10100-10199")),
        "w0: llmserve_gpustack_service_ports: range 10100-10199 of gpustack-inference (gpustack-worker) holds port "
        "10150, already taken by gpustack-worker (gpustack-worker); move one of them"),
    "load balancer on a server's machine": (
        lambda: gpustack(lb_hosts=("lb",), lb=dict(ansible_host="10.7.0.1")),
        "s0: llmserve_gpustack_port: port 80 of gpustack-http (gpustack-server) is already taken by gpustack-lb "
        "(gpustack-lb) on lb (same address); move one of them"),
}


@pytest.mark.parametrize("case", sorted(GPS_BAD))
def test_gpustack_bad_inventory(case):
    build, message = GPS_BAD[case]
    found = problems_of(*build())
    assert any(p.startswith(message) for p in found), found
    assert not any(SECRET in p for p in found), found


# ================================================================ across systems and the examples

def test_a_ray_node_beside_a_gpustack_worker_is_caught_on_the_shared_machine():
    groups, hostvars = inventory({"ray_head": ["head"], "gpustack_server": ["s0"], "gpustack_worker": ["gw"]},
                                 dict(RAY_COMMON, **GPS_COMMON), gw=dict(ansible_host="10.7.0.1"))
    found = problems_of(groups, hostvars)
    assert any(p.startswith("head: llmserve_ray_min_worker_port: range 10002-10999 of ray-worker (ray-head) holds port "
                            "10150, already taken by gpustack-worker (gpustack-worker) on gw (same address)")
               for p in found), found


def test_example_ray_tp_pp():
    plan = plan_of(*example("ray_tp_pp"))
    head = the(plan, "ray-head")
    assert (head["tensor_parallel_size"], head["pipeline_parallel_size"], head["devices_total"]) == (8, 2, 16)
    assert the(plan, "ray-worker")["members"][0]["env"]["NCCL_SOCKET_IFNAME"] == "eth1"


def test_example_xinference():
    plan = plan_of(*example("xinference"))
    assert the(plan, "xinference-supervisor")["ready"]["workers"] == ["10.3.0.11:30001", "10.3.0.12:30001"]
    assert the(plan, "xinference-supervisor")["models"][0]["launch"]["model_name"] == "qwen2.5-instruct"
    assert "change-me" not in json.dumps(plan)


def test_example_gpustack_ha():
    plan = plan_of(*example("gpustack_ha"))
    server = the(plan, "gpustack-server")
    assert server["high_availability"] and server["database"] == "external" and len(server["hosts"]) == 2
    assert plan["front_door"]["kind"] == "gpustack-lb" and len(the(plan, "gpustack-worker")["hosts"]) == 3
    assert "change-me" not in json.dumps(plan)


def test_ray_a_bad_vllm_env_is_reported_once_though_head_and_vllm_both_use_it():
    assert problems_of(*ray(0, common=dict(llmserve_vllm_env=["NCCL_DEBUG=INFO"]))) == [
        "head: llmserve_vllm_env: must be a mapping (dict), e.g. {VLLM_LOGGING_LEVEL: DEBUG}, got ['NCCL_DEBUG=INFO']"]
