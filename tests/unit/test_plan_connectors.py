"""The PD vLLM plan's connectors, accelerators and front doors: what a user checks in the plan.

Mooncake's bootstrap port, LMCache's configuration file, Ascend devices and HCCL environment, the
peer-sized Ascend connectors, log rotation, plain replicas behind nginx, the API key gate and router
retries; bad inventories fail with PlanError naming the host and the variable.
"""
import json

import pytest

from plan_inventories import (NATIVE_ALL, ansible_view, check_contract, flag, instance, member, native, plan_of,
                              problems_of)
from vllm_argv import check_argv_opens_the_listeners, parse

SECRET = "<set>"   # what the plan action hands the planner for a secret that is set
ASCEND_MOUNTS = ["/usr/local/Ascend/driver:/usr/local/Ascend/driver:ro", "/usr/local/dcmi:/usr/local/dcmi:ro",
                 "/usr/local/bin/npu-smi:/usr/local/bin/npu-smi:ro", "/etc/hccn.conf:/etc/hccn.conf:ro"]
HCCL_DEFAULTS = {"HCCL_CONNECT_TIMEOUT": "1800", "HCCL_EXEC_TIMEOUT": "120", "HCCL_RDMA_TIMEOUT": "20",
                 "HCCL_INTRA_ROCE_ENABLE": "1", "HCCL_INTRA_PCIE_ENABLE": "0"}
DRIVER_NODES = ["/dev/davinci_manager:/dev/davinci_manager:rwm", "/dev/devmm_svm:/dev/devmm_svm:rwm",
                "/dev/hisi_hdc:/dev/hisi_hdc:rwm"]


def good(groups, hostvars):
    """The plan of a good PD inventory, checked against the contract and vLLM 0.32's parser."""
    plan = plan_of(groups, hostvars)
    check_contract(plan)
    check_argv_opens_the_listeners(plan)
    return plan


def messages(problems, host, variable):
    return [p.message for p in problems if p.host == host and p.variable == variable]


def ports(plan, host, service):
    return [lis["port"] for lis in plan["hosts"][host]["listeners"] if lis["service"] == service]


def kv_of(m):
    return json.loads(flag(m["argv"], "--kv-transfer-config"))


def davinci(top):
    return ["/dev/davinci%d:/dev/davinci%d:rwm" % (n, n) for n in range(top + 1)] + DRIVER_NODES


def replicas(common=None, **hostvars):
    """Plain replicas r0 (10.1.0.10) and r1 (.11) behind the front door host door (.12), 4 devices each."""
    hv = {}
    for n, host in enumerate(["r0", "r1", "door"], start=10):
        hv[host] = dict(NATIVE_ALL, ansible_host="10.1.0.%d" % n, llmserve_devices="0-3", **(common or {}))
        hv[host].update(hostvars.get(host, {}))
    return ansible_view({"replica": ["r0", "r1"], "proxy": ["door"]}, hv)


def good_replicas(groups, hostvars):
    plan = plan_of(groups, hostvars)
    check_contract(plan)
    for inst in plan["instances"]:
        for m in inst["members"]:
            parse(m["argv"])   # vllm_argv's listener check covers prefill/decode only
    return plan


# ---------------------------------------------------------------- refused connector

def test_p2p_nccl_connector_is_refused_naming_the_master_and_nixl():
    problems = problems_of(*native(["p0", "p1"], ["d0"], common=dict(llmserve_kv_connector="P2pNcclConnector"),
                                   p0=dict(llmserve_instance="x"), p1=dict(llmserve_instance="x")))
    found = [p for p in problems if p.variable == "llmserve_kv_connector"]
    assert [p.host for p in found] == ["p0"], problems   # the master of prefill-x, once for every instance
    assert "no longer registered in vLLM 0.32" in found[0].message
    assert "use NixlConnector" in found[0].message


# ---------------------------------------------------------------- MooncakeConnector

@pytest.mark.parametrize("setting,port", [(None, 8998), (9100, 9100)])
def test_mooncake_prefill_api_servers_open_a_bootstrap_port_the_router_is_told(setting, port):
    plan = good(*native(["p0", "p1"], ["d0"], common=dict(llmserve_kv_connector="MooncakeConnector",
                                                          llmserve_mooncake_bootstrap_port=setting)))
    for name, host in (("prefill-p0", "p0"), ("prefill-p1", "p1")):
        m = member(plan, name, host)
        assert m["mooncake_bootstrap_port"] == port
        assert m["env"]["VLLM_MOONCAKE_BOOTSTRAP_PORT"] == str(port)
        assert ports(plan, host, "mooncake-bootstrap") == [port]
    d0 = member(plan, "decode-d0", "d0")
    assert "mooncake_bootstrap_port" not in d0 and "VLLM_MOONCAKE_BOOTSTRAP_PORT" not in d0["env"]
    assert ports(plan, "d0", "mooncake-bootstrap") == []
    argv = plan["front_door"]["members"][0]["argv"]
    start = argv.index("--prefill")
    assert argv[start:start + 10] == ["--prefill", "http://10.1.0.10:8000", str(port),
                                      "--prefill", "http://10.1.0.11:8000", str(port),
                                      "--decode", "http://10.1.0.12:8000", "--kv-connector", "mooncake"]


def test_mooncake_bootstrap_goes_to_the_prefill_of_a_host_in_both_groups_only():
    plan = good(*native(["both", "p1"], ["both"], common=dict(llmserve_kv_connector="MooncakeConnector"),
                        both=dict(llmserve_prefill_devices="0-3", llmserve_decode_devices="4-7")))
    pre, dec = member(plan, "prefill-both", "both"), member(plan, "decode-both", "both")
    assert pre["mooncake_bootstrap_port"] == 8998 and pre["env"]["VLLM_MOONCAKE_BOOTSTRAP_PORT"] == "8998"
    assert "mooncake_bootstrap_port" not in dec and "VLLM_MOONCAKE_BOOTSTRAP_PORT" not in dec["env"]
    assert plan["hosts"]["both"]["listeners"].count(
        {"port": 8998, "service": "mooncake-bootstrap", "instance": "prefill-both",
         "variable": "llmserve_mooncake_bootstrap_port"}) == 1
    assert ports(plan, "both", "mooncake-bootstrap") == [8998]


def test_headless_mooncake_prefill_members_dial_their_masters_bootstrap_port():
    # vLLM: a headless member's VLLM_MOONCAKE_BOOTSTRAP_PORT must equal the master's; it opens none itself
    plan = good(*native(["p0", "p1"], ["d0"], common=dict(llmserve_kv_connector="MooncakeConnector",
                                                          llmserve_mooncake_bootstrap_port=9100,
                                                          llmserve_instance="x")))
    head, tail = member(plan, "prefill-x", "p0"), member(plan, "prefill-x", "p1")
    assert tail["headless"] and tail["env"]["VLLM_MOONCAKE_BOOTSTRAP_PORT"] == "9100"
    assert head["env"]["VLLM_MOONCAKE_BOOTSTRAP_PORT"] == "9100"
    assert ports(plan, "p0", "mooncake-bootstrap") == [9100] and ports(plan, "p1", "mooncake-bootstrap") == []


def test_mooncake_bootstrap_port_on_another_listener_is_a_problem():
    problems = problems_of(*native(["p0"], ["d0"], common=dict(llmserve_kv_connector="MooncakeConnector"),
                                   p0=dict(llmserve_mooncake_bootstrap_port=8000)))
    found = messages(problems, "p0", "llmserve_mooncake_bootstrap_port")
    assert found and "port 8000 of mooncake-bootstrap (prefill-p0) is already taken by vllm-api" in found[0]


# ---------------------------------------------------------------- LMCacheConnectorV1

def lmcache(config, **common):
    return native(["p0", "p1"], ["d0"], common=dict(llmserve_kv_connector="LMCacheConnectorV1",
                                                    llmserve_lmcache_config=config, **common))


@pytest.mark.parametrize("config,parts", [
    (None, ["needs LMCache's configuration as a mapping", "got None"]),
    ("remote_url: lm://cache:65432", ["must be a mapping (dict)", "got 'remote_url"]),
    (["chunk_size"], ["must be a mapping (dict)"]),
    ({"enable_pd": True, "chunk_size": 256}, ["enable_pd", "vllm-router"]),
], ids=["missing", "string", "list", "enable_pd"])
def test_lmcache_needs_a_config_mapping_without_enable_pd(config, parts):
    problems = problems_of(*lmcache(config))
    found = [p for p in problems if p.variable == "llmserve_lmcache_config"]
    assert [p.host for p in found] == ["p0"], problems   # reported once, on the first master
    assert all(part in found[0].message for part in parts), found[0].message


@pytest.mark.parametrize("seed,expected", [(None, "0"), (7, "7")])
def test_lmcache_config_is_a_read_only_file_both_sides_read_with_one_hash_seed(seed, expected):
    config = {"chunk_size": 256, "remote_url": "lm://cache-host:65432", "local_cpu": False}
    plan = good(*lmcache(config, llmserve_pythonhashseed=seed))
    seeds = set()
    for inst in plan["instances"]:
        m = inst["members"][0]
        path = "/etc/llmserve/llmserve-%s.lmcache.yaml" % inst["name"]
        assert [f["path"] for f in m["files"]] == [path]
        assert json.loads(m["files"][0]["content"]) == config
        assert m["env"]["LMCACHE_CONFIG_FILE"] == path
        assert m["env"]["LMCACHE_USE_EXPERIMENTAL"] == "True"
        assert "%s:%s:ro" % (path, path) in m["volumes"]
        seeds.add(m["env"]["PYTHONHASHSEED"])
    assert seeds == {expected}
    assert {i["kind"] for i in plan["instances"]} == {"vllm_prefill", "vllm_decode"}


def test_other_connectors_write_no_lmcache_file():
    plan = good(*native(["p0"], ["d0"], common=dict(llmserve_lmcache_config={"chunk_size": 256})))
    for inst in plan["instances"]:
        m = inst["members"][0]
        assert m["files"] == [] and "LMCACHE_CONFIG_FILE" not in m["env"] and "PYTHONHASHSEED" not in m["env"]


# ---------------------------------------------------------------- Ascend devices and HCCL

@pytest.mark.parametrize("accelerator", ["ascend_a2", "ascend_a3"])
def test_ascend_members_get_device_nodes_driver_mounts_and_hccl_env(accelerator):
    plan = good(*native(["p0"], ["d0"], common=dict(llmserve_accelerator=accelerator),
                        p0=dict(llmserve_devices="0-3"), d0=dict(llmserve_devices="2,5")))
    for name, host, top, devices in (("prefill-p0", "p0", 3, "0,1,2,3"), ("decode-d0", "d0", 5, "2,5")):
        m = member(plan, name, host)
        assert m["device_nodes"] == davinci(top)
        assert all(mount in m["volumes"] for mount in ASCEND_MOUNTS), m["volumes"]
        env = m["env"]
        assert env["ASCEND_RT_VISIBLE_DEVICES"] == devices
        assert env["HCCL_IF_IP"] == m["address"] == plan["hosts"][host]["address"]
        assert {k: env[k] for k in HCCL_DEFAULTS} == HCCL_DEFAULTS
        assert ("HCCL_BUFFSIZE" in env) == (name == "decode-d0")
    assert member(plan, "decode-d0", "d0")["env"]["HCCL_BUFFSIZE"] == "1000"


def test_ascend_device_nodes_reach_the_highest_device_of_every_instance_on_the_host():
    plan = good(*native(["both"], ["both"], common=dict(llmserve_accelerator="ascend_a3"),
                        both=dict(llmserve_prefill_devices="0-1", llmserve_decode_devices="6")))
    for name in ("prefill-both", "decode-both"):
        assert member(plan, name, "both")["device_nodes"] == davinci(6)
    assert member(plan, "decode-both", "both")["env"]["ASCEND_RT_VISIBLE_DEVICES"] == "6"


def test_nvidia_members_get_no_device_nodes_nor_ascend_mounts_nor_hccl():
    plan = good(*native(["p0"], ["d0"]))
    for inst in plan["instances"]:
        m = inst["members"][0]
        assert m["device_nodes"] == [] and m["volumes"] == []
        assert not [k for k in m["env"] if k.startswith("HCCL_")]
        # Docker's request for exactly the member's GPUs
        assert m["device_requests"] == [{"driver": "nvidia", "device_ids": [str(d) for d in m["devices"]],
                                         "capabilities": [["gpu"]]}] and m["devices"]


def test_ascend_and_cpu_members_request_no_gpu():
    for accelerator in ("ascend_a2", "cpu"):
        plan = good(*native(["p0"], ["d0"], common=dict(llmserve_accelerator=accelerator)))
        assert all(m["device_requests"] == [] for i in plan["instances"] for m in i["members"])


@pytest.mark.parametrize("accelerator,names", [
    ("ascend_a2", {"GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME", "HCCL_SOCKET_IFNAME"}),
    ("ascend_a3", {"GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME", "HCCL_SOCKET_IFNAME"}),
    ("nvidia", {"GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"})])
def test_network_interface_names_the_nic_for_the_accelerators_libraries(accelerator, names):
    plan = good(*native(["p0"], ["d0"], common=dict(llmserve_accelerator=accelerator,
                                                    llmserve_network_interface="eth1")))
    for inst in plan["instances"]:
        env = inst["members"][0]["env"]
        assert {k: v for k, v in env.items() if k.endswith("_SOCKET_IFNAME")} == {n: "eth1" for n in names}
    unset = good(*native(["p0"], ["d0"], common=dict(llmserve_accelerator=accelerator)))
    assert not [k for i in unset["instances"] for k in i["members"][0]["env"] if k.endswith("_SOCKET_IFNAME")]


def test_vllm_env_overrides_an_ascend_default():
    plan = good(*native(["p0"], ["d0"], common=dict(llmserve_accelerator="ascend_a3",
                                                    llmserve_vllm_env={"HCCL_EXEC_TIMEOUT": 600})))
    for inst in plan["instances"]:
        env = inst["members"][0]["env"]
        assert env["HCCL_EXEC_TIMEOUT"] == "600" and env["HCCL_CONNECT_TIMEOUT"] == "1800"


# ---------------------------------------------------------------- Ascend connectors sized by their peers

def peer_sized(connector):
    """Two prefill instances of DP 4 (TP 1, 4 devices), one decode instance over d0+d1 of DP 8 (TP 2)."""
    return native(["p0", "p1"], ["d0", "d1"], common=dict(llmserve_accelerator="ascend_a3",
                                                          llmserve_kv_connector=connector),
                  p0=dict(llmserve_devices="0-3"), p1=dict(llmserve_devices="0-3"),
                  d0=dict(llmserve_instance="x", llmserve_tensor_parallel_size=2),
                  d1=dict(llmserve_instance="x", llmserve_tensor_parallel_size=2))


@pytest.mark.parametrize("connector", ["AscendHcclConnectorV1", "MooncakeConnectorV1"])
def test_ascend_connectors_name_the_instance_and_the_npu_and_no_kv_rank(connector):
    plan = good(*peer_sized(connector))
    seen = 0
    for inst in plan["instances"]:
        for m in inst["members"]:
            parse(m["argv"])   # vLLM 0.32's KVTransferConfig forbids unknown keys
            kv = kv_of(m)
            assert kv["kv_connector"] == connector
            assert kv["kv_role"] == ("kv_producer" if inst["kind"] == "vllm_prefill" else "kv_consumer")
            assert kv["kv_buffer_device"] == "npu" and kv["engine_id"] == inst["name"]
            assert "kv_rank" not in kv and "kv_parallel_size" not in kv
            seen += 1
    assert seen == 4   # p0, p1, and decode-x's two hosts


def test_vllm_032_would_refuse_the_kv_rank_the_plan_leaves_out():
    """The parse() above has teeth: the same argv with omni-infer's old kv_rank is rejected."""
    plan = good(*peer_sized("AscendHcclConnectorV1"))
    argv = list(member(plan, "prefill-p0", "p0")["argv"])
    at = argv.index("--kv-transfer-config") + 1
    argv[at] = json.dumps(dict(json.loads(argv[at]), kv_rank=0))
    with pytest.raises(AssertionError, match="kv_rank"):
        parse(argv)


def test_ascend_hccl_connector_is_told_the_prefill_data_parallel_size():
    plan = good(*peer_sized("AscendHcclConnectorV1"))
    for inst in plan["instances"]:
        kv = kv_of(inst["members"][0])
        assert kv["kv_connector_extra_config"] == {"kv_producer_dp_size": 4, "kv_producer_pp_size": 1}
        assert "kv_port" not in kv


@pytest.mark.parametrize("devices,kv_port,decode_dp", [("0-3", 24000, 4), ("0-7", 28000, 8)])
def test_mooncake_v1_kv_port_clears_every_npu_and_names_both_sides_sizes(devices, kv_port, decode_dp):
    groups, hostvars = peer_sized("MooncakeConnectorV1")
    for host in ("d0", "d1"):
        hostvars[host]["llmserve_devices"] = devices
    plan = good(groups, hostvars)
    assert instance(plan, "decode-x")["data_parallel_size"] == decode_dp
    for inst in plan["instances"]:
        kv = kv_of(inst["members"][0])
        assert int(kv["kv_port"]) == kv_port   # 20000 + 1000 x the most devices on one host
        assert kv["kv_connector_extra_config"] == {"prefill": {"dp_size": 4, "tp_size": 1},
                                                   "decode": {"dp_size": decode_dp, "tp_size": 2}}


def test_llmdatadist_connector_gets_vllm_ascends_module_its_rank_table_and_worker_ports():
    plan = good(*peer_sized("LLMDataDistCMgrConnector"))
    for inst in plan["instances"]:
        for m in inst["members"]:
            kv = kv_of(m)
            assert kv["kv_connector_module_path"] == "vllm_ascend.distributed.llmdatadist_c_mgr_connector"
            assert kv["kv_buffer_device"] == "npu" and kv["engine_id"] == inst["name"]
            assert m["env"]["DISAGGREGATED_PREFILL_RANK_TABLE_PATH"] == "/etc/llmserve/ranktable/ranktable.json"
            assert m["env"]["VLLM_ASCEND_LLMDD_RPC_IP"] == m["address"]
            assert m["env"]["VLLM_ASCEND_LLMDD_RPC_PORT"] == "5557"
    # the workers' ports (base + local DP rank x TP + TP rank) are the plan's: p0 DP 4 x TP 1, d0 DP 4 x TP 2
    rpc = {h: sorted(lis["port"] for lis in plan["hosts"][h]["listeners"] if lis["service"] == "llmdatadist-rpc")
           for h in ("p0", "d0")}
    assert rpc == {"p0": list(range(5557, 5561)), "d0": list(range(5557, 5565))}


def test_llmdatadist_worker_ports_collide_with_a_port_given_in_their_range():
    groups, hostvars = peer_sized("LLMDataDistCMgrConnector")
    hostvars["d0"]["llmserve_vllm_port"] = 5560
    messages = [str(p) for p in problems_of(groups, hostvars)]
    assert any("5560" in m and "d0" in m for m in messages), messages


# ---------------------------------------------------------------- log rotation

def every_container(plan):
    return [m for i in plan["instances"] for m in i["members"]] + [m for d in plan["front_doors"]
                                                                     for m in d["members"]]


@pytest.mark.parametrize("common,expected", [
    ({}, {"max-size": "100m", "max-file": "3"}),
    ({"llmserve_docker_log_max_size": "20m", "llmserve_docker_log_max_file": 7}, {"max-size": "20m", "max-file": "7"}),
])
def test_every_container_rotates_its_docker_log(common, expected):
    pd = good(*native(["p0"], ["d0"], common=common, router=dict(llmserve_api_key=SECRET)))
    plain = good_replicas(*replicas(common=common))
    containers = every_container(pd) + every_container(plain)
    assert {m["container"] for m in containers} >= {"llmserve-prefill-p0", "llmserve-decode-d0", "llmserve-router",
                                                    "llmserve-nginx", "llmserve-replica-r0"}
    for m in containers:
        assert m["log_options"] == expected, m["container"]


# ---------------------------------------------------------------- plain replicas behind nginx

def test_plain_replicas_run_without_a_kv_connector_behind_nginx_least_conn():
    plan = good_replicas(*replicas())
    assert [(i["name"], i["kind"]) for i in plan["instances"]] == [("replica-r0", "vllm_replica"),
                                                                    ("replica-r1", "vllm_replica")]
    for inst in plan["instances"]:
        for m in inst["members"]:
            assert "--kv-transfer-config" not in m["argv"]
            assert flag(m["argv"], "--host") == m["address"] and flag(m["argv"], "--port") == "8000"
    door = plan["front_door"]
    assert door["kind"] == "nginx" and door["url"] == "http://10.1.0.12:10001"
    assert door["backends"] == {"replica": ["http://10.1.0.10:8000", "http://10.1.0.11:8000"]}
    (nginx,) = door["members"]
    assert nginx["host"] == "door" and nginx["container"] == "llmserve-nginx"
    assert nginx["argv"] == ["nginx", "-g", "daemon off;"]
    assert nginx["volumes"] == ["/etc/llmserve/front-door/nginx.conf:/etc/nginx/nginx.conf:ro"]
    conf = nginx["nginx"]
    assert conf["least_conn"] is True
    assert conf["servers"] == ["10.1.0.10:8000", "10.1.0.11:8000"]
    assert conf["listen"] == ["10.1.0.12", 10001]
    assert conf["tries"] == 4   # llmserve_proxy_retries 3, plus the first try
    assert not conf["api_key"]
    assert ports(plan, "door", "front-door") == [10001] and ports(plan, "door", "router") == []
    assert plan["hosts"]["door"]["images"] == ["nginx:1.27"]


@pytest.mark.parametrize("retries,tries", [(0, 1), (5, 6)])
def test_nginx_tries_each_request_once_more_than_the_retries(retries, tries):
    plan = good_replicas(*replicas(door=dict(llmserve_proxy_retries=retries)))
    assert plan["front_door"]["members"][0]["nginx"]["tries"] == tries


def test_replicas_and_prefill_decode_in_one_inventory_is_a_problem_naming_the_replica_group():
    groups, hostvars = native(["p0"], ["d0"])
    groups["replica"] = ["r0"]
    hostvars["r0"] = dict(hostvars["p0"], ansible_host="10.1.0.40")
    problems = problems_of(groups, hostvars)
    found = messages(problems, None, "replica")
    assert found and "cannot share a cluster with prefill/decode" in found[0], problems


# ---------------------------------------------------------------- the API key gate

def test_api_key_puts_nginx_in_front_of_a_router_on_loopback():
    plan = good(*native(["p0"], ["d0"], router=dict(llmserve_api_key=SECRET)))
    door = plan["front_door"]
    assert door["url"] == "http://10.1.0.12:10001" and door["kind"] == "vllm-router"
    router, nginx = door["members"]
    assert router["container"] == "llmserve-router" and nginx["container"] == "llmserve-nginx"
    assert (flag(router["argv"], "--host"), flag(router["argv"], "--port")) == ("127.0.0.1", "10002")
    assert router["listen"] == ["127.0.0.1", 10002]
    assert ports(plan, "router", "router") == [10002] and ports(plan, "router", "front-door") == [10001]
    conf = nginx["nginx"]
    assert conf["listen"] == ["10.1.0.12", 10001] and conf["servers"] == ["127.0.0.1:10002"]
    assert conf["least_conn"] is False
    assert conf["api_key"] == {"variable": "llmserve_api_key", "host": "router"}
    for inst in plan["instances"]:   # vllm-router sends engines no key: they check none
        assert all(m["secret_env"] == {} for m in inst["members"])
    assert SECRET not in json.dumps(plan)


def test_without_an_api_key_the_router_alone_is_the_front_door():
    plan = good(*native(["p0"], ["d0"]))
    door = plan["front_door"]
    (router,) = door["members"]
    assert router["container"] == "llmserve-router" and router["listen"] == ["10.1.0.12", 10001]
    assert (flag(router["argv"], "--host"), flag(router["argv"], "--port")) == ("10.1.0.12", "10001")
    assert ports(plan, "router", "router") == [] and ports(plan, "router", "front-door") == [10001]
    assert "nginx" not in json.dumps(door)


def test_api_key_reaches_replicas_by_reference_never_by_value():
    plan = good_replicas(*replicas(door=dict(llmserve_api_key=SECRET)))
    ref = {"variable": "llmserve_api_key", "host": "door"}
    for inst in plan["instances"]:
        assert [m["secret_env"] for m in inst["members"]] == [{"VLLM_API_KEY": ref}]
        assert all("VLLM_API_KEY" not in m["env"] for m in inst["members"])
    (nginx,) = plan["front_door"]["members"]
    assert nginx["nginx"]["api_key"] == ref and nginx["nginx"]["least_conn"] is True
    assert SECRET not in json.dumps(plan)
    unkeyed = good_replicas(*replicas())
    assert all(m["secret_env"] == {} for i in unkeyed["instances"] for m in i["members"])


# ---------------------------------------------------------------- router retries

@pytest.mark.parametrize("retries,expected,absent", [
    (None, ["--retry-max-retries", "3"], "--disable-retries"),
    (5, ["--retry-max-retries", "5"], "--disable-retries"),
    (0, ["--disable-retries"], "--retry-max-retries"),
])
def test_router_retries(retries, expected, absent):
    plan = good(*native(["p0"], ["d0"], router=dict(llmserve_proxy_retries=retries, llmserve_proxy_router_mode="pd")))
    argv = plan["front_door"]["members"][0]["argv"]
    start = argv.index(expected[0])
    assert argv[start:start + len(expected)] == expected and absent not in argv


# ---------------------------------------------------------------- omni-infer's launch environment

def test_omni_members_get_omni_infers_launch_variables_and_their_rank_tables():
    from plan_inventories import omni_2p1d
    plan = plan_of(*omni_2p1d())
    p1, d1 = member(plan, "prefill-1", "p1"), [m for m in instance(plan, "decode-0")["members"] if m["host"] == "d1"][0]
    for m, role in ((p1, "prefill"), (d1, "decode")):
        env = m["env"]
        assert env["ROLE"] == role and env["PREFILL_POD_NUM"] == "2"
        assert env["GLOBAL_DECODE_SERVER_IP_LIST"] == env["LOCAL_DECODE_SERVER_IP_LIST"] == "10.0.0.3,10.0.0.4"
        assert env["VLLM_WORKER_MULTIPROC_METHOD"] == "fork" and env["HCCL_OP_EXPANSION_MODE"] == "AIV"
        assert env["GLOBAL_RANK_TABLE_FILE_PATH"] == "/etc/llmserve/ranktable/global_ranktable_merge.json"
        assert "/etc/llmserve/ranktable:/etc/llmserve/ranktable:ro" in m["volumes"]
    # a single-host P reads its host's local table; the decode instance spans two hosts: the merged one
    assert p1["env"]["RANK_TABLE_FILE_PATH"] == \
        "/etc/llmserve/ranktable/local_ranktable_10.0.0.2_0123456789101112131415.json"
    assert d1["env"]["RANK_TABLE_FILE_PATH"] == "/etc/llmserve/ranktable/local_ranktable_merge_decode-0.json"


def test_llmserve_shape_engines_get_no_omni_variables():
    plan = plan_of(*native(["p0"], ["d0"], common=dict(llmserve_accelerator="ascend_a2")))
    env = member(plan, "prefill-p0", "p0")["env"]
    assert "ROLE" not in env and "VLLM_WORKER_MULTIPROC_METHOD" not in env
    assert env["RANK_TABLE_FILE_PATH"] == "/etc/llmserve/ranktable/local_ranktable_10.1.0.10_01234567.json"


def test_a_dense_models_omni_decode_runs_independent_engines():
    # vLLM 0.32: "Non-MoE models do not support external data parallel mode"
    from plan_inventories import omni_2p1d
    plan = plan_of(*omni_2p1d(llmserve_moe_model=False))
    for m in instance(plan, "decode-0")["members"]:
        assert not [a for a in m["argv"] if a.startswith("--data-parallel")]
        assert "dp_rpc_port" not in m
        parse(m["argv"])
    moe = plan_of(*omni_2p1d())
    assert "--data-parallel-rank" in instance(moe, "decode-0")["members"][1]["argv"]
