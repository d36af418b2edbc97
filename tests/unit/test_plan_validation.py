"""Bad inventories: every problem is reported, naming the host and the variable and hinting the fix."""
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from plan_inventories import native, omni_2p1d, plan_of, problems_of

REPO = Path(__file__).resolve().parents[2]


def omni_with(**changes):
    """omni-infer's 2P1D with per-host changes: {host: {variable: value or None to drop it}}."""
    groups, hostvars = omni_2p1d()
    for host, variables in changes.items():
        for name, value in variables.items():
            if value is None:
                hostvars[host].pop(name, None)
            else:
                hostvars[host][name] = value
    return groups, hostvars


def omni_groups(**groups_changed):
    groups, hostvars = omni_2p1d()
    groups.update(groups_changed)
    return groups, hostvars


BASE = dict(prefill=["p0", "p1"], decode=["d0"])   # p0 10.1.0.10, p1 .11, d0 .12, router .13


def nat(prefill=BASE["prefill"], decode=BASE["decode"], proxy=("router",), common=None, **hostvars):
    return native(prefill, decode, proxy=proxy, common=common, **hostvars)


# (id, inventory, host or None for the whole inventory, variable, substrings of the message incl. the fix hint)
CASES = [
    # ---- two listeners on one machine
    ("api-port-on-nixl-port", nat(p0=dict(llmserve_vllm_port=5600)),
     "p0", "llmserve_nixl_side_channel_port",
     ["port 5600 of nixl-side-channel (prefill-p0) is already taken by vllm-api (prefill-p0)", "move one of them"]),
    ("dp-rpc-port-on-api-port", nat(decode=["d0", "d1"], common=dict(llmserve_vllm_dp_rpc_port=8000),
                                    d0=dict(llmserve_instance="x"), d1=dict(llmserve_instance="x")),
     "d0", "llmserve_vllm_dp_rpc_port",
     ["port 8000 of vllm-dp-rpc (decode-x) is already taken by vllm-api (decode-x)", "move one of them"]),
    ("reserved-port", nat(p1=dict(llmserve_reserved_ports=[8000])),
     "p1", "llmserve_vllm_port",
     ["port 8000 of vllm-api (prefill-p1) is already taken by reserved (llmserve_reserved_ports)", "move one"]),
    ("reserved-port-as-string", nat(p1=dict(llmserve_reserved_ports=[5601])),
     "p1", "llmserve_nixl_side_channel_port", ["port 5601 of nixl-side-channel", "reserved", "move one"]),
    ("front-door-on-an-engine-port-of-its-machine",
     nat(router=dict(ansible_host="10.1.0.10", llmserve_proxy_port=8000)),
     "router", "llmserve_proxy_port",
     ["port 8000 of front-door (front-door) is already taken by vllm-api (prefill-p0) on p0 (same address)",
      "move one of them"]),
    ("front-door-metrics-on-its-own-port", nat(router=dict(llmserve_proxy_metrics_port=10001)),
     "router", "llmserve_proxy_metrics_port", ["port 10001 of front-door-metrics", "already taken by front-door"]),
    ("omni-proxy-on-p0-api-port", omni_with(c0=dict(node_port="9000")),
     "c0", "proxy_port", ["port 9000 of front-door", "taken by vllm-api (prefill-0) on p0 (same address)",
                          "move one"]),
    ("omni-decode-api-on-its-rpc-port", omni_with(d0=dict(api_port="8100")),
     "d0", "api_port", ["port 8100 of vllm-api (decode-0) is already taken by vllm-dp-rpc (decode-0)", "move one"]),
    ("omni-reserved-port", omni_with(p1=dict(llmserve_reserved_ports=[9001])),
     "p1", "api_port", ["port 9001 of vllm-api (prefill-1) is already taken by reserved", "move one"]),
    # ---- devices
    ("omni-multinode-prefill-with-unequal-devices",
     omni_with(p1=dict(host_ip="10.0.0.1", kv_rank=0, ascend_rt_visible_devices="0-7")),
     "p1", "ascend_rt_visible_devices", ["prefill-0: 8 devices here but 16 on p0",
                                         "need the same number of devices"]),
    ("device-given-to-two-instances-on-one-host", nat(prefill=["both"], decode=["both"]),
     "both", "llmserve_devices", ["device 0 is given to both prefill-both and decode-both",
                                  "give each instance its own devices", "llmserve_decode_devices"]),
    ("role-devices-overlap", nat(prefill=["both"], decode=["both"],
                                 both=dict(llmserve_prefill_devices="0-3", llmserve_decode_devices="3-7")),
     "both", "llmserve_decode_devices", ["device 3 is given to both prefill-both and decode-both",
                                         "its own devices"]),
    ("omni-device-twice", omni_with(d1=dict(ascend_rt_visible_devices="0,1,1")),
     "d1", "ascend_rt_visible_devices", ["'0,1,1' names a device twice", "list each device once"]),
    ("range-without-end", nat(p0=dict(llmserve_devices="0-")),
     "p0", "llmserve_devices", ["'0-' is not a device number or range", "write \"0-7\""]),
    ("letter", nat(p0=dict(llmserve_devices="a")),
     "p0", "llmserve_devices", ["'a' is not a device number or range", "write \"0-7\""]),
    ("backwards-range", nat(d0=dict(llmserve_devices="3-1")),
     "d0", "llmserve_devices", ["range '3-1' runs backwards", "lower number first"]),
    ("leading-space", nat(p1=dict(llmserve_devices=" 0,1")),
     "p1", "llmserve_devices", ["' 0' is not a device number or range", "no spaces"]),
    ("duplicate-in-ranges", nat(p0=dict(llmserve_devices="0-3,3")),
     "p0", "llmserve_devices", ["'0-3,3' names a device twice", "list each device once"]),
    ("no-devices", nat(p0=dict(llmserve_devices="")),
     "p0", "llmserve_devices", ["is not set", "list the host's devices, e.g. \"0-7\""]),
    ("devices-as-a-mapping", nat(p0=dict(llmserve_devices={"a": 1})),
     "p0", "llmserve_devices", ["expected a device list", "\"0-7\""]),
    ("tp-does-not-divide", nat(common=dict(llmserve_tensor_parallel_size=4), p0=dict(llmserve_devices="0-5")),
     "p0", "llmserve_tensor_parallel_size",
     ["prefill-p0: 6 devices on this host cannot be split into groups of TP 4 x PP 1",
      "give a multiple of 4 devices"]),
    ("tp-times-pp-does-not-divide", nat(common=dict(llmserve_tensor_parallel_size=2,
                                                    llmserve_pipeline_parallel_size=2), d0=dict(llmserve_devices="0-5")),
     "d0", "llmserve_tensor_parallel_size", ["decode-d0: 6 devices", "TP 2 x PP 2", "multiple of 4"]),
    # ---- prefill and decode come in pairs
    ("prefill-without-decode", nat(decode=[]),
     None, "decode", ["prefill instances are defined but no decode host", "add hosts to the decode group"]),
    ("decode-without-prefill", nat(prefill=[]),
     None, "prefill", ["decode instances are defined but no prefill host", "add hosts to the prefill group"]),
    ("omni-P-without-D", omni_groups(D=[]),
     None, "D", ["prefill instances are defined but no decode host", "add hosts to the D group"]),
    ("omni-D-without-P", omni_groups(P=[]),
     None, "P", ["decode instances are defined but no prefill host", "add hosts to the P group"]),
    # ---- connector, model, image
    ("unknown-connector", nat(common=dict(llmserve_kv_connector="NixlConector")),
     "p0", "llmserve_kv_connector", ["'NixlConector' is not a KV connector llmserve knows", "NixlConnector"]),
    ("unknown-connector-on-decode-only", nat(d0=dict(llmserve_kv_connector="Mooncake")),
     "d0", "llmserve_kv_connector", ["'Mooncake' is not a KV connector llmserve knows", "MooncakeConnector"]),
    ("example-connector-without-shared-path", nat(common=dict(llmserve_kv_connector="ExampleConnector")),
     "p0", "llmserve_kv_shared_path", ["ExampleConnector needs a directory", "share"]),
    ("missing-model", nat(common=dict(llmserve_model=None)),
     "p0", "llmserve_model", ["is not set", "give the model path or name"]),
    ("empty-image", nat(common=dict(llmserve_image="")),
     "p0", "llmserve_image", ["is not set", "give the engine image, e.g."]),
    ("omni-missing-image", omni_with(p0=dict(llmserve_image=None)),
     "p0", "llmserve_image", ["is not set", "give the engine image"]),
    ("extra-args-as-a-string", nat(common=dict(llmserve_vllm_extra_args="--enforce-eager")),
     "p0", "llmserve_vllm_extra_args", ["must be a list of strings (list), e.g. [--enforce-eager]"]),
    ("env-as-a-list", nat(d0=dict(llmserve_vllm_env=["A=1"])),
     "d0", "llmserve_vllm_env", ["must be a mapping (dict), e.g. {VLLM_LOGGING_LEVEL: DEBUG}"]),
    # ---- hosts and addresses
    ("two-engine-hosts-one-address", nat(p1=dict(ansible_host="10.1.0.10")),
     "p1", "llmserve_devices", ["devices 0-7 are also p0's, and both hosts are the machine at 10.1.0.10",
                                "if they are two machines give each its own address"]),
    ("unknown-accelerator", nat(d0=dict(llmserve_accelerator="gpu")),
     "d0", "llmserve_accelerator", ["'gpu' is not one of nvidia, ascend_a2, ascend_a3, cpu"]),
    # ---- ports out of range, numbers that are not numbers
    ("port-above-65535", nat(p0=dict(llmserve_vllm_port=70000)),
     "p0", "llmserve_vllm_port", ["port 70000 of vllm-api is outside 1-65535"]),
    ("port-zero", nat(p0=dict(llmserve_vllm_port=0)),
     "p0", "llmserve_vllm_port", ["must be a whole number of at least 1, got 0"]),
    ("side-channel-runs-past-65535", nat(common=dict(llmserve_tensor_parallel_size=4),
                                         d0=dict(llmserve_nixl_side_channel_port=65535)),
     "d0", "llmserve_nixl_side_channel_port", ["port 65536 of nixl-side-channel is outside 1-65535"]),
    ("omni-decode-ports-past-65535", omni_with(d1=dict(api_port="65530")),
     "d1", "api_port", ["port 65536 of vllm-api is outside 1-65535"]),
    ("port-with-letters", nat(d0=dict(llmserve_vllm_port="80a0")),
     "d0", "llmserve_vllm_port", ["must be a whole number (int), e.g. 8000, got '80a0'"]),
    ("port-with-a-fraction", nat(d0=dict(llmserve_vllm_port=8000.5)),
     "d0", "llmserve_vllm_port", ["must be a whole number (int), e.g. 8000, got 8000.5"]),
    ("tp-in-words", nat(common=dict(llmserve_tensor_parallel_size="two")),
     "p0", "llmserve_tensor_parallel_size", ["must be a whole number (int), e.g. 1, got 'two'"]),
    ("tp-zero", nat(common=dict(llmserve_tensor_parallel_size=0)),
     "p0", "llmserve_tensor_parallel_size", ["must be a whole number of at least 1, got 0"]),
    ("pp-true", nat(common=dict(llmserve_pipeline_parallel_size=True)),
     "d0", "llmserve_pipeline_parallel_size", ["must be a whole number of at least 1, got True"]),
    ("omni-kv-rank-in-words", omni_with(p1=dict(kv_rank="one")),
     "p1", "kv_rank", ["must be a whole number (int), e.g. 0, got 'one'"]),
    ("omni-negative-node-rank", omni_with(d1=dict(node_rank=-1)),
     "d1", "node_rank", ["must be a whole number of at least 0, got -1"]),
    ("omni-kv-rank-twice", omni_with(p1=dict(kv_rank=0)),
     "p1", "kv_rank", ["0 is also the kv_rank of p0", "give each prefill instance its own kv_rank"]),
    ("omni-node-port-not-a-number", omni_with(p0=dict(node_port="80OO")),
     "p0", "node_port", ["must be a whole number (int), e.g. 8000, got '80OO'"]),
    ("omni-port-offset-not-a-number", omni_with(d0=dict(port_offset={"P": 0, "D": "x"}, api_port=None),
                                                d1=dict(port_offset={"P": 0, "D": "x"}, api_port=None)),
     "d0", "port_offset", ["must map P and D to whole numbers, e.g. {P: 0, D: 100}"]),
    ("reserved-port-in-words", nat(p0=dict(llmserve_reserved_ports=["ssh"])),
     "p0", "llmserve_reserved_ports", ["must be a list of whole numbers (list), e.g. [8000, 8001], got ['ssh']"]),
    ("reserved-ports-not-a-list", nat(p0=dict(llmserve_reserved_ports="8000")),
     "p0", "llmserve_reserved_ports", ["must be a list of whole numbers (list), e.g. [8000, 8001], got '8000'"]),
    # ---- front doors and groups
    ("no-front-door", nat(proxy=()),
     None, "proxy", ["needs exactly one front-door host, has 0", "put one host in the proxy group"]),
    ("two-front-doors", nat(proxy=("router", "router2")),
     None, "proxy", ["needs exactly one front-door host, has 2", "put one host in the proxy group"]),
    ("omni-no-C", omni_groups(C=[]),
     None, "C", ["needs exactly one front-door host, has 0", "put one host in the C group"]),
    ("no-known-group", ({"webservers": ["w1"]}, {"w1": {"ansible_host": "10.1.0.99"}}),
     None, "groups", ["no group of a known system has hosts", "prefill and decode", "P, D and C"]),
    ("known-groups-but-empty", ({"prefill": [], "decode": [], "proxy": []}, {}),
     None, "groups", ["no group of a known system has hosts", "prefill and decode"]),
]


def test_there_are_enough_distinct_cases():
    assert len({c[0] for c in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize("inventory,host,variable,parts", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_inventory_names_host_variable_and_fix(inventory, host, variable, parts):
    problems = problems_of(*inventory)
    matching = [p for p in problems if p.host == host and p.variable == variable]
    assert matching, "no problem for %s/%s in:\n%s" % (host, variable, "\n".join(map(str, problems)))
    assert any(all(part in p.message for part in parts) for p in matching), "\n".join(map(str, problems))
    for p in matching:
        assert str(p).startswith("%s: %s: " % (host or "inventory", variable))


def test_every_mistake_of_one_inventory_is_reported_at_once():
    groups, hostvars = native(["p0", "p1"], ["d0"], proxy=("router", "router2"), common=dict(
        llmserve_kv_connector="Nixl"),
        p0=dict(llmserve_devices="0-3,3"), p1=dict(llmserve_vllm_port="port", llmserve_image=None),
        d0=dict(llmserve_accelerator="h100", llmserve_reserved_ports=[8000]),
        router=dict(ansible_host="10.1.0.11"))
    hostvars["p0"]["llmserve_image"] = None
    hostvars["p0"].pop("llmserve_image")
    problems = [str(p) for p in problems_of(groups, hostvars)]
    expected = [
        "p0: llmserve_devices: '0-3,3' names a device twice",
        "p1: llmserve_vllm_port: must be a whole number (int), e.g. 8000, got 'port'",
        "p0: llmserve_image: is not set",
        "p0: llmserve_kv_connector: 'Nixl' is not a KV connector",
        "d0: llmserve_vllm_port: port 8000 of vllm-api (decode-d0) is already taken by reserved",
        "d0: llmserve_accelerator: 'h100' is not one of",
        "inventory: proxy: needs exactly one front-door host, has 2",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), "%r missing from:\n%s" % (line, "\n".join(problems))
    assert len(problems) >= len(expected)


BAD_INVENTORY = """\
# several mistakes; the addresses answer nothing, and nothing may try them
all:
  vars:
    llmserve_model: /models/m
    llmserve_image: registry.example.com:5000/vllm:0.32.0
  children:
    prefill:
      hosts:
        bad-p0:
          ansible_host: 10.255.255.1
          llmserve_devices: "0-"
        bad-p1:
          ansible_host: 10.255.255.1
          llmserve_devices: "0-7"
          llmserve_tensor_parallel_size: 3
    decode:
      hosts:
        bad-d0:
          ansible_host: 10.255.255.3
          llmserve_devices: "0-7"
          llmserve_kv_connector: NixlConector
          llmserve_accelerator: h100
    proxy:
      hosts:
        bad-r0:
          ansible_host: 10.255.255.4
          llmserve_proxy_port: 70000
"""


def test_validate_stage_fails_with_every_problem_and_contacts_no_host(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(BAD_INVENTORY)
    res = subprocess.run(
        [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory), "playbooks/site.yml",
         "--tags", "validate", "-vvv"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_LOCALHOST_WARNING": "0"})
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    groups = {"prefill": ["bad-p0", "bad-p1"], "decode": ["bad-d0"], "proxy": ["bad-r0"]}
    common = dict(llmserve_model="/models/m", llmserve_image="registry.example.com:5000/vllm:0.32.0")
    hostvars = {
        "bad-p0": dict(common, ansible_host="10.255.255.1", llmserve_devices="0-"),
        "bad-p1": dict(common, ansible_host="10.255.255.1", llmserve_devices="0-7", llmserve_tensor_parallel_size=3),
        "bad-d0": dict(common, ansible_host="10.255.255.3", llmserve_devices="0-7",
                       llmserve_kv_connector="NixlConector", llmserve_accelerator="h100"),
        "bad-r0": dict(common, ansible_host="10.255.255.4", llmserve_proxy_port=70000)}
    expected = [str(p) for p in problems_of(groups, hostvars)]
    assert len(expected) >= 5
    flat = " ".join(out.split())   # the YAML callback may fold long lines
    assert "the inventory has %d problem(s); nothing was contacted" % len(expected) in flat
    for line in expected:
        assert " ".join(line.split()) in flat, line
    for needle in ("bad-p0: llmserve_devices", "bad-p1: llmserve_vllm_port", "bad-p1: llmserve_tensor_parallel_size",
                   "llmserve_kv_connector", "bad-d0: llmserve_accelerator", "bad-r0: llmserve_proxy_port"):
        assert needle in flat, needle
    assert "ESTABLISH SSH CONNECTION" not in out and "SSH: EXEC" not in out
    assert "UNREACHABLE" not in out and "unreachable=1" not in out
    assert "TASK [llmserve.cluster.container_host" not in out


def test_a_mistake_shared_by_every_instance_is_reported_once():
    problems = problems_of(*nat(common=dict(llmserve_kv_connector="Nixl", llmserve_vllm_extra_args="--x")))
    assert [p.variable for p in problems].count("llmserve_kv_connector") == 1
    assert [p.variable for p in problems].count("llmserve_vllm_extra_args") == 1
