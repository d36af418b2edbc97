"""The merge of the plan's MindIE keys over the shipped files (filter llmserve.cluster.mindie_config)."""
import json
import sys
from pathlib import Path

from ansible_collections.llmserve.cluster.plugins.filter.mindie import mindie_config

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "images" / "mindie-sim"))


def test_model_config_keeps_the_shipped_keys_and_lists_of_numbers_are_replaced():
    shipped = {"ServerConfig": {"port": 1025, "httpsEnabled": True, "tlsCaFile": ["ca.pem", "b.pem"]},
               "BackendConfig": {"npuDeviceIds": [[0, 1, 2, 3]], "ModelDeployConfig": {"maxSeqLen": 2560, "ModelConfig": [
                   {"modelName": "llama_65b", "worldSize": 4, "backendType": "atb", "npuMemSize": -1}]}}}
    keys = {"ServerConfig": {"port": 2025, "tlsCaFile": ["ca.pem"], "inferMode": "dmi"},
            "BackendConfig": {"npuDeviceIds": [[0, 1]], "ModelDeployConfig": {"ModelConfig": [
                {"modelName": "qwen", "worldSize": 2, "tp": 2}]}}}
    merged = mindie_config(shipped, keys)
    assert merged["ServerConfig"] == {"port": 2025, "httpsEnabled": True, "tlsCaFile": ["ca.pem"], "inferMode": "dmi"}
    assert merged["BackendConfig"]["npuDeviceIds"] == [[0, 1]]
    assert merged["BackendConfig"]["ModelDeployConfig"] == {"maxSeqLen": 2560, "ModelConfig": [
        {"modelName": "qwen", "worldSize": 2, "backendType": "atb", "npuMemSize": -1, "tp": 2}]}
    assert shipped["ServerConfig"]["port"] == 1025      # the input is left alone


def test_every_planned_file_merges_into_the_stand_ins_shipped_file_with_the_same_types(tmp_path):
    """The plan sets no key with a type other than the shipped one (MindIE checks types)."""
    from mindie_sim import defaults
    from plan_inventories import plan_of
    defaults.write_all(str(tmp_path))
    hv = {h: dict(llmserve_accelerator="ascend_a2", llmserve_devices="0-7", llmserve_image="m:1", llmserve_model="/m",
                  ansible_host="10.0.0.%d" % i) for i, h in enumerate(("s0", "s1", "ms"), 1)}
    plan = plan_of({"mindie_server": ["s0", "s1"], "mindie_controller": ["ms"], "mindie_coordinator": ["ms"]}, hv)
    members = [m for i in plan["instances"] for m in i["members"]]
    for m in members:
        for f in m["files"]:
            shipped = json.loads((tmp_path / f["shipped"].lstrip("/")).read_text())
            merged = mindie_config(shipped, f["config"])
            _same_types(shipped, merged, f["shipped"])


def _same_types(shipped, merged, where):
    for key, value in shipped.items():
        if isinstance(value, dict):
            _same_types(value, merged[key], "%s.%s" % (where, key))
        elif value is not None and merged.get(key) is not None:
            assert type(merged[key]) is type(value), "%s.%s: %r" % (where, key, merged[key])
