"""The PD vLLM plan for good inventories: omni-infer's 2P1D/4P1D ports, llmserve's native shape, the playbook."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from plan_inventories import (check_contract, flag, instance, member, members, native, omni, omni_2p1d, omni_4p1d,
                              plan_of, workloads)
from vllm_argv import check_argv_opens_the_listeners, parse

REPO = Path(__file__).resolve().parents[2]
BED_INVENTORIES = REPO / "tests" / "testbed" / "inventories"


def example_sources():
    """Every example inventory, the users' and the test bed's: a directory, or each compact topology file of a
    directory of them."""
    sources = []
    roots = (REPO / "inventories" / "examples", BED_INVENTORIES)
    for folder in sorted((p for root in roots for p in root.iterdir() if p.is_dir()), key=lambda p: p.name):
        compact = sorted(folder.glob("*.topology.y*ml"))
        sources.extend(str(p.relative_to(REPO)) for p in compact) if compact else sources.append(
            str(folder.relative_to(REPO)))
    return sources


EXAMPLES = example_sources()
GOLDEN = REPO / "tests" / "unit" / "golden"


def listener_ports(plan, host, service=None):
    return [entry["port"] for entry in plan["hosts"][host]["listeners"]
            if service is None or entry["service"] == service]


# ---------------------------------------------------------------- omni-infer's inventories

OMNI = {
    # name: (builder, prefill hosts, decode hosts, port_offset.D, first address)
    "2p1d": (omni_2p1d, 2, 2, 100, "10.0.0."),
    "4p1d": (omni_4p1d, 4, 4, 200, "10.0.1."),
}


@pytest.mark.parametrize("shape", sorted(OMNI))
def test_omni_prefill_ports_follow_the_kv_rank(shape):
    build, n_p, dummy, dummy, base = OMNI[shape]
    plan = plan_of(*build())
    for k in range(n_p):
        inst = instance(plan, "prefill-%d" % k)
        assert inst["kind"] == "vllm_prefill" and inst["hosts"] == ["p%d" % k]
        # node_port = global_port_base + port_offset.P + kv_rank stays held as omni-infer reserves it (a
        # single-node P opens nothing there); api = base_api_port + port_offset.P + kv_rank
        assert plan["hosts"]["p%d" % k]["listeners"] == [
            {"port": 8000 + k, "service": "omni-node-port", "instance": "prefill-%d" % k, "variable": "node_port"},
            {"port": 9000 + k, "service": "vllm-api", "instance": "prefill-%d" % k, "variable": "api_port"}]
        assert inst["endpoints"] == ["http://%s%d:%d" % (base, k + 1, 9000 + k)]
        m = member(plan, "prefill-%d" % k, "p%d" % k)
        assert m["node_port"] == 8000 + k and m["container"] == "llmserve-prefill-%d" % k
        assert flag(m["argv"], "--port") == str(9000 + k) and flag(m["argv"], "--host") == "%s%d" % (base, k + 1)
        # one single-node P is one TP group over the host's 16 devices: a plain single-node argv
        assert flag(m["argv"], "--tensor-parallel-size") == "16" and inst["data_parallel_size"] == 1
        assert not [a for a in m["argv"] if a.startswith(("--data-parallel", "--nnodes", "--master", "--headless"))]
        assert m["env"]["ASCEND_RT_VISIBLE_DEVICES"] == ",".join(str(i) for i in range(16))


@pytest.mark.parametrize("shape", sorted(OMNI))
def test_omni_decode_runs_one_container_per_device_as_external_lb_data_parallel(shape):
    build, n_p, n_d, d_offset, base = OMNI[shape]
    plan = plan_of(*build())
    dec = instance(plan, "decode-0")
    assert dec["hosts"] == ["d%d" % r for r in range(n_d)] and dec["master"] == "d0"
    assert dec["data_parallel_size"] == 16 * n_d and dec["tensor_parallel_size"] == 1
    assert len(dec["members"]) == 16 * n_d
    master_addr = "%s%d" % (base, n_p + 1)
    for r in range(n_d):
        host = "d%d" % r
        first = 9000 + d_offset + r          # base_api_port + port_offset.D + node_rank
        api = list(range(first, first + 16))
        on_host = members(plan, "decode-0", host)
        assert [m["port"] for m in on_host] == api
        assert listener_ports(plan, host, "vllm-api") == api
        # node_port = global_port_base + port_offset.D, the same on every D host: only rank 0 listens
        assert listener_ports(plan, host, "vllm-dp-rpc") == ([8000 + d_offset] if r == 0 else [])
        for i, m in enumerate(on_host):
            rank = 16 * r + i
            argv = m["argv"]
            assert m["container"] == "llmserve-decode-0-r%d" % rank
            assert m["dp_start_rank"] == rank and m["local_dp"] == 1 and not m["headless"]
            assert m["devices"] == [i] and m["env"]["ASCEND_RT_VISIBLE_DEVICES"] == str(i)
            assert flag(argv, "--port") == str(first + i) and flag(argv, "--host") == m["address"]
            assert flag(argv, "--tensor-parallel-size") == "1"
            assert flag(argv, "--data-parallel-size") == str(16 * n_d)
            assert flag(argv, "--data-parallel-rank") == str(rank)
            assert flag(argv, "--data-parallel-address") == master_addr
            assert flag(argv, "--data-parallel-rpc-port") == str(8000 + d_offset)
            assert "--headless" not in argv and "--data-parallel-size-local" not in argv
            assert ("dp_rpc_port" in m) == (rank == 0)
            # vLLM 0.32 reads --data-parallel-rank as external load balancing: no --data-parallel-external-lb
            ns = parse(argv)
            assert ns.data_parallel_rank == rank and not ns.data_parallel_hybrid_lb
    if shape == "2p1d":
        assert [m["port"] for m in members(plan, "decode-0", "d1")] == list(range(9101, 9117))
    check_argv_opens_the_listeners(plan)


@pytest.mark.parametrize("shape", sorted(OMNI))
def test_omni_proxy_and_front_door_backends(shape):
    build, n_p, n_d, d_offset, base = OMNI[shape]
    plan = plan_of(*build())
    door = plan["front_door"]
    # C: proxy_port + node_rank, on p0's machine beside p0's ports
    assert door["host"] == "c0" and door["url"] == "http://%s1:7000" % base
    assert plan["hosts"]["c0"]["address"] == plan["hosts"]["p0"]["address"]
    assert plan["hosts"]["c0"]["listeners"] == [
        {"port": 7000, "service": "front-door", "instance": "front-door", "variable": "proxy_port"},
        {"port": 29000, "service": "front-door-metrics", "instance": "front-door", "variable": "llmserve_proxy_metrics_port"}]
    # the router is given exactly these backends, in this order
    workers = door["members"][0]["workers"]
    assert [w["url"] for w in workers if w["worker_type"] == "prefill"] == door["backends"]["prefill"]
    assert [w["url"] for w in workers if w["worker_type"] == "decode"] == door["backends"]["decode"]
    assert door["backends"]["prefill"] == ["http://%s%d:%d" % (base, k + 1, 9000 + k) for k in range(n_p)]
    assert door["backends"]["decode"] == ["http://%s%d:%d" % (base, n_p + 1 + r, port)
                                          for r in range(n_d) for port in range(9000 + d_offset + r,
                                                                                9000 + d_offset + r + 16)]
    assert plan["front_doors"] == [door]
    check_contract(plan)


@pytest.mark.parametrize("shape", sorted(OMNI))
def test_omni_ports_are_the_same_from_the_formulas_and_from_integers(shape):
    """Without node_port/api_port the planner applies omni-infer's formulas itself; Ansible 2.19 renders ints."""
    groups, hostvars = OMNI[shape][0]()
    plan = plan_of(groups, hostvars)
    for hv in hostvars.values():
        as_ints = {k: int(hv[k]) for k in ("node_port", "api_port") if k in hv}
        hv.update(as_ints)
    assert plan_of(groups, hostvars) == plan
    for hv in hostvars.values():
        hv.pop("node_port", None)
        hv.pop("api_port", None)
    assert plan_of(groups, hostvars) == plan


def omni_multinode_prefill():
    """omni-infer's 3P1D with p2 joined to p1's instance: same host_ip (p1's address) and kv_rank, listed first."""
    groups, hostvars = omni(3, 1, 100)
    hostvars["p2"].update(host_ip=hostvars["p1"]["ansible_host"], kv_rank=1, node_port="8001", api_port="9001")
    groups["P"] = ["p0", "p2", "p1"]
    return groups, hostvars


def test_omni_prefill_hosts_sharing_host_ip_are_one_tp_group_led_by_that_host():
    plan = plan_of(*omni_multinode_prefill())
    inst = instance(plan, "prefill-1")
    assert inst["hosts"] == ["p1", "p2"] and inst["master"] == "p1"   # p1 still leads
    assert inst["tensor_parallel_size"] == 32 and inst["data_parallel_size"] == 1
    assert inst["endpoints"] == ["http://10.0.0.2:9001"]
    # node_port is the TP group's torch.distributed master port, on the master only
    assert plan["hosts"]["p1"]["listeners"] == [
        {"port": 8001, "service": "vllm-master", "instance": "prefill-1", "variable": "node_port"},
        {"port": 9001, "service": "vllm-api", "instance": "prefill-1", "variable": "api_port"}]
    assert listener_ports(plan, "p2") == []
    assert plan["front_door"]["backends"]["prefill"] == ["http://10.0.0.1:9000", "http://10.0.0.2:9001"]
    for rank, host in enumerate(["p1", "p2"]):
        m = member(plan, "prefill-1", host)
        argv = m["argv"]
        assert m["container"] == "llmserve-prefill-1" and m["headless"] == (rank > 0)
        assert m["env"]["ASCEND_RT_VISIBLE_DEVICES"] == ",".join(str(i) for i in range(16))
        # vLLM's multi-node mp: one TP group of 32 over 2 nodes, no data parallelism
        assert flag(argv, "--tensor-parallel-size") == "32"
        assert (flag(argv, "--nnodes"), flag(argv, "--node-rank")) == ("2", str(rank))
        assert (flag(argv, "--master-addr"), flag(argv, "--master-port")) == ("10.0.0.2", "8001")
        assert not [a for a in argv if a.startswith("--data-parallel")]
        assert ("--headless" in argv) == (rank > 0) and ("--port" in argv) == (rank == 0)
        if rank == 0:
            assert flag(argv, "--port") == "9001" and m["master_port"] == 8001
    check_contract(plan)
    check_argv_opens_the_listeners(plan)


def test_omni_decode_master_is_the_host_at_host_ip_wherever_it_is_listed():
    groups, hostvars = omni_2p1d()
    groups["D"] = ["d1", "d0"]
    plan = plan_of(groups, hostvars)
    dec = instance(plan, "decode-0")
    assert dec["master"] == "d0" and dec["hosts"] == ["d0", "d1"]
    assert [m["dp_start_rank"] for m in members(plan, "decode-0", "d1")] == list(range(16, 32))
    assert dec["members"][0]["host"] == "d0" and "dp_rpc_port" in dec["members"][0]


def test_omni_decode_on_one_device_runs_no_data_parallel():
    plan = plan_of(*omni(1, 1, 100, devices="3"))
    m = member(plan, "decode-0", "d0")
    assert m["container"] == "llmserve-decode-0-r0" and m["devices"] == [3] and m["port"] == 9100
    assert not [a for a in m["argv"] if a.startswith("--data-parallel")]
    assert plan["hosts"]["d0"]["listeners"][0] == {"port": 8100, "service": "omni-node-port", "instance": "decode-0",
                                                     "variable": "node_port"}
    check_argv_opens_the_listeners(plan)


# ---------------------------------------------------------------- llmserve's own shape

def test_instance_spanning_hosts_runs_data_parallel_with_a_headless_member_per_extra_host():
    groups, hostvars = native(["p0"], ["d0", "d1", "d2"], common=dict(llmserve_tensor_parallel_size=2),
                              d0=dict(llmserve_instance="big"), d1=dict(llmserve_instance="big"),
                              d2=dict(llmserve_instance="big"))
    plan = plan_of(groups, hostvars)
    dec = instance(plan, "decode-big")
    assert dec["hosts"] == ["d0", "d1", "d2"] and dec["master"] == "d0"
    assert dec["data_parallel_size"] == 12 and dec["tensor_parallel_size"] == 2
    master_addr = plan["hosts"]["d0"]["address"]
    assert dec["endpoints"] == ["http://%s:8000" % master_addr]
    for rank, host in enumerate(["d0", "d1", "d2"]):
        m = member(plan, "decode-big", host)
        argv = m["argv"]
        assert m["dp_start_rank"] == 4 * rank and m["local_dp"] == 4 and m["headless"] == (rank > 0)
        assert flag(argv, "--data-parallel-size") == "12" and flag(argv, "--data-parallel-size-local") == "4"
        assert flag(argv, "--data-parallel-address") == master_addr
        assert flag(argv, "--data-parallel-rpc-port") == "13345"
        if rank:
            assert "--headless" in argv and flag(argv, "--data-parallel-start-rank") == str(4 * rank)
            assert "--port" not in argv and "--host" not in argv
            assert listener_ports(plan, host, "vllm-api") == [] and listener_ports(plan, host, "vllm-dp-rpc") == []
        else:
            assert "--headless" not in argv and "--data-parallel-start-rank" not in argv
            assert flag(argv, "--port") == "8000" and flag(argv, "--host") == master_addr
            assert listener_ports(plan, host, "vllm-dp-rpc") == [13345]
    check_contract(plan)


def test_tensor_and_pipeline_parallel_split_the_host_into_data_parallel_ranks():
    groups, hostvars = native(["p0"], ["d0"], common=dict(llmserve_tensor_parallel_size=2,
                                                          llmserve_pipeline_parallel_size=2))
    plan = plan_of(groups, hostvars)
    inst = instance(plan, "prefill-p0")
    m = inst["members"][0]
    assert (inst["tensor_parallel_size"], inst["pipeline_parallel_size"], inst["data_parallel_size"]) == (2, 2, 2)
    assert flag(m["argv"], "--tensor-parallel-size") == "2" and flag(m["argv"], "--pipeline-parallel-size") == "2"
    assert flag(m["argv"], "--data-parallel-size") == "2" and "--data-parallel-address" not in m["argv"]
    # its own DP RPC port, not vLLM's default 29550 that every instance would share
    assert flag(m["argv"], "--data-parallel-rpc-port") == "13345" and m["dp_rpc_port"] == 13345
    assert listener_ports(plan, "p0", "vllm-dp-rpc") == [13345]
    # a single-host instance with DP 1 passes no data-parallel flags at all
    plan1 = plan_of(*native(["p0"], ["d0"], common=dict(llmserve_tensor_parallel_size=8)))
    assert not [a for a in instance(plan1, "prefill-p0")["members"][0]["argv"] if a.startswith("--data-parallel")]


def test_nixl_side_channel_gets_a_port_per_local_rank_and_the_env_that_lands_vllm_on_them():
    groups, hostvars = native(["p0"], ["d0", "d1"], common=dict(llmserve_tensor_parallel_size=2),
                              d0=dict(llmserve_instance="x"), d1=dict(llmserve_instance="x"))
    plan = plan_of(groups, hostvars)
    for name, host in (("prefill-p0", "p0"), ("decode-x", "d0"), ("decode-x", "d1")):
        m = member(plan, name, host)
        assert m["nixl_side_channel_port"] == 5600
        assert listener_ports(plan, host, "nixl-side-channel") == [5600, 5601, 5602, 5603]
        assert m["env"]["VLLM_NIXL_SIDE_CHANNEL_HOST"] == m["address"] == plan["hosts"][host]["address"]
        # vLLM listens on VLLM_NIXL_SIDE_CHANNEL_PORT + the global DP rank (data_parallel_index)
        base = int(m["env"]["VLLM_NIXL_SIDE_CHANNEL_PORT"])
        used = [base + rank for rank in range(m["dp_start_rank"], m["dp_start_rank"] + m["local_dp"])]
        assert used == [5600, 5601, 5602, 5603]
    assert member(plan, "decode-x", "d1")["env"]["VLLM_NIXL_SIDE_CHANNEL_PORT"] == "5596"


# NVIDIA: Docker's device request gives the container GPUs 2, 3 and 6 of the host, which CUDA inside numbers 0-2;
# Ascend: the container has /dev/davinci0 up to davinci6, so the host's numbers keep their meaning
@pytest.mark.parametrize("accelerator,variable,seen", [("nvidia", "CUDA_VISIBLE_DEVICES", "0,1,2"),
                                                       ("ascend_a2", "ASCEND_RT_VISIBLE_DEVICES", "2,3,6"),
                                                       ("ascend_a3", "ASCEND_RT_VISIBLE_DEVICES", "2,3,6")])
def test_devices_reach_the_engine_through_the_accelerators_variable(accelerator, variable, seen):
    plan = plan_of(*native(["p0"], ["d0"], common=dict(llmserve_accelerator=accelerator),
                           d0=dict(llmserve_devices="2-3,6")))
    assert member(plan, "prefill-p0", "p0")["env"][variable] == "0,1,2,3,4,5,6,7"
    d0 = member(plan, "decode-d0", "d0")
    assert d0["env"][variable] == seen and d0["devices"] == [2, 3, 6] and d0["local_dp"] == 3
    decode = workloads(plan, "d0")["llmserve-decode-d0"]["container"]
    if accelerator == "nvidia":
        assert decode["device_requests"] == [{"driver": "nvidia", "device_ids": ["2", "3", "6"],
                                              "capabilities": [["gpu"]]}]
    else:
        assert decode["devices"][:7] == ["/dev/davinci%d:/dev/davinci%d:rwm" % (n, n) for n in range(7)]
    assert plan["hosts"]["d0"]["accelerator"] == accelerator


def test_cpu_hosts_get_no_device_variable():
    plan = plan_of(*native(["p0"], ["d0"], common=dict(llmserve_accelerator="cpu", llmserve_devices="0")))
    env = member(plan, "prefill-p0", "p0")["env"]
    assert "CUDA_VISIBLE_DEVICES" not in env and "ASCEND_RT_VISIBLE_DEVICES" not in env


def test_example_connector_passes_its_shared_path_and_claims_no_side_channel():
    plan = plan_of(*native(["p0", "p1"], ["d0"], common=dict(
        llmserve_kv_connector="ExampleConnector", llmserve_kv_shared_path="/srv/kv", llmserve_devices="0",
        llmserve_accelerator="cpu")))
    for inst in plan["instances"]:
        for m in inst["members"]:
            kv = json.loads(flag(m["argv"], "--kv-transfer-config"))
            assert kv == {"kv_connector": "ExampleConnector", "kv_role": "kv_both",
                          "kv_connector_extra_config": {"shared_storage_path": "/srv/kv"}}
            assert "VLLM_NIXL_SIDE_CHANNEL_PORT" not in m["env"] and "nixl_side_channel_port" not in m
    assert all(entry["service"] != "nixl-side-channel" for h in plan["hosts"].values() for entry in h["listeners"])


@pytest.mark.parametrize("connector,prefill_role,decode_role", [
    ("NixlConnector", "kv_both", "kv_both"), ("MooncakeConnector", "kv_producer", "kv_consumer"),
    ("MultiConnector", "kv_both", "kv_both")])
def test_kv_roles_follow_the_connector(connector, prefill_role, decode_role):
    plan = plan_of(*native(["p0"], ["d0"], common=dict(llmserve_kv_connector=connector,
                                                       llmserve_kv_extra_config={"k": "v"})))
    for name, role in (("prefill-p0", prefill_role), ("decode-d0", decode_role)):
        argv = instance(plan, name)["members"][0]["argv"]
        kv = json.loads(flag(argv, "--kv-transfer-config"))
        assert kv == {"kv_connector": connector, "kv_role": role, "kv_connector_extra_config": {"k": "v"}}


def test_two_instances_on_one_host_get_their_own_devices_and_ports():
    groups, hostvars = native(["both", "p1"], ["both"], common=dict(llmserve_tensor_parallel_size=2),
                              both=dict(llmserve_prefill_devices="0-3", llmserve_decode_devices="4-7"))
    plan = plan_of(groups, hostvars)
    pre, dec = member(plan, "prefill-both", "both"), member(plan, "decode-both", "both")
    assert pre["devices"] == [0, 1, 2, 3] and dec["devices"] == [4, 5, 6, 7]
    # DP 2 each: each its own DP RPC port (vLLM's default would be the same for both)
    assert {flag(pre["argv"], "--data-parallel-rpc-port"), flag(dec["argv"], "--data-parallel-rpc-port")} == \
        {"13345", "13346"}
    assert listener_ports(plan, "both", "vllm-dp-rpc") == [13345, 13346]
    # each container is given its own GPUs, which CUDA inside numbers from 0
    assert [r["device_ids"] for r in dec["device_requests"]] == [["4", "5", "6", "7"]]
    assert pre["env"]["CUDA_VISIBLE_DEVICES"] == "0,1,2,3" and dec["env"]["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    assert pre["port"] != dec["port"] and {pre["port"], dec["port"]} == {8000, 8001}
    assert pre["container"] != dec["container"]
    side = listener_ports(plan, "both", "nixl-side-channel")
    assert side == [5600, 5601, 5602, 5603]
    assert pre["nixl_side_channel_port"] != dec["nixl_side_channel_port"]
    # p1 is alone on its host: the same first ports as anywhere else
    assert member(plan, "prefill-p1", "p1")["port"] == 8000
    check_contract(plan)
    check_argv_opens_the_listeners(plan)


def test_served_model_name_and_extra_args_and_env_reach_every_member():
    plan = plan_of(*native(["p0"], ["d0"], common=dict(llmserve_vllm_extra_args=["--enforce-eager", 512],
                                                       llmserve_vllm_env={"VLLM_LOGGING_LEVEL": "DEBUG", "N": 3})))
    for inst in plan["instances"]:
        m = inst["members"][0]
        assert m["argv"][:3] == ["vllm", "serve", "/models/Qwen3-32B"]
        assert flag(m["argv"], "--served-model-name") == "qwen3-32b"
        assert m["argv"][-2:] == ["--enforce-eager", "512"]
        assert m["env"]["VLLM_LOGGING_LEVEL"] == "DEBUG" and m["env"]["N"] == "3"
        assert m["image"] == "registry.example.com:5000/vllm/vllm-openai:v0.32.0"
        assert m["container"] == "llmserve-%s" % inst["name"]


def test_native_front_door_lists_every_instance_api():
    plan = plan_of(*native(["p0", "p1"], ["d0"]))
    door = plan["front_door"]
    assert door["kind"] == "vllm-router" and door["host"] == "router"
    assert door["url"] == "http://%s:10001" % plan["hosts"]["router"]["address"]
    assert door["backends"] == {"prefill": ["http://10.1.0.10:8000", "http://10.1.0.11:8000"],
                                "decode": ["http://10.1.0.12:8000"]}
    assert listener_ports(plan, "router") == [10001, 29000]


def test_front_door_may_share_a_machine_with_an_engine():
    groups, hostvars = native(["p0"], ["d0"], router=dict(ansible_host="10.1.0.10"))
    plan = plan_of(groups, hostvars)
    assert plan["hosts"]["router"]["address"] == plan["hosts"]["p0"]["address"]
    check_contract(plan)


@pytest.mark.parametrize("shape", ["native", "omni_2p1d", "omni_4p1d"])
def test_the_plan_is_deterministic(shape):
    build = {"native": lambda: native(["p0", "p1"], ["d0", "d1"], d0=dict(llmserve_instance="x"),
                                      d1=dict(llmserve_instance="x")),
             "omni_2p1d": omni_2p1d, "omni_4p1d": omni_4p1d}[shape]
    groups, hostvars = build()
    first = json.dumps(plan_of(groups, hostvars), sort_keys=True)
    assert json.dumps(plan_of(*build()), sort_keys=True) == first
    reordered = {h: dict(reversed(list(hostvars[h].items()))) for h in reversed(list(hostvars))}
    assert json.dumps(plan_of(groups, reordered), sort_keys=True) == first


# ---------------------------------------------------------------- every argv, as vLLM 0.32 reads it

ARGV_SHAPES = {
    "omni_2p1d": omni_2p1d,
    "omni_4p1d": omni_4p1d,
    "omni_multinode_prefill": omni_multinode_prefill,
    "native_1p1d": lambda: native(["p0"], ["d0"], common=dict(llmserve_tensor_parallel_size=8)),
    "native_single_host_dp": lambda: native(["p0", "p1"], ["d0"], common=dict(llmserve_tensor_parallel_size=2)),
    "native_multi_host_dp": lambda: native(["p0"], ["d0", "d1", "d2"], common=dict(llmserve_tensor_parallel_size=2),
                                           d0=dict(llmserve_instance="big"), d1=dict(llmserve_instance="big"),
                                           d2=dict(llmserve_instance="big")),
    "native_two_instances_on_one_host": lambda: native(
        ["both", "p1"], ["both"], common=dict(llmserve_tensor_parallel_size=2),
        both=dict(llmserve_prefill_devices="0-3", llmserve_decode_devices="4-7")),
    "native_example_connector": lambda: native(["p0", "p1"], ["d0"], common=dict(
        llmserve_kv_connector="ExampleConnector", llmserve_kv_shared_path="/srv/kv", llmserve_accelerator="cpu")),
}


@pytest.mark.parametrize("shape", sorted(ARGV_SHAPES))
def test_every_argv_is_accepted_by_vllm_032_and_opens_exactly_the_planned_ports(shape):
    """Each member's argv through the simulator's copy of vLLM 0.32's parser; the ports its process
    will listen on (API, DP RPC, multi-node master, NIXL side channel) are the plan's listeners."""
    plan = plan_of(*ARGV_SHAPES[shape]())
    claimed = check_contract(plan)
    opened = check_argv_opens_the_listeners(plan)
    engine_listeners = {key for key, (host, lis) in claimed.items() if not lis["service"].startswith("front-door")}
    assert sorted(opened) == sorted(engine_listeners)


# ---------------------------------------------------------------- the real playbook on every example

@pytest.mark.parametrize("example", EXAMPLES)
def test_plan_playbook_writes_the_contract_for_every_example(example, tmp_path):
    out = tmp_path / "plan.json"
    # the bed's examples take their secrets from the bed's vault (tests/testbed/testbed.py), absent here
    bed = ["-e", "llmserve_ray_auth_token=stands-for-the-beds-vault",
           "-e", "llmserve_xinference_admin_password=stands-for-the-beds-vault"] \
        + [arg for name in ("token", "bootstrap_password", "jwt_secret_key", "database_password")
           for arg in ("-e", "llmserve_gpustack_%s=stands-for-the-beds-vault" % name)] \
        if (REPO / example).resolve().is_relative_to(BED_INVENTORIES) else []
    res = subprocess.run(
        [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", example,
         "playbooks/plan.yml", "-e", "llmserve_plan_file=%s" % out] + bed,
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_LOCALHOST_WARNING": "0"})
    assert res.returncode == 0, res.stdout + res.stderr
    plan = json.loads(out.read_text())
    check_contract(plan)
    check_argv_opens_the_listeners(plan)   # vLLM members: argv accepted by vLLM 0.32, ports as planned
    assert "ESTABLISH" not in res.stdout and "UNREACHABLE" not in res.stdout
    if example.endswith("/omni_2p1d"):   # the file is the same plan the Python planner makes from the inventory
        assert plan == plan_of(*omni_2p1d(llmserve_proxy_type="omni-global-proxy"))
    # golden plans (netbox's golden inventories, for plans): a change of any port, rank, argv or environment
    # shows as a diff of tests/unit/golden/; LLMSERVE_UPDATE_GOLDEN=1 rewrites them
    golden = GOLDEN / (Path(example).name.split(".")[0] + ".json")
    if os.environ.get("LLMSERVE_UPDATE_GOLDEN"):
        golden.write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n")
    assert golden.exists(), "no golden plan for %s; run with LLMSERVE_UPDATE_GOLDEN=1 and review it" % example
    assert plan == json.loads(golden.read_text()), "the plan of %s differs from %s" % (example, golden)
