"""npu_facts: its parsers on recorded tool output, and the whole module run against the test-bed stand-ins.

The recorded outputs under fixtures/npu/ are what tests/testbed/npu/npu-smi and hccn_tool print for the
fixtures rendered by tests/testbed/npu/fixtures.py; `python tests/unit/test_npu_facts.py --record`
rewrites them after a deliberate change to the stand-ins.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

if __name__ == "__main__":  # --record runs outside pytest, so without conftest's path to the collection
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.llmserve.cluster.plugins.modules import npu_facts

REPO = Path(__file__).resolve().parents[2]
STAND_INS = REPO / "tests" / "testbed" / "npu"
RECORDED = Path(__file__).resolve().parent / "fixtures" / "npu"
ANSIBLE = Path(sys.executable).parent / "ansible"

_spec = importlib.util.spec_from_file_location("npu_fixtures", STAND_INS / "fixtures.py")
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)

# (recorded file, fixture kind, host index, tool, arguments)
RECORDINGS = [
    ("a2-8/info-l.txt", "a2-8", 1, "npu-smi", ["info", "-l"]),
    ("a2-8/info-m.txt", "a2-8", 1, "npu-smi", ["info", "-m"]),
    ("a2-8/hccn-i5-ip.txt", "a2-8", 1, "hccn_tool", ["-i", "5", "-ip", "-g"]),
    ("a2-8/hccn-i5-link.txt", "a2-8", 1, "hccn_tool", ["-i", "5", "-link", "-g"]),
    ("a2-8/hccn-i5-tls.txt", "a2-8", 1, "hccn_tool", ["-i", "5", "-tls", "-g"]),
    ("a2-16/info-l.txt", "a2-16", 3, "npu-smi", ["info", "-l"]),
    ("a2-16/info-m.txt", "a2-16", 3, "npu-smi", ["info", "-m"]),
    ("a2-16/hccn-i15-ip.txt", "a2-16", 3, "hccn_tool", ["-i", "15", "-ip", "-g"]),
    ("a3-16/info-l.txt", "a3-16", 2, "npu-smi", ["info", "-l"]),
    ("a3-16/info-m.txt", "a3-16", 2, "npu-smi", ["info", "-m"]),
    ("a3-16/spod-info-i7-c1.txt", "a3-16", 2, "npu-smi", ["info", "-t", "spod-info", "-i", "7", "-c", "1"]),
    ("a3-16/hccn-i15-vnic.txt", "a3-16", 2, "hccn_tool", ["-i", "15", "-vnic", "-g"]),
    ("a3-16/hccn-i15-tls.txt", "a3-16", 2, "hccn_tool", ["-i", "15", "-tls", "-g"]),
]


def recorded(name):
    return (RECORDED / name).read_text(encoding="utf-8")


def stand_in(fixture_path, tool, args, path=STAND_INS):
    return subprocess.run([str(path / tool)] + args, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "LLMSERVE_NPU_FIXTURE": str(fixture_path)})


@pytest.fixture(scope="module")
def fixture_files(tmp_path_factory):
    """Rendered fixtures, by (kind, host index)."""
    root = tmp_path_factory.mktemp("npu")
    return {(kind, host): fixtures.write_fixture(kind, host, root / ("%s-%d.json" % (kind, host)))
            for kind, host in {(r[1], r[2]) for r in RECORDINGS} | {("a2-8", 2)}}


# ---------------------------------------------------------------- the recordings are the stand-ins' output

@pytest.mark.parametrize("name,kind,host,tool,args", RECORDINGS, ids=[r[0] for r in RECORDINGS])
def test_recorded_output_is_what_the_stand_in_prints(fixture_files, name, kind, host, tool, args):
    res = stand_in(fixture_files[kind, host], tool, args)
    assert res.returncode == 0, res.stderr
    assert res.stdout == recorded(name)


# ---------------------------------------------------------------- parsers on recorded output

def test_list_gives_every_card_and_its_compute_chips():
    assert npu_facts.parse_npu_smi_list(recorded("a2-8/info-l.txt")) == [
        dict(npu_id=i, chip_count=1) for i in range(8)]
    assert npu_facts.parse_npu_smi_list(recorded("a2-16/info-l.txt"))[-1] == dict(npu_id=15, chip_count=1)
    assert [c["chip_count"] for c in npu_facts.parse_npu_smi_list(recorded("a3-16/info-l.txt"))] == [2] * 8


def test_a2_mapping_leaves_out_the_mcu_and_has_no_physical_id():
    mapping = npu_facts.parse_npu_smi_mapping(recorded("a2-8/info-m.txt"))
    assert mapping["columns"] == ["NPU ID", "Chip ID", "Chip Logic ID", "Chip Name"]
    assert [(c["npu_id"], c["chip_id"], c["logical_id"]) for c in mapping["chips"]] == [(i, 0, i) for i in range(8)]
    assert {c["name"] for c in mapping["chips"]} == {"Ascend 910B3"}
    assert {c["phy_id"] for c in mapping["chips"]} == {None}
    assert npu_facts.detect_generation(mapping) == "A2"


def test_a3_mapping_gives_two_dies_per_card_with_physical_ids():
    mapping = npu_facts.parse_npu_smi_mapping(recorded("a3-16/info-m.txt"))
    assert len(mapping["chips"]) == 16
    assert mapping["chips"][15] == dict(npu_id=7, chip_id=1, logical_id=15, phy_id=15, name="Ascend910")
    assert npu_facts.detect_generation(mapping) == "A3"


def test_spod_info_gives_the_sdid_and_super_pod_of_the_die():
    assert npu_facts.parse_spod_info(recorded("a3-16/spod-info-i7-c1.txt")) == dict(
        sdid=fixtures.sdid(2, 7, 1, 15), super_pod_id=0, super_pod_size=384, server_index=2)


def test_hccn_outputs_give_address_link_and_tls():
    assert npu_facts.parse_hccn_ip(recorded("a2-8/hccn-i5-ip.txt")) == dict(ipaddr="192.168.1.15",
                                                                             netmask="255.255.255.0")
    assert npu_facts.parse_hccn_ip(recorded("a2-16/hccn-i15-ip.txt"))["ipaddr"] == "192.168.3.25"
    assert npu_facts.parse_hccn_link(recorded("a2-8/hccn-i5-link.txt")) == "UP"
    assert npu_facts.parse_hccn_tls(recorded("a2-8/hccn-i5-tls.txt")) == dict(enabled=False, dev_id=5)
    assert npu_facts.parse_hccn_vnic(recorded("a3-16/hccn-i15-vnic.txt")) == dict(
        link="UP", ipaddr="10.24.2.16", netmask="255.255.0.0")
    assert npu_facts.parse_hccn_tls(recorded("a3-16/hccn-i15-tls.txt")) == dict(enabled=False, dev_id=15)


def test_tls_reads_older_drivers_and_the_certificate_lines_after_the_switch():
    older = ("dev_id:2, tls switch[1](0:disable, 1:enable), tls alarm time threshold[60]days\n"
             "dev_id:2, [pub cert] info:\n\t issuer[/C=CN/CN=ca]\n\t start_time[Wed Feb 19 03:19:21 2020 GMT]\n")
    assert npu_facts.parse_hccn_tls(older) == dict(enabled=True, dev_id=2)


def test_a_chip_that_is_neither_910b_nor_910_93_is_refused_by_name():
    mapping = npu_facts.parse_npu_smi_mapping(
        "\tNPU ID    Chip ID    Chip Logic ID    Chip Name\n\t0    0    0    Ascend 310P3\n")
    with pytest.raises(npu_facts.NpuOutputError, match="Ascend 310P3"):
        npu_facts.detect_generation(mapping)


@pytest.mark.parametrize("parser,text,message", [
    (npu_facts.parse_npu_smi_list, "dcmi model initialized failed, because the device is used. ret is -8020\n",
     "no 'Total Count' line"),
    (npu_facts.parse_npu_smi_list, "\tTotal Count : 2\n\n\tNPU ID : 0\n\tChip Count : 1\n", "says 2 cards but 1"),
    (npu_facts.parse_npu_smi_list, "There is no NPU card on this server.\n", "no NPU card"),
    (npu_facts.parse_npu_smi_mapping, "Segmentation fault\n", "no 'NPU ID' header"),
    (npu_facts.parse_npu_smi_mapping,
     "\tNPU ID    Slot ID    Chip ID    Chip Phy-ID    Chip Name\n\t0  0  0  0  Ascend950\n", "unknown columns"),
    (npu_facts.parse_npu_smi_mapping,
     "\tNPU ID    Chip ID    Chip Logic ID    Chip Name\n\t0    0    x    Ascend 910B3\n",
     "Chip Logic ID is 'x', not a number"),
    (npu_facts.parse_npu_smi_mapping, "\tNPU ID    Chip ID    Chip Logic ID    Chip Name\n\t0    0\n", "fewer than 4"),
    (npu_facts.parse_npu_smi_mapping, "\tNPU ID    Chip ID    Chip Logic ID    Chip Name\n\t0    1    -    Mcu\n",
     "no compute chip"),
    (npu_facts.parse_spod_info, "\tSuper Pod Size : 384\n\tSuper Pod ID : 0\n", "no 'SDID' line"),
    (npu_facts.parse_spod_info, "\tSDID : n/a\n\tSuper Pod ID : 0\n", "SDID is 'n/a'"),
    (npu_facts.parse_hccn_ip, "ipaddr:192.168.1.300\nnetmask:255.255.255.0\n", "'192.168.1.300' is not an IPv4"),
    (npu_facts.parse_hccn_ip, "Get ipconf failed, because no ip was preset there!\n", "no 'ipaddr:' line"),
    (npu_facts.parse_hccn_vnic, "vnic link status: UP\nvnic netmask: 255.255.0.0\n", "no 'vnic ipaddr:' line"),
    (npu_facts.parse_hccn_link, "link status: FLAPPING\n", "'FLAPPING', not UP or DOWN"),
    (npu_facts.parse_hccn_tls, "dev_id:0, [pub cert] info:\n", "no 'tls switch"),
])
def test_malformed_output_is_refused_with_what_was_wrong(parser, text, message):
    with pytest.raises(npu_facts.NpuOutputError) as err:
        parser(text)
    assert message in str(err.value)


# ---------------------------------------------------------------- gather() with canned output

def canned(outputs):
    """A run() that answers from {"tool arg ...": stdout}."""
    calls = []

    def run(argv):
        calls.append(" ".join(argv))
        return outputs[" ".join(argv)]
    return run, calls


A2_ONE_CARD = {
    "npu-smi info -l": "\tTotal Count                    : 1\n\n\tNPU ID                         : 4\n"
                       "\tChip Count                     : 1\n\n",
    "npu-smi info -m": "\tNPU ID    Chip ID    Chip Logic ID    Chip Name\n"
                       "\t4    0    0    Ascend 910B4\n\t4    1    -    Mcu\n",
    "hccn_tool -i 0 -tls -g": "dev_id:4, tls switch[1](0:disable, 1:enable), tls alarm time threshold[60]days\n",
    "hccn_tool -i 0 -ip -g": "ipaddr:10.0.0.4\nnetmask:255.255.255.0\n",
    "hccn_tool -i 0 -link -g": "link status: DOWN\n",
}


def test_a2_device_id_is_the_physical_id_hccn_tool_prints():
    run, calls = canned(A2_ONE_CARD)
    facts = npu_facts.gather(run, "npu-smi", "hccn_tool")
    assert facts["devices"] == [dict(device_id=4, logical_id=0, card_id=4, chip_id=0, device_ip="10.0.0.4", conf_ip=None,
                                     netmask="255.255.255.0", link="DOWN", vnic_ip=None, tls=True, super_pod_id=None,
                                     super_device_id=None, server_index=None)]
    assert not any("spod-info" in c or "-vnic" in c for c in calls)


def test_list_and_mapping_that_disagree_fail_the_task():
    outputs = dict(A2_ONE_CARD, **{"npu-smi info -l": A2_ONE_CARD["npu-smi info -l"].replace(": 4", ": 5")})
    run, dummy = canned(outputs)
    with pytest.raises(npu_facts.NpuToolError, match="disagree"):
        npu_facts.gather(run, "npu-smi", "hccn_tool")


def test_devices_not_on_the_host_are_named():
    run, dummy = canned(A2_ONE_CARD)
    with pytest.raises(npu_facts.NpuToolError, match=r"devices \[3\] are not on this host; its logical ids are \[0\]"):
        npu_facts.gather(run, "npu-smi", "hccn_tool", devices=[0, 3])


def test_unreadable_output_names_the_command_and_keeps_the_output():
    run, dummy = canned(dict(A2_ONE_CARD, **{"hccn_tool -i 0 -ip -g": "ipaddr:\n"}))
    with pytest.raises(npu_facts.NpuToolError) as err:
        npu_facts.gather(run, "npu-smi", "hccn_tool")
    assert err.value.msg.startswith("could not read the output of `hccn_tool -i 0 -ip -g`: ipaddr '' is not")
    assert err.value.result == dict(cmd="hccn_tool -i 0 -ip -g", stdout="ipaddr:\n")


# ---------------------------------------------------------------- the module, run by ansible

def npu_facts_task(args=None, env=None, check_mode=False):
    """Run the module once on localhost; return (rc, the task's result)."""
    cmd = [str(ANSIBLE), "localhost", "-m", "llmserve.cluster.npu_facts"] + (["-a", json.dumps(args)] if args else [])
    cmd += ["--check"] if check_mode else []
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120, env={
        **os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_LOCALHOST_WARNING": "0", **(env or {})})
    out = json.loads(res.stdout[res.stdout.index("{"):])
    return res.returncode, out["plays"][0]["tasks"][0]["hosts"]["localhost"]


def with_stand_ins(fixture_path, path=STAND_INS):
    return {"PATH": "%s:/usr/bin:/bin" % path, "LLMSERVE_NPU_FIXTURE": str(fixture_path)}


def test_a3_host_reports_every_die_with_its_roce_and_vnic_addresses_and_sdid(fixture_files):
    rc, result = npu_facts_task(env=with_stand_ins(fixture_files["a3-16", 2]))
    assert rc == 0, result.get("msg")
    npu = result["ansible_facts"]["llmserve_npu"]
    assert (npu["generation"], npu["card_count"], npu["chip_count"], npu["chips_per_card"]) == ("A3", 8, 16, 2)
    assert npu["super_pod_id"] == 0 and result["changed"] is False
    # the RoCE port's address (-ip -g) for HCCL, omni-infer and MindIE; the vNIC's (-vnic -g) for vllm-ascend
    assert [d["device_ip"] for d in npu["devices"]] == ["192.168.2.%d" % (10 + i) for i in range(16)]
    assert [d["vnic_ip"] for d in npu["devices"]] == ["10.24.2.%d" % (i + 1) for i in range(16)]
    assert npu["devices"][5] == dict(device_id=5, logical_id=5, card_id=2, chip_id=1, device_ip="192.168.2.15",
                                     conf_ip=None, netmask="255.255.255.0", link="UP", vnic_ip="10.24.2.6", tls=False, super_pod_id=0,
                                     super_device_id=fixtures.sdid(2, 2, 1, 5), server_index=2)
    assert len({d["super_device_id"] for d in npu["devices"]}) == 16


@pytest.mark.parametrize("kind,host,count", [("a2-8", 2, 8), ("a2-16", 3, 16)])
def test_a2_host_reports_roce_addresses_and_no_super_pod(fixture_files, kind, host, count):
    rc, result = npu_facts_task(env=with_stand_ins(fixture_files[kind, host]))
    assert rc == 0, result.get("msg")
    npu = result["ansible_facts"]["llmserve_npu"]
    assert (npu["generation"], npu["chip_count"], npu["chip_name"]) == ("A2", count, "Ascend 910B3")
    assert [d["device_ip"] for d in npu["devices"]] == ["192.168.%d.%d" % (host, 10 + i) for i in range(count)]
    assert [d["device_id"] for d in npu["devices"]] == list(range(count))
    assert {d["super_device_id"] for d in npu["devices"]} == {None} and npu["super_pod_id"] is None


def test_check_mode_reads_the_same_and_devices_limits_what_is_read(fixture_files):
    rc, result = npu_facts_task({"devices": [6, 1]}, env=with_stand_ins(fixture_files["a2-8", 1]), check_mode=True)
    assert rc == 0, result.get("msg")
    npu = result["ansible_facts"]["llmserve_npu"]
    assert [d["logical_id"] for d in npu["devices"]] == [1, 6] and npu["chip_count"] == 8


def test_missing_tools_are_named_with_where_they_were_looked_for(tmp_path):
    rc, result = npu_facts_task(env={"PATH": "/usr/bin:/bin"})
    assert rc != 0
    msg = result["msg"]
    assert "npu-smi was not found: looked for 'npu-smi' in PATH (/usr/bin:/bin) and in /usr/local/bin" in msg
    assert ("hccn_tool was not found: looked for 'hccn_tool' in PATH (/usr/bin:/bin) and in "
            "/usr/local/Ascend/driver/tools") in msg
    assert "Ascend NPU driver package" in msg and "set npu_smi" in msg and "set hccn_tool" in msg


def test_a_missing_tool_path_is_named_and_the_tool_that_exists_is_not(fixture_files, tmp_path):
    absent = tmp_path / "hccn_tool"
    rc, result = npu_facts_task({"hccn_tool": str(absent)}, env=with_stand_ins(fixture_files["a2-8", 1]))
    assert rc != 0
    assert result["msg"].startswith("hccn_tool was not found: %s does not exist or is not executable." % absent)
    assert "npu-smi was not found" not in result["msg"]


def test_malformed_tool_output_fails_with_the_command_and_what_was_wrong(fixture_files, tmp_path):
    (tmp_path / "hccn_tool").symlink_to(STAND_INS / "hccn_tool")
    fake = tmp_path / "npu-smi"
    fake.write_text("#!/bin/sh\n[ \"$2\" = -m ] && { echo 'NPU ID  Chip ID  Chip Logic ID  Chip Name'; "
                    "echo '0  zero  0  Ascend 910B3'; exit 0; }\nexec %s \"$@\"\n" % (STAND_INS / "npu-smi"))
    fake.chmod(0o755)
    rc, result = npu_facts_task(env=with_stand_ins(fixture_files["a2-8", 1], path=tmp_path))
    assert rc != 0
    assert result["msg"].startswith("could not read the output of `%s info -m`: Chip ID is 'zero', not a number"
                                    % fake)
    assert "0  zero  0" in result["stdout"]


def test_a_failing_tool_fails_the_task_with_its_message(fixture_files, tmp_path):
    broken = json.loads(Path(fixture_files["a2-8", 1]).read_text())
    broken["cards"][3]["chips"][0]["ip"] = None
    path = tmp_path / "npu.json"
    path.write_text(json.dumps(broken))
    rc, result = npu_facts_task(env=with_stand_ins(path))
    assert rc != 0
    assert result["msg"] == ("`%s -i 3 -ip -g` failed with exit status 1: Get ipconf failed, because no ip was "
                             "preset there!" % (STAND_INS / "hccn_tool"))


# ---------------------------------------------------------------- the stand-ins refuse what they do not know

@pytest.mark.parametrize("tool,args,message", [
    ("npu-smi", ["info"], "Usage: npu-smi info"),
    ("npu-smi", ["info", "-t", "board", "-i", "0"], "is not supported"),
    ("npu-smi", ["set", "-t", "pwm-mode", "-d", "0"], "only `info -l`, `info -m` and `info -t spod-info`"),
    ("hccn_tool", ["-i", "0", "-ip", "-s", "address", "10.0.0.1"], "Get invalid major cmd."),
    ("hccn_tool", ["-i", "0", "-stat", "-g"], "Get invalid major cmd."),
    ("hccn_tool", ["-i", "99", "-ip", "-g"], "Get invalid device id."),
])
def test_stand_ins_refuse_other_commands_like_the_real_tools(fixture_files, tool, args, message):
    res = stand_in(fixture_files["a2-8", 1], tool, args)
    assert res.returncode == 1 and res.stdout == ""
    assert message in res.stderr


def test_stand_ins_refuse_an_unrendered_template_and_a2_spod_info(fixture_files):
    res = stand_in(STAND_INS / "fixtures" / "a3-16.json", "npu-smi", ["info", "-l"])
    assert res.returncode == 1 and "is a template" in res.stderr
    res = stand_in(fixture_files["a2-8", 1], "npu-smi", ["info", "-t", "spod-info", "-i", "0", "-c", "0"])
    assert res.returncode == 1 and "does not support querying spod-info" in res.stderr


def record():
    """Rewrite fixtures/npu/ from the stand-ins."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        for name, kind, host, tool, args in RECORDINGS:
            path = fixtures.write_fixture(kind, host, Path(tmp) / ("%s-%d.json" % (kind, host)))
            res = stand_in(path, tool, args)
            res.check_returncode()
            (RECORDED / name).parent.mkdir(parents=True, exist_ok=True)
            (RECORDED / name).write_text(res.stdout, encoding="utf-8")


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    record()


def test_the_persisted_addresses_and_the_driver_version_are_read_beside_the_devices(fixture_files, tmp_path):
    conf, version = tmp_path / "hccn.conf", tmp_path / "version.info"
    conf.write_text("address_0=192.168.1.10\nnetmask_0=255.255.255.0\naddress_1=192.168.1.99\n")
    version.write_text("Version=24.1.rc2\nascendhal_version=7.35.23\n")
    rc, result = npu_facts_task({"devices": [0, 1, 2], "hccn_conf": str(conf), "driver_version_file": str(version)},
                                env=with_stand_ins(fixture_files["a2-8", 1]))
    assert rc == 0, result.get("msg")
    npu = result["ansible_facts"]["llmserve_npu"]
    assert (npu["hccn_conf"], npu["driver_version"]) == (str(conf), "24.1.rc2")
    assert [(d["device_ip"], d["conf_ip"]) for d in npu["devices"]] == [
        ("192.168.1.10", "192.168.1.10"), ("192.168.1.11", "192.168.1.99"), ("192.168.1.12", None)]
    # neither file: said as null, for the rank-table stage to judge
    rc, result = npu_facts_task({"hccn_conf": str(tmp_path / "none"), "driver_version_file": str(tmp_path / "none")},
                                env=with_stand_ins(fixture_files["a2-8", 1]))
    npu = result["ansible_facts"]["llmserve_npu"]
    assert rc == 0 and npu["hccn_conf"] is None and npu["driver_version"] is None
    assert {d["conf_ip"] for d in npu["devices"]} == {None}
