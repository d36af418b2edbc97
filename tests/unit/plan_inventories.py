"""Inventories for the planner's tests, as the plan action plugin hands them to build_plan.

Ansible gives the planner ``groups`` (without all/ungrouped, hosts in inventory order) and each host's
variables with all.vars, group_vars and host vars merged and templates already rendered; the action
plugin keeps only the variables the planner reads (``wanted_variable``). These builders do the same.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from ansible_collections.llmserve.cluster.plugins.plugin_utils._planner import PlanError, build_plan, wanted_variable

OMNI_ALL = dict(ansible_user="root", ansible_ssh_common_args="-o StrictHostKeyChecking=no -o IdentitiesOnly=yes",
                global_port_base=8000, base_api_port=9000, proxy_port=7000)
# what omni-infer keeps in its playbook, given beside the inventory (group_vars/all/llmserve.yml)
OMNI_LLMSERVE = dict(llmserve_accelerator="ascend_a3",
                     llmserve_image="registry.example.com:5000/omni-infer/omni_infer-a3-arm:latest",
                     llmserve_model="/data/models/deepseek", llmserve_served_model_name="deepseek",
                     llmserve_kv_connector="AscendHcclConnectorV1")
SIXTEEN = ",".join(str(i) for i in range(16))


def ansible_view(groups, hostvars):
    """(groups, hostvars) trimmed the way plugins/action/plan.py trims them."""
    hosts = sorted({h for members in groups.values() for h in members})
    return ({g: list(h) for g, h in groups.items()},
            {h: {k: v for k, v in hostvars.get(h, {}).items() if wanted_variable(k)} for h in hosts})


def omni(n_prefill, n_decode, d_offset, base="10.0.0.", devices=SIXTEEN, **overrides):
    """omni-infer's template inventory (one single-node P per kv_rank, one D over every D host, C on
    p0's machine), with node_port/api_port rendered as hostvars deliver them (strings here)."""
    common = dict(OMNI_ALL, port_offset={"P": 0, "D": d_offset}, **OMNI_LLMSERVE)
    common.update(overrides)
    groups = {"P": [], "D": [], "C": ["c0"]}
    hostvars = {}
    ip = iter("%s%d" % (base, i) for i in range(1, 100))
    for k in range(n_prefill):
        addr = next(ip)
        groups["P"].append("p%d" % k)
        hostvars["p%d" % k] = dict(common, ansible_host=addr, host_ip=addr, node_rank=0, kv_rank=k,
                                   node_port=str(8000 + 0 + k), api_port=str(9000 + 0 + k),
                                   ascend_rt_visible_devices=devices)
    d_master = None
    for r in range(n_decode):
        addr = next(ip)
        d_master = d_master or addr
        groups["D"].append("d%d" % r)
        hostvars["d%d" % r] = dict(common, ansible_host=addr, host_ip=d_master, node_rank=r,
                                   node_port=str(8000 + d_offset), api_port=str(9000 + d_offset + r),
                                   ascend_rt_visible_devices=devices)
    hostvars["c0"] = dict(common, ansible_host=hostvars["p0"]["ansible_host"], node_rank=0, role="C",
                          node_port=str(7000 + 0))
    return ansible_view(groups, hostvars)


def omni_2p1d(**overrides):
    return omni(2, 2, 100, base="10.0.0.", **overrides)


def omni_4p1d(**overrides):
    return omni(4, 4, 200, base="10.0.1.", **overrides)


NATIVE_ALL = dict(llmserve_accelerator="nvidia", llmserve_image="registry.example.com:5000/vllm/vllm-openai:v0.32.0",
                  llmserve_model="/models/Qwen3-32B", llmserve_served_model_name="qwen3-32b",
                  llmserve_kv_connector="NixlConnector")


def native(prefill, decode, proxy=("router",), common=None, **hostvars):
    """llmserve's shape: prefill/decode/proxy host names; ``hostvars`` maps a host to its own variables.

    Hosts get addresses 10.1.0.<n> in the order they are named unless their variables set ansible_host.
    """
    common = dict(NATIVE_ALL, **(common or {}))
    groups = {"prefill": list(prefill), "decode": list(decode), "proxy": list(proxy)}
    names = []
    for members in groups.values():
        names.extend(h for h in members if h not in names)
    hv = {}
    for n, host in enumerate(names, start=10):
        hv[host] = dict(common, ansible_host="10.1.0.%d" % n, llmserve_devices="0-7")
        hv[host].update(hostvars.get(host, {}))
        hv[host] = {k: v for k, v in hv[host].items() if v is not None}   # None: leave the variable unset
    return ansible_view(groups, hv)


def plan_of(groups, hostvars):
    return build_plan(copy.deepcopy(groups), copy.deepcopy(hostvars))


def problems_of(groups, hostvars):
    """The problems a bad inventory raises, each one line (as the plan action shows them)."""
    with pytest.raises(PlanError) as caught:
        plan_of(groups, hostvars)
    problems = caught.value.problems
    assert str(caught.value).splitlines() == [str(p) for p in problems]
    return problems


def instance(plan, name):
    (found,) = [i for i in plan["instances"] if i["name"] == name]
    return found


def members(plan, name, host):
    """The members (containers) of instance ``name`` on ``host``, in rank order."""
    return [m for m in instance(plan, name)["members"] if m["host"] == host]


def member(plan, name, host):
    """The one member of instance ``name`` on ``host``."""
    (found,) = members(plan, name, host)
    return found


def flag(argv, name):
    """The value after ``name`` in argv (None when absent)."""
    return argv[argv.index(name) + 1] if name in argv else None


def check_contract(plan):
    """Assert the plan has the shape docs/plan.md and docs/workload.schema.json promise (version 2), no two
    listeners collide, and every member runs as exactly one workload of its host."""
    jsonschema.validate(plan, SCHEMA)
    check_workloads(plan)
    assert isinstance(plan["hosts"], dict) and plan["hosts"]
    by_machine = {}
    for name, host in plan["hosts"].items():
        assert isinstance(host["address"], str) and host["address"], name
        assert host["accelerator"] in ("nvidia", "ascend_a2", "ascend_a3", "cpu"), name
        for listener in host["listeners"]:
            assert set(listener) >= {"port", "service", "instance"}, listener
            assert isinstance(listener["port"], int) and 1 <= listener["port"] <= 65535, listener
            key = (host["address"], listener["port"])
            assert key not in by_machine, "%s:%d is claimed twice: %r and %r" % (key + (by_machine.get(key), listener))
            by_machine[key] = (name, listener)
    assert plan["instances"]
    names = [i["name"] for i in plan["instances"]]
    assert len(set(names)) == len(names), names
    endpoints = set()
    for inst in plan["instances"]:
        assert isinstance(inst["kind"], str) and inst["kind"]
        assert inst["hosts"] and all(h in plan["hosts"] for h in inst["hosts"]), inst["name"]
        assert inst["master"] in inst["hosts"]
        assert inst["endpoints"], inst["name"]
        for url in inst["endpoints"]:
            assert url.startswith(("http://", "https://", "postgresql://")), url
            addr, port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
            assert by_machine.get((addr, int(port)), (None, {}))[1].get("instance") == inst["name"], url
            endpoints.add(url)
        # members are containers, or systemd units (a Ray node with runtime service): several may share a host,
        # the hosts they run on are the instance's
        member_hosts = []
        for m in inst["members"]:
            if m["host"] not in member_hosts:
                member_hosts.append(m["host"])
        assert member_hosts == inst["hosts"], inst["name"]
        containers = [(m["host"], m.get("container") or m["unit"]) for m in inst["members"]]
        assert len(set(containers)) == len(containers), inst["name"]
        for m in inst["members"]:
            assert m["address"] == plan["hosts"][m["host"]]["address"]
            if m.get("runtime") == "service":
                assert m["unit"].endswith(".service") and m["argv"][0].startswith(m["venv"] + "/bin/")
                assert "container" not in m and "image" not in m
            else:
                assert isinstance(m["container"], str) and m["container"]
                assert isinstance(m["image"], str) and m["image"]
            assert m["argv"] and all(isinstance(a, str) for a in m["argv"])
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in m["env"].items())
            if inst["kind"].startswith("vllm_"):
                assert all(isinstance(d, int) for d in m["devices"])
                assert isinstance(m["dp_start_rank"], int) and isinstance(m["local_dp"], int)
                assert isinstance(m["headless"], bool)
    doors = plan["front_doors"]
    # a Ray cluster without vLLM has no front door
    assert plan["front_door"] == (doors[0] if len(doors) == 1 else None)
    for door in doors:
        assert isinstance(door["kind"], str) and door["kind"]
        assert door["host"] in plan["hosts"]
        addr, port = door["url"].split("://", 1)[1].rsplit(":", 1)
        assert door["url"].startswith(("http://", "https://")) and addr == plan["hosts"][door["host"]]["address"]
        assert by_machine[(addr, int(port))][0] == door["host"]
        assert door["backends"] and all(door["backends"].values())
        if door["kind"] == "vllm-router":
            assert set(door["backends"]) == {"prefill", "decode"}
        for urls in door["backends"].values():
            assert set(urls) <= endpoints and len(set(urls)) == len(urls)
    return by_machine


SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "workload.schema.json").read_text())


def workloads(plan, host):
    """{name: workload} of a host of the plan."""
    return {w["name"]: w for w in plan["hosts"][host]["workloads"]}


def check_workloads(plan):
    """Each host's workloads: unique names, images the host pulls, one per member container or unit, and
    restart_after naming files or workloads of the plan."""
    every = {w["name"] for h in plan["hosts"].values() for w in h["workloads"]}
    for name, host in plan["hosts"].items():
        names = [w["name"] for w in host["workloads"]]
        assert len(set(names)) == len(names), (name, names)
        assert [w["phase"] for w in host["workloads"]] == sorted(w["phase"] for w in host["workloads"]), name
        for w in host["workloads"]:
            if w["container"]:
                assert w["container"]["image"] in host["images"], (name, w["name"])
            assert all(r.startswith("/") or r in every for r in w["restart_after"]), (name, w["restart_after"])
            assert w["system"] in {"vllm", "front_door", "ray", "mindie", "xinference", "gpustack"} or not w["ready"]
    members = [m for i in plan["instances"] for m in i["members"]]
    members += [m for d in plan["front_doors"] for m in d.get("members", [])]
    for m in members:
        (found,) = [w for w in plan["hosts"][m["host"]]["workloads"] if w["name"] == m.get("container", m.get("name"))]
        if found["container"]:
            assert found["container"]["image"] == m["image"]
            assert (found["container"].get("entrypoint") or []) + found["container"]["command"] == m["argv"]
        else:
            assert found["service"]["argv"] == m["argv"] and found["service"]["unit"] == m["unit"]
    assert len(members) == sum(len(h["workloads"]) for h in plan["hosts"].values())
