# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prefill/decode disaggregated vLLM: instances, ports, argv and environment of every process.

Two inventory shapes:
- llmserve's: groups ``prefill``, ``decode`` and ``proxy``. A host is one instance unless hosts of
  a role share ``llmserve_instance``; then they are one instance whose data-parallel ranks span
  them (the first host in inventory order is the master and serves the API).
- omni-infer's: groups ``P``, ``D`` and ``C``. P hosts sharing ``host_ip`` are one instance, one TP
  group over all their devices: vLLM's multi-node mp launch (``--nnodes``, ``--node-rank``,
  ``--master-addr host_ip``, ``--master-port node_port``), API on the host at ``host_ip`` only. All D
  hosts are one instance run as vLLM's external-LB data parallel: one container per device (TP 1,
  ``--data-parallel-rank`` = its global rank, ``--port api_port + i``), rank 0 on the host at
  ``host_ip`` serving the DP RPC port ``node_port``. The C host runs the front door on
  ``proxy_port + node_rank``.

Members are containers: one per host for llmserve's shape and omni-infer's P, one per device for
omni-infer's D. Every port a member's argv makes vLLM open is a listener of the plan, and back.
"""

from __future__ import annotations

import json
import re

from ._cluster_util import ascend_devices, boolean, device_env, device_requests, log_options, url
from ._ranktable import ASCEND, member_paths, table_dir, vllm_ascend_path

GROUPS = ("prefill", "decode", "replica", "proxy", "P", "D", "C")
# KV connectors the collection knows how to launch: role of the prefill side, of the decode side
KV_CONNECTORS = {
    "NixlConnector": ("kv_both", "kv_both"),
    "MooncakeConnector": ("kv_producer", "kv_consumer"),
    "LMCacheConnectorV1": ("kv_producer", "kv_consumer"),
    "MultiConnector": ("kv_both", "kv_both"),
    "ExampleConnector": ("kv_both", "kv_both"),
    "AscendHcclConnectorV1": ("kv_producer", "kv_consumer"),
    "MooncakeConnectorV1": ("kv_producer", "kv_consumer"),
    "LLMDataDistCMgrConnector": ("kv_producer", "kv_consumer"),
}
# connectors users name from older docs, and why the collection refuses them
REFUSED_CONNECTORS = {
    "P2pNcclConnector": "is no longer registered in vLLM 0.32 (its factory raises \"Unsupported connector "
                        "type\"); use NixlConnector, which needs no proxy of its own",
}
NIXL_LIKE = ("NixlConnector", "MultiConnector")
PROXY_TYPES = ("vllm-router", "omni-global-proxy")
# Ascend connectors whose configuration names the sizes of the other side
PEER_SIZED = ("AscendHcclConnectorV1", "MooncakeConnectorV1")
# what omni-infer's launch scripts export for HCCL (reference/omni-infer.md §4); llmserve_vllm_env overrides
ASCEND_ENV = {"HCCL_CONNECT_TIMEOUT": "1800", "HCCL_EXEC_TIMEOUT": "120", "HCCL_RDMA_TIMEOUT": "20",
              "HCCL_INTRA_ROCE_ENABLE": "1", "HCCL_INTRA_PCIE_ENABLE": "0"}
# the rest of what omni-infer's vllm_run_for_p.sh exports (reference/omni-infer.md §4)
OMNI_ENV = {"VLLM_USE_V1": "1", "VLLM_WORKER_MULTIPROC_METHOD": "fork", "TNG_HOST_COPY": "1",
            "AUTO_USE_UC_MEMORY": "1", "TASK_QUEUE_ENABLE": "2", "ASCEND_GLOBAL_LOG_LEVEL": "3",
            "PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True", "HCCL_OP_EXPANSION_MODE": "AIV",
            "VLLM_ENABLE_MC2": "1"}
# how an instance's members run: native internal-LB data parallel (one member per host), one TP group
# over several nodes (omni-infer's P), external-LB data parallel (omni-infer's D, one member per device)
INTERNAL_DP, TP_NODES, EXTERNAL_DP = "internal_dp", "tp_nodes", "external_dp"


class Instance:
    """One serving engine: one or more hosts that together hold its devices."""

    def __init__(self, name, kind, hosts):
        self.name, self.kind, self.hosts = name, kind, hosts
        self.devices = {}       # host -> [device ids]
        self.device_var = {}    # host -> the variable its devices came from, for messages
        self.layout = INTERNAL_DP
        self.tp = self.pp = 1
        self.members = []       # one entry per container, in rank order (hosts in self.hosts order)

    @property
    def master(self):
        return self.hosts[0]

    @property
    def side(self):
        return self.kind[len("vllm_"):]


# ---------------------------------------------------------------- inventory shapes

def _native_instances(inv):
    instances = []
    for role, kind in (("prefill", "vllm_prefill"), ("decode", "vllm_decode"), ("replica", "vllm_replica")):
        members = {}
        for host in inv.groups.get(role, []):
            members.setdefault("%s-%s" % (role, inv.get(host, "llmserve_instance") or host), []).append(host)
        for name, hosts in members.items():
            inst = Instance(name, kind, hosts)
            for host in hosts:
                # a host in both groups gives each instance its own devices with llmserve_<role>_devices
                var = "llmserve_%s_devices" % role
                inst.device_var[host] = var if inv.get(host, var) is not None else "llmserve_devices"
                inst.devices[host] = inv.devices(host, inst.device_var[host])
            inst.tp = inv.integer(inst.master, "llmserve_tensor_parallel_size", 1)
            inst.pp = inv.integer(inst.master, "llmserve_pipeline_parallel_size", 1)
            instances.append(inst)
    return instances


def _omni_instances(inv):
    by_master = {}
    for host in inv.groups.get("P", []):
        by_master.setdefault(str(inv.get(host, "host_ip") or inv.address(host)), []).append(host)
    groups = [("vllm_prefill", ip, hosts) for ip, hosts in by_master.items()]
    if inv.groups.get("D"):
        hosts = list(inv.groups["D"])
        groups.append(("vllm_decode", str(inv.get(hosts[0], "host_ip") or inv.address(hosts[0])), hosts))
    instances = []
    for kind, master_ip, hosts in groups:
        if not any(inv.address(h) == master_ip for h in hosts):
            # the instance's master serves at host_ip: an address of no host of the instance is a typo
            inv.problem(hosts[0], "host_ip", "%s is the address of no host of this %s instance (%s); set host_ip to "
                        "the address of the instance's first host" % (master_ip, kind[len("vllm_"):], ", ".join(
                            "%s at %s" % (h, inv.address(h)) for h in hosts)))
        # the host at host_ip leads; a multi-node P's other hosts follow in the order of their addresses as strings
        # (10.0.0.10 before 10.0.0.9), as omni-infer's tools/ansible orders them for its rank table and launch
        # ("sort non-head nodes lexicographically so startup order matches ranktable order"): the node ranks and
        # the rank tables here both follow this list
        hosts = sorted(hosts, key=lambda h: (inv.address(h) != master_ip, inv.address(h) if kind == "vllm_prefill"
                                             else ""))
        if kind == "vllm_prefill":
            name = "prefill-%s" % inv.get(hosts[0], "kv_rank", len(instances))
            same = [i for i in instances if i.name == name]
            if same:   # kv_rank is the P instance's KV engine id: two instances cannot share it
                inv.problem(hosts[0], "kv_rank", "%s is also the kv_rank of %s, another prefill instance; give "
                            "each prefill instance its own kv_rank" % (name[len("prefill-"):], same[0].master))
        else:
            name = "decode-0"
        inst = Instance(name, kind, hosts)
        for host in hosts:
            inst.device_var[host] = "ascend_rt_visible_devices"
            inst.devices[host] = inv.devices(host, "ascend_rt_visible_devices")
        # a multi-node P is one TP group over all its devices; D runs TP 1, one rank per device
        inst.tp = sum(len(d) for d in inst.devices.values()) if kind == "vllm_prefill" else 1
        inst.layout = TP_NODES if kind == "vllm_prefill" else EXTERNAL_DP
        instances.append(inst)
    return instances


# ---------------------------------------------------------------- checks

def _check(inv, instances, door_group):
    kinds = {i.kind for i in instances}
    if "vllm_replica" in kinds and kinds - {"vllm_replica"}:
        inv.problem(None, "replica", "plain replicas cannot share a cluster with prefill/decode instances (one front "
                    "door serves one kind); deploy them from separate inventories")
        return
    want = {"vllm_prefill": "decode", "vllm_decode": "prefill"}
    for kind, other in want.items():
        if kind in kinds and not (kinds - {kind}):
            group = other if door_group == "proxy" else other[0].upper()
            inv.problem(None, group, "%s instances are defined but no %s host; add hosts to the %s group"
                        % (kind.split("_")[1], other, group))
    owner = {}
    for inst in instances:
        for host, devs in inst.devices.items():
            for dev in devs:
                first = owner.setdefault((host, dev), inst.name)
                if first != inst.name:
                    hint = "" if door_group != "proxy" else \
                        " (llmserve_prefill_devices, llmserve_decode_devices on a host in both groups)"
                    inv.problem(host, inst.device_var[host], "device %d is given to both %s and %s; give each "
                                "instance its own devices%s" % (dev, first, inst.name, hint))
        group = inst.tp * inst.pp
        counts = {host: len(devs) for host, devs in inst.devices.items() if devs}
        if inst.layout == TP_NODES and inst.master in counts:
            # vLLM splits the TP group evenly over --nnodes: every host brings the same number of devices
            for host in inst.hosts[1:]:
                if counts.get(host, counts[inst.master]) != counts[inst.master]:
                    inv.problem(host, inst.device_var[host], "%s: %d devices here but %d on %s; the hosts of a "
                                "multi-node prefill instance (same host_ip) need the same number of devices"
                                % (inst.name, counts[host], counts[inst.master], inst.master))
        for host, devs in inst.devices.items():
            if devs and len(devs) % group and inst.layout == INTERNAL_DP:
                inv.problem(host, "llmserve_tensor_parallel_size",
                            "%s: %d devices on this host cannot be split into groups of TP %d x PP %d; "
                            "give a multiple of %d devices or change the sizes"
                            % (inst.name, len(devs), inst.tp, inst.pp, group))
    if not instances:
        return
    # each instance reads these from its own master; a mistake shared by many is reported once
    for variable, what in (("llmserve_model", "model path or name the engines serve"),
                           ("llmserve_image", "engine image, e.g. registry:5000/llmserve/vllm-cpu:0.32.0")):
        for inst in instances:
            if inv.get(inst.master, variable) in (None, ""):
                inv.once(inst.master, variable, None, "is not set%s; give the %s (for every group: group_vars/all)" % (
                    "" if inst is instances[0] else " for %s, though %s has it" % (inst.name, instances[0].name)
                    if inv.get(instances[0].master, variable) not in (None, "") else "", what))
    # one front door sends each request to a prefill and a decode engine (or to any replica): one model for all
    for variable in ("llmserve_model", "llmserve_served_model_name"):
        first = instances[0]
        for inst in instances[1:]:
            mine, theirs = inv.get(inst.master, variable), inv.get(first.master, variable)
            if mine not in (None, "") and theirs not in (None, "") and mine != theirs:
                inv.once(inst.master, variable, mine, "%s serves %r but %s serves %r; the front door sends one request "
                         "to both, so every engine behind it must serve the same model" % (inst.name, mine, first.name, theirs))

    for inst in instances:
        connector = _connector(inv, inst)
        if connector in REFUSED_CONNECTORS:
            inv.once(inst.master, "llmserve_kv_connector", connector, "%s %s" % (connector, REFUSED_CONNECTORS[connector]))
        elif connector not in KV_CONNECTORS and inst.kind != "vllm_replica":
            inv.once(inst.master, "llmserve_kv_connector", connector, "%r is not a KV connector llmserve knows (%s)"
                     % (connector, ", ".join(sorted(KV_CONNECTORS))))
        lmcache = inv.get(inst.master, "llmserve_lmcache_config")
        if connector == "LMCacheConnectorV1" and not isinstance(lmcache, dict):
            inv.once(inst.master, "llmserve_lmcache_config", lmcache, "LMCacheConnectorV1 needs LMCache's configuration "
                     "as a mapping, e.g. {chunk_size: 256, remote_url: \"lm://cache-host:65432\"}; got %r" % (lmcache,))
        elif connector == "LMCacheConnectorV1" and lmcache.get("enable_pd"):
            inv.once(inst.master, "llmserve_lmcache_config", "enable_pd", "enable_pd needs LMCache's own disaggregation "
                     "proxy, which vllm-router does not speak; share the KV through an LMCache backend both sides reach "
                     "(remote_url or a shared local_disk) or use NixlConnector")
        if connector == "ExampleConnector" and not inv.get(inst.master, "llmserve_kv_shared_path"):
            inv.once(inst.master, "llmserve_kv_shared_path", None, "ExampleConnector needs a directory that the "
                     "prefill and decode hosts share (e.g. an NFS mount)")


def _connector(inv, inst):
    """The KV connector of a prefill or decode instance; None for a plain replica."""
    return None if inst.kind == "vllm_replica" else inv.get(inst.master, "llmserve_kv_connector")


# ---------------------------------------------------------------- ports

def _native_ports(inv, ports, instances):
    """Ports depend only on the instances on the same host, so adding hosts moves no port."""
    slots = {}
    for inst in sorted(instances, key=lambda i: i.name):
        connector = _connector(inv, inst)
        dp = sum(len(inst.devices[h]) // (inst.tp * inst.pp) for h in inst.hosts)
        for host in inst.hosts:
            slot = slots.setdefault(host, {"api": 0, "rpc": 0, "nixl": 0})
            local_dp = len(inst.devices[host]) // (inst.tp * inst.pp)
            member = dict(host=host, address=inv.address(host), headless=host != inst.master, local_dp=local_dp,
                          devices=inst.devices[host])
            if host == inst.master:
                member["port"] = ports.claim(host, inv.integer(host, "llmserve_vllm_port", 1) + slot["api"],
                                             "vllm-api", inst.name, "llmserve_vllm_port")
                slot["api"] += 1
                # DP > 1 always gets its own RPC port: vLLM's default (29550) is the same for every instance
                if len(inst.hosts) > 1 or dp > 1:
                    member["dp_rpc_port"] = ports.claim(
                        host, inv.integer(host, "llmserve_vllm_dp_rpc_port", 1) + slot["rpc"], "vllm-dp-rpc",
                        inst.name, "llmserve_vllm_dp_rpc_port")
                    slot["rpc"] += 1
            if connector in NIXL_LIKE:
                base = inv.integer(host, "llmserve_nixl_side_channel_port", 1) + slot["nixl"]
                member["nixl_side_channel_port"] = base
                for rank in range(local_dp):
                    ports.claim(host, base + rank, "nixl-side-channel", inst.name, "llmserve_nixl_side_channel_port")
                slot["nixl"] += local_dp
            inst.members.append(member)


def _omni_ports(inv, ports, instances):
    """omni-infer's formulas: P node_port = global_port_base + port_offset.P + kv_rank and api_port =
    base_api_port + port_offset.P + kv_rank; D node_port = global_port_base + port_offset.D and
    api_port = base_api_port + port_offset.D + node_rank, one API server (container) per device from there."""
    for inst in instances:
        role = "P" if inst.kind == "vllm_prefill" else "D"
        dp = sum(len(d) for d in inst.devices.values()) if role == "D" else 1
        for host in inst.hosts:
            offsets = inv.get(host, "port_offset") or {}
            try:
                offset = int(offsets.get(role, 0))
            except (AttributeError, TypeError, ValueError):
                inv.problem(host, "port_offset", "must map P and D to whole numbers, e.g. {P: 0, D: 100}, got %r"
                            % (offsets,))
                offset = 0
            rank = inv.integer(host, "kv_rank" if role == "P" else "node_rank", 0, default=0)
            # the inventory's own node_port/api_port (omni-infer writes the formulas there) win
            if inv.get(host, "node_port") is not None:
                node_port = inv.integer(host, "node_port", 1)
            else:
                node_port = inv.integer(host, "global_port_base", 1) + offset + (rank if role == "P" else 0)
            if inv.get(host, "api_port") is not None:
                api_port = inv.integer(host, "api_port", 1)
            else:
                api_port = inv.integer(host, "base_api_port", 1) + offset + rank
            address, devices = inv.address(host), inst.devices[host]
            if role == "P":
                # one container per host; the host at host_ip serves the API and the TP group's master port
                member = dict(host=host, address=address, headless=host != inst.master,
                              local_dp=1 if host == inst.master else 0, devices=devices)
                if host == inst.master:
                    if len(inst.hosts) > 1:
                        member["master_port"] = ports.claim(host, node_port, "vllm-master", inst.name, "node_port")
                    else:   # a single-node P opens no node_port; it stays held as omni-infer reserves it
                        member["node_port"] = ports.claim(host, node_port, "omni-node-port", inst.name, "node_port")
                    member["port"] = ports.claim(host, api_port, "vllm-api", inst.name, "api_port")
                inst.members.append(member)
                continue
            # D: one container per device, each its own API server and data-parallel rank
            for i, device in enumerate(devices):
                member = dict(host=host, address=address, headless=False, local_dp=1, devices=[device])
                if host == inst.master and i == 0:   # rank 0 serves the DP RPC port the other ranks dial
                    if dp > 1 and boolean(inv, inst.master, "llmserve_moe_model"):
                        member["dp_rpc_port"] = ports.claim(host, node_port, "vllm-dp-rpc", inst.name, "node_port")
                    else:
                        member["node_port"] = ports.claim(host, node_port, "omni-node-port", inst.name, "node_port")
                member["port"] = ports.claim(host, api_port + i, "vllm-api", inst.name, "api_port")
                inst.members.append(member)


def _connector_ports(inv, ports, instances):
    """Listeners a connector opens beside the API: Mooncake's bootstrap server, on each prefill API server
    (vLLM starts one per engine that serves the API, at VLLM_MOONCAKE_BOOTSTRAP_PORT); LLMDataDistCMgrConnector's
    workers, each at VLLM_ASCEND_LLMDD_RPC_PORT + local DP rank x TP + TP rank (vllm-ascend's formula; without
    data parallelism base + TP + TP rank), so each member gets max(local DP ranks, 2) x TP ports of its own."""
    slots, llmdd = {}, {}
    for inst in sorted(instances, key=lambda i: i.name):
        if _connector(inv, inst) == "LLMDataDistCMgrConnector":
            for member in inst.members:
                host = member["host"]
                base = llmdd.setdefault(host, inv.integer(host, "llmserve_llmdd_rpc_port", 1))
                member["llmdd_rpc_port"] = base
                for port in range(base, base + max(member["local_dp"], 2) * inst.tp):
                    ports.claim(host, port, "llmdatadist-rpc", inst.name, "llmserve_llmdd_rpc_port")
                llmdd[host] = port + 1
        if inst.side != "prefill" or _connector(inv, inst) != "MooncakeConnector":
            continue
        for member in inst.members:
            if "port" in member:
                host = member["host"]
                slot = slots.setdefault(host, 0)
                member["mooncake_bootstrap_port"] = ports.claim(
                    host, inv.integer(host, "llmserve_mooncake_bootstrap_port", 1) + slot, "mooncake-bootstrap",
                    inst.name, "llmserve_mooncake_bootstrap_port")
                slots[host] += 1


# ---------------------------------------------------------------- processes

def _kv_config(inv, inst, instances):
    connector = _connector(inv, inst)
    prefill_role, decode_role = KV_CONNECTORS.get(connector, ("kv_both", "kv_both"))
    config = dict(kv_connector=connector, kv_role=prefill_role if inst.side == "prefill" else decode_role)
    if connector == "ExampleConnector":
        config["kv_connector_extra_config"] = dict(shared_storage_path=inv.get(inst.master, "llmserve_kv_shared_path"))
    if connector == "LLMDataDistCMgrConnector":   # vllm-ascend's; its rank table is DISAGGREGATED_PREFILL_RANK_TABLE_PATH
        config.update(kv_buffer_device="npu", engine_id=inst.name,
                      kv_connector_module_path="vllm_ascend.distributed.llmdatadist_c_mgr_connector")
    if connector in PEER_SIZED:
        # the engine id names the instance, so adding an instance changes no running engine's id (omni-infer
        # numbers them kv_rank / PREFILL_POD_NUM; its older vLLM also took kv_rank and kv_parallel_size,
        # which vLLM 0.32 refuses). These connectors are told the peers' sizes: they change with the cluster.
        config.update(kv_buffer_device="npu", engine_id=inst.name)
        sizes = {}
        for other in instances:
            sizes.setdefault(other.side, dict(dp_size=sum(m["local_dp"] for m in other.members), tp_size=other.tp))
        if connector == "AscendHcclConnectorV1":
            config["kv_connector_extra_config"] = dict(kv_producer_dp_size=sizes["prefill"]["dp_size"],
                                                       kv_producer_pp_size=1)
        else:
            # vllm-ascend: kv_port at least 20000 + 1000 x NPUs per host, clear of AscendDirectTransport's ports
            most = max(len(d) for i in instances for d in i.devices.values())
            config.update(kv_port=str(inv.integer(inst.master, "llmserve_kv_port", 1, default=20000 + 1000 * most)),
                          kv_connector_extra_config=sizes)
    extra = inv.get(inst.master, "llmserve_kv_extra_config")
    if extra:
        config.setdefault("kv_connector_extra_config", {}).update(extra)
    return config


def _parallel_args(inst, member, start, dp):
    """The parallelism flags of one member: how it joins the other members of its instance."""
    head = inst.members[0]
    args = ["--tensor-parallel-size", str(inst.tp), "--pipeline-parallel-size", str(inst.pp)]
    if inst.layout == TP_NODES:
        if len(inst.hosts) > 1:   # vLLM's multi-node mp: one TP group over --nnodes hosts
            args += ["--nnodes", str(len(inst.hosts)), "--node-rank", str(inst.hosts.index(member["host"])),
                     "--master-addr", head["address"], "--master-port", str(head["master_port"])]
            if member["headless"]:
                args.append("--headless")
        return args
    if inst.layout == EXTERNAL_DP:
        # one vLLM per rank behind the front door; --data-parallel-rank implies external LB. vLLM refuses that
        # for a dense model ("Non-MoE models do not support external data parallel mode"): with
        # llmserve_moe_model false, the ranks run as independent engines (no DP RPC port was claimed then)
        if dp > 1 and "dp_rpc_port" in head:
            args += ["--data-parallel-size", str(dp), "--data-parallel-rank", str(start),
                     "--data-parallel-address", head["address"], "--data-parallel-rpc-port", str(head["dp_rpc_port"])]
        return args
    if dp > 1 or len(inst.members) > 1:
        args += ["--data-parallel-size", str(dp)]
    if len(inst.members) > 1:
        args += ["--data-parallel-size-local", str(member["local_dp"]),
                 "--data-parallel-address", head["address"],
                 "--data-parallel-rpc-port", str(head["dp_rpc_port"])]
        if member["headless"]:
            args += ["--headless", "--data-parallel-start-rank", str(start)]
    elif dp > 1:
        args += ["--data-parallel-rpc-port", str(head["dp_rpc_port"])]
    return args


def _engine_env(inv, inst, member, instances):
    """What every engine process needs to know beyond its argv: its address, devices, connector, NICs."""
    host, accelerator, connector = member["host"], inv.get(member["host"], "llmserve_accelerator"), _connector(inv, inst)
    env = {"VLLM_HOST_IP": member["address"]}
    env.update(device_env(inv, host, member["devices"]))
    if accelerator in ASCEND:
        env.update(ASCEND_ENV, HCCL_IF_IP=member["address"])
        # the rank tables the ranktable stage writes for this member (omni-infer's launch reads both)
        env.update(member_paths(str(inv.get(inst.master, "llmserve_config_dir")), inst.name, member["address"],
                                _host_devices(inst, host), len(inst.hosts)))
        if inst.layout != INTERNAL_DP:   # omni-infer's P/D/C inventory: what its launch scripts export
            decode = [m["address"] for i in instances if i.side == "decode" for m in i.members]
            env.update(OMNI_ENV, ROLE=inst.side, PREFILL_POD_NUM=str(sum(i.side == "prefill" for i in instances)),
                       GLOBAL_DECODE_SERVER_IP_LIST=",".join(dict.fromkeys(decode)),
                       LOCAL_DECODE_SERVER_IP_LIST=",".join(dict.fromkeys(decode)))
        if inst.side == "decode":
            env["HCCL_BUFFSIZE"] = "1000"
    if "llmdd_rpc_port" in member:
        env.update(VLLM_ASCEND_LLMDD_RPC_IP=member["address"], VLLM_ASCEND_LLMDD_RPC_PORT=str(member["llmdd_rpc_port"]),
                   DISAGGREGATED_PREFILL_RANK_TABLE_PATH=vllm_ascend_path(str(inv.get(inst.master, "llmserve_config_dir"))))
    nic = inv.get(host, "llmserve_network_interface")
    if nic:
        names = ("GLOO", "TP", "HCCL") if accelerator in ASCEND else ("GLOO", "NCCL")
        env.update({"%s_SOCKET_IFNAME" % name: str(nic) for name in names})
    if "nixl_side_channel_port" in member:
        env["VLLM_NIXL_SIDE_CHANNEL_HOST"] = member["address"]
        # vLLM adds the global DP rank (data_parallel_index): start below by this member's first rank
        env["VLLM_NIXL_SIDE_CHANNEL_PORT"] = str(member["nixl_side_channel_port"] - member["dp_start_rank"])
    # headless members of a multi-host prefill register with their master's bootstrap server
    bootstrap = member.get("mooncake_bootstrap_port", inst.members[0].get("mooncake_bootstrap_port"))
    if bootstrap:
        env["VLLM_MOONCAKE_BOOTSTRAP_PORT"] = str(bootstrap)
    if connector == "LMCacheConnectorV1":
        # P and D must hash prompts alike; LMCache reads its configuration (JSON is YAML) from this file
        env.update(LMCACHE_CONFIG_FILE=member["files"][0]["path"], LMCACHE_USE_EXPERIMENTAL="True",
                   PYTHONHASHSEED=str(inv.get(inst.master, "llmserve_pythonhashseed")))
    env.update({str(k): str(v) for k, v in (inv.get(inst.master, "llmserve_vllm_env") or {}).items()})
    return env


def _check_extra_args(inv, host, planned, extra):
    """An extra argument that repeats a flag the plan sets itself (a second --kv-transfer-config, --port) would win
    over the plan's in vLLM's parser and break what the plan promised (ports, the connector): say which variable
    sets it instead."""
    owned = {a.split("=", 1)[0] for a in planned if a.startswith("--")}
    for flag in [a.split("=", 1)[0] for a in extra if a.startswith("--")]:
        message = ("%s is set by the plan itself (from the llmserve_* variables, e.g. llmserve_kv_connector and "
                   "llmserve_kv_extra_config for --kv-transfer-config, llmserve_vllm_port for --port); remove it from "
                   "the extra arguments" % flag)
        # the same arguments given to every group are said once, of the first master
        if flag in owned:
            inv.once(host, "llmserve_vllm_extra_args", (flag, extra), message)


def _host_devices(inst, host):
    return [d for m in inst.members if m["host"] == host for d in m["devices"]]


def _processes(inv, inst, instances, door_host):
    """argv, env and container of each member: the roles render these, they compute nothing."""
    model = inv.get(inst.master, "llmserve_model")
    served = inv.get(inst.master, "llmserve_served_model_name")
    dp = sum(m["local_dp"] for m in inst.members)
    connector = _connector(inv, inst)
    kv = json.dumps(_kv_config(inv, inst, instances), sort_keys=True, separators=(",", ":")) if connector else None
    config_dir = str(inv.get(inst.master, "llmserve_config_dir"))
    start = 0
    for member in inst.members:
        host = member["host"]
        argv = ["vllm", "serve", str(model)]
        if served:
            argv += ["--served-model-name", str(served)]
        if not member["headless"]:
            argv += ["--host", member["address"], "--port", str(member["port"])]
        argv += _parallel_args(inst, member, start, dp)
        if kv:
            argv += ["--kv-transfer-config", kv]
        extra = [str(a) for a in inv.get(inst.master, "llmserve_vllm_extra_args") or []]
        _check_extra_args(inv, inst.master, argv, extra)
        argv += extra
        container = "llmserve-%s" % inst.name
        if inst.layout == EXTERNAL_DP:
            container += "-r%d" % start
        volumes = [str(v) for v in inv.get(inst.master, "llmserve_vllm_volumes") or []]
        shared = inv.get(inst.master, "llmserve_kv_shared_path")
        if connector == "ExampleConnector" and shared:
            volumes.append("%s:%s" % (shared, shared))
        files = []
        if connector == "LMCacheConnectorV1":
            files.append(dict(path="%s/%s.lmcache.yaml" % (config_dir, container),
                              content=json.dumps(inv.get(inst.master, "llmserve_lmcache_config"), indent=2,
                                                 sort_keys=True) + "\n"))
        volumes += ["%s:%s:ro" % (f["path"], f["path"]) for f in files]
        devices, mounts = ascend_devices(inv, host, [d for i in instances for d in i.devices.get(host, [])])
        if devices:
            volumes += mounts
            folder = table_dir(config_dir)
            volumes.append("%s:%s:ro" % (folder, folder))
        member.update(container=container, image=inv.get(inst.master, "llmserve_image"), volumes=volumes,
                      argv=argv, files=files, env_file="%s/%s.env" % (config_dir, container), device_nodes=devices,
                      device_requests=device_requests(inv, host, member["devices"]), log_options=log_options(inv, host),
                      dp_start_rank=0 if inst.layout == TP_NODES else start)
        member["env"] = _engine_env(inv, inst, member, instances)
        # a replica checks the front door's key itself (nginx passes Authorization on); vllm-router sends
        # an empty bearer token to prefill/decode engines, so those stay open on their private addresses
        member["secret_env"] = {}
        if inst.kind == "vllm_replica" and door_host and inv.get(door_host, "llmserve_api_key"):
            member["secret_env"]["VLLM_API_KEY"] = dict(variable="llmserve_api_key", host=door_host)
        if "port" in member:
            member["health_url"] = url(member["address"], member["port"], "/health")
        start += member["local_dp"]


def _entry(inst):
    for member in inst.members:
        member.update(instance=inst.name, role=inst.side)
    endpoints = [url(m["address"], m["port"]) for m in inst.members if "port" in m]
    return dict(name=inst.name, kind=inst.kind, hosts=list(inst.hosts), master=inst.master,
                tensor_parallel_size=inst.tp, pipeline_parallel_size=inst.pp,
                data_parallel_size=sum(m["local_dp"] for m in inst.members),
                members=inst.members, endpoints=endpoints)


def _front_door(inv, ports, entries, group):
    proxies = inv.groups.get(group, [])
    if len(proxies) != 1:
        inv.problem(None, group, "needs exactly one front-door host, has %d; put one host in the %s group"
                    % (len(proxies), group))
        return None
    host = proxies[0]
    if group == "proxy":
        port = ports.claim(host, inv.integer(host, "llmserve_proxy_port", 1), "front-door", "front-door",
                           "llmserve_proxy_port")
    else:
        if inv.get(host, "node_port") is not None:
            port = inv.integer(host, "node_port", 1)
        else:
            port = inv.integer(host, "proxy_port", 1) + inv.integer(host, "node_rank", 0, default=0)
        ports.claim(host, port, "front-door", "front-door", "proxy_port")
    address, door_url = inv.address(host), url(inv.address(host), port)
    retries = inv.integer(host, "llmserve_proxy_retries", 0)
    keyed = bool(inv.get(host, "llmserve_api_key"))
    model = str(inv.get(entries[0]["master"], "llmserve_served_model_name") or inv.get(entries[0]["master"], "llmserve_model"))
    door = dict(host=host, url=door_url, health_url=door_url + "/health", members=[], api_key=keyed, model=model)
    kind = inv.get(host, "llmserve_proxy_type")
    if kind not in PROXY_TYPES:
        inv.problem(host, "llmserve_proxy_type", "must be one of %s, got %r" % (", ".join(PROXY_TYPES), kind))
    if entries[0]["kind"] == "vllm_replica":
        door.update(kind="nginx", backends={"replica": [u for e in entries for u in e["endpoints"]]})
    elif kind == "omni-global-proxy":
        door.update(kind=kind, backends=_pd_backends(entries), kv_pairs=_kv_pairs(entries))
    else:
        backends = _pd_backends(entries)
        door["kv_pairs"] = _kv_pairs(entries)
        # with an API key, nginx checks it in front of the router (vllm-router 0.1.17 checks no client key)
        listen = ("127.0.0.1", ports.claim(host, inv.integer(host, "llmserve_proxy_router_port", 1), "router",
                                           "front-door", "llmserve_proxy_router_port")) if keyed else (address, port)
        metrics = ports.claim(host, inv.integer(host, "llmserve_proxy_metrics_port", 1), "front-door-metrics",
                              "front-door", "llmserve_proxy_metrics_port")
        door.update(kind="vllm-router", backends=backends, metrics_port=metrics)
        door["members"].append(_router(inv, host, entries, listen, metrics, retries, model))
        if not keyed:   # with a key, nginx's /health asks the router's /readiness
            door["health_url"] = door_url + READINESS
    if door["kind"] != "vllm-router" or keyed:
        door["members"].append(_nginx(inv, host, door, [address, port], retries, entries))
    return door


def _pd_backends(entries):
    backends = {"prefill": [], "decode": []}
    for entry in entries:
        backends.setdefault(entry["kind"][len("vllm_"):], []).extend(entry["endpoints"])
    return backends


def _kv_pairs(entries):
    """The prefill and decode endpoints the verify stage sends one prompt through each (prefill i with decode
    i, cycling the shorter pool): every endpoint of both pools in at least one pair."""
    pools = {kind: [dict(name=e["name"], url=u) for e in entries if e["kind"] == "vllm_" + kind for u in e["endpoints"]]
             for kind in ("prefill", "decode")}
    width = max(len(pools["prefill"]), len(pools["decode"])) if pools["prefill"] and pools["decode"] else 0
    return [dict(prefill=pools["prefill"][i % len(pools["prefill"])], decode=pools["decode"][i % len(pools["decode"])])
            for i in range(width)]


def _nginx(inv, host, door, listen, retries, entries):
    """nginx at the front door: least_conn over replicas, the API key check in front of vllm-router, or
    omni-infer's global proxy (reference/omni-infer.md §4): its prefill module sends each completion to a
    prefill server first (max_tokens 1), then to a decode server with the prefill's kv_transfer_params."""
    config = "%s/front-door/nginx.conf" % inv.get(host, "llmserve_config_dir")
    settings = dict(config=config, listen=listen, least_conn=door["kind"] == "nginx", tries=retries + 1, pd=None,
                    health_path=READINESS if door["kind"] == "vllm-router" else None,
                    max_fails=inv.integer(host, "llmserve_proxy_max_fails", 1),
                    fail_timeout=inv.integer(host, "llmserve_proxy_fail_timeout", 1),
                    api_key=dict(variable="llmserve_api_key", host=host) if door["api_key"] else None)
    if door["kind"] == "omni-global-proxy":
        image = inv.get(host, "llmserve_omni_proxy_image") or inv.get(host, "llmserve_image")
        settings.update(servers=[], pd=dict(
            prefill=_hostport(door["backends"]["prefill"]), decode=_hostport(door["backends"]["decode"]),
            module_dir=inv.get(host, "llmserve_omni_proxy_module_dir"),
            # its balancer weighs each server's load against the engines' own limit
            max_num_seqs={side: _max_num_seqs(entries, "vllm_" + side) for side in ("prefill", "decode")}))
        container, argv, mount = "llmserve-omni-proxy", ["nginx", "-c", config, "-g", "daemon off;"], config
    else:
        image = inv.get(host, "llmserve_nginx_image")
        upstream = door["backends"]["replica"] if door["kind"] == "nginx" else [
            url(*door["members"][0]["listen"])]
        settings.update(servers=_hostport(upstream))
        container, argv, mount = "llmserve-nginx", ["nginx", "-g", "daemon off;"], "/etc/nginx/nginx.conf"
    return dict(host=host, role="nginx", container=container, image=image, argv=argv,
                volumes=["%s:%s:ro" % (config, mount)], health_url=door["health_url"],
                log_options=log_options(inv, host), nginx=settings)


def _hostport(urls):
    return [u[len("http://"):] for u in urls]


def _max_num_seqs(entries, kind):
    """The engines' --max-num-seqs on one side (the last one given wins, as in vLLM's parser), else vLLM's 256."""
    # the engines' argv is not made when the inventory has problems: the front door's own are still found
    argv = next((m.get("argv") or [] for e in entries if e["kind"] == kind for m in e["members"] if "port" in m), [])
    value = 256
    for i, arg in enumerate(argv):
        if arg == "--max-num-seqs" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--max-num-seqs="):
            value = arg.split("=", 1)[1]
    return int(value) if str(value).isdigit() else 256   # vLLM itself refuses a --max-num-seqs that is no number


# vllm-router is ready when one prefill and one decode are healthy (src/routers/http/pd_router.rs 1616-1660); its
# /health answers 503 while any one backend is down (1283-1310), which a front door that routes around it is not
READINESS = "/readiness"


def _router(inv, host, entries, listen, metrics, retries, model):
    """vllm-router: its workers are the plan's API servers, so they always match the engines. In igw mode (the
    default) it starts with none and the front door registers them through its admin API (POST/DELETE /workers),
    which lets an upgrade or a scale-out take an engine out and put one in without restarting the router; in pd mode
    they are its arguments, and a changed pool restarts it (docs/deploy.md, Upgrade and scale)."""
    workers = [dict(url=url(m["address"], m["port"]), worker_type=e["kind"][len("vllm_"):], model_id=model,
                    instance=e["name"], host=m["host"])
               for e in entries for m in e["members"] if "port" in m]
    mooncake = any("mooncake_bootstrap_port" in m for e in entries for m in e["members"])
    mode = inv.get(host, "llmserve_proxy_router_mode") or ("pd" if mooncake else "igw")
    address = inv.address(host)
    common = ["--host", listen[0], "--port", str(listen[1]), "--prometheus-host", address,
              "--prometheus-port", str(metrics),
              "--health-check-interval-secs", str(inv.integer(host, "llmserve_proxy_health_check_interval", 1))]
    extra = [str(a) for a in inv.get(host, "llmserve_proxy_extra_args") or []]
    member = dict(host=host, role="router", container="llmserve-router", image=inv.get(host, "llmserve_proxy_image"),
                  listen=list(listen), url=url(*listen), health_url=url(*listen, path=READINESS), log_options=log_options(inv, host),
                  workers=workers, mode=mode)
    if mode == "igw":
        if mooncake:
            inv.problem(host, "llmserve_proxy_router_mode", "vllm-router 0.1.17 in igw mode sends no Mooncake bootstrap "
                        "data for workers added at runtime; set it to pd for MooncakeConnector")
        folder = "%s/front-door" % inv.get(host, "llmserve_config_dir")
        files = dict(script=folder + "/router_start.py", workers=folder + "/router_workers.json")
        # /workers must list exactly the plan's workers: their count, and each with its type and model
        expect = "^" + "".join('(?=.*"url":"%s","model_id":"%s"[^{}]*"worker_type":"%s")'
                               % (re.escape(w["url"]), re.escape(w["model_id"]), w["worker_type"]) for w in workers)
        member.update(argv=["python3", files["script"], files["workers"], "vllm-router", "--enable-igw"] + common + extra,
                      igw=files, volumes=["%s:%s:ro" % (folder, folder)],
                      checks=[dict(name="llmserve-router workers", url=url(*listen), path="/workers",
                                   expect=expect + '.*"total":%d[,}]' % len(workers),
                                   mismatch="it does not list exactly the plan's %d workers (%s)" % (
                                       len(workers), ", ".join("%s %s" % (w["worker_type"], w["url"]) for w in workers)))])
        return member
    argv = ["vllm-router", "--vllm-pd-disaggregation"]
    for entry in entries:
        for m in entry["members"]:
            if "port" in m:
                argv += ["--" + entry["kind"][len("vllm_"):], url(m["address"], m["port"])]
                if "mooncake_bootstrap_port" in m:
                    argv.append(str(m["mooncake_bootstrap_port"]))
    if mooncake:
        argv += ["--kv-connector", "mooncake"]
    argv += common + ["--health-check-endpoint", "/health",
                      "--health-failure-threshold", str(inv.integer(host, "llmserve_proxy_max_fails", 1)),
                      # a restarted router binds its port once one prefill and one decode answer; it asks each second
                      "--worker-startup-check-interval", "1"]
    argv += ["--retry-max-retries", str(retries)] if retries else ["--disable-retries"]
    member.update(argv=argv + extra)
    return member


def _omni_accelerator(inv):
    """An omni-infer host that lists its NPUs (ascend_rt_visible_devices) but no llmserve_accelerator runs on Ascend:
    A2 or A3 as its image's name says (omni-infer's images are named so, e.g. omni_infer-a3-arm), else ask. The C
    host on the machine of one of them is that machine."""
    unsaid = []
    engines = inv.groups.get("P", []) + inv.groups.get("D", [])
    for host in engines:
        if inv.hostvars.get(host, {}).get("llmserve_accelerator") is None and \
                inv.hostvars.get(host, {}).get("ascend_rt_visible_devices") is not None:
            generation = re.search(r"(?<![a-z0-9])a([23])(?![a-z0-9])", str(inv.get(host, "llmserve_image") or "").lower())
            if generation:
                inv.hostvars[host]["llmserve_accelerator"] = "ascend_a" + generation.group(1)
            else:
                unsaid.append(host)
    if unsaid:
        inv.problem(unsaid[0], "llmserve_accelerator", "is not set%s, and omni-infer's hosts list Ascend NPUs "
                    "(ascend_rt_visible_devices); say which, ascend_a2 or ascend_a3 (group_vars/all)"
                    % (" here nor on %s" % ", ".join(unsaid[1:]) if unsaid[1:] else ""))
    for host in inv.groups.get("C", []):
        same = [h for h in engines if inv.address(h) == inv.address(host)]
        if inv.hostvars.get(host, {}).get("llmserve_accelerator") is None and same:
            inv.hostvars[host]["llmserve_accelerator"] = inv.get(same[0], "llmserve_accelerator")


# omni-infer's playbook variables (its run_docker and run_server environment, reference/omni-infer.md §1) that name
# one of ours (LOG_PATH_IN_EXECUTOR, the controller's log folder, is read by fetch_log.yml)
OMNI_PLAYBOOK = {"MODEL_PATH": "llmserve_model", "DOCKER_IMAGE_ID": "llmserve_image",
                 "KV_CONNECTOR": "llmserve_kv_connector"}


def _omni_playbook(inv):
    """An omni-infer user's playbook variables, taken as omni-infer's playbook means them: the names above, the
    P and D engines' --max-model-len (MODEL_LEN_MAX_PREFILL/DECODE), LOG_PATH mounted into the engines and exported
    (as run_docker does), and DECODE_TENSOR_PARALLEL_SIZE, which the decode layout here fixes at 1."""
    for group, length in (("P", "MODEL_LEN_MAX_PREFILL"), ("D", "MODEL_LEN_MAX_DECODE"), ("C", None)):
        for host in inv.groups.get(group, []):
            hv = inv.hostvars.setdefault(host, {})
            for name, ours in OMNI_PLAYBOOK.items():
                if hv.get(name) is None:
                    continue
                if hv.get(ours) not in (None, hv[name]):
                    inv.once(host, name, (name, hv[name], hv[ours]), "is %r and %s is %r: both name the same thing; "
                             "keep one of them" % (hv[name], ours, hv[ours]))
                hv[ours] = hv[name]
            extra = list(hv.get("llmserve_vllm_extra_args") or [])
            if length and hv.get(length) is not None:
                if any(a.split("=", 1)[0] == "--max-model-len" for a in map(str, extra)):
                    inv.once(host, length, (length, tuple(extra)), "and a --max-model-len in llmserve_vllm_extra_args "
                             "both set the engines' length; keep one of them")
                hv["llmserve_vllm_extra_args"] = extra + ["--max-model-len", str(hv[length])]
            if group == "D" and hv.get("DECODE_TENSOR_PARALLEL_SIZE") not in (None, 1):
                inv.once(host, "DECODE_TENSOR_PARALLEL_SIZE", hv["DECODE_TENSOR_PARALLEL_SIZE"], "is %r, but decode "
                         "runs omni-infer's layout of one data-parallel rank per NPU, each with TP 1; set it to 1 or "
                         "leave it out" % hv["DECODE_TENSOR_PARALLEL_SIZE"])
            if hv.get("LOG_PATH") and group != "C":
                hv["llmserve_vllm_volumes"] = list(hv.get("llmserve_vllm_volumes") or []) + [
                    "%s:%s" % (hv["LOG_PATH"], hv["LOG_PATH"])]
                hv["llmserve_vllm_env"] = dict(hv.get("llmserve_vllm_env") or {}, LOG_PATH=hv["LOG_PATH"])


def plan(inv, ports):
    omni = any(inv.groups.get(g) for g in ("P", "D", "C"))
    if omni:
        _omni_playbook(inv)
        _omni_accelerator(inv)
    door_group = "C" if omni else "proxy"
    instances = _omni_instances(inv) if omni else _native_instances(inv)
    _check(inv, instances, door_group)
    (_omni_ports if omni else _native_ports)(inv, ports, instances)
    _connector_ports(inv, ports, instances)
    doors = inv.groups.get(door_group, [])
    if not inv.problems:
        for inst in instances:
            _processes(inv, inst, instances, doors[0] if len(doors) == 1 else None)
    entries = [_entry(i) for i in instances]
    return dict(instances=entries, front_door=_front_door(inv, ports, entries, door_group) if entries else None)
