# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""MindIE Motor/Service prefill/decode: Servers, the Controller and the Coordinator, their ports and config files.

Inventory model:
- group ``mindie_controller``: exactly one host, the MindIE Controller (decides which Server is prefill and
  which decode, at run time, and tells the Coordinator).
- group ``mindie_coordinator``: exactly one host, the Coordinator: the data-plane entry point, the front door.
- group ``mindie_server``: the Servers (MindIE LLM). A host is one Server instance unless hosts share
  ``llmserve_instance``; then they are one instance spanning those hosts (the first in inventory order is the
  master; ``multiNodesInferEnabled`` on, ``multiNodesInferPort`` open on each member, and the HCCL rank table
  of the instance in the plan). PD needs at least two instances, all with the same NPU count and host count,
  because the Controller may make any of them prefill or decode.
- One inventory host may sit in several of these groups (e.g. Controller and Coordinator on one machine, or
  both on a Server host): put the same host in each group. Two inventory hosts at one address are refused by
  the core.

Variables: ``llmserve_devices`` (a Server host's NPUs, "0-15"; 0-7 on ascend_a2, 0-15 on ascend_a3),
``llmserve_accelerator`` (ascend_a2 or ascend_a3 on Server hosts), ``llmserve_model`` (weights path inside the
container, read on each instance's master), ``llmserve_served_model_name`` (``modelName``, default the model
path's last part), ``llmserve_image`` (one MindIE image, read on each component's host),
``llmserve_mindie_p_rate`` / ``llmserve_mindie_d_rate`` (``default_p_rate``/``default_d_rate``, 0/0 = the
Controller decides), ``llmserve_mindie_env`` (extra environment for every container). Ports, with MindIE's
defaults: ``llmserve_mindie_server_port`` 1025, ``..._server_management_port`` 1026, ``..._server_metrics_port``
1027, ``..._server_inter_comm_port`` 1121, ``..._server_multi_nodes_infer_port`` 1120,
``llmserve_mindie_coordinator_predict_port`` 1025, ``..._manage_port`` 1026, ``..._external_port`` 1028,
``..._status_port`` 1029, ``llmserve_mindie_controller_port`` (``http_server.port``) 1026,
``llmserve_mindie_controller_alarm_port`` 1027, and ``llmserve_mindie_controller_cluster_port`` 8899 (the port of
MindCluster's ClusterD that the Controller calls: not a listener, never moved). There is no Coordinator alarm
port of its own: the Coordinator's ``alarm_port`` is the Controller's alarm port, read from the plan
(``llmserve_mindie_coordinator_alarm_port``, if set, must equal it).

Co-location rule: MindIE's defaults collide when components share a machine (1026 and 1027 are used by all
three). On a machine (address) running more than one MindIE component, every port left at its default moves by
the component's offset: the Server keeps MindIE's defaults (+0), the Coordinator moves by +10 (1035, 1036, 1038,
1039) and the Controller by +20 (1046, 1047). A machine with one component keeps MindIE's defaults. A port set in
the inventory is never moved; if it collides with another component's port on the machine the plan says so,
naming the variable. Ports depend only on the components on the machine, so adding Servers moves no port.
Every component that must know another's port reads it from the plan: the Coordinator's ``alarm_port`` is the
Controller's ``controller_alarm_port``; the Controller's ``mindie_ms_coordinator_port`` /
``mindie_ms_coordinator_external_port`` are the Coordinator's manage / external ports; the Controller's
``mindie_server_*`` defaults are the first Server's ports and every Server's own ports are written into the
global rank table (``predict_port``, ``mgmt_port``, ``metric_port``, ``inter_comm_port``).

What the plan gives each member (roles render it, they compute nothing): container, image, devices (host NPU
numbers, for ``--device /dev/davinciN``), ports, env, argv, ``config_file`` (path inside the container) and
``config``: the keys of config.json / ms_controller.json / ms_coordinator.json that carry ports, IPs, device ids
and the PD mode, to merge over the image's shipped file (``ModelConfig`` is a one-element list whose dict merges
into the shipped ``ModelConfig[0]``). The Controller member also carries the global rank table; a
multi-host Server instance carries its HCCL rank table. In both, ``device_ip`` (and ``super_device_id`` on A3) is
null: the ranktable stage fills it from each host (``hccn_tool -i N -ip -g``, ``npu-smi info -t spod-info``).
TLS is off in what the plan renders, so the health URLs are plain http. ``health`` gives the URLs of MindIE's
own probes (probe.sh): startup, readiness, liveness.
"""

from __future__ import annotations

import posixpath
import re

from ._cluster_util import ascend_devices, boolean, log_options, one_value, strings, url
from ._planner import ASCEND_DEVICES, DEFAULTS, MAX_PORT

GROUPS = ("mindie_server", "mindie_controller", "mindie_coordinator")
SERVER, CONTROLLER, COORDINATOR = "mindie_server", "mindie_controller", "mindie_coordinator"
MIN_PORT = 1024                                          # MindIE refuses ports below 1024
MAX_SERVERS_PER_GROUP = 96
MAX_RATE = 16
CONF_DIR = "/llmserve/mindie"                            # the roles mount the host's config directory here
CONF = {SERVER: CONF_DIR + "/config.json", CONTROLLER: CONF_DIR + "/ms_controller.json",
        COORDINATOR: CONF_DIR + "/ms_coordinator.json"}
GLOBAL_RANK_TABLE = CONF_DIR + "/global_rank_table.json"
HCCL_RANK_TABLE = CONF_DIR + "/hccl_rank_table.json"
# per component: (key in the plan, variable, service name); defaults in roles/defaults/meta/argument_specs.yml
PORTS = {
    SERVER: (("port", "llmserve_mindie_server_port", "mindie-server"),
             ("management_port", "llmserve_mindie_server_management_port", "mindie-server-management"),
             ("metrics_port", "llmserve_mindie_server_metrics_port", "mindie-server-metrics"),
             ("inter_comm_port", "llmserve_mindie_server_inter_comm_port", "mindie-server-inter-comm"),
             ("multi_nodes_infer_port", "llmserve_mindie_server_multi_nodes_infer_port", "mindie-server-multi-nodes-infer")),
    CONTROLLER: (("port", "llmserve_mindie_controller_port", "mindie-controller"),
                 ("alarm_port", "llmserve_mindie_controller_alarm_port", "mindie-controller-alarm")),
    COORDINATOR: (("predict_port", "llmserve_mindie_coordinator_predict_port", "mindie-coordinator-predict"),
                  ("manage_port", "llmserve_mindie_coordinator_manage_port", "mindie-coordinator-manage"),
                  ("external_port", "llmserve_mindie_coordinator_external_port", "mindie-coordinator-external"),
                  ("status_port", "llmserve_mindie_coordinator_status_port", "mindie-coordinator-status")),
}
# how far a component's default ports move when its machine runs another MindIE component too
OFFSETS = {SERVER: 0, COORDINATOR: 10, CONTROLLER: 20}
CONTROLLER_TLS = ("request_coordinator", "request_server", "http_server", "cluster", "etcd_server", "alarm",
                  "external_coordinator", "ccae")
COORDINATOR_TLS = ("controller_server", "request_server", "mindie_client", "mindie_mangment", "external", "status",
                   "etcd_server", "alarm_client")
# what boot.sh exports for a Server (MindIE-Motor deploy_scripts/boot_helper/boot.sh)
SERVER_ENV = {"GRPC_POLL_STRATEGY": "poll", "HCCL_RDMA_RETRY_CNT": "7", "HCCL_RDMA_TIMEOUT": "18",
              "HCCL_EXEC_TIMEOUT": "60"}
# where MindIE's images keep their programs and shipped files: the whl images (binaries "current") and the
# older run-package images (binaries "legacy": mindieservice_daemon, ms_controller, ms_coordinator)
MOTOR_HOME = "/usr/local/lib/python3.11/site-packages/mindie_motor"
LLM_HOME = {"current": "/usr/local/lib/python3.11/site-packages/mindie_llm",
            "legacy": "/usr/local/Ascend/mindie/latest/mindie-service"}
BINARIES = {"current": ("mindie_llm_server", "mindie_motor_controller", "mindie_motor_coordinator"),
            "legacy": ("mindieservice_daemon", "ms_controller", "ms_coordinator")}
HARDWARE_TYPES = ("800I A2(32G)", "800I A2(64G)")
TLS_SUBDIR = "security/llmserve"      # under the Server's home: its TLS paths are relative to it


class Component:
    """One MindIE process group: a Server instance (one or more hosts), the Controller or the Coordinator."""

    def __init__(self, kind, name, hosts):
        self.kind, self.name, self.hosts = kind, name, hosts
        self.devices = {}       # host -> [NPU numbers]
        self.ports = {}         # host -> {key: port}
        self.members = []

    @property
    def master(self):
        return self.hosts[0]

    @property
    def world_size(self):
        return sum(len(d) for d in self.devices.values())


# ---------------------------------------------------------------- inventory

def _single(inv, group, what):
    hosts = inv.groups.get(group, [])
    if not hosts:
        inv.problem(None, group, "has no host; put the host that runs the MindIE %s in the %s group" % (what, group))
    elif len(hosts) > 1:
        inv.problem(None, group, "needs exactly one host (the MindIE %s), has %d (%s); keep one"
                    % (what, len(hosts), ", ".join(hosts)))
    return hosts[0] if hosts else None


def _servers(inv):
    by_name = {}
    for host in inv.groups.get(SERVER, []):
        by_name.setdefault("mindie-server-%s" % (inv.get(host, "llmserve_instance") or host), []).append(host)
    servers = []
    for name, hosts in by_name.items():
        comp = Component(SERVER, name, hosts)
        for host in hosts:
            comp.devices[host] = _devices(inv, host)
        servers.append(comp)
    return servers


def _devices(inv, host):
    devices = inv.devices(host, "llmserve_devices")
    accelerator = inv.get(host, "llmserve_accelerator")
    if accelerator not in ASCEND_DEVICES:
        inv.problem(host, "llmserve_accelerator", "MindIE Servers run on Ascend NPUs; set ascend_a2 or ascend_a3, "
                    "got %r" % (accelerator,))
    return devices   # Inventory.devices refused a device beyond the host's NPUs


def _check(inv, servers, controller, coordinator):
    if not servers:
        inv.problem(None, SERVER, "has no host; add the MindIE Server hosts (at least two: one becomes prefill, "
                    "one decode)")
    elif len(servers) < 2:
        inv.problem(servers[0].master, SERVER, "PD needs at least two Server instances (the Controller makes one "
                    "prefill and one decode), found only %s; add a host to mindie_server or give hosts different "
                    "llmserve_instance values" % servers[0].name)
    first = servers[0] if servers else None
    for comp in servers[1:]:
        if comp.world_size != first.world_size:
            inv.problem(comp.master, "llmserve_devices", "%s has %d NPUs but %s has %d; any Server may become "
                        "prefill or decode and MindIE needs the same NPU count on both, so give every instance "
                        "the same number" % (comp.name, comp.world_size, first.name, first.world_size))
        if len(comp.hosts) != len(first.hosts):
            inv.problem(comp.master, "llmserve_instance", "%s spans %d hosts but %s spans %d; give every Server "
                        "instance the same number of hosts" % (comp.name, len(comp.hosts), first.name,
                                                               len(first.hosts)))
    accelerators = {}
    for comp in servers:
        if len(comp.hosts) > MAX_SERVERS_PER_GROUP:
            inv.problem(comp.master, "llmserve_instance", "%s spans %d hosts; MindIE takes at most %d"
                        % (comp.name, len(comp.hosts), MAX_SERVERS_PER_GROUP))
        for host in comp.hosts:
            acc = inv.get(host, "llmserve_accelerator")
            if acc in ASCEND_DEVICES:
                accelerators.setdefault(acc, host)
    if len(accelerators) > 1:
        host = accelerators["ascend_a3"]
        inv.problem(host, "llmserve_accelerator", "ascend_a3 here but ascend_a2 on %s; one MindIE image serves one "
                    "kind (an A3 image core-dumps on A2), so keep the Servers on one kind"
                    % accelerators["ascend_a2"])
    models = {}
    for comp in servers:
        model = inv.required(comp.master, "llmserve_model", "model weights path inside the container, e.g. "
                             "/models/Qwen3-32B")
        if model not in (None, ""):
            models.setdefault(str(model), comp.master)
    if len(models) > 1:
        (model, host), (other, other_host) = list(models.items())[:2]
        inv.problem(other_host, "llmserve_model", "%r here but %r on %s; prefill and decode must serve the same "
                    "model" % (other, model, host))
    hosts = [c.master for c in servers] + [h for h in (controller, coordinator) if h]
    for host in sorted(set(hosts), key=hosts.index):
        inv.required(host, "llmserve_image", "MindIE image, e.g. registry:5000/mindie:2.1.RC1-800I-A3-py311")
        env = inv.get(host, "llmserve_mindie_env")
        if not isinstance(env, dict):
            inv.problem(host, "llmserve_mindie_env", "must be a mapping of variable names to values, got %r" % (env,))
        elif "MINDIE_MS_COORDINATOR_PORT" in env:
            inv.problem(host, "llmserve_mindie_env", "MINDIE_MS_COORDINATOR_PORT is read by the Controller and "
                        "breaks its link to the Coordinator; remove it (the plan sets the Coordinator's ports)")
    if controller:
        _check_rates(inv, controller, len(servers))


def _check_rates(inv, host, instances):
    p_rate = inv.integer(host, "llmserve_mindie_p_rate", 0)
    d_rate = inv.integer(host, "llmserve_mindie_d_rate", 0)
    if (p_rate == 0) != (d_rate == 0):
        inv.problem(host, "llmserve_mindie_p_rate", "p rate %d and d rate %d: set both llmserve_mindie_p_rate and "
                    "llmserve_mindie_d_rate, or neither (0/0 lets the Controller decide)" % (p_rate, d_rate))
    elif p_rate + d_rate > MAX_RATE:
        inv.problem(host, "llmserve_mindie_p_rate", "p rate + d rate is %d; MindIE allows at most %d"
                    % (p_rate + d_rate, MAX_RATE))
    elif p_rate and instances and p_rate + d_rate > instances:
        inv.problem(host, "llmserve_mindie_p_rate", "p rate %d + d rate %d asks for %d Server instances but "
                    "mindie_server has %d; lower the rates or add Servers" % (p_rate, d_rate, p_rate + d_rate,
                                                                              instances))


# ---------------------------------------------------------------- ports

def _pinned(inv, host, variable):
    """The port the inventory sets for this variable, or None when it leaves MindIE's default."""
    if variable not in inv.hostvars.get(host, {}):
        return None
    before = len(inv.problems)
    port = inv.integer(host, variable, 1)
    return -1 if len(inv.problems) > before else port


def _plan_ports(inv, ports, components):
    """Defaults move by the component's offset on machines running several components; pinned ports never move."""
    kinds = {}
    for comp in components:
        for host in comp.hosts:
            kinds.setdefault(inv.address(host), set()).add(comp.kind)
    taken = {}      # address -> port -> (service, variable, host, pinned)
    for comp in components:
        for host in comp.hosts:
            address = inv.address(host)
            offset = OFFSETS[comp.kind] if len(kinds[address]) > 1 else 0
            comp.ports[host] = got = {}
            for key, variable, service in PORTS[comp.kind]:
                if key == "multi_nodes_infer_port" and len(comp.hosts) == 1:
                    continue
                pinned = _pinned(inv, host, variable)
                if pinned == -1:
                    continue        # not a number: already reported
                port = got[key] = DEFAULTS[variable] + offset if pinned is None else pinned
                if not MIN_PORT <= port <= MAX_PORT:
                    inv.problem(host, variable, "port %d of %s is outside %d-%d, the ports MindIE accepts"
                                % (port, service, MIN_PORT, MAX_PORT))
                    continue
                mine = (service, variable, host, pinned is not None)
                other = taken.setdefault(address, {}).get(port)
                if other:
                    _collision(inv, port, mine, other)
                    continue
                taken[address][port] = mine
                ports.claim(host, port, service, comp.name, variable)


def _collision(inv, port, mine, other):
    """Two MindIE listeners on one machine want one port: blame the one the inventory pinned."""
    if other[3] and not mine[3]:
        mine, other = other, mine
    service, variable, host, pinned = mine
    o_service, o_variable, o_host = other[:3]
    where = "" if o_host == host else " on %s" % o_host
    fix = ("choose another port, or remove %s so llmserve gives co-located MindIE components separate ports"
           % variable if pinned else "set %s to a free port" % variable)
    inv.problem(host, variable, "port %d of %s collides with %s (%s%s) on the same machine; %s"
                % (port, service, o_service, o_variable, where, fix))


def _check_alarm(inv, controller, coordinator):
    """The Coordinator reports alarms to the Controller's alarm port: one value, owned by the Controller."""
    variable = "llmserve_mindie_coordinator_alarm_port"
    if variable not in inv.hostvars.get(coordinator.master, {}):
        return
    want = controller.ports[controller.master].get("alarm_port")
    got = inv.get(coordinator.master, variable)
    if want is not None and str(got) != str(want):
        inv.problem(coordinator.master, variable, "is %s but the Controller's alarm port is %d; the Coordinator "
                    "reports to the Controller's port, so remove this variable (set llmserve_mindie_controller_"
                    "alarm_port to move both)" % (got, want))


# ---------------------------------------------------------------- members

def _settings(inv, hosts, lead):
    """What every MindIE container of the cluster shares, read on the Controller's host."""
    for name, why in (("llmserve_mindie_binaries", "one MindIE generation runs the cluster"),
                      ("llmserve_mindie_tls", "the components talk to each other, so TLS is on for all or none"),
                      ("llmserve_mindie_user", "the components share files, so they run as one user")):
        one_value(inv, hosts, name, lead, why)
    binaries = str(inv.get(lead, "llmserve_mindie_binaries"))
    if binaries not in BINARIES:
        inv.problem(lead, "llmserve_mindie_binaries", "%r is not one of %s (current: mindie_llm_server and "
                    "mindie_motor_*; legacy: mindieservice_daemon, ms_controller, ms_coordinator)"
                    % (binaries, ", ".join(BINARIES)))
        binaries = "current"
    user = inv.get(lead, "llmserve_mindie_user")
    if user not in (None, "") and not re.match(r"^\d+:\d+$", str(user)):
        inv.problem(lead, "llmserve_mindie_user", "%r is not UID:GID in numbers (MindIE checks that its files belong "
                    "to the user it runs as, so the role makes them theirs), e.g. 1001:1001" % (user,))
        user = None
    return dict(binaries=binaries, tls=boolean(inv, lead, "llmserve_mindie_tls"), user=str(user) if user else None)


def _runtime(inv, host, ctx, server=False):
    """Where a component's files are on its host and in its container, its user, volumes and TLS files.
    The host folder <llmserve_config_dir>/mindie is mounted read-only at CONF_DIR; its tls/ subfolder (a key
    and certificate of the host, the cluster's CA) also under the Server's home, where a Server looks for them."""
    folder = "%s/mindie" % inv.get(host, "llmserve_config_dir")
    volumes = ["%s:%s:ro" % (folder, CONF_DIR)]
    tls = None
    if ctx["tls"]:
        tls = dict(dir=folder + "/tls", ca=folder + "/tls/ca.pem", cert=folder + "/tls/cert.pem",
                   key=folder + "/tls/key.pem", address=inv.address(host))
        if server:
            volumes.append("%s:%s/%s:ro" % (tls["dir"], LLM_HOME[ctx["binaries"]], TLS_SUBDIR))
    volumes += strings(inv, host, "llmserve_mindie_volumes")
    return dict(host_dir=folder, user=ctx["user"], volumes=volumes, tls=tls, log_options=log_options(inv, host),
                working_dir=LLM_HOME[ctx["binaries"]] if server else MOTOR_HOME)


def _files(runtime, name, shipped, config, ctx):
    """The component's own file and http_client_ctl.json (MindIE's probes): each the image's shipped file
    with the plan's keys merged over it (filter llmserve.cluster.mindie_config)."""
    client = {"tls_enable": ctx["tls"], "cert": _tls_items(ctx["tls"])}
    return [dict(path="%s/%s" % (runtime["host_dir"], name), shipped=shipped, config=config),
            dict(path="%s/http_client_ctl.json" % runtime["host_dir"], shipped=MOTOR_HOME + "/conf/http_client_ctl.json",
                 config=client)]


def _tls_items(on):
    """A Motor TLS item: the host's certificate and key in the mounted folder. tls_passwd names MindIE's
    KMC-encrypted key password; the role's keys have none (see docs/mindie.md)."""
    tls = CONF_DIR + "/tls/"
    return dict(ca_cert=tls + "ca.pem" if on else "", tls_cert=tls + "cert.pem" if on else "",
                tls_key=tls + "key.pem" if on else "", tls_passwd="", tls_crl="")


def _motor_tls(names, on):
    config = {}
    for name in names:
        config["%s_tls_enable" % name] = on
        config["%s_tls_items" % name] = _tls_items(on)
    return config


def _server_tls(on, multi):
    """config.json's TLS keys: paths relative to the Server's home (TLS_SUBDIR is mounted there)."""
    d = TLS_SUBDIR + "/"
    server = {"httpsEnabled": on, "interCommTLSEnabled": on}
    backend = {"interNodeTLSEnabled": on and multi}
    if on:
        server.update(tlsCaPath=d, tlsCaFile=["ca.pem"], tlsCert=d + "cert.pem", tlsPk=d + "key.pem",
                      tlsCrlPath=d, tlsCrlFiles=[])
        for prefix in ("management", "metrics"):
            server.update({prefix + "TlsCaFile": ["ca.pem"], prefix + "TlsCert": d + "cert.pem",
                           prefix + "TlsPk": d + "key.pem", prefix + "TlsCrlPath": d, prefix + "TlsCrlFiles": []})
        server.update(interCommTlsCaPath=d, interCommTlsCaFiles=["ca.pem"], interCommTlsCert=d + "cert.pem",
                      interCommPk=d + "key.pem", interCommTlsCrlPath=d, interCommTlsCrlFiles=[])
        if multi:
            backend.update(interNodeTlsCaPath=d, interNodeTlsCaFiles=["ca.pem"], interNodeTlsCert=d + "cert.pem",
                           interNodeTlsPk=d + "key.pem", interNodeTlsCrlPath=d, interNodeTlsCrlFiles=[])
    return server, backend


def _env(inv, host, base):
    env = dict(base)
    env["MINDIE_LOG_TO_STDOUT"] = "1"
    # MindIE's probes (http_client_ctl) read their TLS settings here
    env["MINDIE_UTILS_HTTP_CLIENT_CTL_CONFIG_FILE_PATH"] = CONF_DIR + "/http_client_ctl.json"
    env.update({str(k): str(v) for k, v in (inv.get(host, "llmserve_mindie_env") or {}).items()})
    return env


def _server_members(inv, comp, accelerator, ctx):
    model = str(inv.get(comp.master, "llmserve_model"))
    served = inv.get(comp.master, "llmserve_served_model_name") or posixpath.basename(model.rstrip("/"))
    multi = len(comp.hosts) > 1
    tls_server, tls_backend = _server_tls(ctx["tls"], multi)
    binary = BINARIES[ctx["binaries"]][0]
    rank = 0
    for host in comp.hosts:
        address, got, devices = inv.address(host), comp.ports[host], comp.devices[host]
        backend = {"npuDeviceIds": [list(range(len(devices)))], "multiNodesInferEnabled": multi,
                   "ModelDeployConfig": {"ModelConfig": [{"modelName": served, "modelWeightPath": model,
                                                          "worldSize": comp.world_size, "tp": comp.world_size}]}}
        backend.update(tls_backend)
        if multi:
            backend["multiNodesInferPort"] = got["multi_nodes_infer_port"]
        config = {"ServerConfig": dict({"ipAddress": address, "managementIpAddress": address, "port": got["port"],
                                        "managementPort": got["management_port"], "metricsPort": got["metrics_port"],
                                        "interCommPort": got["inter_comm_port"], "inferMode": "dmi"}, **tls_server),
                  "BackendConfig": backend}
        env = dict(SERVER_ENV, MIES_CONTAINER_IP=address, MIES_CONTAINER_MANAGEMENT_IP=address)
        if ctx["binaries"] == "legacy":     # mindieservice_daemon takes no argument
            env["MIES_CONFIG_JSON_PATH"] = CONF[SERVER]
        if multi:
            env.update(RANK_TABLE_FILE=HCCL_RANK_TABLE, MASTER_IP=inv.address(comp.master))
        runtime = _runtime(inv, host, ctx, server=True)
        ready = url(address, got["management_port"], "/v2/health/ready", ctx["tls"])
        devs = [dict(device_id=str(d), device_ip=None, device_logical_id=str(i), rank_id=str(rank + i))
                for i, d in enumerate(devices)]
        if accelerator == "ascend_a3":
            for dev in devs:
                dev["super_device_id"] = None
        entry = dict(server_id=address, server_ip=address, predict_port=str(got["port"]),
                     mgmt_port=str(got["management_port"]), metric_port=str(got["metrics_port"]),
                     inter_comm_port=str(got["inter_comm_port"]), device=devs)
        if ctx["hardware"]:
            entry["hardware_type"] = ctx["hardware"][host]
        device_nodes, mounts = ascend_devices(inv, host, devices)
        runtime["volumes"] += mounts
        comp.members.append(dict(
            runtime, host=host, address=address, container="llmserve-%s" % comp.name, role="server",
            image=inv.get(comp.master, "llmserve_image"), devices=devices, device_nodes=device_nodes,
            port=got["port"], ports=dict(got), rank_ids=list(range(rank, rank + len(devices))),
            argv=[binary, "--config-file", CONF[SERVER]] if ctx["binaries"] == "current" else [binary],
            env=_env(inv, comp.master, env), config_file=CONF[SERVER], config=config,
            files=_files(runtime, "config.json", LLM_HOME[ctx["binaries"]] + "/conf/config.json", config, ctx),
            health=dict(startup=ready, readiness=ready, liveness=ready), health_url=ready,
            rank_table_entry=entry))
        rank += len(devices)


def _hardware(inv, servers):
    """Heterogeneous mode: every Server host names its hardware_type, or none does."""
    hosts = [h for comp in servers for h in comp.hosts]
    given = {h: inv.get(h, "llmserve_mindie_hardware_type") for h in hosts if inv.get(h, "llmserve_mindie_hardware_type")}
    for host, value in given.items():
        if value not in HARDWARE_TYPES:
            inv.problem(host, "llmserve_mindie_hardware_type", "%r is not one MindIE knows (%s)"
                        % (value, ", ".join(HARDWARE_TYPES)))
    missing = [h for h in hosts if h not in given]
    if given and missing:
        inv.problem(missing[0], "llmserve_mindie_hardware_type", "is not set, but %s sets it: heterogeneous mode "
                    "needs the hardware type of every Server host" % sorted(given)[0])
    return {h: str(v) for h, v in given.items()}


def _rank_table(inv, servers, controller, coordinator, accelerator):
    """MindIE's global rank table: group 0 the Coordinator, 1 the Controller, Servers from 2 (one group for
    single-host instances, one group per instance when instances span hosts)."""
    def one(gid, comp):
        address = inv.address(comp.master)
        return dict(group_id=gid, server_count="1", server_list=[dict(server_id=address, server_ip=address)])
    groups = [one("0", coordinator), one("1", controller)]
    if all(len(s.hosts) == 1 for s in servers):
        entries = [m["rank_table_entry"] for s in servers for m in s.members]
        groups.append(dict(group_id="2", server_count=str(len(entries)), server_list=entries))
    else:
        for gid, comp in enumerate(servers, 2):
            groups.append(dict(group_id=str(gid), server_count=str(len(comp.members)),
                               server_list=[m["rank_table_entry"] for m in comp.members]))
    if accelerator == "ascend_a3":
        for group in groups[2:]:
            group["super_pod_list"] = None      # filled by the ranktable stage from npu-smi, like super_device_id
    return {"version": "1.2" if accelerator == "ascend_a3" else "1.0", "status": "completed",
            "server_group_list": groups}


def _hccl_rank_table(comp, accelerator):
    """The per-instance HCCL rank table a multi-host Server reads (RANK_TABLE_FILE); rank ids are global."""
    servers = [dict(server_id=m["address"], container_ip=m["address"],
                    device=[{k: d[k] for k in ("device_id", "device_ip", "rank_id", "super_device_id") if k in d}
                            for d in m["rank_table_entry"]["device"]]) for m in comp.members]
    table = {"version": "1.0", "server_count": str(len(servers)), "status": "completed", "server_list": servers}
    if accelerator == "ascend_a3":
        for server in servers:
            server["host_ip"] = server["server_id"]
        table.update(version="1.2", super_pod_list=None)
    return table


def _controller_member(inv, controller, coordinator, servers, accelerator, ctx):
    host = controller.master
    address, got = inv.address(host), controller.ports[host]
    first = servers[0].ports[servers[0].master]
    coord = coordinator.ports[coordinator.master]
    multi = any(len(s.hosts) > 1 for s in servers)
    multi_config = {"multi_node_infer_enable": multi}
    if multi:
        multi_config.update(p_node_config=dict(node_machine_num=len(servers[0].hosts)),
                            d_node_config=dict(node_machine_num=len(servers[0].hosts)))
    config = {"deploy_mode": "pd_separate", "global_rank_table_file_path": GLOBAL_RANK_TABLE,
              "default_p_rate": inv.integer(host, "llmserve_mindie_p_rate", 0),
              "default_d_rate": inv.integer(host, "llmserve_mindie_d_rate", 0), "is_heterogeneous": bool(ctx["hardware"]),
              "http_server": {"ip": address, "port": got["port"]}, "controller_alarm_port": got["alarm_port"],
              "cluster_port": inv.integer(host, "llmserve_mindie_controller_cluster_port", 1),
              "mindie_server_port": first["port"], "mindie_server_control_port": first["management_port"],
              "mindie_server_metric_port": first["metrics_port"],
              "mindie_ms_coordinator_port": coord["manage_port"],
              "mindie_ms_coordinator_external_port": coord["external_port"],
              "multi_node_infer_config": multi_config, "tls_config": _motor_tls(CONTROLLER_TLS, ctx["tls"])}
    env = {"GLOBAL_RANK_TABLE_FILE_PATH": GLOBAL_RANK_TABLE, "MINDIE_MS_CONTROLLER_CONFIG_FILE_PATH": CONF[CONTROLLER],
           "POD_IP": address}
    runtime = _runtime(inv, host, ctx)
    health = url(address, got["port"], "/v1/health", ctx["tls"])
    controller.members.append(dict(
        runtime, host=host, address=address, container="llmserve-%s" % controller.name, role="controller",
        image=inv.get(host, "llmserve_image"), devices=[], port=got["port"], ports=dict(got),
        argv=[BINARIES[ctx["binaries"]][1]], env=_env(inv, host, env), config_file=CONF[CONTROLLER], config=config,
        files=_files(runtime, "ms_controller.json", MOTOR_HOME + "/conf/ms_controller.json", config, ctx),
        health=dict(startup=url(address, got["port"], "/v1/startup", ctx["tls"]), readiness=health, liveness=health),
        health_url=health, rank_table_file=GLOBAL_RANK_TABLE,
        rank_table_path="%s/global_rank_table.json" % runtime["host_dir"],
        rank_table=_rank_table(inv, servers, controller, coordinator, accelerator)))


def _coordinator_member(inv, coordinator, controller, ctx):
    host = coordinator.master
    address, got = inv.address(host), coordinator.ports[host]
    alarm = controller.ports[controller.master]["alarm_port"]
    config = {"http_config": {"predict_ip": address, "predict_port": str(got["predict_port"]), "manage_ip": address,
                              "manage_port": str(got["manage_port"]), "alarm_port": str(alarm),
                              "external_port": str(got["external_port"]), "status_port": str(got["status_port"])},
              "digs_scheduler_config": {"deploy_mode": "pd_separate", "scheduler_type": "digs_scheduler",
                                        "algorithm_type": "load_balance"},
              "tls_config": _motor_tls(COORDINATOR_TLS, ctx["tls"])}
    status = got["status_port"]
    binary = BINARIES[ctx["binaries"]][2]
    argv = [binary, address, address] if ctx["binaries"] == "current" else [
        binary, address, str(got["predict_port"]), address, str(got["manage_port"])]
    runtime = _runtime(inv, host, ctx)
    ready = url(address, status, "/v1/readiness", ctx["tls"])
    coordinator.members.append(dict(
        runtime, host=host, address=address, container="llmserve-%s" % coordinator.name, role="coordinator",
        image=inv.get(host, "llmserve_image"), devices=[], port=got["predict_port"], ports=dict(got), argv=argv,
        env=_env(inv, host, {"MINDIE_MS_COORDINATOR_CONFIG_FILE_PATH": CONF[COORDINATOR]}),
        config_file=CONF[COORDINATOR], config=config,
        files=_files(runtime, "ms_coordinator.json", MOTOR_HOME + "/conf/ms_coordinator.json", config, ctx),
        health=dict(startup=url(address, status, "/v1/startup", ctx["tls"]), readiness=ready,
                    liveness=url(address, status, "/v1/health", ctx["tls"])), health_url=ready))


def _entry(comp, accelerator, tls):
    main = {SERVER: "port", CONTROLLER: "port", COORDINATOR: "predict_port"}[comp.kind]
    entry = dict(name=comp.name, kind=comp.kind, hosts=list(comp.hosts), master=comp.master, members=comp.members,
                 endpoints=[url(m["address"], m["ports"][main], "", tls) for m in comp.members[:1]])
    if comp.kind == SERVER:
        entry["world_size"] = comp.world_size
        if len(comp.hosts) > 1 and comp.members:
            entry.update(hccl_rank_table_file=HCCL_RANK_TABLE, hccl_rank_table=_hccl_rank_table(comp, accelerator))
    return entry


def plan(inv, ports):
    servers = _servers(inv)
    controller_host = _single(inv, CONTROLLER, "Controller")
    coordinator_host = _single(inv, COORDINATOR, "Coordinator")
    _check(inv, servers, controller_host, coordinator_host)
    controller = Component(CONTROLLER, "mindie-controller", [controller_host]) if controller_host else None
    coordinator = Component(COORDINATOR, "mindie-coordinator", [coordinator_host]) if coordinator_host else None
    components = servers + [c for c in (controller, coordinator) if c]
    _plan_ports(inv, ports, components)
    if controller and coordinator:
        _check_alarm(inv, controller, coordinator)
    accelerator = inv.get(servers[0].master, "llmserve_accelerator") if servers else None
    hosts = [h for c in components for h in c.hosts]
    ctx = dict(_settings(inv, hosts, controller_host or hosts[0]), hardware=_hardware(inv, servers)) if hosts else None
    if not inv.problems and controller and coordinator and servers:
        for comp in servers:
            _server_members(inv, comp, accelerator, ctx)
        _controller_member(inv, controller, coordinator, servers, accelerator, ctx)
        _coordinator_member(inv, coordinator, controller, ctx)
    entries = [_entry(c, accelerator, bool(ctx and ctx["tls"])) for c in components]
    door = None
    if coordinator and coordinator.members:
        member = coordinator.members[0]
        door = dict(kind="mindie-coordinator", host=coordinator.master,
                    url=url(member["address"], member["port"], "", ctx["tls"]),
                    backends={"server": [u for e in entries if e["kind"] == SERVER for u in e["endpoints"]]},
                    health_url=member["health"]["readiness"],
                    metrics_url=url(member["address"], member["ports"]["external_port"], "/metrics", ctx["tls"]),
                    tls=member["tls"], members=[])   # the Coordinator's container, which its instance starts
    elif coordinator:
        door = dict(kind="mindie-coordinator", host=coordinator.master, url=None, backends={"server": []})
    return dict(instances=entries, front_door=door)
