"""Bad inventories by class (issue 14): each is refused with every problem named by host and variable, and none
crashes the planner. Classes still to come are listed in the issue's notes."""
import pytest

from plan_inventories import native, omni, plan_of, problems_of
from test_plan_clusters import ray

# ---------------------------------------------------------------- a value of the wrong type, for any variable
# A value that is not of its spec's type is taken out before planning: the planner goes on with the default (so no
# system reads a list where it wants a name, and every other problem is found too) and says what was expected.
WRONG_TYPES = [
    ("a list where a name belongs", native(["p0"], ["d0"], p0=dict(llmserve_accelerator=["nvidia"])),
     "p0", "llmserve_accelerator", "must be one of nvidia, ascend_a2, ascend_a3, cpu, got ['nvidia']"),
    ("a list for the model", native(["p0"], ["d0"], common=dict(llmserve_model=["/models/a", "/models/b"])),
     "p0", "llmserve_model", "must be a string (str), e.g. "),
    ("a mapping for the image", native(["p0"], ["d0"], d0=dict(llmserve_image={"name": "vllm"})),
     "d0", "llmserve_image", "must be a string (str), e.g. "),
    ("a string where a list belongs", native(["p0"], ["d0"], d0=dict(llmserve_vllm_volumes="/models:/models:ro")),
     "d0", "llmserve_vllm_volumes", "must be a list of strings (list), e.g. "),
    ("a string for the router's arguments", native(["p0"], ["d0"], router=dict(llmserve_proxy_extra_args="--x 1")),
     "router", "llmserve_proxy_extra_args", "must be a list of strings (list), e.g. "),
    ("a list for an instance name", native(["p0"], ["d0", "d1"], d0=dict(llmserve_instance=["x"]),
                                           d1=dict(llmserve_instance=["x"])),
     "d0", "llmserve_instance", "must be a string (str), e.g. "),
    ("a list for a Ray port", ray(1, common=dict(llmserve_ray_port=[6379])),
     "head", "llmserve_ray_port", "must be a whole number (int), e.g. 6379, got [6379]"),
]


@pytest.mark.parametrize("inventory,host,variable,message", [c[1:] for c in WRONG_TYPES],
                         ids=[c[0] for c in WRONG_TYPES])
def test_a_value_of_the_wrong_type_is_named_never_a_crash(inventory, host, variable, message):
    problems = problems_of(*inventory)      # PlanError with problems, not TypeError and friends
    mine = [p for p in problems if p.variable == variable]
    assert [p.host for p in mine] == [host], problems
    assert message in mine[0].message, mine[0].message


# ---------------------------------------------------------------- addresses
@pytest.mark.parametrize("address", ["10.1.0.312", "10.1.0.11:2222", "node_1.example.com", "gpu 1", "-gpu1", "10.1.0"])
def test_an_address_that_is_neither_ip_nor_host_name_is_refused(address):
    problems = problems_of(*native(["p0"], ["d0"], d0=dict(ansible_host=address)))
    (mine,) = [p for p in problems if p.variable == "ansible_host"]
    assert mine.host == "d0" and "%r is neither an IP address nor a host name" % address in mine.message, problems
    assert "e.g. ansible_host: 10.0.0.11" in mine.message


def test_an_inventory_name_used_as_address_is_checked_too():
    groups, hostvars = native(["p0"], ["d0"])
    groups["decode"] = ["gpu_d0"]
    hostvars["gpu_d0"] = {k: v for k, v in hostvars.pop("d0").items() if k != "ansible_host"}
    (mine,) = [p for p in problems_of(groups, hostvars) if p.host == "gpu_d0"]
    assert mine.variable == "inventory name" and "'gpu_d0' is neither" in mine.message


@pytest.mark.parametrize("address", ["10.1.0.31", "fd00:1::31", "gpu-31.example.com", "gpu31"])
def test_addresses_and_host_names_are_planned(address):
    plan = plan_of(*native(["p0"], ["d0"], d0=dict(ansible_host=address)))
    assert plan["hosts"]["d0"]["address"] == address


# ---------------------------------------------------------------- names that become container and file names
@pytest.mark.parametrize("instance", ["a/b", "../etc", "x y", "-x", "é"])
def test_an_instance_name_docker_or_a_file_would_refuse_is_refused(instance):
    problems = problems_of(*native(["p0", "p1"], ["d0"], p0=dict(llmserve_instance=instance),
                                  p1=dict(llmserve_instance=instance)))
    mine = [p for p in problems if p.variable == "llmserve_instance"]
    assert mine and mine[0].host == "p0" and "%r cannot name a container" % instance in mine[0].message, problems


@pytest.mark.parametrize("name", ["p 1", "fd00::11", "gpu/1"])
def test_a_host_name_docker_would_refuse_is_refused(name):
    groups, hostvars = native(["p0"], ["d0"])
    groups["prefill"] = [name]
    hostvars[name] = hostvars.pop("p0")
    (mine,) = [p for p in problems_of(groups, hostvars) if p.variable == "inventory name"]
    assert mine.host == name and "cannot name a container" in mine.message and "letters, digits" in mine.message


# ---------------------------------------------------------------- settings that must agree
def without(hostvars, host, *names):
    for name in names:
        hostvars[host].pop(name, None)


@pytest.mark.parametrize("variable", ["llmserve_model", "llmserve_image"])
def test_model_and_image_given_to_one_group_only_name_the_other(variable):
    groups, hostvars = native(["p0"], ["d0", "d1"])
    for host in ("d0", "d1"):
        without(hostvars, host, variable)
    mine = [p for p in problems_of(groups, hostvars) if p.variable == variable]
    assert [p.host for p in mine] == ["d0"], mine      # said once, for the first instance without it
    assert "is not set for decode-d0, though prefill-p0 has it" in mine[0].message


@pytest.mark.parametrize("variable,other", [("llmserve_model", "/models/other"),
                                            ("llmserve_served_model_name", "other")])
def test_prefill_and_decode_serving_different_models_is_refused(variable, other):
    groups, hostvars = native(["p0"], ["d0"], common={"llmserve_served_model_name": "m"}, d0={variable: other})
    (mine,) = [p for p in problems_of(groups, hostvars) if p.variable == variable]
    assert mine.host == "d0" and "decode-d0 serves %r but prefill-p0 serves" % other in mine.message
    assert "must serve the same model" in mine.message


@pytest.mark.parametrize("extra,flag", [(["--kv-transfer-config", "{}"], "--kv-transfer-config"),
                                        (["--port=9000"], "--port"), (["--host", "0.0.0.0"], "--host"),
                                        (["--tensor-parallel-size", "2"], "--tensor-parallel-size")])
def test_an_extra_argument_repeating_a_flag_the_plan_sets_is_refused(extra, flag):
    problems = problems_of(*native(["p0"], ["d0"], common=dict(llmserve_vllm_extra_args=extra)))
    mine = [p for p in problems if p.variable == "llmserve_vllm_extra_args"]
    assert len(mine) == 1 and mine[0].host == "p0" and mine[0].message.startswith(flag + " is set by the plan"), problems


@pytest.mark.parametrize("accelerator,devices,first_missing", [("ascend_a2", "0-15", 8), ("ascend_a3", "8-23", 16),
                                                               ("ascend_a2", "7,8", 8)])
def test_devices_beyond_what_the_accelerator_has_are_refused(accelerator, devices, first_missing):
    problems = problems_of(*native(["p0"], ["d0"], common=dict(llmserve_accelerator=accelerator,
                                                               llmserve_kv_connector="AscendHcclConnectorV1"),
                                   d0=dict(llmserve_devices=devices)))
    (mine,) = [p for p in problems if p.variable == "llmserve_devices"]
    assert mine.host == "d0" and "device %d does not exist on an %s host" % (first_missing, accelerator) in mine.message


# ---------------------------------------------------------------- omni-infer inventories
@pytest.mark.parametrize("mistake,variable", [
    (lambda hv: hv["p1"].update(kv_rank=0), "kv_rank"),
    (lambda hv: hv["d0"].update(node_port="80OO"), "node_port"),
    (lambda hv: [hv[h].pop("llmserve_image") for h in hv], "llmserve_image"),
    (lambda hv: hv["p0"].update(llmserve_vllm_extra_args=["--port", "1"]), "llmserve_vllm_extra_args"),
])
def test_a_mistake_in_an_omni_inventory_with_its_global_proxy_is_listed_not_a_crash(mistake, variable):
    groups, hostvars = omni(2, 2, 100, llmserve_proxy_type="omni-global-proxy")
    mistake(hostvars)
    assert variable in {p.variable for p in problems_of(groups, hostvars)}


@pytest.mark.parametrize("group_hosts", [("p0",), ("d0", "d1")])
def test_an_omni_host_ip_that_names_no_host_of_its_instance_is_refused(group_hosts):
    groups, hostvars = omni(2, 2, 100)
    for host in group_hosts:
        hostvars[host]["host_ip"] = "10.9.9.9"
    (mine,) = [p for p in problems_of(groups, hostvars) if p.variable == "host_ip"]
    assert mine.host == group_hosts[0] and mine.message.startswith("10.9.9.9 is the address of no host of this")


@pytest.mark.parametrize("image,accelerator", [("registry:5000/omni-infer/omni_infer-a3-arm:latest", "ascend_a3"),
                                               ("registry:5000/omni_infer-A2-x86:0.4", "ascend_a2")])
def test_omni_hosts_listing_npus_without_an_accelerator_run_on_ascend(image, accelerator):
    groups, hostvars = omni(2, 2, 100, llmserve_image=image, devices="0,1,2,3,4,5,6,7")
    for host in hostvars:
        hostvars[host].pop("llmserve_accelerator")
    plan = plan_of(groups, hostvars)
    assert {h: e["accelerator"] for h, e in plan["hosts"].items()} == dict.fromkeys(plan["hosts"], accelerator)


def test_omni_hosts_whose_ascend_generation_nothing_says_are_asked_once():
    groups, hostvars = omni(2, 2, 100, llmserve_image="registry:5000/omni-infer:latest")
    for host in hostvars:
        hostvars[host].pop("llmserve_accelerator")
    (mine,) = [p for p in problems_of(groups, hostvars) if p.variable == "llmserve_accelerator"]
    assert mine.host == "p0" and "say which, ascend_a2 or ascend_a3" in mine.message and "p1, d0, d1" in mine.message


def omni_playbook(**names):
    """omni_2p1d with omni-infer's playbook variables in place of our llmserve_* ones (an omni user's group_vars)."""
    groups, hostvars = omni(2, 2, 100)
    for hv in hostvars.values():
        for ours in ("llmserve_model", "llmserve_image", "llmserve_kv_connector"):
            hv.pop(ours)
        hv.update(names)
    return groups, hostvars


OMNI_NAMES = dict(MODEL_PATH="/data/models/deepseek", DOCKER_IMAGE_ID="registry:5000/omni_infer-a3-arm:v1",
                  KV_CONNECTOR="AscendHcclConnectorV1", MODEL_LEN_MAX_PREFILL="32000", MODEL_LEN_MAX_DECODE=16384,
                  DECODE_TENSOR_PARALLEL_SIZE=1, LOG_PATH="/data/log_path")


def test_omni_playbook_variables_are_taken_as_omni_means_them():
    plan = plan_of(*omni_playbook(**OMNI_NAMES))
    for inst in plan["instances"]:
        length = "32000" if inst["kind"] == "vllm_prefill" else "16384"
        for m in inst["members"]:
            assert m["argv"][2] == "/data/models/deepseek" and m["image"] == "registry:5000/omni_infer-a3-arm:v1"
            assert "AscendHcclConnectorV1" in m["argv"][m["argv"].index("--kv-transfer-config") + 1]
            assert m["argv"][m["argv"].index("--max-model-len") + 1] == length and m["argv"].count("--max-model-len") == 1
            assert "/data/log_path:/data/log_path" in m["volumes"] and m["env"]["LOG_PATH"] == "/data/log_path"


@pytest.mark.parametrize("names,variable,words", [
    (dict(DECODE_TENSOR_PARALLEL_SIZE=2), "DECODE_TENSOR_PARALLEL_SIZE", "is 2, but decode runs omni-infer's layout"),
    (dict(MODEL_PATH="/data/a", llmserve_model="/data/b"), "MODEL_PATH", "and llmserve_model is '/data/b': both name"),
    (dict(MODEL_LEN_MAX_DECODE=8192, llmserve_vllm_extra_args=["--max-model-len=4096"]), "MODEL_LEN_MAX_DECODE",
     "and a --max-model-len in llmserve_vllm_extra_args both set"),
    (dict(MODEL_LEN_MAX_PREFILL="32k"), "MODEL_LEN_MAX_PREFILL", "must be a whole number"),
    (dict(DOCKER_IMAGE_ID=["omni:v1"]), "DOCKER_IMAGE_ID", "must be a string"),
])
def test_omni_playbook_variables_that_cannot_be_taken_are_named(names, variable, words):
    problems = problems_of(*omni_playbook(**dict(OMNI_NAMES, **names)))
    mine = [p for p in problems if p.variable == variable]
    assert mine and words in mine[0].message and mine[0].host in ("p0", "d0"), problems


@pytest.mark.parametrize("worker_port", [7000, "6380", 16379])
def test_a_ray_worker_given_another_gcs_port_than_its_head_is_refused(worker_port):
    groups, hostvars = ray(2, w1=dict(llmserve_ray_port=worker_port))
    (mine,) = [p for p in problems_of(groups, hostvars) if p.variable == "llmserve_ray_port"]
    assert mine.host == "w1" and "differs from 6379 on head" in mine.message and "join the head's GCS port" in mine.message


# ---------------------------------------------------------------- engine hosts that share a machine
def test_omni_p_and_d_on_one_machine_apart_by_port_offset_are_planned():
    """omni-infer's port_offset exists to launch P and D on one node: their devices and ports must not collide."""
    groups, hostvars = omni(1, 1, 100, devices="0,1,2,3,4,5,6,7")
    hostvars["d0"].update(ansible_host="10.0.0.1", host_ip="10.0.0.1", ascend_rt_visible_devices="8,9,10,11,12,13,14,15")
    plan = plan_of(groups, hostvars)
    assert plan["hosts"]["p0"]["address"] == plan["hosts"]["d0"]["address"] == "10.0.0.1"
    ports = [lis["port"] for h in ("p0", "d0", "c0") for lis in plan["hosts"][h]["listeners"]]
    assert len(ports) == len(set(ports)), ports


@pytest.mark.parametrize("p0_devices,d0_devices,shared", [("0-3", "3-7", "device 3 is"), ("0-7", "0-7", "devices 0-7 are"),
                                                           ("4", "0,4", "device 4 is")])
def test_a_device_given_to_two_hosts_of_one_machine_names_both(p0_devices, d0_devices, shared):
    problems = problems_of(*native(["p0"], ["d0"], p0=dict(ansible_host="10.1.0.50", llmserve_devices=p0_devices),
                                   d0=dict(ansible_host="10.1.0.50", llmserve_devices=d0_devices, llmserve_vllm_port=8100,
                                           llmserve_vllm_dp_rpc_port=13400, llmserve_nixl_side_channel_port=5700)))
    (mine,) = [p for p in problems if p.variable == "llmserve_devices"]
    assert mine.host == "d0" and mine.message.startswith(shared) and "also p0's, and both hosts are the machine at " \
        "10.1.0.50" in mine.message, problems


def test_two_hosts_of_one_machine_with_the_same_ports_name_the_ports():
    problems = problems_of(*native(["p0"], ["d0"], p0=dict(ansible_host="10.1.0.50", llmserve_devices="0-3"),
                                   d0=dict(ansible_host="10.1.0.50", llmserve_devices="4-7")))
    assert any(p.variable == "llmserve_vllm_port" and "already taken by vllm-api (decode-d0) on d0 (same address)"
               in p.message for p in problems), problems
