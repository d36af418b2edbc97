"""The MindIE PD part of the plan: ports (and how co-located components move apart), config values, problems."""
import copy
from pathlib import Path

import pytest
import yaml

from ansible_collections.llmserve.cluster.plugins.plugin_utils._planner import PlanError, build_plan
from plan_inventories import check_contract

REPO = Path(__file__).resolve().parents[2]

COMMON = dict(llmserve_accelerator="ascend_a2", llmserve_devices="0-7", llmserve_image="registry:5000/mindie:a2",
              llmserve_model="/models/Qwen3-8B")


def layout(servers=("s0", "s1"), controller=("ms",), coordinator=("ms",), **hostvars):
    """Groups and host variables: every host gets COMMON and 10.0.0.<n> unless hostvars say otherwise."""
    groups = {"mindie_server": list(servers), "mindie_controller": list(controller),
              "mindie_coordinator": list(coordinator)}
    hosts = sorted({h for g in groups.values() for h in g})
    hv = {h: dict(COMMON, ansible_host="10.0.0.%d" % (10 + i)) for i, h in enumerate(hosts)}
    for host, extra in hostvars.items():
        hv.setdefault(host, dict(COMMON)).update(extra)
    return groups, hv


def plan_of(groups, hostvars):
    """The plan, checked against the JSON contract every system keeps (docs/plan.md)."""
    plan = build_plan(copy.deepcopy(groups), copy.deepcopy(hostvars))
    check_contract(plan)
    return plan


def problems(groups, hostvars):
    with pytest.raises(PlanError) as exc:
        build_plan(groups, hostvars)
    return [str(p) for p in exc.value.problems]


def instance(plan, name):
    return next(i for i in plan["instances"] if i["name"] == name)


def member(plan, name):
    return instance(plan, name)["members"][0]


def listeners(plan, host):
    return {(l["service"], l["port"]) for l in plan["hosts"][host]["listeners"]}


# ---------------------------------------------------------------- good layouts

def test_separate_machines_keep_mindie_defaults():
    plan = plan_of(*layout(controller=("ctl",), coordinator=("coord",)))
    ctl, coord, s0 = member(plan, "mindie-controller"), member(plan, "mindie-coordinator"), member(plan, "mindie-server-s0")
    assert ctl["ports"] == {"port": 1026, "alarm_port": 1027}
    assert coord["ports"] == {"predict_port": 1025, "manage_port": 1026, "external_port": 1028, "status_port": 1029}
    assert s0["ports"] == {"port": 1025, "management_port": 1026, "metrics_port": 1027, "inter_comm_port": 1121}
    assert coord["config"]["http_config"]["alarm_port"] == "1027"
    assert ctl["config"]["mindie_ms_coordinator_port"] == 1026
    assert ctl["config"]["mindie_ms_coordinator_external_port"] == 1028
    assert ctl["config"]["http_server"] == {"ip": "10.0.0.11", "port": 1026}     # ctl sorts after coord


def test_colocated_controller_and_coordinator_move_apart_and_read_each_other():
    plan = plan_of(*layout())
    ctl, coord = member(plan, "mindie-controller"), member(plan, "mindie-coordinator")
    assert coord["ports"] == {"predict_port": 1035, "manage_port": 1036, "external_port": 1038, "status_port": 1039}
    assert ctl["ports"] == {"port": 1046, "alarm_port": 1047}
    http = coord["config"]["http_config"]
    assert (http["predict_port"], http["manage_port"], http["alarm_port"], http["external_port"], http["status_port"]) == (
        "1035", "1036", "1047", "1038", "1039")
    assert (ctl["config"]["mindie_ms_coordinator_port"], ctl["config"]["mindie_ms_coordinator_external_port"]) == (1036, 1038)
    assert ctl["config"]["controller_alarm_port"] == 1047
    assert ctl["health"]["startup"] == "https://10.0.0.10:1046/v1/startup"
    assert coord["health"] == {"startup": "https://10.0.0.10:1039/v1/startup", "readiness": "https://10.0.0.10:1039/v1/readiness",
                               "liveness": "https://10.0.0.10:1039/v1/health"}
    ports = [l["port"] for l in plan["hosts"]["ms"]["listeners"]]
    assert sorted(ports) == [1035, 1036, 1038, 1039, 1046, 1047]


def test_all_three_on_a_server_host_get_separate_blocks():
    plan = plan_of(*layout(controller=("s0",), coordinator=("s0",)))
    assert listeners(plan, "s0") == {
        ("mindie-server", 1025), ("mindie-server-management", 1026), ("mindie-server-metrics", 1027),
        ("mindie-server-inter-comm", 1121), ("mindie-coordinator-predict", 1035), ("mindie-coordinator-manage", 1036),
        ("mindie-coordinator-external", 1038), ("mindie-coordinator-status", 1039), ("mindie-controller", 1046),
        ("mindie-controller-alarm", 1047)}
    # a Server alone on its machine keeps MindIE's defaults
    assert member(plan, "mindie-server-s1")["ports"]["port"] == 1025
    assert plan["front_door"]["url"] == "https://10.0.0.10:1035"


def test_adding_a_server_moves_no_port():
    before = plan_of(*layout(servers=("s0", "s1")))
    groups, hv = layout(servers=("s0", "s1", "s2"))
    after = plan_of(groups, hv)
    for host in ("s0", "s1", "ms"):
        assert before["hosts"][host]["listeners"] == after["hosts"][host]["listeners"]
    assert len(after["front_door"]["backends"]["server"]) == 3


def test_pinned_ports_are_kept_and_every_reader_follows():
    groups, hv = layout(s0={"llmserve_mindie_server_port": 2025, "llmserve_mindie_server_management_port": 2026},
                        ms={"llmserve_mindie_controller_alarm_port": 3000, "llmserve_mindie_coordinator_predict_port": 8080})
    plan = plan_of(groups, hv)
    s0, ctl, coord = member(plan, "mindie-server-s0"), member(plan, "mindie-controller"), member(plan, "mindie-coordinator")
    assert s0["config"]["ServerConfig"]["port"] == 2025
    assert s0["health"]["readiness"] == "https://10.0.0.11:2026/v2/health/ready"
    entry = ctl["rank_table"]["server_group_list"][2]["server_list"][0]
    assert (entry["predict_port"], entry["mgmt_port"]) == ("2025", "2026")
    assert ctl["config"]["mindie_server_port"] == 2025     # the first Server's ports are the Controller's defaults
    assert ctl["config"]["controller_alarm_port"] == 3000
    assert coord["config"]["http_config"]["alarm_port"] == "3000"
    assert coord["ports"]["predict_port"] == 8080          # pinned: not moved although co-located
    assert coord["ports"]["manage_port"] == 1036           # the rest still moves
    assert plan["front_door"]["url"] == "https://10.0.0.10:8080"
    assert instance(plan, "mindie-server-s0")["endpoints"] == ["https://10.0.0.11:2025"]


def test_server_config_and_rank_table_values():
    groups, hv = layout(s0={"llmserve_devices": "4-7", "llmserve_served_model_name": "qwen"},
                        s1={"llmserve_devices": "0,2,4,6"})
    plan = plan_of(groups, hv)
    s0 = member(plan, "mindie-server-s0")
    assert s0["devices"] == [4, 5, 6, 7]
    backend = s0["config"]["BackendConfig"]
    assert backend["npuDeviceIds"] == [[0, 1, 2, 3]]
    assert backend["multiNodesInferEnabled"] is False and "multiNodesInferPort" not in backend
    model = {"modelName": "qwen", "modelWeightPath": "/models/Qwen3-8B", "worldSize": 4, "tp": 4}
    assert backend["ModelDeployConfig"]["ModelConfig"][0] == model
    server = s0["config"]["ServerConfig"]
    assert (server["ipAddress"], server["managementIpAddress"], server["inferMode"]) == ("10.0.0.11", "10.0.0.11", "dmi")
    assert s0["env"]["MIES_CONTAINER_IP"] == "10.0.0.11" and "RANK_TABLE_FILE" not in s0["env"]
    assert s0["argv"] == ["mindie_llm_server", "--config-file", s0["config_file"]]
    assert s0["container"] == "llmserve-mindie-server-s0"
    s1 = member(plan, "mindie-server-s1")
    assert s1["config"]["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]["modelName"] == "Qwen3-8B"
    table = member(plan, "mindie-controller")["rank_table"]
    assert table["version"] == "1.0" and table["status"] == "completed"
    assert [(g["group_id"], g["server_count"]) for g in table["server_group_list"]] == [("0", "1"), ("1", "1"), ("2", "2")]
    devices = table["server_group_list"][2]["server_list"][0]["device"]
    assert devices[0] == {"device_id": "4", "device_ip": None, "device_logical_id": "0", "rank_id": "0"}
    assert table["server_group_list"][2]["server_list"][1]["device"][3]["device_id"] == "6"


def test_a3_rank_table_has_super_device_fields():
    groups, hv = layout(**{h: {"llmserve_accelerator": "ascend_a3", "llmserve_devices": "0-15"} for h in ("s0", "s1")})
    plan = plan_of(groups, hv)
    table = member(plan, "mindie-controller")["rank_table"]
    assert table["version"] == "1.2"
    assert table["server_group_list"][2]["super_pod_list"] is None
    assert table["server_group_list"][2]["server_list"][1]["device"][15] == {
        "device_id": "15", "device_ip": None, "device_logical_id": "15", "rank_id": "15", "super_device_id": None}


def test_multi_host_server_instances():
    hosts = {h: {"llmserve_instance": "p%d" % (i // 2), "llmserve_devices": "0-3"} for i, h in enumerate(("a", "b", "c", "d"))}
    groups, hv = layout(servers=("a", "b", "c", "d"), **hosts)
    plan = plan_of(groups, hv)
    servers = [i for i in plan["instances"] if i["kind"] == "mindie_server"]
    assert [(i["name"], i["hosts"], i["world_size"]) for i in servers] == [("mindie-server-p0", ["a", "b"], 8),
                                                                           ("mindie-server-p1", ["c", "d"], 8)]
    b = servers[0]["members"][1]
    assert b["ports"]["multi_nodes_infer_port"] == 1120
    assert ("mindie-server-multi-nodes-infer", 1120) in listeners(plan, "b")
    assert b["rank_ids"] == [4, 5, 6, 7]
    assert b["config"]["BackendConfig"]["multiNodesInferEnabled"] is True
    assert b["config"]["BackendConfig"]["multiNodesInferPort"] == 1120
    assert b["config"]["BackendConfig"]["npuDeviceIds"] == [[0, 1, 2, 3]]
    assert b["env"]["MASTER_IP"] == "10.0.0.10" and b["env"]["RANK_TABLE_FILE"] == servers[0]["hccl_rank_table_file"]
    hccl = servers[0]["hccl_rank_table"]
    assert hccl["server_count"] == "2" and hccl["server_list"][1]["device"][0] == {"device_id": "0", "device_ip": None,
                                                                                   "rank_id": "4"}
    assert servers[0]["endpoints"] == ["https://10.0.0.10:1025"]    # the master serves the API
    ctl = member(plan, "mindie-controller")
    groups_ = ctl["rank_table"]["server_group_list"]
    assert [(g["group_id"], g["server_count"]) for g in groups_[2:]] == [("2", "2"), ("3", "2")]
    assert ctl["config"]["multi_node_infer_config"]["multi_node_infer_enable"] is True


def test_front_door_is_the_coordinator():
    plan = plan_of(*layout())
    assert plan["front_door"] == plan["front_doors"][0]
    door = plan["front_door"]
    assert door["kind"] == "mindie-coordinator" and door["host"] == "ms"
    assert door["url"] == "https://10.0.0.10:1035"
    assert door["backends"] == {"server": ["https://10.0.0.11:1025", "https://10.0.0.12:1025"]}
    assert door["health_url"] == "https://10.0.0.10:1039/v1/readiness"
    assert member(plan, "mindie-coordinator")["argv"] == ["mindie_motor_coordinator", "10.0.0.10", "10.0.0.10"]


def test_rates_and_env_reach_the_controller():
    groups, hv = layout(ms={"llmserve_mindie_p_rate": 1, "llmserve_mindie_d_rate": 1, "llmserve_mindie_env": {"MINDIE_LOG_LEVEL": "debug"}})
    ctl = member(plan_of(groups, hv), "mindie-controller")
    assert (ctl["config"]["default_p_rate"], ctl["config"]["default_d_rate"]) == (1, 1)
    assert ctl["env"]["MINDIE_LOG_LEVEL"] == "debug"
    assert ctl["env"]["GLOBAL_RANK_TABLE_FILE_PATH"] == ctl["rank_table_file"] == ctl["config"]["global_rank_table_file_path"]


def test_the_mindie_example_plans_without_problems():
    root = REPO / "inventories" / "examples" / "mindie"
    inventory = yaml.safe_load((root / "hosts.yml").read_text())
    common = yaml.safe_load((root / "group_vars" / "all" / "llmserve.yml").read_text())
    groups, hostvars = {}, {}
    for group, body in inventory["all"]["children"].items():
        for host, hv in (body.get("hosts") or {}).items():
            groups.setdefault(group, []).append(host)
            hostvars.setdefault(host, dict(common)).update(hv or {})
    plan = plan_of(groups, hostvars)
    assert [i["kind"] for i in plan["instances"]] == ["mindie_server", "mindie_server", "mindie_controller", "mindie_coordinator"]
    assert plan["front_door"]["url"] == "https://10.2.0.10:1035"      # co-located: the Coordinator moved by 10
    assert member(plan, "mindie-controller")["ports"] == {"port": 1046, "alarm_port": 1047}
    assert member(plan, "mindie-server-a3-0")["config"]["BackendConfig"]["npuDeviceIds"] == [list(range(16))]


def test_tls_is_on_by_default_with_the_hosts_certificate_in_every_file():
    plan = plan_of(*layout())
    s0, ctl, coord = member(plan, "mindie-server-s0"), member(plan, "mindie-controller"), member(plan, "mindie-coordinator")
    server = s0["config"]["ServerConfig"]
    assert server["httpsEnabled"] is True and server["interCommTLSEnabled"] is True
    # a Server reads its TLS files relative to its home, where the role mounts the host's tls folder
    assert (server["tlsCaPath"], server["tlsCaFile"], server["tlsCert"], server["tlsPk"]) == (
        "security/llmserve/", ["ca.pem"], "security/llmserve/cert.pem", "security/llmserve/key.pem")
    assert server["managementTlsCert"] == server["metricsTlsCert"] == server["interCommTlsCert"] == server["tlsCert"]
    assert server["interCommPk"] == server["tlsPk"]
    assert "/etc/llmserve/mindie/tls:/usr/local/lib/python3.11/site-packages/mindie_llm/security/llmserve:ro" in s0["volumes"]
    items = ctl["config"]["tls_config"]
    assert all(items["%s_tls_enable" % n] is True for n in ("request_server", "request_coordinator", "http_server", "alarm"))
    assert items["request_server_tls_items"] == {"ca_cert": "/llmserve/mindie/tls/ca.pem", "tls_cert": "/llmserve/mindie/tls/cert.pem",
                                                 "tls_key": "/llmserve/mindie/tls/key.pem", "tls_passwd": "", "tls_crl": ""}
    assert coord["config"]["tls_config"]["mindie_mangment_tls_enable"] is True
    assert s0["tls"] == {"dir": "/etc/llmserve/mindie/tls", "ca": "/etc/llmserve/mindie/tls/ca.pem",
                         "cert": "/etc/llmserve/mindie/tls/cert.pem", "key": "/etc/llmserve/mindie/tls/key.pem",
                         "address": "10.0.0.11"}
    assert s0["health_url"] == "https://10.0.0.11:1026/v2/health/ready" and coord["health_url"].startswith("https://")
    # each component's own file and the probes' http_client_ctl.json, merged over the image's shipped files
    assert [(f["path"], f["shipped"]) for f in s0["files"]] == [
        ("/etc/llmserve/mindie/config.json", "/usr/local/lib/python3.11/site-packages/mindie_llm/conf/config.json"),
        ("/etc/llmserve/mindie/http_client_ctl.json", "/usr/local/lib/python3.11/site-packages/mindie_motor/conf/http_client_ctl.json")]
    assert s0["files"][0]["config"] == s0["config"] and s0["files"][1]["config"]["tls_enable"] is True
    assert ctl["files"][0]["path"] == "/etc/llmserve/mindie/ms_controller.json" and ctl["rank_table_path"] == "/etc/llmserve/mindie/global_rank_table.json"
    assert s0["user"] == ctl["user"] == "1001:1001" and ctl["working_dir"] == "/usr/local/lib/python3.11/site-packages/mindie_motor"
    assert s0["env"]["MINDIE_UTILS_HTTP_CLIENT_CTL_CONFIG_FILE_PATH"] == "/llmserve/mindie/http_client_ctl.json"
    # the Server gets its NPUs and the driver's files, the Controller none
    assert s0["device_nodes"][0] == "/dev/davinci0:/dev/davinci0:rwm" and ctl.get("device_nodes") is None
    assert "/etc/hccn.conf:/etc/hccn.conf:ro" in s0["volumes"] and ctl["log_options"] == {"max-size": "100m", "max-file": "3"}


def test_tls_off_and_legacy_binaries():
    groups, hv = layout(**{h: {"llmserve_mindie_tls": False, "llmserve_mindie_binaries": "legacy", "llmserve_mindie_user": None}
                           for h in ("s0", "s1", "ms")})
    plan = plan_of(groups, hv)
    s0, ctl, coord = member(plan, "mindie-server-s0"), member(plan, "mindie-controller"), member(plan, "mindie-coordinator")
    assert s0["argv"] == ["mindieservice_daemon"] and s0["env"]["MIES_CONFIG_JSON_PATH"] == "/llmserve/mindie/config.json"
    assert s0["files"][0]["shipped"] == "/usr/local/Ascend/mindie/latest/mindie-service/conf/config.json"
    assert ctl["argv"] == ["ms_controller"]
    assert coord["argv"] == ["ms_coordinator", "10.0.0.10", "1035", "10.0.0.10", "1036"]
    assert s0["config"]["ServerConfig"]["httpsEnabled"] is False and "tlsCert" not in s0["config"]["ServerConfig"]
    assert ctl["config"]["tls_config"]["request_server_tls_enable"] is False and s0["tls"] is None
    assert s0["health_url"].startswith("http://") and s0["user"] is None
    assert not any("security" in v for v in s0["volumes"])


def test_heterogeneous_servers_name_their_hardware():
    groups, hv = layout(s0={"llmserve_mindie_hardware_type": "800I A2(32G)"}, s1={"llmserve_mindie_hardware_type": "800I A2(64G)"})
    ctl = member(plan_of(groups, hv), "mindie-controller")
    assert ctl["config"]["is_heterogeneous"] is True
    entries = ctl["rank_table"]["server_group_list"][2]["server_list"]
    assert [e["hardware_type"] for e in entries] == ["800I A2(32G)", "800I A2(64G)"]


# ---------------------------------------------------------------- bad inventories

def without(hostvars, variable):
    hv = copy.deepcopy(hostvars)
    for v in hv.values():
        v.pop(variable, None)
    return hv


@pytest.mark.parametrize("groups_change, expected", [
    (dict(controller=()), "inventory: mindie_controller: has no host; put the host that runs the MindIE Controller in the "
                          "mindie_controller group"),
    (dict(coordinator=("c1", "c2")), "inventory: mindie_coordinator: needs exactly one host (the MindIE Coordinator), "
                                     "has 2 (c1, c2); keep one"),
    (dict(servers=()), "inventory: mindie_server: has no host; add the MindIE Server hosts (at least two: one becomes "
                       "prefill, one decode)"),
    (dict(servers=("s0",)), "s0: mindie_server: PD needs at least two Server instances (the Controller makes one prefill "
                            "and one decode), found only mindie-server-s0; add a host to mindie_server or give hosts "
                            "different llmserve_instance values"),
])
def test_group_problems(groups_change, expected):
    assert expected in problems(*layout(**groups_change))


@pytest.mark.parametrize("s0, expected", [
    ({"llmserve_devices": "0-3,x"}, "s0: llmserve_devices: 'x' is not a device number or range"),
    ({"llmserve_devices": "0-3,3"}, "s0: llmserve_devices: '0-3,3' names a device twice"),
    ({"llmserve_devices": ""}, "s0: llmserve_devices: is not set; list the host's devices"),
    ({"llmserve_devices": "0-8"}, "s0: llmserve_devices: device 8 does not exist on an ascend_a2 host (NPUs 0-7)"),
    ({"llmserve_accelerator": "nvidia"}, "s0: llmserve_accelerator: MindIE Servers run on Ascend NPUs; set ascend_a2 or "
                                         "ascend_a3, got 'nvidia'"),
    ({"llmserve_devices": "0-3"}, "s1: llmserve_devices: mindie-server-s1 has 8 NPUs but mindie-server-s0 has 4; any "
                                  "Server may become prefill or decode"),
    ({"llmserve_accelerator": "ascend_a3"}, "s0: llmserve_accelerator: ascend_a3 here but ascend_a2 on s1; one MindIE "
                                            "image serves one kind"),
    ({"llmserve_model": "/models/other"}, "s1: llmserve_model: '/models/Qwen3-8B' here but '/models/other' on s0; "
                                          "prefill and decode must serve the same model"),
    ({"llmserve_mindie_server_port": 1026}, "s0: llmserve_mindie_server_port: port 1026 of mindie-server collides with "
                                            "mindie-server-management (llmserve_mindie_server_management_port) on the "
                                            "same machine; choose another port"),
    ({"llmserve_mindie_server_metrics_port": 80}, "s0: llmserve_mindie_server_metrics_port: port 80 of "
                                                  "mindie-server-metrics is outside 1024-65535, the ports MindIE accepts"),
    ({"llmserve_mindie_server_port": "http"}, "s0: llmserve_mindie_server_port: must be a whole number (int), e.g. 1025, got 'http'"),
    ({"llmserve_reserved_ports": [1121]}, "s0: llmserve_mindie_server_inter_comm_port: port 1121 of "
                                          "mindie-server-inter-comm (mindie-server-s0) is already taken by reserved"),
    ({"llmserve_mindie_env": {"MINDIE_MS_COORDINATOR_PORT": "1026"}}, "s0: llmserve_mindie_env: MINDIE_MS_COORDINATOR_PORT "
                                                                      "is read by the Controller"),
    ({"llmserve_mindie_env": "A=1"}, "s0: llmserve_mindie_env: must be a mapping"),
])
def test_server_host_problems(s0, expected):
    found = problems(*layout(s0=s0))
    assert any(p.startswith(expected) for p in found), found


def test_missing_model_and_image():
    groups, hv = layout()
    found = problems(groups, without(without(hv, "llmserve_model"), "llmserve_image"))
    assert "s0: llmserve_model: is not set; give the model weights path inside the container, e.g. /models/Qwen3-32B" in found
    assert "s1: llmserve_model: is not set; give the model weights path inside the container, e.g. /models/Qwen3-32B" in found
    assert [p.split(":")[0] for p in found if "llmserve_image: is not set" in p] == ["s0", "s1", "ms"]


def test_pinned_port_colliding_with_a_colocated_component():
    # the Coordinator pinned onto the Server's management port on a shared host: the pinned one is named
    groups, hv = layout(controller=("s0",), coordinator=("s0",), s0={"llmserve_mindie_coordinator_manage_port": 1026})
    assert problems(groups, hv) == [
        "s0: llmserve_mindie_coordinator_manage_port: port 1026 of mindie-coordinator-manage collides with "
        "mindie-server-management (llmserve_mindie_server_management_port) on the same machine; choose another port, or "
        "remove llmserve_mindie_coordinator_manage_port so llmserve gives co-located MindIE components separate ports"]


def test_pinned_server_port_colliding_with_the_remapped_controller_names_the_pinned_variable():
    # the Server comes first, so the Controller's (unpinned) port finds the pinned Server port taken
    groups, hv = layout(controller=("s0",), coordinator=("ms",), s0={"llmserve_mindie_server_metrics_port": 1046})
    assert problems(groups, hv) == [
        "s0: llmserve_mindie_server_metrics_port: port 1046 of mindie-server-metrics collides with mindie-controller "
        "(llmserve_mindie_controller_port) on the same machine; choose another port, or remove "
        "llmserve_mindie_server_metrics_port so llmserve gives co-located MindIE components separate ports"]


def test_coordinator_alarm_port_must_be_the_controllers():
    groups, hv = layout(ms={"llmserve_mindie_coordinator_alarm_port": 1027})
    assert problems(groups, hv) == [
        "ms: llmserve_mindie_coordinator_alarm_port: is 1027 but the Controller's alarm port is 1047; the Coordinator "
        "reports to the Controller's port, so remove this variable (set llmserve_mindie_controller_alarm_port to move both)"]
    groups, hv = layout(ms={"llmserve_mindie_coordinator_alarm_port": 1047})
    assert plan_of(groups, hv)["front_door"]


@pytest.mark.parametrize("rates, expected", [
    ((1, 0), "ms: llmserve_mindie_p_rate: p rate 1 and d rate 0: set both llmserve_mindie_p_rate and llmserve_mindie_d_rate, "
             "or neither (0/0 lets the Controller decide)"),
    ((2, 1), "ms: llmserve_mindie_p_rate: p rate 2 + d rate 1 asks for 3 Server instances but mindie_server has 2; "
             "lower the rates or add Servers"),
    ((10, 7), "ms: llmserve_mindie_p_rate: p rate + d rate is 17; MindIE allows at most 16"),
])
def test_rate_problems(rates, expected):
    groups, hv = layout(ms={"llmserve_mindie_p_rate": rates[0], "llmserve_mindie_d_rate": rates[1]})
    assert problems(groups, hv) == [expected]


def test_unequal_host_counts():
    hosts = {h: {"llmserve_instance": "x", "llmserve_devices": "0-3"} for h in ("a", "b")}
    groups, hv = layout(servers=("a", "b", "c"), **hosts)
    found = problems(groups, hv)
    assert "c: llmserve_instance: mindie-server-c spans 1 hosts but mindie-server-x spans 2; give every Server instance " \
           "the same number of hosts" in found


def test_a_second_inventory_host_at_the_controllers_address_is_refused_by_the_core():
    # co-locate by putting one inventory host in both groups, not two names for one machine
    groups, hv = layout(controller=("ctl",), coordinator=("coord",), coord={"ansible_host": "10.0.0.10"})
    hv["ctl"]["ansible_host"] = "10.0.0.10"
    found = [p for p in problems(groups, hv) if p.startswith("ctl: ansible_host: address 10.0.0.10 is also coord's, and "
                                                             "both would put /etc/llmserve/mindie/")]
    assert found and found[0].endswith("put one inventory host in both groups, or give each its own machine"), found


def test_every_problem_is_reported_at_once():
    groups, hv = layout(controller=(), s0={"llmserve_devices": "0-9"}, s1={"llmserve_accelerator": "nvidia"})
    found = problems(groups, hv)
    assert len(found) >= 3
    assert found[0].startswith("s0: llmserve_devices: device 8 does not exist")


@pytest.mark.parametrize("hostvars, expected", [
    (dict(ms={"llmserve_mindie_binaries": "v2"}), "ms: llmserve_mindie_binaries: 'v2' is not one of current, legacy"),
    (dict(s1={"llmserve_mindie_tls": False}), "s1: llmserve_mindie_tls: False differs from True on ms; the components "
                                              "talk to each other, so TLS is on for all or none"),
    (dict(ms={"llmserve_mindie_user": "mindie"}), "ms: llmserve_mindie_user: 'mindie' is not UID:GID in numbers"),
    (dict(s0={"llmserve_mindie_hardware_type": "800I A3"}), "s0: llmserve_mindie_hardware_type: '800I A3' is not one MindIE knows"),
    (dict(s0={"llmserve_mindie_hardware_type": "800I A2(64G)"}), "s1: llmserve_mindie_hardware_type: is not set, but s0 sets it"),
])
def test_cluster_setting_problems(hostvars, expected):
    found = problems(*layout(**hostvars))
    assert any(p.startswith(expected) for p in found), found
