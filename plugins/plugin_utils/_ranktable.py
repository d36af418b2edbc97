# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rank tables of Ascend deployments, from each host's NPU facts: pure functions, no Ansible import.

A *server* here is ``{"server_id": host address, "devices": [device, ...]}`` in rank order, a device
``{"device_id", "device_ip", "logical_id", "super_device_id", "super_pod_id"}`` as npu_facts reports it
(the last two on A3 only). Formats (reference/omni-infer.md §3, reference/mindie.md §3):

- HCCL v1.0 (A2) and v1.2 (A3: ``host_ip``, ``super_device_id``, ``super_pod_list``), one per instance;
- omni-infer's local table of one host, its merge over the hosts of one instance, and the global merge
  (a group per prefill instance, then decode), byte-compatible with its ``pd_ranktable_tools.py``;
- vllm-ascend's ``prefill_device_list`` / ``decode_device_list``;
- MindIE's global table (group 0 coordinator, 1 controller, 2 and up the server instances).

Which device IP each format carries on A3 follows its consumer, cited beside each function: the RoCE port's
(``hccn_tool -ip -g``) for HCCL, omni-infer and MindIE, the vNIC's (``hccn_tool -vnic -g``) for vllm-ascend.

Where the peers' own generators disagree with their consumers (fixtures in tests/unit/fixtures/ranktable),
these follow the consumer: ``rank_id`` is always written, numbered by node order then card order within
the instance; ``device_logical_id`` is written where MindIE reads it.
"""

from __future__ import annotations

import json


class RankTableError(Exception):
    """What is wrong with a table, for a person."""


def _device(dev, rank, a3):
    entry = {"device_id": str(dev["device_id"]), "device_ip": str(dev["device_ip"]), "rank_id": str(rank)}
    if a3:
        entry["super_device_id"] = str(dev["super_device_id"])
    return entry


def _ranked(servers, a3):
    """server_list entries with rank ids running over the servers in order, then cards."""
    rank, out = 0, []
    for server in servers:
        devices = []
        for dev in server["devices"]:
            devices.append(_device(dev, rank, a3))
            rank += 1
        out.append({"server_id": server["server_id"], "device": devices})
    return out


def _super_pods(servers):
    pods = {}
    for server in servers:
        pod = str(server["devices"][0].get("super_pod_id", 0)) if server["devices"] else "0"
        pods.setdefault(pod, []).append({"server_id": server["server_id"]})
    return [{"super_pod_id": pod, "server_list": members} for pod, members in sorted(pods.items())]


def hccl(servers, a3=False):
    """The HCCL rank table of one instance (RANK_TABLE_FILE): v1.0 on A2, v1.2 on A3. device_ip is the RoCE port's
    address on both: HCCL's A3 rank table guide names the NIC address of /etc/hccn.conf (hicann/hccl @09300b7,
    docs/zh/user_guide/cluster_info_config/rank_table_config_a3.md 22, 85), and picks the vNIC link within a super
    pod by itself from super_device_id (line 84). MindIE's tables (filled below) take the same address, as
    MindCluster fills them (ascend-device-plugin ascendcommon.go 877-913, DCMI_ROCE_PORT)."""
    server_list = []
    for entry in _ranked(servers, a3):
        server = {"server_id": entry["server_id"], "container_ip": entry["server_id"]}
        if a3:
            server["host_ip"] = entry["server_id"]
        server["device"] = entry["device"]
        server_list.append(server)
    table = {"version": "1.2" if a3 else "1.0", "server_count": str(len(servers)), "status": "completed",
             "server_list": server_list}
    if a3:
        table["super_pod_list"] = _super_pods(servers)
    return table


def _omni_servers(servers):
    """omni-infer's server entries: device_id, the RoCE device_ip and rank_id alone, on A3 too. Its generator reads
    only `hccn_tool -ip -g` and writes no super_* field (pd_ranktable_tools.py @652b242 lines 307-336), and its
    connector rebuilds a v1.0 link table from each device_ip (omni/accelerators/pd/utils.py 73-143, used by
    llmdatadist_manager.py 398-442): a vNIC address there would name the wrong port."""
    return [{"server_id": e["server_id"], "server_ip": e["server_id"], "device": e["device"]}
            for e in _ranked(servers, False)]


def omni_local(server):
    """omni-infer's ``local_ranktable_<ip>_<ids>.json`` of one host (its gen mode): ranks 0..n-1."""
    return {"version": "1.0", "status": "completed", "group_id": "0", "server_count": "1",
            "server_list": _omni_servers([server])}


def omni_merged(servers):
    """omni-infer's ``local_ranktable_merge.json`` of an instance over several hosts (merge-local mode):
    an integer server_count and ranks renumbered across the hosts."""
    return {"version": "1.0", "status": "completed", "group_id": "0", "server_count": len(servers),
            "server_list": _omni_servers(servers)}


def omni_global(prefill_instances, decode_servers):
    """omni-infer's ``global_ranktable_merge.json``: group "0".."P-1" the prefill instances in order, then
    the decode instance; the connector tells them apart by group_id < PREFILL_POD_NUM."""
    groups = list(prefill_instances) + [decode_servers]
    return {"version": "1.0", "status": "completed", "server_group_list": [
        {"group_id": str(i), "server_count": len(servers), "server_list": _omni_servers(servers)}
        for i, servers in enumerate(groups)]}


def omni_local_name(address, device_ids):
    """omni-infer's file name: the host address, then the device ids joined with nothing between."""
    return "local_ranktable_%s_%s.json" % (address, "".join(str(d) for d in device_ids))


def vllm_ascend(prefill_servers, decode_servers, a3=False):
    """vllm-ascend's ``ranktable.json`` (DISAGGREGATED_PREFILL_RANK_TABLE_PATH): devices in node order,
    cluster_id counting from 1 over both lists, server_count the number of nodes. On A3 its device_ip is the die's
    vNIC address with its super pod and SDID: its generator reads `hccn_tool -vnic -g` there
    (examples/disaggregated_prefill_v1/gen_ranktable.py @848419d 85-94), and its connector links through a v1.2
    table built of those (vllm_ascend/distributed/llmdatadist_c_mgr_connector.py 499-503, 708-783)."""
    lists, cluster = {}, 0
    for name, servers in (("prefill_device_list", prefill_servers), ("decode_device_list", decode_servers)):
        lists[name] = []
        for server in servers:
            for dev in server["devices"]:
                cluster += 1
                entry = {"server_id": server["server_id"], "device_id": str(dev["device_id"]),
                         "device_ip": str(dev["vnic_ip"] if a3 else dev["device_ip"])}
                if a3:
                    entry.update(super_pod_id=str(dev["super_pod_id"]), super_device_id=str(dev["super_device_id"]))
                entry["cluster_id"] = str(cluster)
                lists[name].append(entry)
    return {"version": "1.2", "server_count": str(len(prefill_servers) + len(decode_servers)),
            **lists, "status": "completed"}


def check(table, expected_devices=None, what="rank table"):
    """Raise RankTableError unless: status completed, device IPs unique, rank ids contiguous from 0 within
    each server list group, and (when given) the device count of each group equals the plan's."""
    if table.get("status") != "completed":
        raise RankTableError("%s: status is %r, not \"completed\"" % (what, table.get("status")))
    groups = table.get("server_group_list") or [table]
    if "prefill_device_list" in table:   # vllm-ascend's: one device per entry
        groups = [{"group_id": name, "server_list": [dict(d, device=[d]) for d in table[name]]}
                  for name in ("prefill_device_list", "decode_device_list")]
    seen = {}
    for index, group in enumerate(groups):
        devices = [d for s in group.get("server_list", []) for d in s.get("device", [])]
        for s in group.get("server_list", []):
            for d in s.get("device", []):
                ip = d.get("device_ip")
                if ip in seen:
                    raise RankTableError("%s: device IP %s is on %s device %s and on %s device %s; every NPU needs "
                                         "its own (hccn_tool -i N -ip -g)" % (what, ip, seen[ip][0], seen[ip][1],
                                                                              s["server_id"], d["device_id"]))
                seen[ip] = (s["server_id"], d.get("device_id"))
        ranks = [int(d["rank_id"]) for d in devices if "rank_id" in d]
        if ranks and sorted(ranks) != list(range(len(devices))):
            raise RankTableError("%s: group %s has rank ids %s, not 0..%d" % (
                what, group.get("group_id", index), sorted(ranks), len(devices) - 1))
        if expected_devices is not None and "device" in (group.get("server_list") or [{}])[0]:
            want = expected_devices[index] if isinstance(expected_devices, list) else expected_devices
            if len(devices) != want:
                raise RankTableError("%s: group %s lists %d devices, the plan has %d" % (
                    what, group.get("group_id", index), len(devices), want))


def dumps(table):
    """The text the hosts get: omni-infer's own layout (4-space indent, no final newline), so the files
    compare equal to its tool's."""
    return json.dumps(table, indent=4)


# ---------------------------------------------------------------- from the plan and the hosts' facts

ASCEND = ("ascend_a2", "ascend_a3")
GLOBAL_NAME = "global_ranktable_merge.json"


def table_dir(config_dir):
    return "%s/ranktable" % config_dir


def vllm_ascend_path(config_dir):
    """DISAGGREGATED_PREFILL_RANK_TABLE_PATH: vllm-ascend's table, the name its gen_ranktable.sh gives it."""
    return "%s/ranktable.json" % table_dir(config_dir)


def _server(host, address, devices, facts):
    """The server entry of one host: the plan's devices (logical ids) as the host reported them."""
    npu = facts.get(host)
    if not npu:
        raise RankTableError("%s: no NPU facts; run llmserve.cluster.npu_facts on it first" % host)
    by_logical = {int(d["logical_id"]): d for d in npu.get("devices", [])}
    missing = [d for d in devices if d not in by_logical]
    if missing:
        raise RankTableError("%s: the plan gives it device(s) %s, but npu-smi reports only %s; fix "
                             "ascend_rt_visible_devices or llmserve_devices" % (
                                 host, ",".join(map(str, missing)), ",".join(map(str, sorted(by_logical))) or "none"))
    lost = [d for d in devices if not by_logical[d].get("device_ip")]
    if lost:
        raise RankTableError("%s: device(s) %s have no IP address (hccn_tool -i N -ip -s address A netmask M)"
                             % (host, ",".join(map(str, lost))))
    down = [d for d in devices if by_logical[d].get("link", "UP") != "UP"]
    if down:
        raise RankTableError("%s: the RoCE link of device(s) %s is DOWN (hccn_tool -i N -link -g), so no KV or HCCL "
                             "traffic passes; check the cable and switch port (hccn_tool -i N -net_health -g)"
                             % (host, ",".join(map(str, down))))
    if "hccn_conf" in npu:   # facts of npu_facts 0.1.0 read the file; older recorded facts did not
        if npu["hccn_conf"] is None:
            raise RankTableError("%s: /etc/hccn.conf does not exist, but the engines mount it for the device IPs; "
                                 "set each address with hccn_tool -i N -ip -s address A netmask M, which writes it" % host)
        stale = ["device %d: %s in %s, %s by hccn_tool" % (
            d, by_logical[d].get("conf_ip") or "no address_%d line" % d, npu["hccn_conf"], by_logical[d]["device_ip"])
            for d in devices if by_logical[d].get("conf_ip") != by_logical[d]["device_ip"]]
        if stale:
            raise RankTableError("%s: the persisted device IPs disagree with the devices' (%s); the engines read the "
                                 "file: set them again with hccn_tool -i N -ip -s address A netmask M, which writes "
                                 "both" % (host, "; ".join(stale)))
    return {"server_id": address, "devices": [by_logical[d] for d in devices]}


def agree(facts, devices_of):
    """Raise RankTableError unless every planned device has the same TLS switch (HCCL links no others) and every
    host the same driver version; devices_of: {host: [logical ids]}."""
    tls, drivers = {}, {}
    for host, devices in sorted(devices_of.items()):
        by_logical = {int(d["logical_id"]): d for d in facts[host].get("devices", [])}
        for d in devices:
            tls.setdefault(bool(by_logical[d].get("tls")), []).append("%s device %d" % (host, d))
        if facts[host].get("driver_version"):
            drivers.setdefault(facts[host]["driver_version"], []).append(host)
    if len(tls) > 1:
        raise RankTableError("the device TLS switch is on for %s and off for %s; HCCL links only devices whose switch "
                             "agrees: set one with hccn_tool -i N -tls -s enable 0|1 on every device"
                             % (", ".join(tls[True]), ", ".join(tls[False])))
    if len(drivers) > 1:
        raise RankTableError("the hosts run different NPU drivers (%s); HCCL between them is not supported: install "
                             "one driver version on every host" % "; ".join(
                                 "%s on %s" % (v, ", ".join(h)) for v, h in sorted(drivers.items())))


def _devices_of(members):
    """{host: its planned logical ids} of the members given."""
    out = {}
    for m in members:
        out.setdefault(m["host"], []).extend(d for d in m["devices"] if d not in out.get(m["host"], []))
    return out


def _filled(skeleton, servers, a3):
    """A MindIE table of the plan (device IPs null) with each device's IP (and SDID, super pods on A3) from
    its host's facts; servers: {address: _server(...)}."""
    table = json.loads(json.dumps(skeleton))
    lists = [g for g in table.get("server_group_list", []) if int(g["group_id"]) >= 2] or [table]
    for group in lists:
        for entry in group["server_list"]:
            for device, fact in zip(entry["device"], servers[entry["server_id"]]["devices"]):
                device["device_ip"] = str(fact["device_ip"])
                if a3:
                    device["super_device_id"] = str(fact["super_device_id"])
        if a3:
            group["super_pod_list"] = _super_pods([servers[e["server_id"]] for e in group["server_list"]])
    return table


def mindie_files(plan, facts):
    """{host: [(path, text, owner)]}: MindIE's global rank table on the Controller's host and each multi-host
    Server instance's HCCL table on its hosts, owned by the user MindIE runs as (it checks the owner)."""
    instances = [i for i in plan["instances"] if i["kind"] == "mindie_server" and i["members"]]
    if not instances:
        return {}
    a3 = plan["hosts"][instances[0]["master"]]["accelerator"] == "ascend_a3"
    servers = {m["address"]: _server(m["host"], m["address"], m["devices"], facts) for i in instances for m in i["members"]}
    agree(facts, _devices_of(m for i in instances for m in i["members"]))
    (controller,) = [m for i in plan["instances"] if i["kind"] == "mindie_controller" for m in i["members"]]
    table = _filled(controller["rank_table"], servers, a3)
    entries = {e["server_id"]: e for g in table["server_group_list"][2:] for e in g["server_list"]}
    # rank ids run from 0 within each instance (a group may hold several); device IPs are unique over the cluster
    for inst in instances:
        check({"status": "completed", "server_list": [entries[m["address"]] for m in inst["members"]]},
              what="MindIE %s" % inst["name"])
    check({"status": "completed", "server_list": [dict(e, device=[{k: v for k, v in d.items() if k != "rank_id"}
                                                                  for d in e["device"]]) for e in entries.values()]},
          what="MindIE global rank table")
    files = {controller["host"]: [(controller["rank_table_path"], json.dumps(table, indent=2), controller["user"])]}
    for inst in instances:
        if inst.get("hccl_rank_table"):
            text = json.dumps(_filled(inst["hccl_rank_table"], servers, a3), indent=2)
            for m in inst["members"]:
                files.setdefault(m["host"], []).append(("%s/hccl_rank_table.json" % m["host_dir"], text, m["user"]))
    return files


def plan_files(plan, facts):
    """{host: [(path, text[, owner])]}: the rank tables every Ascend engine host of the plan reads.

    Per host, omni-infer's local table of its devices; per instance over several hosts, the merged table;
    the global table of every prefill instance and the decode instance; per instance, the HCCL table.
    Each table is built and checked once. Raises RankTableError naming the host when facts and plan
    disagree or a table fails its checks.
    """
    files = mindie_files(plan, facts)
    instances = [i for i in plan["instances"] if i["kind"] in ("vllm_prefill", "vllm_decode")
                 and plan["hosts"][i["master"]]["accelerator"] in ASCEND]
    if not instances:
        return files
    a3 = plan["hosts"][instances[0]["master"]]["accelerator"] == "ascend_a3"
    folder = instances[0]["members"][0]["env"]["GLOBAL_RANK_TABLE_FILE_PATH"].rsplit("/", 1)[0]
    tables, paths_of, servers_of = {}, {}, {}   # path -> table; host -> its paths; instance -> its servers
    for inst in instances:
        servers = []
        for host in inst["hosts"]:
            devices = [d for m in inst["members"] if m["host"] == host for d in m["devices"]]
            server = _server(host, plan["hosts"][host]["address"], devices, facts)
            servers.append(server)
            path = _local_path(folder, server["server_id"], devices)
            tables[path] = omni_local(server)
            paths_of.setdefault(host, []).append(path)
        servers_of[inst["name"]] = servers
        shared = [("%s/hccl_%s.json" % (folder, inst["name"]), hccl(servers, a3))]
        if len(servers) > 1:
            shared.insert(0, (_merged_path(folder, inst["name"]), omni_merged(servers)))
        for path, table in shared:
            tables[path] = table
            for host in inst["hosts"]:
                paths_of[host].append(path)
    agree(facts, _devices_of(m for i in instances for m in i["members"]))
    prefill = [servers_of[i["name"]] for i in instances if i["kind"] == "vllm_prefill"]
    decode = [s for i in instances if i["kind"] == "vllm_decode" for s in servers_of[i["name"]]]
    listed = {m["env"].get("DISAGGREGATED_PREFILL_RANK_TABLE_PATH") for i in instances for m in i["members"]} - {None}
    for path in listed:   # vllm-ascend's LLMDataDistCMgrConnector reads its own format, on every engine host
        tables[path] = vllm_ascend([s for servers in prefill for s in servers], decode, a3)
        for paths in paths_of.values():
            paths.append(path)
    whole = "%s/%s" % (folder, GLOBAL_NAME)
    tables[whole] = omni_global(prefill, decode)
    check(tables[whole], expected_devices=[sum(len(s["devices"]) for s in g) for g in prefill + [decode]],
          what=GLOBAL_NAME)
    texts = {}
    for path, table in tables.items():
        if path != whole:
            check(table, what="%s (%s)" % (path.rsplit("/", 1)[-1], ", ".join(
                h for h, paths in sorted(paths_of.items()) if path in paths)))
        texts[path] = dumps(table)
    for host, paths in paths_of.items():
        files.setdefault(host, []).extend((path, texts[path]) for path in paths + [whole])
    return files


def _local_path(folder, address, devices):
    return "%s/%s" % (folder, omni_local_name(address, devices))


def _merged_path(folder, instance):
    return "%s/local_ranktable_merge_%s.json" % (folder, instance)


def member_paths(config_dir, instance, host_address, devices, hosts_in_instance):
    """GLOBAL_RANK_TABLE_FILE_PATH and RANK_TABLE_FILE_PATH of one member (omni-infer's launch reads both):
    its host's local table, or the instance's merged table when the instance spans hosts."""
    folder = table_dir(config_dir)
    local = _merged_path(folder, instance) if hosts_in_instance > 1 else _local_path(folder, host_address, devices)
    return {"GLOBAL_RANK_TABLE_FILE_PATH": "%s/%s" % (folder, GLOBAL_NAME), "RANK_TABLE_FILE_PATH": local}
