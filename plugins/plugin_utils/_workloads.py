# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plan contract v2: everything that runs on a host, in one shape (docs/workload.schema.json).

A workload is a container (``container``: community.docker.docker_container's arguments, named as the
module names them) or a systemd unit (``service``); with the files it needs, the secrets its environment
takes (references, never values), its readiness check, what it restarts after and what clean_up removes.
The runner role (roles/runner) starts, stops, removes, reports and fetches the logs of any workload; it
computes nothing.

``phase`` orders the cluster: every workload of phase 0 of a system starts (and is ready) on every host
before any of phase 1 starts; stops go the other way. ``restart_after`` names files (absolute paths) and
workloads (names) that, when this run changed or (re)started them, restart this one.

One function per system turns that system's planned members into workloads (``_BUILDERS``); the members
stay in ``instances`` as the v1 view that the rank tables, status and tests read.
"""

from __future__ import annotations

import posixpath
import re

# community.docker.docker_container's arguments a workload's container may set (the runner passes each as it is)
CONTAINER_KEYS = ("image", "entrypoint", "command", "env", "env_file", "volumes", "devices", "device_requests",
                  "shm_size", "ipc_mode", "pid_mode", "user", "working_dir", "stop_timeout", "log_options", "privileged",
                  "runtime")


def workload(name, system, instance, phase=0, container=None, service=None, files=(), secrets=(), ready=None,
             restart_after=(), remove=(), checks=()):
    """The one shape of a workload; a container's keys are docker_container's, set ones only."""
    if (container is None) == (service is None):
        raise ValueError("%s: a workload is a container or a service" % name)
    if container is not None:
        unknown = set(container) - set(CONTAINER_KEYS)
        if unknown:
            raise ValueError("%s: %s are no docker_container arguments of the plan" % (name, sorted(unknown)))
        container = {k: v for k, v in container.items() if v is not None}
    return dict(name=name, system=system, instance=instance, phase=phase, container=container, service=service,
                files=list(files), secrets=list(secrets), ready=ready, restart_after=sorted(set(restart_after)),
                remove=sorted(set(remove)), checks=list(checks))


def _ready(url, wait, delay, tls=None):
    """engine_probe's arguments from a health URL: its base and path, how long to wait and how often to ask."""
    scheme, rest = url.split("://", 1)
    address, slash, path = rest.partition("/")
    ready = dict(url="%s://%s" % (scheme, address), path=slash + path, wait=wait, delay=delay)
    if tls:
        ready.update(ca=tls["ca"], cert=tls["cert"], key=tls["key"])
    return ready


def _secrets(member):
    return [dict(env=name, **ref) for name, ref in sorted((member.get("secret_env") or {}).items())]


def _container(member, **extra):
    argv = member["argv"]
    keep = member.get("keep_image_entrypoint")
    return dict(dict(image=member["image"], entrypoint=None if keep else argv[:1], command=argv if keep else argv[1:],
                     log_options=member.get("log_options")), **extra)


def _engines(inv, inst):
    """vLLM engines (PD, replicas, vLLM over Ray): an env file (secrets added at deploy), health at /health."""
    out = []
    for m in inst["members"]:
        host = m["host"]
        files = [dict(path=m["env_file"], mode="0640", env=m["env"])]
        files += [dict(path=f["path"], mode="0640", content=f["content"]) for f in m["files"]]
        delay = inv.integer(host, "llmserve_vllm_health_delay", 1)
        ready = _ready(m["health_url"], inv.integer(host, "llmserve_vllm_health_retries", 1) * delay, delay) \
            if m.get("health_url") else None
        table = m["env"].get("GLOBAL_RANK_TABLE_FILE_PATH")
        out.append((host, workload(
            m["container"], "vllm", inst["name"],
            container=_container(m, env_file=m["env_file"], volumes=m["volumes"], devices=m.get("device_nodes") or [],
                                 device_requests=m.get("device_requests") or None, ipc_mode=m.get("ipc_mode"),
                                 pid_mode=m.get("pid_mode"), shm_size=str(inv.get(host, "llmserve_vllm_shm_size")),
                                 stop_timeout=inv.integer(host, "llmserve_vllm_stop_timeout", 0)),
            files=files, secrets=_secrets(m), ready=ready, restart_after=[f["path"] for f in m["files"]],
            remove=[f["path"] for f in files] + ([posixpath.dirname(table)] if table else []))))
    return out


def _front_door(inv, door):
    """The router and nginx of a front door; nginx restarts when the proxy role rewrote its configuration."""
    out = []
    for m in door.get("members", []):
        host = m["host"]
        # nginx restarts when its configuration changed, vllm-router in igw mode when its start script did (not its
        # worker list: the proxy role registers a changed one at runtime)
        config = (m.get("nginx") or {}).get("config") or (m.get("igw") or {}).get("script")
        delay = inv.integer(host, "llmserve_proxy_health_delay", 1)
        out.append((host, workload(
            m["container"], "front_door", "front-door",
            container=_container(m, volumes=m.get("volumes"),
                                 stop_timeout=inv.integer(host, "llmserve_proxy_stop_timeout", 0)),
            ready=_ready(m["health_url"], inv.integer(host, "llmserve_proxy_health_retries", 1) * delay, delay),
            restart_after=[config] if config else [], remove=[posixpath.dirname(config)] if config else [],
            checks=m.get("checks") or [])))
    return out


def _ray(inv, inst):
    """Ray nodes: the head (phase 0), then the workers; the ray role checks that they joined."""
    out = []
    phase = 0 if inst["kind"] == "ray_head" else 1
    for m in inst["members"]:
        host = m["host"]
        stop = inv.integer(host, "llmserve_ray_stop_timeout", 0)
        token = [m["token"]["path"]] if m.get("token") else []
        remove = [posixpath.dirname(p) for p in token] + ([m["temp_dir"]] if m.get("temp_dir") else [])
        if m["runtime"] == "service":
            service = dict(unit=m["unit"], argv=m["argv"], environment=m["env"], description="Ray node %s (%s)" % (
                m["name"], m["address"]), stop_timeout=stop, success_exit_status=[1])
            out.append((host, workload(m["name"], "ray", inst["name"], phase, service=service, restart_after=token,
                                       remove=remove)))
        else:
            out.append((host, workload(m["name"], "ray", inst["name"], phase, container=_container(
                m, env=m["env"], volumes=m["volumes"], devices=m["device_nodes"], ipc_mode=m.get("ipc_mode"),
                device_requests=m["device_requests"] or None, stop_timeout=stop,
                shm_size=str(inv.get(host, "llmserve_ray_shm_size"))), restart_after=token, remove=remove)))
    return out


MINDIE_PHASES = {"mindie_server": 0, "mindie_controller": 1, "mindie_coordinator": 2}


def _mindie(inv, inst, earlier):
    """MindIE's Servers, Controller, Coordinator: each restarts when a file it reads changed, or a component of
    an earlier kind (re)started anywhere (the Controller gives roles when it starts; the Coordinator is ready
    once it has them)."""
    out = []
    for m in inst["members"]:
        host = m["host"]
        server = inst["kind"] == "mindie_server"
        tls = m.get("tls")
        reads = [f["path"] for f in m["files"]] + ([m["rank_table_path"]] if m.get("rank_table_path") else [])
        reads += [tls["ca"], tls["cert"], tls["key"]] if tls else []
        wait = inv.integer(host, "llmserve_mindie_server_timeout" if server else "llmserve_mindie_motor_timeout", 1)
        out.append((host, workload(
            m["container"], "mindie", inst["name"], MINDIE_PHASES[inst["kind"]],
            container=_container(m, env=m["env"], user=m.get("user"), working_dir=m.get("working_dir"),
                                 volumes=m["volumes"], devices=m.get("device_nodes") or [],
                                 shm_size=str(inv.get(host, "llmserve_mindie_shm_size")) if server else None,
                                 stop_timeout=inv.integer(host, "llmserve_mindie_stop_timeout", 0)),
            ready=_ready(m["health_url"], wait, inv.integer(host, "llmserve_mindie_poll_delay", 1), tls),
            restart_after=reads + earlier, remove=[m["host_dir"]])))
    return out


XINFERENCE_PHASES = {"xinference_supervisor": 0, "xinference_worker": 1}


def _xinference(inv, inst):
    """Xinference's supervisor (phase 0), then its workers. A worker is not restarted with the supervisor: a
    restarted supervisor refuses the worker's next status report, and the worker registers again with the models
    it runs (xinference 4.1.0, core/supervisor.py report_worker_status). The xinference role checks the join."""
    out = []
    for m in inst["members"]:
        host = m["host"]
        files = [dict(path=m["env_file"], mode="0640", env=m["env"])]
        home = [m["data_dir"]] if inv.get(host, "llmserve_xinference_remove_home") else []
        out.append((host, workload(
            m["container"], "xinference", inst["name"], XINFERENCE_PHASES[inst["kind"]],
            container=_container(m, env_file=m["env_file"], volumes=m["volumes"], devices=m["device_nodes"],
                                 device_requests=m["device_requests"] or None,
                                 shm_size=str(inv.get(host, "llmserve_xinference_shm_size")),
                                 stop_timeout=inv.integer(host, "llmserve_xinference_stop_timeout", 0)),
            files=files, secrets=_secrets(m),
            ready=_ready(m["health"][0], inv.integer(host, "llmserve_xinference_start_timeout", 1),
                         inv.integer(host, "llmserve_xinference_poll_delay", 1)),
            # each model of the list READY in the supervisor's metrics (no login needed): a model lost with its
            # worker is not launched again by Xinference, so the next run must see it missing
            checks=[dict(name="model " + model["uid"], url=m["health"][0].rsplit("/", 1)[0], path="/metrics",
                         expect=r'^xinference:model_status\{[^}]*model_uid="%s"[^}]*status="READY"[^}]*\} 1(\.0)?$'
                         % re.escape(model["uid"])) for model in inst.get("models") or []],
            # the supervisor's host keeps the record of the models the xinference role launched
            remove=[m["env_file"]] + home + ([inst["models_record"]] if inst.get("models_record") else []))))
    return out


GPUSTACK_PHASES = {"gpustack_database": 0, "gpustack_server": 1, "gpustack_lb": 2, "gpustack_worker": 3}


def _gpustack(inv, inst):
    """GPUStack: its database (phase 0), the servers (1), the load balancer (2), the workers (3). Each reads a
    configuration file of the plan and restarts when it changed; secrets go to the env file (0600). The gpustack
    role checks that the servers list every worker as ready."""
    out = []
    for m in inst["members"]:
        host = m["host"]
        wait, delay = inv.integer(host, "llmserve_gpustack_start_timeout", 1), inv.integer(host, "llmserve_gpustack_poll_delay", 1)
        files = [dict(path=m["config"]["path"], mode="0640", content=m["config"]["content"])] if m.get("config") else []
        if m.get("env_file"):
            files.append(dict(path=m["env_file"], mode="0600", env=m.get("env") or {}))
        if m.get("ready_command"):   # PostgreSQL speaks no HTTP
            ready = dict(command=m["ready_command"], wait=wait, delay=delay)
        else:
            ready = _ready(m["health"][-1], wait, delay)
        if inst["kind"] == "gpustack_worker":
            # a refused worker logs why, stops serving and keeps running (gpustack 2.3.0 worker/worker.py start)
            ready.update(fail_log=r"Error serving worker APIs: .*", fail_hint=(
                "Invalid authentication credentials means llmserve_gpustack_token is not the registration token of "
                "the cluster (GPUStack keeps the token of the servers' first start in its database)"))
        data = [m["data_dir"]] if m.get("data_dir") and inv.get(host, "llmserve_gpustack_remove_data") else []
        out.append((host, workload(
            m["container"], "gpustack", inst["name"], GPUSTACK_PHASES[inst["kind"]],
            container=_container(m, env_file=m.get("env_file"), volumes=m.get("volumes"),
                                 privileged=m.get("privileged"), runtime=m.get("runtime"),
                                 stop_timeout=inv.integer(host, "llmserve_gpustack_stop_timeout", 0)),
            files=files, secrets=_secrets(m), ready=ready, restart_after=[f["path"] for f in files],
            remove=[f["path"] for f in files] + data)))
    return out


def build(inv, instances, doors):
    """{host: [workload, ...]} in start order (phase, then plan order); names are unique on a host."""
    found = []
    for inst in instances:
        kind = inst["kind"]
        if kind.startswith("vllm_") or kind == "ray_vllm":
            found += _engines(inv, inst)
        elif kind.startswith("ray_"):
            found += _ray(inv, inst)
        elif kind.startswith("xinference_"):
            found += _xinference(inv, inst)
        elif kind.startswith("mindie_"):
            earlier = [m["container"] for i in instances if MINDIE_PHASES.get(i["kind"], 9) < MINDIE_PHASES[kind]
                       for m in i["members"]]
            found += _mindie(inv, inst, earlier)
        else:
            found += _gpustack(inv, inst)
    for door in doors:
        found += _front_door(inv, door)
    hosts = {}
    for host, item in found:
        hosts.setdefault(host, []).append(item)
    return {h: sorted(items, key=lambda w: w["phase"]) for h, items in hosts.items()}


GROUPS = {  # system of a workload -> the inventory group of the deploy stages it puts its host in
    "vllm": "llmserve_engines", "front_door": "llmserve_front_door", "ray": "llmserve_ray", "mindie": "llmserve_mindie",
    "xinference": "llmserve_xinference", "gpustack": "llmserve_gpustack",
}


def groups(workloads, accelerator):
    """The stage groups a host belongs to (the first play adds it to them, as kubespray's dynamic_groups)."""
    systems = {w["system"] for w in workloads}
    found = [GROUPS[s] for s in systems]
    if str(accelerator).startswith("ascend") or "mindie" in systems:   # the hosts the ranktable stage writes to
        found.append("llmserve_ascend")
    return ["llmserve_cluster"] + sorted(found)
