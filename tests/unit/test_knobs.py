"""Every knob in one place (roles/defaults/meta/argument_specs.yml): documented, type-checked, misspellings caught."""
import ast
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from ansible_collections.llmserve.cluster.plugins.plugin_utils import _plan_vllm
from ansible_collections.llmserve.cluster.plugins.plugin_utils._planner import (
    ACCELERATORS, FACTS, SECRET_SUFFIXES, SPEC, SPEC_FILE, TYPE_WORDS, _typed, load_spec)
from plan_inventories import native, omni_2p1d, plan_of, problems_of

REPO = Path(__file__).resolve().parents[2]
UTILS = REPO / "plugins" / "plugin_utils"
ENV = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_LOCALHOST_WARNING": "0"}
# the types a message can name, with an example
TYPES = set(TYPE_WORDS)


def only(problems, host, variable):
    """The one problem of a host and a variable (failing with all of them when there is not exactly one)."""
    found = [p for p in problems if p.host == host and p.variable == variable]
    assert len(found) == 1, "\n".join(map(str, problems))
    return found[0]


# ---------------------------------------------------------------- the spec is the planner's

def test_the_planner_reads_the_spec_beside_it_in_the_checkout():
    assert Path(SPEC_FILE).resolve() == (REPO / "roles" / "defaults" / "meta" / "argument_specs.yml").resolve()
    assert load_spec() == SPEC
    assert SPEC["llmserve_vllm_port"]["default"] == 8000 and SPEC["llmserve_accelerator"]["default"] == "nvidia"


def test_a_built_collection_carries_the_spec_and_its_planner_finds_it(tmp_path):
    """The loader's relative path holds in an installed collection: build it, unpack it, plan from there."""
    res = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-galaxy"), "collection", "build", "--output-path",
                          str(tmp_path), str(REPO)], capture_output=True, text=True, env=ENV, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    (tarball,) = tmp_path.glob("llmserve-cluster-*.tar.gz")
    root = tmp_path / "installed" / "ansible_collections" / "llmserve" / "cluster"
    with tarfile.open(tarball) as archive:
        archive.extractall(root, filter="data")
    assert (root / "roles" / "defaults" / "meta" / "argument_specs.yml").is_file()
    probe = ("import sys; from ansible_collections.llmserve.cluster.plugins.plugin_utils import _planner as p; "
             "assert p.SPEC_FILE.startswith(sys.argv[1]), p.SPEC_FILE; print(p.DEFAULTS['llmserve_vllm_port'])")
    res = subprocess.run([sys.executable, "-c", probe, str(root)], capture_output=True, text=True, timeout=120,
                         env={**ENV, "PYTHONPATH": str(tmp_path / "installed")}, cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == "8000", res.stdout + res.stderr


def test_every_spec_entry_has_a_type_and_a_one_line_description():
    assert len(SPEC) > 150
    for name, option in SPEC.items():
        assert name.startswith("llmserve_"), name
        assert option.get("type") in TYPES, name
        assert isinstance(option.get("description"), str) and option["description"].strip(), name
        assert "\n" not in option["description"].strip(), name
        assert ("elements" in option) == (option["type"] == "list"), name
        if "choices" in option:
            assert isinstance(option["choices"], list) and option["choices"], name
            assert option.get("default") in option["choices"] + [None], name
        if name.endswith(SECRET_SUFFIXES) or "passphrase" in name:
            assert option.get("no_log") is True, "%s is a secret: no_log: true" % name


def test_the_spec_choices_are_the_planners():
    assert SPEC["llmserve_accelerator"]["choices"] == list(ACCELERATORS)
    assert set(SPEC["llmserve_kv_connector"]["choices"]) == set(_plan_vllm.KV_CONNECTORS)
    assert SPEC["llmserve_proxy_type"]["choices"] == list(_plan_vllm.PROXY_TYPES)


def literals(path):
    """Every string constant of a Python file."""
    return {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def read_names(path):
    """The names the planner reads through Inventory: string constants in the name argument of inv.get(...),
    inv.integer(...), inv.required(...), inv.devices(...) (either branch of a conditional)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                isinstance(node.func.value, ast.Name) and node.func.value.id == "inv" and \
                node.func.attr in ("get", "integer", "required", "devices") and len(node.args) > 1:
            names |= {n.value for n in ast.walk(node.args[1]) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return names


def test_every_variable_the_planner_reads_is_in_the_spec():
    read = set()
    for path in sorted(UTILS.glob("*.py")):
        read |= {n for n in read_names(path) if n.startswith("llmserve_")}
        if path.name.startswith(("_plan", "_cluster_util", "_topology")):
            # in these modules every llmserve_... string is a variable (tables of ports, secrets, ...)
            read |= {n for n in literals(path) if n.startswith("llmserve_") and not n.endswith("_")}
    roles = [g for g in _plan_vllm.GROUPS if g.islower() and g != "proxy"]   # llmserve's shape: its own devices
    assert roles == ["prefill", "decode", "replica"]
    for pattern in sorted(n for n in read if "%s" in n):
        read.discard(pattern)
        read |= {pattern % role for role in roles}
    assert len(read) > 120
    missing = sorted(read - set(SPEC) - FACTS)
    assert not missing, "read by the planner but not in roles/defaults/meta/argument_specs.yml: %s" % missing


def test_the_scan_finds_a_read_the_spec_lacks(tmp_path):
    """The scan above can fail: a new inv.get of an unknown name is seen."""
    source = tmp_path / "_plan_new.py"
    source.write_text('def plan(inv, ports):\n    return inv.integer(host, "llmserve_brand_new_port", 1)\n')
    assert read_names(source) == {"llmserve_brand_new_port"}
    assert "llmserve_brand_new_port" not in SPEC


def role_files(kind):
    """A file of every role but llmserve.cluster.defaults itself."""
    return sorted(p for p in (REPO / "roles").glob("*/" + kind) if p.relative_to(REPO / "roles").parts[0] != "defaults")


def test_each_role_default_equals_the_spec_default():
    checked = 0
    for path in role_files("defaults/main.yml"):
        for name, value in (yaml.safe_load(path.read_text()) or {}).items():
            if name.startswith("llmserve_"):
                assert name in SPEC, "%s: %s is not in the central spec" % (path, name)
                assert SPEC[name].get("default") == value, "%s: %s is %r here, %r in the central spec" % (
                    path, name, value, SPEC[name].get("default"))
                checked += 1
    assert checked >= 5


def test_each_role_argument_spec_option_is_in_the_spec_with_its_type():
    checked = 0
    for path in role_files("meta/argument_specs.yml"):
        for entry, spec in yaml.safe_load(path.read_text())["argument_specs"].items():
            for name, option in (spec.get("options") or {}).items():
                if name.startswith("llmserve_") and name not in FACTS:
                    assert name in SPEC, "%s (%s): %s is not in the central spec" % (path, entry, name)
                    assert SPEC[name]["type"] == option.get("type", "str"), (path, name)
                    checked += 1
    assert checked >= 5


def test_ansible_doc_shows_every_variable():
    res = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-doc"), "-t", "role", "llmserve.cluster.defaults"],
                         capture_output=True, text=True, env=dict(ENV, ANSIBLE_NOCOLOR="1"), cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    shown = set(res.stdout.split())
    assert not [name for name in SPEC if name not in shown]
    assert re.search(r"ENTRY POINT: \W*main\b", res.stdout), res.stdout[:300]


# ---------------------------------------------------------------- unknown and misspelt variables

def test_a_misspelt_variable_fails_naming_the_closest_known_name():
    problems = problems_of(*native(["p0"], ["d0"], common=dict(llmserve_tensor_paralel_size=8)))
    problem = only(problems, "d0", "llmserve_tensor_paralel_size")   # the first host that sets it, once
    assert "is not a variable llmserve knows" in problem.message
    assert "did you mean llmserve_tensor_parallel_size?" in problem.message
    assert "also set on p0, router" in problem.message


def test_a_misspelt_variable_of_one_host_names_that_host():
    problems = problems_of(*native(["p0"], ["d0"], router=dict(llmserve_proxy_prot=9000)))
    assert [str(p) for p in problems] == [
        "router: llmserve_proxy_prot: is not a variable llmserve knows; did you mean llmserve_proxy_port?"]


def test_an_unknown_variable_far_from_every_name_points_at_the_documentation():
    problem = only(problems_of(*native(["p0"], ["d0"], p0=dict(llmserve_banana=1))), "p0", "llmserve_banana")
    assert "ansible-doc -t role llmserve.cluster.defaults" in problem.message


def test_the_facts_the_collection_sets_are_no_unknown_variables():
    plan = plan_of(*native(["p0"], ["d0"], common=dict(llmserve_plan={"version": 2}, llmserve_changed_paths=[],
                                                      llmserve_npu={}, llmserve_ranktables={})))
    assert [i["name"] for i in plan["instances"]] == ["prefill-p0", "decode-d0"]


# ---------------------------------------------------------------- types

WRONG_TYPES = [
    # (kind, variable, value, host, words in the message)
    ("int", "llmserve_ray_port", "six", "d0", ["must be a whole number (int), e.g. 6379, got 'six'"]),
    ("bool", "llmserve_moe_model", "maybe", "p0", ["must be true or false (bool), e.g. true, got 'maybe'"]),
    ("list", "llmserve_vllm_volumes", "/models:/models:ro", "p0",
     ["must be a list of strings (list), e.g. [/models:/models:ro], got '/models:/models:ro'"]),
    ("list-elements", "llmserve_xinference_models", ["qwen2.5-instruct"], "d0",
     ["must be a list of mappings (list), e.g. [{model_name: qwen2.5-instruct, model_engine: vllm}]"]),
    ("dict", "llmserve_ray_pip_env", "PIP_NO_INDEX=1", "router",
     ["must be a mapping (dict), e.g. {PIP_NO_INDEX: \"1\"", "got 'PIP_NO_INDEX=1'"]),
    ("dict-not-a-list", "llmserve_mindie_env", ["A=1"], "p0", ["must be a mapping (dict)", "got ['A=1']"]),
    ("str-not-a-list", "llmserve_served_model_name", ["a", "b"], "p0", ["must be a string (str)", "got ['a', 'b']"]),
    ("choices", "llmserve_ray_runtime", "podman", "d0", ["must be one of container, service, got 'podman'"]),
    ("bytes", "llmserve_image_keep_free", "lots", "p0",
     ['must be a size in bytes, or with a unit (bytes), e.g. "1G", got \'lots\'']),
]


@pytest.mark.parametrize("kind,variable,value,host,words", WRONG_TYPES, ids=[w[0] for w in WRONG_TYPES])
def test_a_value_of_the_wrong_type_fails_naming_host_and_variable(kind, variable, value, host, words):
    problems = problems_of(*native(["p0"], ["d0"], **{host: {variable: value}}))
    problem = only(problems, host, variable)
    for part in words:
        assert part in problem.message, str(problem)


def test_a_wrong_type_shared_by_every_host_is_reported_once():
    """Said once, of the first host in the inventory's order (the first the user reads)."""
    problems = problems_of(*native(["p0", "p1"], ["d0"], common=dict(llmserve_ray_port="six")))
    assert [str(p) for p in problems] == [
        "p0: llmserve_ray_port: must be a whole number (int), e.g. 6379, got 'six'"]


def test_a_secret_of_the_wrong_type_is_not_shown():
    problem = only(problems_of(*native(["p0"], ["d0"], router=dict(llmserve_api_key=["sk-do-not-show"]))),
                   "router", "llmserve_api_key")
    assert "sk-do-not-show" not in problem.message and "got a list" in problem.message


def test_strings_from_extra_vars_plan_as_the_numbers_and_booleans_they_say():
    """-e llmserve_vllm_port=8100 arrives as the string "8100": the same plan as the number."""
    as_strings = native(["p0"], ["d0", "d1"], common=dict(llmserve_tensor_parallel_size="2", llmserve_proxy_retries="0"),
                        p0=dict(llmserve_vllm_port="8100"), d0=dict(llmserve_instance="x"), d1=dict(llmserve_instance="x"))
    as_numbers = native(["p0"], ["d0", "d1"], common=dict(llmserve_tensor_parallel_size=2, llmserve_proxy_retries=0),
                        p0=dict(llmserve_vllm_port=8100), d0=dict(llmserve_instance="x"), d1=dict(llmserve_instance="x"))
    plan = plan_of(*as_strings)
    assert plan == plan_of(*as_numbers)
    assert plan["instances"][0]["members"][0]["port"] == 8100
    assert plan_of(*omni_2p1d(llmserve_moe_model="false")) == plan_of(*omni_2p1d(llmserve_moe_model=False))
    assert plan_of(*omni_2p1d(llmserve_moe_model="yes")) == plan_of(*omni_2p1d())


def test_the_planner_reads_the_converted_values():
    typed, mistyped = _typed({"h": {"llmserve_vllm_port": "8001", "llmserve_moe_model": "no", "llmserve_instance": 3,
                                    "llmserve_devices": [0, 1], "llmserve_api_key": "<set>", "ansible_host": "10.0.0.1",
                                    "llmserve_ray_port": "x", "llmserve_model": None}})
    # a value of the wrong type is taken out: the planner goes on with the default, the type problem names it
    assert typed == {"h": {"llmserve_vllm_port": 8001, "llmserve_moe_model": False, "llmserve_instance": "3",
                           "llmserve_devices": [0, 1], "llmserve_api_key": "<set>", "ansible_host": "10.0.0.1",
                           "llmserve_model": None}}
    assert mistyped == [("h", "llmserve_ray_port", "x")]


def test_secrets_arrive_as_set_and_pass_the_type_check():
    plan = plan_of(*native(["p0"], ["d0"], router=dict(llmserve_api_key="<set>")))
    assert plan["front_door"]["api_key"] is True


# ---------------------------------------------------------------- a variable read on the master, set elsewhere

def multi_host_decode(**d1):
    return native(["p0"], ["d0", "d1"], d0=dict(llmserve_instance="x"), d1=dict(llmserve_instance="x", **d1))


def test_a_variable_the_master_reads_set_differently_on_another_host_fails():
    problems = problems_of(*multi_host_decode(llmserve_tensor_parallel_size=4))
    assert [str(p) for p in problems] == [
        "d1: llmserve_tensor_parallel_size: is read from d0, the master of decode-x; here it is ignored. Set it on d0 "
        "(or for the whole group)"]


def test_the_same_value_on_every_host_of_the_instance_is_fine():
    assert plan_of(*multi_host_decode(llmserve_tensor_parallel_size=1))
    assert plan_of(*multi_host_decode(llmserve_tensor_parallel_size="1"))   # equal once converted


def test_a_variable_read_on_every_host_may_differ():
    plan = plan_of(*multi_host_decode(llmserve_devices="0-3", llmserve_nixl_side_channel_port=5700))
    decode = [i for i in plan["instances"] if i["name"] == "decode-x"][0]
    assert [m["devices"] for m in decode["members"]] == [list(range(8)), list(range(4))]


@pytest.mark.parametrize("variable,value", [("llmserve_model", "/models/other"), ("llmserve_kv_connector", "MooncakeConnector"),
                                            ("llmserve_vllm_extra_args", ["--enforce-eager"])])
def test_instance_variables_on_a_headless_host_fail(variable, value):
    problem = only(problems_of(*multi_host_decode(**{variable: value})), "d1", variable)
    assert problem.message.startswith("is read from d0, the master of decode-x; here it is ignored")
