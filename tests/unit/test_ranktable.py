"""Rank tables: ours equal what the peers' own generators wrote for the same NPUs (fixtures recorded by
running omni-infer's pd_ranktable_tools.py and vllm-ascend's gen_ranktable.py, see
tests/unit/fixtures/ranktable/README.md), and the checks refuse the mistakes that start clusters that
never serve."""
import json
import re
from pathlib import Path

import pytest

from ansible_collections.llmserve.cluster.plugins.plugin_utils import _ranktable as rt

FIXTURES = Path(__file__).parent / "fixtures" / "ranktable"


def case(name):
    """(input, {file name: text}) of a recorded case; devices in npu_facts' shape."""
    data = json.loads((FIXTURES / name / "input.json").read_text())
    servers = {}
    for host in data["hosts"]:
        # vllm_ascend_a3_2node's hccn_tool stand-in answered -vnic -g with the device_ip it lists
        servers[host["host_ip"]] = {"server_id": host["host_ip"], "devices": [
            dict(d, super_device_id=d.get("sdid"), vnic_ip=d.get("vnic_ip", d["device_ip"])) for d in host["devices"]]}
    outputs = {p.name: p.read_text() for p in (FIXTURES / name / "out").iterdir()}
    return data, servers, outputs


@pytest.mark.parametrize("name", ["omni_a2_2p1d", "omni_a2_16dev_1p1d", "omni_a3_2p1d"])
def test_omni_local_tables_equal_omni_infers_byte_for_byte(name):
    dummy, servers, outputs = case(name)
    for server in servers.values():
        name = rt.omni_local_name(server["server_id"], [d["device_id"] for d in server["devices"]])
        assert rt.dumps(rt.omni_local(server)) == outputs[name]


@pytest.mark.parametrize("name", ["omni_a2_2p1d", "omni_a2_16dev_1p1d", "omni_a3_2p1d"])
def test_omni_global_merge_equals_omni_infers(name):
    data, servers, outputs = case(name)
    prefill = [[servers[h] for h in inst["hosts"]] for inst in data["layout"]["P"]]
    decode = [servers[h] for inst in data["layout"]["D"] for h in inst["hosts"]]
    table = rt.omni_global(prefill, decode)
    assert rt.dumps(table) == outputs["global_ranktable_merge.json"]
    per_host = 8 if name == "omni_a2_2p1d" else 16
    rt.check(table, expected_devices=[per_host * len(p) for p in prefill] + [len(decode) * per_host], what=name)


@pytest.mark.parametrize("name", ["omni_a2_2p1d", "omni_a3_2p1d"])
def test_omni_merge_of_the_two_host_decode_equals_omni_infers(name):
    """On A3 too (omni_a3_2p1d: omni-infer's generator run on A3 stand-ins whose -ip and -vnic answers differ): the
    RoCE address, no super_* field."""
    data, servers, outputs = case(name)
    decode = [servers[h] for h in data["layout"]["D"][0]["hosts"]]
    assert rt.dumps(rt.omni_merged(decode)) == outputs["local_ranktable_merge.json"]


@pytest.mark.parametrize("name,a3", [("vllm_ascend_a2_2p2d", False), ("vllm_ascend_a3_2node", True)])
def test_vllm_ascend_table_equals_gen_ranktables(name, a3):
    data, servers, outputs = case(name)
    prefill = [servers[h] for h in data["layout"]["prefill_nodes"]]
    decode = [servers[h] for h in data["layout"]["decode_nodes"]]
    assert rt.dumps(rt.vllm_ascend(prefill, decode, a3=a3)) == outputs["ranktable.json"]


def test_hccl_v10_ranks_run_over_nodes_then_cards():
    dummy, servers, dummy = case("omni_a2_2p1d")
    table = rt.hccl([servers["10.0.0.3"], servers["10.0.0.4"]])
    assert table["version"] == "1.0" and table["server_count"] == "2" and "super_pod_list" not in table
    first, second = table["server_list"]
    assert first["server_id"] == first["container_ip"] == "10.0.0.3"
    assert [d["rank_id"] for d in first["device"]] == [str(i) for i in range(8)]
    assert [d["rank_id"] for d in second["device"]] == [str(i) for i in range(8, 16)]
    assert second["device"][0] == {"device_id": "0", "device_ip": "192.168.4.10", "rank_id": "8"}
    rt.check(table, expected_devices=16)


def test_hccl_v12_on_a3_has_super_devices_and_super_pods():
    dummy, servers, dummy = case("vllm_ascend_a3_2node")
    table = rt.hccl(list(servers.values()), a3=True)
    assert table["version"] == "1.2"
    assert table["server_list"][0]["host_ip"] == "10.0.0.1"
    assert table["server_list"][1]["device"][0]["super_device_id"] == "109051904"
    assert table["super_pod_list"] == [{"super_pod_id": "0", "server_list": [{"server_id": "10.0.0.1"},
                                                                           {"server_id": "10.0.0.2"}]}]


@pytest.mark.parametrize("mutate,message", [
    (lambda t: t.update(status="initializing"), "status is 'initializing'"),
    (lambda t: t["server_list"][1]["device"][0].update(device_ip="192.168.3.10"), "device IP 192.168.3.10 is on 10.0.0.3"),
    (lambda t: t["server_list"][1]["device"][0].update(rank_id="17"), "rank ids"),
])
def test_check_refuses_what_would_start_a_cluster_that_never_serves(mutate, message):
    dummy, servers, dummy = case("omni_a2_2p1d")
    table = rt.hccl([servers["10.0.0.3"], servers["10.0.0.4"]])
    mutate(table)
    with pytest.raises(rt.RankTableError, match=message):
        rt.check(table)


def test_check_refuses_a_device_count_other_than_the_plans():
    dummy, servers, dummy = case("omni_a2_2p1d")
    with pytest.raises(rt.RankTableError, match="lists 8 devices, the plan has 16"):
        rt.check(rt.hccl([servers["10.0.0.3"]]), expected_devices=16)


# ---------------------------------------------------------------- the stage's tables, from plan and facts

def omni_plan():
    from plan_inventories import omni, plan_of
    return plan_of(*omni(2, 2, 100, devices="0-7"))


def facts_for(plan, drop=None, no_ip=None):
    facts = {}
    for host, entry in plan["hosts"].items():
        octet = entry["address"].rsplit(".", 1)[-1]
        facts[host] = {"generation": "A3", "devices": [
            {"device_id": d, "logical_id": d, "device_ip": None if (host, d) == no_ip else "29.0.%s.%d" % (octet, d),
             "vnic_ip": "10.20.%s.%d" % (octet, d), "super_device_id": 1000 * int(octet) + d, "super_pod_id": 0}
            for d in range(8) if (host, d) != drop]}
    return facts


def test_the_stage_writes_omni_and_hccl_tables_on_every_engine_host():
    plan = omni_plan()
    files = rt.plan_files(plan, facts_for(plan))
    assert sorted(files) == ["d0", "d1", "p0", "p1"]
    names = {h: sorted(p.rsplit("/", 1)[-1] for p, dummy in entries) for h, entries in files.items()}
    assert names["p0"] == ["global_ranktable_merge.json", "hccl_prefill-0.json", "local_ranktable_10.0.0.1_01234567.json"]
    assert names["d1"] == ["global_ranktable_merge.json", "hccl_decode-0.json", "local_ranktable_10.0.0.4_01234567.json",
                           "local_ranktable_merge_decode-0.json"]
    # every path is what the engines' environment names
    for inst in plan["instances"]:
        for m in inst["members"]:
            paths = [p for p, dummy in files[m["host"]]]
            assert m["env"]["RANK_TABLE_FILE_PATH"] in paths and m["env"]["GLOBAL_RANK_TABLE_FILE_PATH"] in paths
    hccl = json.loads(dict(files["d0"])["/etc/llmserve/ranktable/hccl_decode-0.json"])
    assert hccl["version"] == "1.2" and hccl["server_list"][1]["device"][0]["rank_id"] == "8"
    assert hccl["server_list"][1]["device"][0]["super_device_id"] == "4000"


@pytest.mark.parametrize("facts,message", [
    (lambda plan: {h: f for h, f in facts_for(plan).items() if h != "d1"}, "d1: no NPU facts"),
    (lambda plan: facts_for(plan, drop=("p1", 5)), "p1: the plan gives it device(s) 5, but npu-smi reports only 0,1,2,3,4,6,7"),
    (lambda plan: facts_for(plan, no_ip=("d0", 3)), "d0: device(s) 3 have no IP address"),
])
def test_the_stage_refuses_facts_that_disagree_with_the_plan_naming_the_host(facts, message):
    plan = omni_plan()
    with pytest.raises(rt.RankTableError, match=re.escape(message)):
        rt.plan_files(plan, facts(plan))


def test_two_hosts_with_one_device_ip_are_refused():
    plan = omni_plan()
    facts = facts_for(plan)
    facts["p1"]["devices"][0]["device_ip"] = facts["p0"]["devices"][0]["device_ip"]
    with pytest.raises(rt.RankTableError, match="device IP 29.0.1.0 is on 10.0.0.1 device 0 and on 10.0.0.2 device 0"):
        rt.plan_files(plan, facts)


def test_the_stage_writes_vllm_ascends_table_for_its_llmdatadist_connector_on_every_engine_host():
    from plan_inventories import native, plan_of
    plan = plan_of(*native(["p0", "p1"], ["d0"], common=dict(llmserve_accelerator="ascend_a3",
                                                             llmserve_kv_connector="LLMDataDistCMgrConnector")))
    facts = facts_for(plan)
    files = rt.plan_files(plan, facts)
    path = "/etc/llmserve/ranktable/ranktable.json"
    texts = {h: dict(entries)[path] for h, entries in files.items()}
    assert sorted(texts) == ["d0", "p0", "p1"] and len(set(texts.values())) == 1
    table = json.loads(texts["d0"])
    # one entry per device: the prefill hosts' 16, then the decoder's 8, cluster ids counting over both
    assert [d["server_id"] for d in table["prefill_device_list"]] == ["10.1.0.10"] * 8 + ["10.1.0.11"] * 8
    # on A3, the dies' vNIC addresses (its generator's -vnic -g); the HCCL and omni tables keep the RoCE ones
    assert [d["device_ip"] for d in table["decode_device_list"]] == ["10.20.12.%d" % d for d in range(8)]
    hccl = json.loads(dict(files["d0"])["/etc/llmserve/ranktable/hccl_decode-d0.json"])
    assert [d["device_ip"] for d in hccl["server_list"][0]["device"]] == ["29.0.12.%d" % d for d in range(8)]
    assert [d["cluster_id"] for d in table["prefill_device_list"] + table["decode_device_list"]] == \
        [str(n) for n in range(1, 25)]
    assert table["server_count"] == "3" and table["status"] == "completed"
    rt.check(table, expected_devices=[16, 8])
    with pytest.raises(rt.RankTableError, match="group decode_device_list lists 8 devices, the plan has 9"):
        rt.check(table, expected_devices=[16, 9])
    table["decode_device_list"][1]["device_ip"] = table["prefill_device_list"][10]["device_ip"]
    with pytest.raises(rt.RankTableError, match="device IP 10.20.11.2 is on 10.1.0.11 device 2 and on 10.1.0.12 device 1"):
        rt.check(table)


# ---------------------------------------------------------------- MindIE's tables, from plan and facts

def mindie_plan(accelerator="ascend_a2", instance=None):
    from plan_inventories import plan_of
    hv = {h: dict(llmserve_accelerator=accelerator, llmserve_devices="0-3", llmserve_image="m:1", llmserve_model="/m",
                  ansible_host="10.0.0.%d" % i) for i, h in enumerate(("s0", "s1", "s2", "s3"), 1)}
    hv["ms"] = dict(llmserve_accelerator="cpu", llmserve_image="m:1", ansible_host="10.0.0.9")
    if instance:
        for host, name in instance.items():
            hv[host]["llmserve_instance"] = name
    return plan_of({"mindie_server": ["s0", "s1", "s2", "s3"], "mindie_controller": ["ms"], "mindie_coordinator": ["ms"]}, hv)


def test_mindie_global_table_on_the_controller_host_owned_by_mindies_user():
    plan = mindie_plan()
    files = rt.plan_files(plan, facts_for(plan))
    assert sorted(files) == ["ms"]
    ((path, text, owner),) = files["ms"]
    assert path == "/etc/llmserve/mindie/global_rank_table.json" and owner == "1001:1001"
    table = json.loads(text)
    groups = table["server_group_list"]
    assert [(g["group_id"], g["server_count"]) for g in groups] == [("0", "1"), ("1", "1"), ("2", "4")]
    s1 = groups[2]["server_list"][1]
    assert (s1["server_id"], s1["predict_port"], s1["mgmt_port"]) == ("10.0.0.2", "1025", "1026")
    # one single-host instance per server: ranks 0..3 in each, the host's device IPs
    assert s1["device"][3] == {"device_id": "3", "device_ip": "29.0.2.3", "device_logical_id": "3", "rank_id": "3"}
    assert table["version"] == "1.0" and table["status"] == "completed"


def test_mindie_on_a3_with_two_host_instances_writes_super_pods_and_hccl_tables():
    plan = mindie_plan("ascend_a3", instance=dict(s0="a", s1="a", s2="b", s3="b"))
    files = rt.plan_files(plan, facts_for(plan))
    assert sorted(files) == ["ms", "s0", "s1", "s2", "s3"]
    table = json.loads(files["ms"][0][1])
    group = table["server_group_list"][2]
    assert group["super_pod_list"] == [{"super_pod_id": "0", "server_list": [{"server_id": "10.0.0.1"}, {"server_id": "10.0.0.2"}]}]
    assert group["server_list"][1]["device"][0]["super_device_id"] == "2000"
    assert group["server_list"][1]["device"][0]["rank_id"] == "4"       # ranks run over the instance's hosts
    ((path, text, owner),) = files["s2"]
    hccl = json.loads(text)
    assert path == "/etc/llmserve/mindie/hccl_rank_table.json" and hccl["version"] == "1.2"
    assert [s["server_id"] for s in hccl["server_list"]] == ["10.0.0.3", "10.0.0.4"]
    assert hccl["server_list"][1]["device"][3]["device_ip"] == "29.0.4.3" and files["s3"][0][1] == text


def test_mindie_refuses_a_device_ip_two_hosts_report():
    plan = mindie_plan()
    facts = facts_for(plan)
    facts["s3"]["devices"][0]["device_ip"] = "29.0.1.0"
    with pytest.raises(rt.RankTableError, match="device IP 29.0.1.0 is on 10.0.0.1 device 0 and on 10.0.0.4 device 0"):
        rt.plan_files(plan, facts)


def test_a_multi_node_prefill_launches_and_lists_its_other_hosts_in_omni_infers_order():
    """omni-infer orders a multi-node P's non-head hosts by address as a string (.10 before .9); the node ranks the
    engines start with and the instance's merged rank table follow that one order."""
    from plan_inventories import omni, plan_of
    groups, hostvars = omni(4, 1, 100, devices="0-7")
    head = hostvars["p0"]["ansible_host"]
    for host, octet in (("p1", 9), ("p2", 10), ("p3", 11)):
        hostvars[host].update(ansible_host="10.0.0.%d" % octet, host_ip=head, kv_rank=0, node_port="8000",
                              api_port="9000")
    hostvars["d0"]["ansible_host"] = hostvars["d0"]["host_ip"] = "10.0.0.20"
    groups["P"] = ["p0", "p1", "p2", "p3"]   # inventory order: .9, .10, .11
    plan = plan_of(groups, hostvars)
    (inst,) = [i for i in plan["instances"] if i["kind"] == "vllm_prefill"]
    assert [plan["hosts"][h]["address"] for h in inst["hosts"]] == [head, "10.0.0.10", "10.0.0.11", "10.0.0.9"]
    ranks = {m["host"]: int(m["argv"][m["argv"].index("--node-rank") + 1]) for m in inst["members"]}
    assert ranks == {"p0": 0, "p2": 1, "p3": 2, "p1": 3}
    files = rt.plan_files(plan, facts_for(plan))
    merged = json.loads(dict(files["p1"])["/etc/llmserve/ranktable/local_ranktable_merge_prefill-0.json"])
    assert [s["server_id"] for s in merged["server_list"]] == [head, "10.0.0.10", "10.0.0.11", "10.0.0.9"]
    # rank ids run over the servers in that order: node rank k holds ranks 8k..8k+7
    for k, server in enumerate(merged["server_list"]):
        assert [int(d["rank_id"]) for d in server["device"]] == list(range(8 * k, 8 * k + 8))


# ---------------------------------------------------------------- the hosts' network, before any engine starts

def read_facts(plan, conf=True, driver="24.1.rc2"):
    """facts_for as npu_facts 0.1.0 returns them: with /etc/hccn.conf's addresses, link, TLS and driver."""
    facts = facts_for(plan)
    for npu in facts.values():
        npu.update(hccn_conf="/etc/hccn.conf" if conf else None, driver_version=driver)
        for d in npu["devices"]:
            d.update(conf_ip=d["device_ip"] if conf else None, link="UP", tls=False)
    return facts


def test_facts_whose_file_link_and_switches_agree_give_the_same_tables_as_before():
    plan = omni_plan()
    assert rt.plan_files(plan, read_facts(plan)) == rt.plan_files(plan, facts_for(plan))


@pytest.mark.parametrize("change,message", [
    (lambda f: f["d1"]["devices"][2].update(link="DOWN"), "d1: the RoCE link of device(s) 2 is DOWN"),
    (lambda f: f["p0"]["devices"][3].update(conf_ip="29.0.1.99"),
     "p0: the persisted device IPs disagree with the devices' (device 3: 29.0.1.99 in /etc/hccn.conf, 29.0.1.3 by "
     "hccn_tool)"),
    (lambda f: f["p1"]["devices"][0].update(conf_ip=None), "device 0: no address_0 line in /etc/hccn.conf"),
    (lambda f: f["d0"].update(hccn_conf=None), "d0: /etc/hccn.conf does not exist"),
    (lambda f: [d.update(tls=True) for d in f["d0"]["devices"] + f["d1"]["devices"]],
     "the device TLS switch is on for d0 device 0, d0 device 1"),
    (lambda f: f["p1"].update(driver_version="23.0.3"),
     "the hosts run different NPU drivers (23.0.3 on p1; 24.1.rc2 on d0, d1, p0)"),
])
def test_the_stage_refuses_a_host_network_that_would_not_carry_kv_naming_host_and_fix(change, message):
    plan = omni_plan()
    facts = read_facts(plan)
    change(facts)
    with pytest.raises(rt.RankTableError, match=re.escape(message)):
        rt.plan_files(plan, facts)


def test_a_tls_switch_on_everywhere_is_accepted():
    plan = omni_plan()
    facts = read_facts(plan)
    for npu in facts.values():
        for d in npu["devices"]:
            d["tls"] = True
    assert sorted(rt.plan_files(plan, facts)) == ["d0", "d1", "p0", "p1"]


def test_mindie_refuses_servers_whose_tls_switches_differ():
    plan = mindie_plan()
    facts = read_facts(plan)
    for d in facts["s2"]["devices"]:
        d["tls"] = True
    with pytest.raises(rt.RankTableError, match=re.escape("the device TLS switch is on for s2 device 0, s2 device 1, "
                                                          "s2 device 2, s2 device 3 and off for s0 device 0")):
        rt.plan_files(plan, facts)
