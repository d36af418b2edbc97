#!/usr/bin/python
# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: npu_facts
short_description: Read a host's Ascend NPUs, their device IPs and super pod ids, for rank tables
version_added: 0.1.0
description:
  - Lists the Ascend NPU chips of the host with C(npu-smi info -l) and C(npu-smi info -m), and tells
    an Atlas A2 host (Ascend 910B, one chip per NPU card) from an Atlas A3 host (Ascend 910_93, two
    dies per card, each die its own device).
  - For every chip it reads the device IP (the RoCE port's address) with C(hccn_tool -i <logical id> -ip -g),
    the link state of that port, and the device TLS switch with C(hccn_tool -i <logical id> -tls -g).
  - On A3 it also reads each die's virtual NIC address with C(hccn_tool -i <logical id> -vnic -g), the address
    vllm-ascend's rank table names; the HCCL, omni-infer and MindIE tables name the RoCE address (docs/ranktable.md).
  - On A3 it also reads each die's super pod id and super device id (SDID) with
    C(npu-smi info -t spod-info -i <NPU ID> -c <Chip ID>).
  - It reads each chip's address as the persisted network configuration gives it (O(hccn_conf), the file the
    engines mount), and the driver's version (O(driver_version_file)), so that the rank-table stage can refuse
    a host whose file and device disagree, or hosts whose drivers differ.
  - The result is the fact C(llmserve_npu), the per-host part of an HCCL or MindIE rank table.
  - Only runs read-only queries, so it is safe in check mode.
author:
  - llmserve.cluster maintainers (@llmserve)
extends_documentation_fragment:
  - llmserve.cluster.read_only
attributes:
  facts:
    support: full
    description: Returns the fact C(llmserve_npu).
options:
  npu_smi:
    description:
      - The npu-smi to run, a command name looked up in E(PATH) and C(/usr/local/bin), or a path.
    type: str
    default: npu-smi
  hccn_tool:
    description:
      - The hccn_tool to run, a command name looked up in E(PATH) and C(/usr/local/Ascend/driver/tools),
        or a path.
    type: str
    default: hccn_tool
  devices:
    description:
      - Logical ids of the chips to read (the C(Chip Logic ID) column of C(npu-smi info -m), which is also
        what C(hccn_tool -i) takes). Without it every chip of the host is read.
      - An id the host does not have fails the task.
    type: list
    elements: int
  hccn_conf:
    description:
      - The persisted device network configuration, whose C(address_<logical id>) lines C(hccn_tool -ip -s) writes.
    type: path
    default: /etc/hccn.conf
  driver_version_file:
    description:
      - The driver's version file, whose C(Version=) line names the installed NPU driver.
    type: path
    default: /usr/local/Ascend/driver/version.info
notes:
  - npu-smi and hccn_tool come with the Ascend NPU driver package
    (C(Ascend-hdk-<chip>-npu-driver_<version>_linux-<arch>.run)), which installs hccn_tool under
    C(/usr/local/Ascend/driver/tools). A host without them fails with a message naming the missing tool
    and every place that was searched.
  - O(devices) and the returned C(logical_id) are logical ids; C(device_id) is the physical id that rank
    tables want. On A3 it is the C(Chip Phy-ID) column of C(npu-smi info -m); on A2, where that column
    does not exist, it is the C(dev_id) that C(hccn_tool -tls -g) prints.
requirements:
  - The Ascend NPU driver (npu-smi and hccn_tool) on the managed host.
"""

EXAMPLES = r"""
- name: Read the NPUs of every inference host
  llmserve.cluster.npu_facts:

- name: Show the device IPs
  ansible.builtin.debug:
    msg: "{{ ansible_facts['llmserve_npu']['devices'] | map(attribute='device_ip') | list }}"

- name: Read only the first four chips, with tools outside PATH
  llmserve.cluster.npu_facts:
    npu_smi: /usr/local/sbin/npu-smi
    hccn_tool: /usr/local/Ascend/driver/tools/hccn_tool
    devices: [0, 1, 2, 3]

- name: Every device must have the same TLS switch before HCCL can link them
  ansible.builtin.assert:
    that: ansible_facts['llmserve_npu']['devices'] | map(attribute='tls') | unique | length == 1
"""

RETURN = r"""
ansible_facts:
  description: The facts gathered.
  returned: always
  type: dict
  contains:
    llmserve_npu:
      description: The host's Ascend NPUs.
      returned: always
      type: dict
      contains:
        generation:
          description: V(A2) for Ascend 910B hosts, V(A3) for Ascend 910_93 hosts.
          type: str
          sample: A3
        chip_name:
          description: The chip name C(npu-smi info -m) prints.
          type: str
          sample: Ascend910
        card_count:
          description: NPU cards on the host (C(Total Count) of C(npu-smi info -l)).
          type: int
          sample: 8
        chip_count:
          description: Compute chips on the host, each one device (two per card on A3), whatever O(devices) says.
          type: int
          sample: 16
        chips_per_card:
          description: Compute chips per NPU card.
          type: int
          sample: 2
        super_pod_id:
          description: The super pod of the host's dies, or V(null) on A2 or when the dies disagree.
          type: int
          sample: 0
        devices:
          description: One entry per chip read, in logical id order.
          type: list
          elements: dict
          contains:
            device_id:
              description: Physical device id, the C(device_id) of a rank table.
              type: int
              sample: 3
            logical_id:
              description: Logical id, the C(device_logical_id) of a MindIE rank table.
              type: int
              sample: 3
            card_id:
              description: NPU ID of the card the chip sits on (C(npu-smi -i)).
              type: int
              sample: 1
            chip_id:
              description: Chip ID within the card (C(npu-smi -c)).
              type: int
              sample: 1
            device_ip:
              description: The chip's device IP, the address of its RoCE port (C(hccn_tool -ip -g)).
              type: str
              sample: 192.168.2.14
            conf_ip:
              description: The chip's address in O(hccn_conf) (its C(address_<logical id>) line), or V(null) without one.
              type: str
              sample: 192.168.2.14
            netmask:
              description: Netmask of the device IP.
              type: str
              sample: 255.255.255.0
            link:
              description: V(UP) or V(DOWN), of the RoCE port.
              type: str
              sample: UP
            vnic_ip:
              description: The die's virtual NIC address on A3 (C(hccn_tool -vnic -g)), V(null) on A2.
              type: str
              sample: 10.24.2.4
            tls:
              description: Whether the device TLS switch is on; HCCL needs it equal on every device.
              type: bool
              sample: false
            super_pod_id:
              description: The die's super pod id on A3, V(null) on A2.
              type: int
              sample: 0
            super_device_id:
              description: The die's SDID on A3, the C(super_device_id) of a v1.2 rank table; V(null) on A2.
              type: int
              sample: 8716291
            server_index:
              description: The server index inside the super pod on A3, V(null) on A2.
              type: int
              sample: 2
"""

import ipaddress
import os
import re

from ansible.module_utils.basic import AnsibleModule

NPU_SMI_DIRS = ("/usr/local/bin",)
HCCN_TOOL_DIRS = ("/usr/local/Ascend/driver/tools",)
DRIVER_PACKAGE = "the Ascend NPU driver package (Ascend-hdk-<chip>-npu-driver_<version>_linux-<arch>.run)"
KEY_VALUE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9 _()/-]*?)\s*:\s*(.*?)\s*$")


class NpuOutputError(ValueError):
    """A tool printed something this module cannot read."""


class NpuToolError(Exception):
    """A tool could not be run, or failed; carries what the task result should show."""

    def __init__(self, msg, **result):
        super().__init__(msg)
        self.msg = msg
        self.result = result


def _excerpt(text, limit=300):
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _int(value, what, text):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise NpuOutputError("%s is %r, not a number, in %s" % (what, value, _excerpt(text))) from None


def _key_values(text):
    """The `key : value` lines npu-smi prints, as (key, value) pairs in order."""
    pairs = []
    for line in text.splitlines():
        m = KEY_VALUE.match(line)
        if m:
            pairs.append((m.group(1), m.group(2)))
    return pairs


def _ipv4(value, what, text):
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise NpuOutputError("%s %r is not an IPv4 address in %s" % (what, value, _excerpt(text))) from None


def parse_npu_smi_list(text):
    """`npu-smi info -l`: the cards, [{npu_id, chip_count}] (chip_count None where not printed)."""
    if "There is no NPU card" in text:
        raise NpuOutputError("npu-smi reports no NPU card on this host: %s" % _excerpt(text))
    total, cards = None, []
    for key, value in _key_values(text):
        if key == "Total Count":
            total = _int(value, "Total Count", text)
        elif key == "NPU ID":
            cards.append(dict(npu_id=_int(value, "NPU ID", text), chip_count=None))
        elif key == "Chip Count" and cards:
            cards[-1]["chip_count"] = _int(value, "Chip Count", text)
    if total is None:
        raise NpuOutputError("no 'Total Count' line in %s" % _excerpt(text))
    if total != len(cards):
        raise NpuOutputError("'Total Count' says %d cards but %d 'NPU ID' lines follow in %s"
                             % (total, len(cards), _excerpt(text)))
    return cards


def parse_npu_smi_mapping(text):
    """`npu-smi info -m`: the compute chips, [{npu_id, chip_id, logical_id, phy_id, name}], and the columns.

    A2 prints NPU ID, Chip ID, Chip Logic ID, Chip Name; A3 adds Chip Phy-ID before the name. Rows whose
    logical id is "-" (the card's Mcu) are not devices and are left out.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    header = next((i for i, line in enumerate(lines) if line.strip().startswith("NPU ID")), None)
    if header is None:
        raise NpuOutputError("no 'NPU ID' header line in %s" % _excerpt(text))
    columns = [c for c in re.split(r"\s{2,}|\t", lines[header].strip()) if c]
    known = (["NPU ID", "Chip ID", "Chip Logic ID", "Chip Name"],
             ["NPU ID", "Chip ID", "Chip Logic ID", "Chip Phy-ID", "Chip Name"])
    if columns not in known:
        raise NpuOutputError("unknown columns %s in %s; this module reads the Atlas A2 and A3 layouts"
                             % (columns, _excerpt(text)))
    ids = len(columns) - 1
    chips, seen = [], set()
    for line in lines[header + 1:]:
        cells = line.split()
        if len(cells) <= ids:
            raise NpuOutputError("row %r has fewer than %d columns in %s"
                                 % (line.strip(), len(columns), _excerpt(text)))
        row = dict(zip(columns, cells[:ids]), name=" ".join(cells[ids:]))
        if row["Chip Logic ID"] == "-":
            continue
        chip = dict(npu_id=_int(row["NPU ID"], "NPU ID", text), chip_id=_int(row["Chip ID"], "Chip ID", text),
                    logical_id=_int(row["Chip Logic ID"], "Chip Logic ID", text), name=row["name"],
                    phy_id=_int(row["Chip Phy-ID"], "Chip Phy-ID", text) if "Chip Phy-ID" in row else None)
        if chip["logical_id"] in seen:
            raise NpuOutputError("logical id %d appears twice in %s" % (chip["logical_id"], _excerpt(text)))
        seen.add(chip["logical_id"])
        chips.append(chip)
    if not chips:
        raise NpuOutputError("no compute chip rows in %s" % _excerpt(text))
    return dict(columns=columns, chips=chips)


def parse_spod_info(text):
    """`npu-smi info -t spod-info -i N -c C`: {sdid, super_pod_id, super_pod_size, server_index}."""
    fields = dict(_key_values(text))
    missing = [k for k in ("SDID", "Super Pod ID") if k not in fields]
    if missing:
        raise NpuOutputError("no %s line in %s" % (" or ".join(repr(k) for k in missing), _excerpt(text)))
    optional = dict(super_pod_size="Super Pod Size", server_index="Server Index")
    result = dict(sdid=_int(fields["SDID"], "SDID", text),
                  super_pod_id=_int(fields["Super Pod ID"], "Super Pod ID", text))
    for name, key in optional.items():
        result[name] = _int(fields[key], key, text) if key in fields else None
    return result


def _prefixed(text, prefix):
    for line in text.splitlines():
        if line.strip().startswith(prefix):
            return line.strip()[len(prefix):].strip()
    raise NpuOutputError("no %r line in %s" % (prefix, _excerpt(text)))


def _link(value, what, text):
    if value not in ("UP", "DOWN"):
        raise NpuOutputError("%s is %r, not UP or DOWN, in %s" % (what, value, _excerpt(text)))
    return value


def parse_hccn_ip(text):
    """`hccn_tool -i N -ip -g`: {ipaddr, netmask} of the RoCE port (the first one printed)."""
    return dict(ipaddr=_ipv4(_prefixed(text, "ipaddr:"), "ipaddr", text),
                netmask=_ipv4(_prefixed(text, "netmask:"), "netmask", text))


def parse_hccn_vnic(text):
    """`hccn_tool -i N -vnic -g`: {link, ipaddr, netmask} of the A3 virtual NIC."""
    return dict(link=_link(_prefixed(text, "vnic link status:"), "vnic link status", text),
                ipaddr=_ipv4(_prefixed(text, "vnic ipaddr:"), "vnic ipaddr", text),
                netmask=_ipv4(_prefixed(text, "vnic netmask:"), "vnic netmask", text))


def parse_hccn_link(text):
    """`hccn_tool -i N -link -g`: "UP" or "DOWN"."""
    return _link(_prefixed(text, "link status:"), "link status", text)


def parse_hccn_tls(text):
    """`hccn_tool -i N -tls -g`: {enabled, dev_id}; dev_id is the physical id the tool printed, or None."""
    m = re.search(r"tls switch\[\s*([01])\s*\]", text)
    if not m:
        raise NpuOutputError("no 'tls switch[0|1]' in %s" % _excerpt(text))
    dev = re.search(r"dev_id:\s*(\d+)", text)
    return dict(enabled=m.group(1) == "1", dev_id=int(dev.group(1)) if dev else None)


def parse_hccn_conf(text):
    """/etc/hccn.conf: {logical id: address} from its address_<id>=<ip> lines."""
    return {int(m.group(1)): m.group(2).strip() for m in re.finditer(r"^\s*address_(\d+)\s*=\s*(\S+)", text, re.M)}


def parse_version_info(text):
    """The driver's version.info: its Version= value, or None."""
    m = re.search(r"^\s*Version\s*=\s*(\S+)", text, re.M)
    return m.group(1) if m else None


def detect_generation(mapping):
    """A3 when npu-smi prints the 910_93 layout (with Chip Phy-ID), A2 when every chip is a 910B."""
    names = sorted({c["name"] for c in mapping["chips"]})
    if "Chip Phy-ID" in mapping["columns"]:
        return "A3"
    if all("910B" in n for n in names):
        return "A2"
    raise NpuOutputError("chips %s are neither Atlas A2 (Ascend 910B) nor A3 (Ascend 910_93); "
                         "this module reads only those two" % ", ".join(names))


def gather(run, npu_smi, hccn_tool, devices=None, conf=None):
    """The llmserve_npu fact; run(argv) returns a command's stdout or raises NpuToolError; conf is the
    {logical id: address} of /etc/hccn.conf, or None when there is no such file."""
    def query(argv, parser):
        out = run(argv)
        try:
            return parser(out)
        except NpuOutputError as e:
            raise NpuToolError("could not read the output of `%s`: %s" % (" ".join(argv), e),
                               cmd=" ".join(argv), stdout=out) from None

    cards = query([npu_smi, "info", "-l"], parse_npu_smi_list)
    mapping = query([npu_smi, "info", "-m"], parse_npu_smi_mapping)
    try:
        generation = detect_generation(mapping)
    except NpuOutputError as e:
        raise NpuToolError(str(e)) from None
    chips = mapping["chips"]
    listed = {c["npu_id"]: c["chip_count"] for c in cards}
    mapped = {}
    for chip in chips:
        mapped[chip["npu_id"]] = mapped.get(chip["npu_id"], 0) + 1
    if set(listed) != set(mapped) or any(listed[n] not in (None, mapped[n]) for n in listed):
        raise NpuToolError("`npu-smi info -l` and `npu-smi info -m` disagree: cards and chip counts %s against "
                           "compute chips per card %s" % (listed, mapped))
    wanted = sorted(c["logical_id"] for c in chips) if devices is None else list(dict.fromkeys(devices))
    unknown = sorted(set(wanted) - {c["logical_id"] for c in chips})
    if unknown:
        raise NpuToolError("devices %s are not on this host; its logical ids are %s"
                           % (unknown, sorted(c["logical_id"] for c in chips)))
    by_logical = {c["logical_id"]: c for c in chips}
    result = []
    for logical_id in sorted(wanted):
        chip = by_logical[logical_id]
        hccn = [hccn_tool, "-i", str(logical_id)]
        tls = query(hccn + ["-tls", "-g"], parse_hccn_tls)
        ip = query(hccn + ["-ip", "-g"], parse_hccn_ip)
        device = dict(logical_id=logical_id, card_id=chip["npu_id"], chip_id=chip["chip_id"],
                      device_id=tls["dev_id"] if tls["dev_id"] is not None else logical_id,
                      device_ip=ip["ipaddr"], conf_ip=(conf or {}).get(logical_id), netmask=ip["netmask"],
                      link=query(hccn + ["-link", "-g"], parse_hccn_link),
                      vnic_ip=None, tls=tls["enabled"], super_pod_id=None, super_device_id=None, server_index=None)
        if generation == "A3":
            spod = query([npu_smi, "info", "-t", "spod-info", "-i", str(chip["npu_id"]), "-c", str(chip["chip_id"])],
                         parse_spod_info)
            device.update(device_id=chip["phy_id"], vnic_ip=query(hccn + ["-vnic", "-g"], parse_hccn_vnic)["ipaddr"],
                          super_pod_id=spod["super_pod_id"], super_device_id=spod["sdid"],
                          server_index=spod["server_index"])
        result.append(device)
    pods = {d["super_pod_id"] for d in result}
    return dict(generation=generation, chip_name=chips[0]["name"], card_count=len(cards), chip_count=len(chips),
                chips_per_card=max(mapped.values()), super_pod_id=pods.pop() if len(pods) == 1 else None,
                devices=result)


def find_tool(value, dirs):
    """(path or None, where it was looked for): a path is taken as it is, a name is looked up in PATH, then dirs."""
    if os.sep in value:
        found = os.path.isfile(value) and os.access(value, os.X_OK)
        return (value if found else None), "%s does not exist or is not executable" % value
    path_dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    extra = [d for d in dirs if d not in path_dirs]
    for d in path_dirs + extra:
        candidate = os.path.join(d, value)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate, None
    also = " and in %s" % ", ".join(extra) if extra else ""
    return None, "looked for %r in PATH (%s)%s" % (value, os.pathsep.join(path_dirs) or "empty", also)


def missing_message(tool, option, where):
    home = " under /usr/local/Ascend/driver/tools" if tool == "hccn_tool" else ""
    return ("%s was not found: %s. %s is installed by %s%s; install the driver on this host, or set %s "
            "to the tool's path." % (tool, where, tool, DRIVER_PACKAGE, home, option))


def _read(path):
    """A file's text, or None when it does not exist."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            npu_smi=dict(type="str", default="npu-smi"),
            hccn_tool=dict(type="str", default="hccn_tool"),
            devices=dict(type="list", elements="int"),
            hccn_conf=dict(type="path", default="/etc/hccn.conf"),
            driver_version_file=dict(type="path", default="/usr/local/Ascend/driver/version.info"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    tools, problems = {}, []
    for tool, option, dirs in (("npu-smi", "npu_smi", NPU_SMI_DIRS), ("hccn_tool", "hccn_tool", HCCN_TOOL_DIRS)):
        path, where = find_tool(p[option], dirs)
        if path is None:
            problems.append(missing_message(tool, option, where))
        tools[option] = path
    if problems:
        module.fail_json(msg=" ".join(problems))

    def run(argv):
        rc, out, err = module.run_command(argv)
        if rc != 0:
            raise NpuToolError("`%s` failed with exit status %d: %s"
                               % (" ".join(argv), rc, (err or out).strip() or "no output"),
                               cmd=" ".join(argv), rc=rc, stdout=out, stderr=err)
        return out

    conf = _read(p["hccn_conf"])
    conf = None if conf is None else parse_hccn_conf(conf)
    try:
        facts = gather(run, tools["npu_smi"], tools["hccn_tool"], p["devices"], conf)
    except NpuToolError as e:
        module.fail_json(msg=e.msg, **e.result)
    facts.update(hccn_conf=p["hccn_conf"] if conf is not None else None,
                 driver_version=parse_version_info(_read(p["driver_version_file"]) or ""))
    module.exit_json(changed=False, ansible_facts=dict(llmserve_npu=facts))


if __name__ == "__main__":
    main()
