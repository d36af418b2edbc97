"""The ranktable stage on A3 test-bed hosts (stand-in npu-smi and hccn_tool over the a3-16 fixture: 16 dies
per host in one super pod): HCCL v1.2 with the RoCE device IPs, super_device_id and super_pod_list from each
host's own tools, vllm-ascend's list file with the vNIC addresses and its super pod fields, modes 0640/0750,
nothing changed on a second run or in check mode, a host whose /etc/hccn.conf disagrees with its devices refused,
and clean_up takes the tables away. (The omni_2p1d molecule scenario covers A2 with engines.)"""
import json
import re
import sys
from pathlib import Path

import pytest

from conftest import REPO, ansible_playbook, on_host

sys.path.insert(0, str(REPO / "tests" / "testbed" / "npu"))
from fixtures import make_fixture  # noqa: E402  (the stand-ins' own fixture, standard library only)

SITE = "playbooks/site.yml"
NPU = REPO / "tests" / "testbed" / "npu"
FOLDER = "/etc/llmserve/ranktable"
ADDRESS = {"node%d" % n: "172.31.240.1%d" % n for n in range(1, 5)}


def inventory(tmp_path):
    """node1 one prefill instance, node2 + node3 one decode instance over both hosts, node4 the front door."""
    common = dict(llmserve_model="/models/deepseek", llmserve_image="172.31.240.2:5000/llmserve/vllm-cpu:0.32.0",
                  llmserve_accelerator="ascend_a3", llmserve_devices="0-15",
                  llmserve_kv_connector="LLMDataDistCMgrConnector")
    groups = {"prefill": {"node1": {}}, "decode": {"node2": {}, "node3": {}}, "proxy": {"node4": {}}}
    for host in groups["decode"]:
        groups["decode"][host] = dict(llmserve_instance="x", llmserve_tensor_parallel_size=16)
    children = {g: {"hosts": {h: dict(ansible_host=ADDRESS[h], **v) for h, v in hosts.items()}}
                for g, hosts in groups.items()}
    path = tmp_path / "a3.yml"
    path.write_text(json.dumps({"all": {"vars": common, "children": children}}))
    return ["-i", str(path)]


def run(playbook, *args):
    res = ansible_playbook(playbook, *args)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    return res.stdout


def changed(out):
    return {host: int(n) for host, n in re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", out, re.M)}


def table(host, name):
    res = on_host(host, "cat %s/%s" % (FOLDER, name))
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def dies(host, address="ip"):
    """(logical id, RoCE IP or, with address="vnic_ip", vNIC IP, SDID) of each die as the host's stand-in tools
    report them."""
    fixture = make_fixture("a3-16", int(ADDRESS[host].rsplit(".", 1)[1]))
    return sorted((chip["logic_id"], chip[address], chip["sdid"]) for card in fixture["cards"] for chip in card["chips"])


@pytest.fixture
def a3_bed(clean_bed, tmp_path):
    hosts = ["-e", "npu_hosts=node1,node2,node3", "-e", "npu_kind=a3-16"]
    run(NPU / "install.yml", *hosts)
    yield inventory(tmp_path)
    run(NPU / "uninstall.yml", *hosts)


def test_a3_rank_tables_come_from_each_hosts_own_tools(a3_bed):
    out = run(SITE, *a3_bed, "--tags", "ranktable")
    assert changed(out)["node2"] > 0
    hccl = table("node3", "hccl_decode-x.json")
    assert hccl["version"] == "1.2" and hccl["status"] == "completed" and hccl["server_count"] == "2"
    assert [s["server_id"] for s in hccl["server_list"]] == [ADDRESS["node2"], ADDRESS["node3"]]
    for n, (server, host) in enumerate(zip(hccl["server_list"], ("node2", "node3"))):
        assert server["host_ip"] == ADDRESS[host]
        got = [(int(d["device_id"]), d["device_ip"], int(d["super_device_id"])) for d in server["device"]]
        assert got == dies(host)   # npu_facts read them off this host's hccn_tool -ip and spod-info
        assert [int(d["rank_id"]) for d in server["device"]] == list(range(16 * n, 16 * n + 16))
    assert hccl["super_pod_list"] == [{"super_pod_id": "0", "server_list": [{"server_id": ADDRESS["node2"]},
                                                                           {"server_id": ADDRESS["node3"]}]}]
    listed = table("node1", "ranktable.json")   # vllm-ascend's, for LLMDataDistCMgrConnector
    assert listed == table("node2", "ranktable.json")
    assert [(d["server_id"], d["super_pod_id"]) for d in listed["prefill_device_list"]] == [(ADDRESS["node1"], "0")] * 16
    # vllm-ascend's table names each die's vNIC (its generator's hccn_tool -vnic -g), with its SDID
    assert [(d["device_ip"], int(d["super_device_id"])) for d in listed["decode_device_list"]] == \
        [(ip, sdid) for _, ip, sdid in dies("node2", "vnic_ip") + dies("node3", "vnic_ip")]
    modes = on_host("node2", "stat -c '%%a %%n' %s %s/*" % (FOLDER, FOLDER)).stdout.split("\n")
    assert modes[0] == "750 " + FOLDER and all(line.startswith("640 ") for line in modes[1:] if line), modes
    assert on_host("node4", "test -e %s" % FOLDER).returncode == 1   # the front door reads no rank table

    assert set(changed(run(SITE, *a3_bed, "--tags", "ranktable")).values()) == {0}
    assert set(changed(run(SITE, *a3_bed, "--tags", "ranktable", "--check")).values()) == {0}

    # a device whose persisted address (the file the engines mount) is not the device's own: refused, naming it
    before = table("node3", "hccl_decode-x.json")
    assert on_host("node3", "sed -i 's/^address_5=.*/address_5=192.168.13.99/' /etc/hccn.conf").returncode == 0
    res = ansible_playbook(SITE, *a3_bed, "--tags", "ranktable")
    said = " ".join(res.stdout.split())
    assert res.returncode != 0 and "node3: the persisted device IPs disagree with the devices" in said, res.stdout[-3000:]
    assert "(device 5: 192.168.13.99 in /etc/hccn.conf, 192.168.13.15 by hccn_tool)" in said, res.stdout[-3000:]
    assert table("node3", "hccl_decode-x.json") == before   # nothing was written
    assert on_host("node3", "sed -i 's/^address_5=.*/address_5=192.168.13.15/' /etc/hccn.conf").returncode == 0

    run(SITE, *a3_bed, "--tags", "clean_up")
    for host in ("node1", "node2", "node3"):
        assert on_host(host, "test -e %s" % FOLDER).returncode == 1, host
