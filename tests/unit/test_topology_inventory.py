"""The inventory plugin llmserve.cluster.topology.

Golden tests in netbox's style: `ansible-inventory --list` of every tests/unit/topology/*.topology.yml
(and of the examples in inventories/examples/topology_*) must equal tests/unit/topology/<name>.json;
LLMSERVE_REGENERATE_GOLDEN=1 rewrites those files from the current output (review the diff!).
Then the pure expansion, every wrong file in tests/unit/topology/bad with the messages its
`# expect:` lines name, and the planner fed by a topology file.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
HERE = REPO / "tests" / "unit" / "topology"
EXAMPLES = REPO / "inventories" / "examples"
REGENERATE = os.environ.get("LLMSERVE_REGENERATE_GOLDEN") == "1"

if str(REPO / ".collections") not in sys.path:      # conftest.py does this too, when it is there
    sys.path.insert(0, str(REPO / ".collections"))
from ansible_collections.llmserve.cluster.plugins.plugin_utils._topology import (  # noqa: E402
    TopologyError, expand, expand_pattern)

GOLDEN = [(p, HERE / (p.name[:-len(".topology.yml")] + ".json")) for p in sorted(HERE.glob("*.topology.yml"))]
GOLDEN += [(p, HERE / ("example_" + p.name[:-len(".topology.yml")] + ".json"))
           for p in sorted(EXAMPLES.glob("topology_*/*.topology.yml"))]
BAD = sorted((HERE / "bad").glob("*.topology.yml"))


def ansible(tool, *args, **env):
    """Run an ansible CLI from the checkout (the collection is linked under .collections)."""
    return subprocess.run([str(BIN / tool), *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=180,
                          env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
                               "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "1", **env})


def expected_lines(path):
    return [line[len("# expect:"):].strip() for line in path.read_text().splitlines() if line.startswith("# expect:")]


def flat(text):
    return re.sub(r"\s+", " ", text)


# ---------------------------------------------------------------- golden ansible-inventory --list

@pytest.mark.parametrize("source, golden", GOLDEN, ids=[g.stem for dummy, g in GOLDEN])
def test_inventory_list_matches_golden(source, golden):
    res = ansible("ansible-inventory", "-i", source, "--list")
    assert res.returncode == 0, res.stderr
    assert "WARNING" not in res.stderr, res.stderr
    got = json.loads(res.stdout)
    if REGENERATE or not golden.exists():
        golden.write_text(json.dumps(got, indent=4, sort_keys=True) + "\n")
        if not REGENERATE:
            pytest.fail("%s did not exist; written from the current output, review it" % golden.name)
    assert got == json.loads(golden.read_text()), "ansible-inventory --list of %s differs from %s" % (
        source.name, golden.name)


def test_every_golden_file_has_its_source():
    assert {g.name for dummy, g in GOLDEN} == {p.name for p in HERE.glob("*.json")}


# ---------------------------------------------------------------- the pure expansion

def load(path):
    return yaml.safe_load(path.read_text())


def test_2p1d_example_expands_in_host_order():
    inv = expand(load(EXAMPLES / "topology_2p1d" / "2p1d.topology.yml"))
    assert inv["groups"] == {"prefill": ["gpu-p0", "gpu-p1"], "decode": ["gpu-d0"], "proxy": ["router0"]}
    assert [(i["name"], i["hosts"]) for i in inv["instances"]] == [
        ("prefill-0", ["gpu-p0"]), ("prefill-1", ["gpu-p1"]), ("decode-0", ["gpu-d0"])]
    assert inv["hosts"]["gpu-p1"] == {"ansible_host": "10.1.0.12", "llmserve_instance": "1"}
    assert inv["hosts"]["router0"] == {"ansible_host": "10.1.0.10"}
    assert inv["group_vars"]["all"] == {
        "llmserve_model": "/models/Qwen3-32B", "llmserve_served_model_name": "qwen3-32b",
        "llmserve_image": "registry.example.com:5000/vllm/vllm-openai:v0.32.0",
        "llmserve_accelerator": "nvidia", "llmserve_kv_connector": "NixlConnector"}
    assert inv["group_vars"]["prefill"] == {"llmserve_devices": "0-7", "llmserve_tensor_parallel_size": 8}
    assert inv["group_vars"]["decode"] == {"llmserve_devices": "0-7", "llmserve_tensor_parallel_size": 4}


def test_multi_host_instance_shares_llmserve_instance():
    inv = expand(load(EXAMPLES / "topology_multinode_decode" / "2p1d_multinode_decode.topology.yml"))
    assert inv["groups"]["decode"] == ["gpu03", "gpu04"]
    assert inv["hosts"]["gpu03"]["llmserve_instance"] == inv["hosts"]["gpu04"]["llmserve_instance"] == "0"
    assert inv["hosts"]["gpu04"]["ansible_host"] == "10.2.0.14"
    assert inv["groups"]["proxy"] == ["gpu01"]            # colocated: no host of its own
    assert inv["group_vars"]["all"]["llmserve_vllm_extra_args"] == ["--enable-expert-parallel"]
    assert inv["group_vars"]["all"]["ansible_user"] == "deploy"


def test_two_multi_host_decode_instances_are_numbered_per_role():
    inv = expand(load(HERE / "ascend_multihost.topology.yml"))
    assert [(i["name"], i["hosts"]) for i in inv["instances"]] == [
        ("prefill-0", ["a3-p0", "a3-p1"]), ("decode-0", ["a3-d0", "a3-d1"]), ("decode-1", ["a3-d2", "a3-d3"])]
    assert [inv["hosts"][h].get("llmserve_instance") for h in inv["hosts"]] == ["0", "0", "0", "0", "1", "1", None]


def test_defaults_bare_addresses_and_host_vars():
    inv = expand({"plugin": "llmserve.cluster.topology", "hosts": ["10.0.0.1", {"name": "b"}, "10.0.0.3"],
                  "prefill": {}, "decode": {"devices": "0-3", "vars": {"llmserve_vllm_port": 9000}},
                  "vars": {"llmserve_devices": "0"}})
    assert inv["groups"] == {"prefill": ["10.0.0.1"], "decode": ["b"], "proxy": ["10.0.0.3"]}
    assert inv["hosts"]["10.0.0.1"] == {"ansible_host": "10.0.0.1", "llmserve_instance": "0"}
    assert inv["hosts"]["b"] == {"llmserve_instance": "0"}             # reached by its name
    assert inv["group_vars"]["decode"] == {"llmserve_devices": "0-3", "llmserve_vllm_port": 9000}
    assert inv["group_vars"]["all"] == {"llmserve_devices": "0"}


def test_host_vars_win_and_layout_variables_stay():
    inv = expand({"hosts": [{"address": "10.0.0.[1:2]", "vars": {"llmserve_devices": "4-7"}}, "10.0.0.3"],
                  "prefill": {"devices": "0-3"}, "decode": {"devices": "0-3"}})
    assert inv["hosts"]["10.0.0.2"] == {"ansible_host": "10.0.0.2", "llmserve_instance": "0",
                                        "llmserve_devices": "4-7"}


def test_templated_values_are_not_checked_as_literals():
    inv = expand({"hosts": ["a", "b", "c"], "kv_connector": "{{ connector }}",
                  "prefill": {"devices": "{{ my_devices }}", "tensor_parallel_size": 8}, "decode": {"devices": "0"}})
    assert inv["group_vars"]["prefill"]["llmserve_devices"] == "{{ my_devices }}"


@pytest.mark.parametrize("pattern, names", [
    ("gpu1", ["gpu1"]),
    ("10.0.0.[1:3]", ["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
    ("gpu[08:10]", ["gpu08", "gpu09", "gpu10"]),
    ("n[0:4:2]", ["n0", "n2", "n4"]),
    ("r[1:2]-g[0:1]", ["r1-g0", "r1-g1", "r2-g0", "r2-g1"]),
])
def test_expand_pattern(pattern, names):
    assert expand_pattern(pattern) == names


@pytest.mark.parametrize("pattern", ["gpu[1-3]", "gpu[3:1]", "gpu[1:3", "n[0:4:0]"])
def test_expand_pattern_rejects(pattern):
    with pytest.raises(ValueError):
        expand_pattern(pattern)


def test_not_a_mapping():
    with pytest.raises(TopologyError, match="must be a YAML mapping"):
        expand(["10.0.0.1"])


# ---------------------------------------------------------------- wrong files

def test_there_are_enough_wrong_files():
    assert len(BAD) >= 6 and all(expected_lines(p) for p in BAD)


@pytest.mark.parametrize("path", BAD, ids=[p.name.split(".")[0] for p in BAD])
def test_wrong_file_lists_each_problem(path):
    with pytest.raises(TopologyError) as err:
        expand(load(path))
    for line in expected_lines(path):
        assert any(p.startswith(line) for p in err.value.problems), "%r not among:\n%s" % (line, err.value)


@pytest.mark.parametrize("path", BAD, ids=[p.name.split(".")[0] for p in BAD])
def test_wrong_file_fails_ansible_inventory_with_its_message(path):
    res = ansible("ansible-inventory", "-i", path, "--list")
    assert res.returncode != 0
    assert "problem(s) in the topology" in res.stderr, res.stderr
    for line in expected_lines(path):
        assert flat(line) in flat(res.stderr), "%r not in:\n%s" % (line, res.stderr)


def test_file_not_named_topology_is_declined(tmp_path):
    source = tmp_path / "cluster.yml"
    source.write_text((EXAMPLES / "topology_2p1d" / "2p1d.topology.yml").read_text())
    res = ansible("ansible-inventory", "-i", source, "--list")
    assert res.returncode != 0
    assert "could not be verified by inventory plugin 'llmserve.cluster.topology'" in flat(res.stderr)


# ---------------------------------------------------------------- templating: unsafe outside vars

def test_jinja_is_literal_outside_vars_and_templated_inside(tmp_path):
    play = tmp_path / "show.yml"
    play.write_text(yaml.safe_dump([{"hosts": "node01,node04", "gather_facts": False, "tasks": [
        {"ansible.builtin.debug": {"msg": "{{ [llmserve_model, llmserve_vllm_extra_args | default([])] }}"}}]}]))
    res = ansible("ansible-playbook", "-i", HERE / "features.topology.yml", play,
                  ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    assert res.returncode == 0, res.stdout + res.stderr
    hosts = json.loads(res.stdout)["plays"][0]["tasks"][0]["hosts"]
    # model came from the file outside vars: never templated (an undefined variable would fail)
    assert hosts["node01"]["msg"] == ["/models/{{ not_templated }}", ["--max-num-batched-tokens", "16384"]]
    # decode.vars is templated like any inventory variable
    assert hosts["node04"]["msg"] == ["/models/{{ not_templated }}", ["--max-num-seqs", 128]]   # native types: a number


# ---------------------------------------------------------------- the planner reads the expanded inventory

@pytest.mark.parametrize("source, instances, door", [
    ("topology_2p1d/2p1d.topology.yml",
     {"prefill-0": ["gpu-p0"], "prefill-1": ["gpu-p1"], "decode-0": ["gpu-d0"]},
     ("router0", "http://10.1.0.10:10001", 2, 1)),
    ("topology_multinode_decode/2p1d_multinode_decode.topology.yml",
     {"prefill-0": ["gpu01"], "prefill-1": ["gpu02"], "decode-0": ["gpu03", "gpu04"]},
     ("gpu01", "http://10.2.0.11:10001", 2, 1)),
])
def test_plan_from_topology(tmp_path, source, instances, door):
    plan_file = tmp_path / "plan.json"
    res = ansible("ansible-playbook", "-i", EXAMPLES / source, "playbooks/plan.yml",
                  "-e", "llmserve_plan_file=%s" % plan_file)
    assert res.returncode == 0, res.stdout + res.stderr
    plan = json.loads(plan_file.read_text())
    assert {i["name"]: i["hosts"] for i in plan["instances"]} == instances
    front = plan["front_door"]
    assert (front["host"], front["url"], len(front["backends"]["prefill"]), len(front["backends"]["decode"])) == door
    by_name = {i["name"]: i for i in plan["instances"]}
    if "multinode" in source:
        decode = by_name["decode-0"]
        assert decode["data_parallel_size"] == 16 and decode["master"] == "gpu03"
        assert [m["headless"] for m in decode["members"]] == [False, True]
        assert "--enable-expert-parallel" in decode["members"][0]["argv"]
    else:
        assert by_name["prefill-0"]["tensor_parallel_size"] == 8
        assert by_name["decode-0"]["data_parallel_size"] == 2
