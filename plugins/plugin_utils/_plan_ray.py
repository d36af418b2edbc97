# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A Ray cluster that runs one vLLM engine across its nodes (TP x PP over every device).

Inventory model
- group ``ray_head``: exactly one host, the Ray head. It runs GCS, the dashboard, the client server
  and, once every node is alive, ``vllm serve ... --distributed-executor-backend ray`` inside its
  container (``serve_argv``): vLLM's API is the front door.
- group ``ray_worker``: zero or more hosts that join the head (``ray start --address=head:port``).
- per node ``llmserve_ray_runtime``: ``container`` (default; ``llmserve_image``, which carries Ray) or
  ``service``: ``ray start --block`` from a virtual environment (``llmserve_ray_venv``, default
  /opt/llmserve/ray-venv) as the systemd unit ``llmserve-ray-head.service`` / ``llmserve-ray-worker.service``
  (``Restart=always``). With ``llmserve_ray_pip_packages`` (e.g. ["ray[default]==2.60.0"]) the role makes
  the venv and installs them with pip's own settings from ``llmserve_ray_pip_env`` (PIP_* variables, e.g.
  {PIP_NO_INDEX: "1", PIP_FIND_LINKS: /srv/wheels} on an air-gapped site); without, the venv must already
  hold Ray. The two kinds mix in one cluster; the Ray/Python check covers both.
- every member needs ``llmserve_devices`` (e.g. "0-7"); the head and the workers all give their
  devices to the engine. One container per host (``llmserve-ray-head`` / ``llmserve-ray-worker``),
  host networking, ``ray start ... --block`` as its command (restart it on failure: it exits when GCS
  goes away and rejoins on restart).

Variables (read on the head unless said otherwise; defaults in roles/defaults/meta/argument_specs.yml)
- ``llmserve_model``, ``llmserve_image`` (required; one image for every node, since Ray refuses a
  version mismatch), ``llmserve_served_model_name``, ``llmserve_vllm_extra_args``,
  ``llmserve_vllm_env`` (set on every node's container: NCCL variables must reach all nodes).
- ``llmserve_tensor_parallel_size`` / ``llmserve_pipeline_parallel_size``: when neither is set,
  TP = devices per node and PP = number of nodes (nodes must then have equal device counts); when
  one is set the other is the cluster's devices divided by it; TP x PP must fit in the devices.
- ``llmserve_vllm_port`` (8000): vLLM's API on the head.
- ``llmserve_ray_port`` (6379, GCS), ``llmserve_ray_dashboard_port`` (8265, bound to the head's
  address, not localhost), ``llmserve_ray_client_port`` (10001; null leaves the flag out for images
  without ray[client]).
- per node: ``llmserve_ray_node_manager_port`` (6380), ``llmserve_ray_object_manager_port`` (6381),
  ``llmserve_ray_runtime_env_agent_port`` (6382), ``llmserve_ray_dashboard_agent_grpc_port``
  (6383), ``llmserve_ray_dashboard_agent_port`` (52365, HTTP, serves the raylet health),
  ``llmserve_ray_metrics_export_port`` (8080, Prometheus), and the worker port range
  ``llmserve_ray_min_worker_port`` .. ``llmserve_ray_max_worker_port`` (10002-10999; Ray's own
  default runs to 19999). Ray picks all of these at random unless pinned, so they are all pinned;
  the worker range is reserved on the machine and listed under ``port_ranges``.
- ``llmserve_ray_auth_mode``: ``token`` (default; Ray >= 2.52) or ``disabled``: every container gets
  ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH``, a file (0600, ``<llmserve_config_dir>/ray/auth_token``,
  mounted read-only) holding each node's ``llmserve_ray_auth_token`` (vault it; make one with
  ``ray get-auth-token --generate``); the plan names the variable only. The dashboard then wants
  ``Authorization: Bearer <token>``.
- per node: ``llmserve_ray_resources`` (custom resources, a mapping, added to ``--resources``),
  ``llmserve_ray_object_store_memory`` (bytes, ``--object-store-memory``), ``llmserve_ray_object_store_dir``
  (``--plasma-directory``, mounted into the container).
- per node: ``llmserve_ray_socket_ifname`` (sets ``NCCL_SOCKET_IFNAME`` and ``GLOO_SOCKET_IFNAME``),
  ``llmserve_ray_num_cpus``; on the head ``llmserve_ray_start_extra_args`` (added to every ``ray
  start``).

Not pinned by this plan: the dashboard head's gRPC port and the NCCL / torch.distributed ports
between vLLM's workers; keep the nodes on one private segment with traffic open between them
(vLLM's and Ray's traffic is unauthenticated pickle).
"""

from __future__ import annotations

import json

from ._cluster_util import (ascend_devices, boolean, claim_range, config_file, device_env, device_requests, host_port, is_set,
                            log_options, mapping, not_in_both, one_value, port, port_range, secret, strings, url)

GROUPS = ("ray_head", "ray_worker")
AUTH_MODES = ("disabled", "token")
RUNTIMES = ("container", "service")

NODE_PORTS = (
    # variable, service, ray start flag
    ("llmserve_ray_node_manager_port", "ray-node-manager", "--node-manager-port"),
    ("llmserve_ray_object_manager_port", "ray-object-manager", "--object-manager-port"),
    ("llmserve_ray_runtime_env_agent_port", "ray-runtime-env-agent", "--runtime-env-agent-port"),
    ("llmserve_ray_dashboard_agent_grpc_port", "ray-dashboard-agent-grpc", "--dashboard-agent-grpc-port"),
    ("llmserve_ray_dashboard_agent_port", "ray-dashboard-agent", "--dashboard-agent-listen-port"),
    ("llmserve_ray_metrics_export_port", "ray-metrics", "--metrics-export-port"),
)


def _parallel(inv, head, devices):
    """TP and PP: given, derived from the one given, or TP = devices per node and PP = nodes."""
    total = sum(len(d) for d in devices.values())
    tp_set = is_set(inv, head, "llmserve_tensor_parallel_size")
    pp_set = is_set(inv, head, "llmserve_pipeline_parallel_size")
    tp = inv.integer(head, "llmserve_tensor_parallel_size", 1) if tp_set else 0
    pp = inv.integer(head, "llmserve_pipeline_parallel_size", 1) if pp_set else 0
    if not all(devices.values()):     # a host without devices is a problem already
        return tp or 1, pp or 1, total
    if not tp_set and not pp_set:
        counts = sorted({len(d) for d in devices.values()})
        if len(counts) > 1:
            inv.problem(head, "llmserve_tensor_parallel_size", "the Ray nodes have different device counts (%s); set "
                        "llmserve_tensor_parallel_size and llmserve_pipeline_parallel_size for the whole cluster"
                        % ", ".join("%s: %d" % (h, len(d)) for h, d in devices.items()))
            return 1, 1, total
        return counts[0], len(devices), total
    for size, given, other in ((tp, "llmserve_tensor_parallel_size", pp_set), (pp, "llmserve_pipeline_parallel_size", tp_set)):
        if size and not other and total % size:
            inv.problem(head, given, "%d does not divide the cluster's %d devices; give both sizes or a divisor"
                        % (size, total))
            return tp or 1, pp or 1, total
    tp = tp or total // pp
    pp = pp or total // tp
    if tp * pp > total:
        inv.problem(head, "llmserve_tensor_parallel_size", "TP %d x PP %d = %d devices, but the Ray cluster has %d (%s); "
                    "lower the sizes or add ray_worker hosts" % (tp, pp, tp * pp, total,
                                                                 ", ".join("%s: %d" % (h, len(d)) for h, d in devices.items())))
    return tp, pp, total


def _auth(inv, head, nodes):
    mode = str(inv.get(head, "llmserve_ray_auth_mode"))
    if mode not in AUTH_MODES:
        inv.problem(head, "llmserve_ray_auth_mode", "%r is not one of %s" % (mode, ", ".join(AUTH_MODES)))
        return {"mode": "disabled"}
    if mode == "token":
        for host in nodes:   # each node reads its own (normally group_vars/all, vaulted)
            if not is_set(inv, host, "llmserve_ray_auth_token"):
                inv.problem(host, "llmserve_ray_auth_token", "is not set, but llmserve_ray_auth_mode is token (the "
                            "default); make a token with `ray get-auth-token --generate` and keep it in ansible-vault, "
                            "or set llmserve_ray_auth_mode: disabled on a network nobody else reaches")
        return {"mode": "token", "token_variable": "llmserve_ray_auth_token"}
    return {"mode": "disabled"}


def _resources(inv, host, accelerator, count):
    """The node's resources as Ray will report them (what the plan announces), and the ray start flags
    that announce them: GPUs, Ascend NPUs as a custom resource, the inventory's own resources, CPUs."""
    custom = {}
    for name, value in mapping(inv, host, "llmserve_ray_resources").items():
        try:
            number = float(value)
        except ValueError:
            inv.problem(host, "llmserve_ray_resources", "%s: %r is not a quantity; give numbers, e.g. {worker_marker: 1}"
                        % (name, value))
            continue
        custom[name] = int(number) if number.is_integer() else number
    if accelerator in ("ascend_a2", "ascend_a3"):
        custom["NPU"] = count
    gpus = count if accelerator == "nvidia" else 0
    argv = ["--num-gpus", str(gpus)]
    if custom:
        argv += ["--resources", json.dumps(custom, separators=(",", ":"), sort_keys=True)]
    announced = dict(custom, **({"GPU": gpus} if gpus else {}))
    if is_set(inv, host, "llmserve_ray_num_cpus"):
        announced["CPU"] = inv.integer(host, "llmserve_ray_num_cpus", 1)
        argv += ["--num-cpus", str(announced["CPU"])]
    if is_set(inv, host, "llmserve_ray_object_store_memory"):
        argv += ["--object-store-memory", str(inv.integer(host, "llmserve_ray_object_store_memory", 78643200))]
    return argv, announced


def _runtime_of(inv, host):
    value = str(inv.get(host, "llmserve_ray_runtime"))
    if value not in RUNTIMES:
        inv.problem(host, "llmserve_ray_runtime", "%r is not one of %s" % (value, ", ".join(RUNTIMES)))
        return "container"
    return value


def _runtime(inv, host, name, ctx):
    """Where the node runs: a container of the image, or a systemd unit over a virtual environment's ray."""
    if ctx["runtimes"][host] == "container":
        return dict(runtime="container", container=name, image=ctx["image"], network_mode="host"), "ray"
    venv = str(inv.get(host, "llmserve_ray_venv")).rstrip("/")
    if not venv.startswith("/"):
        inv.problem(host, "llmserve_ray_venv", "%r is not an absolute path" % venv)
    return dict(runtime="service", unit=name + ".service", venv=venv,
                pip=dict(packages=strings(inv, host, "llmserve_ray_pip_packages"),
                         env=mapping(inv, host, "llmserve_ray_pip_env"))), venv + "/bin/ray"


def _member(inv, ports, host, head, ctx):
    """One Ray node: its container or service, ray start argv, env, listeners and health URLs."""
    address = inv.address(host)
    is_head = host == head
    instance = "ray-head" if is_head else "ray-worker"
    member = dict(host=host, address=address, name="llmserve-" + instance, devices=ctx["devices"][host])
    where, ray = _runtime(inv, host, member["name"], ctx)
    member.update(where)
    argv = [ray, "start", "--block", "--node-ip-address", address]
    volumes = []
    if is_head and member["runtime"] == "container":
        # vLLM's driver, in a container of its own, finds this node's raylet by its process and its sockets
        member.update(ipc_mode="shareable", temp_dir=str(inv.get(host, "llmserve_ray_temp_dir")))
        volumes.append("%s:/tmp/ray" % member["temp_dir"])
    if is_head:
        member["gcs_port"] = port(inv, ports, host, "llmserve_ray_port", "ray-gcs", instance)
        member["dashboard_port"] = port(inv, ports, host, "llmserve_ray_dashboard_port", "ray-dashboard", instance)
        argv += ["--head", "--port", str(member["gcs_port"]), "--dashboard-host", address,
                 "--dashboard-port", str(member["dashboard_port"])]
        if inv.get(host, "llmserve_ray_client_port") not in (None, ""):
            member["client_port"] = port(inv, ports, host, "llmserve_ray_client_port", "ray-client", instance)
            argv += ["--ray-client-server-port", str(member["client_port"])]
    else:
        argv += ["--address", ctx["gcs"]]
    for variable, service, flag in NODE_PORTS:
        member[variable[len("llmserve_ray_"):]] = number = port(inv, ports, host, variable, service, instance)
        argv += [flag, str(number)]
    span = port_range(inv, host, "llmserve_ray_min_worker_port", last_variable="llmserve_ray_max_worker_port")
    worker_ports = claim_range(inv, ports, host, span, "ray-worker", instance, "llmserve_ray_min_worker_port")
    if span:
        argv += ["--min-worker-port", str(span[0]), "--max-worker-port", str(span[1])]
    member["port_ranges"] = [worker_ports] if worker_ports else []
    accelerator = inv.get(host, "llmserve_accelerator")
    flags, member["resources"] = _resources(inv, host, accelerator, len(ctx["devices"][host]))
    argv += flags
    if member["runtime"] == "container":
        member["device_nodes"], mounts = ascend_devices(inv, host, ctx["devices"][host])
        member["device_requests"] = device_requests(inv, host, ctx["devices"][host])
        volumes += mounts
    store = inv.get(host, "llmserve_ray_object_store_dir")
    if store:
        member["object_store_dir"] = str(store)
        argv += ["--plasma-directory", str(store)]
        volumes.append("%s:%s" % (store, store))
    argv += ["--disable-usage-stats"] + ctx["start_extra"]
    env = {"VLLM_HOST_IP": address, "RAY_NODE_IP_ADDRESS": address, "RAY_OVERRIDE_NODE_IP_ADDRESS": address}
    env.update(device_env(inv, host, ctx["devices"][host], in_container=member["runtime"] == "container"))
    ifname = inv.get(host, "llmserve_ray_socket_ifname")
    if ifname:
        env.update(NCCL_SOCKET_IFNAME=str(ifname), GLOO_SOCKET_IFNAME=str(ifname))
    env.update(ctx["vllm_env"])
    if ctx["auth"]["mode"] == "token":
        # a file, not RAY_AUTH_TOKEN: a variable would show in `docker inspect` and in the module's output
        token_file = "%s/ray/auth_token" % inv.get(host, "llmserve_config_dir")
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=token_file)
        member["token"] = dict(path=token_file, **secret(ctx["auth"]["token_variable"], host))
        volumes.append("%s:%s:ro" % (token_file, token_file))
    agent = member["dashboard_agent_port"]
    member["health"] = [url(address, agent, "/api/local_raylet_healthz")]
    if is_head:
        member["health"] = [url(address, member["dashboard_port"], "/api/gcs_healthz")] + member["health"]
    member.update(argv=argv, env=env, volumes=volumes, log_options=log_options(inv, host))
    return member


def _serve(inv, head, member, tp, pp):
    """vllm serve on the head, run inside its container once every node is alive."""
    argv = ["vllm", "serve", str(inv.get(head, "llmserve_model"))]
    served = inv.get(head, "llmserve_served_model_name")
    if served:
        argv += ["--served-model-name", str(served)]
    argv += ["--host", member["address"], "--port", str(member["port"]),
             "--tensor-parallel-size", str(tp), "--pipeline-parallel-size", str(pp),
             "--distributed-executor-backend", "ray"]
    argv += strings(inv, head, "llmserve_vllm_extra_args")
    for flag in ("--distributed-executor-backend", "--tensor-parallel-size", "--pipeline-parallel-size", "--host", "--port"):
        if argv.count(flag) > 1 or any(a.startswith(flag + "=") for a in argv):
            inv.problem(head, "llmserve_vllm_extra_args", "sets %s, which the plan sets; use the plan's variable "
                        "instead" % flag)
    return argv, {"RAY_ADDRESS": host_port(member["address"], member["gcs_port"])}


def _vllm_member(inv, head, member, vllm_env):
    """vLLM over Ray as its own container on the head's host: the head's process and IPC namespaces and Ray
    session directory (Ray finds its local raylet by process), host networking, the head's token."""
    env = dict(member["serve_env"], VLLM_HOST_IP=member["address"], RAY_NODE_IP_ADDRESS=member["address"])
    env.update({k: v for k, v in member["env"].items() if k.startswith(("RAY_AUTH", "NCCL_", "GLOO_"))})
    env.update(vllm_env)
    # the token and the Ascend driver's mounts, and the head's device nodes (vLLM's driver detects the platform)
    volumes = ["%s:/tmp/ray" % member["temp_dir"]] + [v for v in member["volumes"] if v.endswith(":ro")]
    return dict(host=head, address=member["address"], container="llmserve-ray-vllm", image=member["image"],
                argv=member["serve_argv"], env=env, secret_env={}, files=[], volumes=volumes, devices=[],
                device_nodes=member["device_nodes"], device_requests=[],
                env_file=config_file(inv, head, "llmserve-ray-vllm.env"),
                ipc_mode="container:" + member["container"], pid_mode="container:" + member["container"],
                port=member["port"], headless=False, health_url=url(member["address"], member["port"], "/health"),
                log_options=member["log_options"])


def plan(inv, ports):
    heads = inv.groups.get("ray_head", [])
    workers = [h for h in inv.groups.get("ray_worker", []) if h not in heads]
    if len(heads) != 1:
        if heads:
            inv.problem(None, "ray_head", "has %d hosts (%s); a Ray cluster has exactly one head"
                        % (len(heads), ", ".join(heads)))
        else:
            inv.problem(None, "ray_head", "has no host, but ray_worker has %s; put the Ray head in the ray_head group"
                        % ", ".join(workers))
        return dict(instances=[], front_door=None)
    head = heads[0]
    not_in_both(inv, "ray_head", "ray_worker", "the head already gives its devices to the cluster; list it in "
                "ray_head only")
    nodes = [head] + workers
    devices = {h: inv.devices(h, "llmserve_devices") for h in nodes}
    inv.required(head, "llmserve_model", "model path or name vLLM serves (the same path on every node)")
    serving = boolean(inv, head, "llmserve_ray_vllm")
    runtimes = {h: _runtime_of(inv, h) for h in nodes}
    contained = [h for h in nodes if runtimes[h] == "container"]
    image = None
    if contained or serving:
        image = inv.required(head, "llmserve_image", "vLLM image with Ray, e.g. vllm/vllm-openai:v0.11.0")
        one_value(inv, contained, "llmserve_image", head, "every Ray node must run the same Ray and Python "
                  "(`Version mismatch` otherwise); set llmserve_image once for the cluster")
    if serving and head not in contained:
        inv.problem(head, "llmserve_ray_runtime", "is service on the head, but vLLM over Ray (llmserve_ray_vllm, "
                    "default true) runs in a container that joins the head's container; run the head as a "
                    "container, or set llmserve_ray_vllm: false and start vLLM from the venv yourself")
        serving = False
    one_value(inv, nodes, "llmserve_accelerator", head, "one vLLM engine spans the cluster, so its nodes need the "
              "same kind of device")
    # the workers join the head's GCS port: a port set apart on a worker would be silently ignored
    one_value(inv, nodes, "llmserve_ray_port", head, "the workers join the head's GCS port; set it once for the "
              "cluster (on the head or for every Ray group)")
    tp, pp, total = _parallel(inv, head, devices)
    ctx = dict(head=head, image=image, devices=devices, runtimes=runtimes, auth=_auth(inv, head, nodes),
               start_extra=strings(inv, head, "llmserve_ray_start_extra_args"), vllm_env=mapping(inv, head, "llmserve_vllm_env"))
    head_member = _member(inv, ports, head, head, dict(ctx, gcs=None))
    gcs = host_port(head_member["address"], head_member["gcs_port"])
    worker_members = [_member(inv, ports, h, head, dict(ctx, gcs=gcs)) for h in workers]
    if serving:
        head_member["port"] = port(inv, ports, head, "llmserve_vllm_port", "vllm-api", "ray-vllm")
        serve_argv, serve_env = _serve(inv, head, head_member, tp, pp)
        head_member.update(serve_argv=serve_argv, serve_env=serve_env)
    dashboard = url(head_member["address"], head_member["dashboard_port"])
    common = dict(cluster="ray", ray_address=gcs, dashboard_url=dashboard, auth=ctx["auth"],
                  tensor_parallel_size=tp, pipeline_parallel_size=pp, devices_total=total)
    instances = [dict(name="ray-head", kind="ray_head", hosts=[head], master=head, endpoints=[dashboard],
                      members=[head_member],
                      ready=dict(url=dashboard + "/api/v0/nodes", alive_nodes=len(nodes), devices=total,
                                 command=["ray", "status", "--address", gcs],
                                 # what each node must show ALIVE in the dashboard's node list
                                 nodes={m["address"]: m["resources"] for m in [head_member] + worker_members}),
                      **common)]
    door = None
    if serving:
        api = url(head_member["address"], head_member["port"])
        instances.append(dict(name="ray-vllm", kind="ray_vllm", hosts=[head], master=head, endpoints=[api],
                              members=[_vllm_member(inv, head, head_member, ctx["vllm_env"])], **common))
        door = dict(kind="vllm-ray", host=head, url=api, backends={"engine": [api]}, health=api + "/health")
    if workers:
        # a worker serves no API of its own: its endpoint is the dashboard agent (raylet health, node stats)
        instances.append(dict(name="ray-worker", kind="ray_worker", hosts=workers, master=workers[0],
                              endpoints=[url(m["address"], m["dashboard_agent_port"]) for m in worker_members],
                              members=worker_members, **common))
    return dict(instances=instances, front_door=door)
