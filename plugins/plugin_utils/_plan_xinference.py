# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An Xinference cluster: one supervisor and the workers that join it.

Inventory model
- group ``xinference_supervisor``: exactly one host. ``xinference-supervisor -H <its address> -p
  <port> --supervisor-port <rpc port>``: the REST API, web UI and ``/metrics`` on the port (the
  front door), the xoscar actor RPC on the RPC port.
- group ``xinference_worker``: one or more hosts. ``xinference-worker -e http://<supervisor>:<port>
  -H <its address> --worker-port <rpc port> -MH <its address> --metrics-exporter-port <port>``.
  A host may be in both groups (a supervisor machine that also serves models): two containers.
- One container per role and host (``llmserve-xinference-supervisor`` / ``-worker``), host
  networking (cross-host clusters need it), the same image everywhere (Xinference has no version
  check between supervisor and workers). Models are launched afterwards through the API
  (``llmserve_xinference_models``), not at start.

Variables (read on the supervisor unless said otherwise; defaults in roles/defaults/meta/argument_specs.yml)
- ``llmserve_xinference_image`` (required, e.g. xprobe/xinference:v4.1.0, or a ``-cpu`` tag on
  CPU-only workers).
- ``llmserve_xinference_port`` (9997), ``llmserve_xinference_supervisor_port`` (9999); per worker
  ``llmserve_xinference_worker_port`` (30001) and ``llmserve_xinference_metrics_port`` (30002).
  Xinference picks the RPC ports at random unless told, so the plan always pins them. Model
  sub-pools that a worker starts for each model still take random ports (xoscar offers no range),
  so traffic between the supervisor and the workers must stay open beyond the listed ports.
- ``llmserve_xinference_home`` (/var/lib/xinference): ``XINFERENCE_HOME`` on every member (logs,
  cache, the auth database and keys; mount it at the same path).
- ``llmserve_xinference_auth`` (true, Xinference's own default since 3.0): database-backed auth on
  the supervisor. The role completes first-run setup as ``llmserve_xinference_admin_user`` (admin)
  with the vaulted ``llmserve_xinference_admin_password`` (required when auth is on); the optional
  vaulted ``llmserve_xinference_auth_jwt_secret_key`` / ``llmserve_xinference_auth_encryption_key``
  become ``XINFERENCE_AUTH_JWT_SECRET_KEY`` / ``XINFERENCE_AUTH_ENCRYPTION_KEY`` (otherwise
  Xinference keeps generated keys in its home). The plan names those variables, never their values.
  false sets ``XINFERENCE_AUTH_ADVANCED=false``. Workers join without a credential either way (the
  actor RPC is unauthenticated): keep them on a private segment.
- ``llmserve_xinference_env`` (extra environment for every member, e.g. XINFERENCE_MODEL_SRC),
  per worker ``llmserve_devices`` (optional: limits the devices the worker sees),
  ``llmserve_xinference_models``: list of launch requests for ``POST /v1/models``, each with at least
  ``model_name`` (e.g. {model_name: qwen2.5-instruct, model_engine: vllm, model_format: pytorch,
  size_in_billions: "7"}).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json

from ._cluster_util import (ascend_devices, boolean, config_file, device_env, device_requests, host_port, is_set, log_options, mapping, one_value,
                            port, secret, single, strings, url)

GROUPS = ("xinference_supervisor", "xinference_worker")
# optional vaulted keys of the supervisor: environment variable they become
AUTH_KEYS = (("llmserve_xinference_auth_jwt_secret_key", "XINFERENCE_AUTH_JWT_SECRET_KEY"),
             ("llmserve_xinference_auth_encryption_key", "XINFERENCE_AUTH_ENCRYPTION_KEY"))


def _auth(inv, sup):
    if not boolean(inv, sup, "llmserve_xinference_auth"):
        return {"enabled": False}, {"XINFERENCE_AUTH_ADVANCED": "false"}, {}
    if not is_set(inv, sup, "llmserve_xinference_admin_password"):
        inv.problem(sup, "llmserve_xinference_admin_password", "is not set, but llmserve_xinference_auth is on; give the "
                    "admin password (ansible-vault encrypt_string), or set llmserve_xinference_auth: false")
    address, number = inv.address(sup), inv.get(sup, "llmserve_xinference_port")
    key_file = inv.get(sup, "llmserve_xinference_api_key_file") or "~/.config/llmserve/xinference-%s-%s.api_key" % (
        address.replace(":", "_"), number)
    auth = {"enabled": True, "admin_user": str(inv.get(sup, "llmserve_xinference_admin_user")),
            "admin_password_variable": "llmserve_xinference_admin_password",
            "setup_status_url_path": "/v1/admin/setup/status",
            "api_key_name": str(inv.get(sup, "llmserve_xinference_api_key_name")), "api_key_file": str(key_file)}
    secrets = {env: secret(var, sup) for var, env in AUTH_KEYS if is_set(inv, sup, var)}
    return auth, {}, secrets


# what a model entry may hold beyond the fields of POST /v1/models
MODEL_KEYS = {"worker": "an inventory host of xinference_worker to launch it on (its address becomes worker_ip)",
              "register": "a custom model's registration (Xinference's model family JSON, as a mapping)"}


def _models(inv, sup, workers):
    """The wanted models: POST /v1/models's body (model_uid defaults to model_name, model_type to LLM,
    enable_virtual_env to false: a launch must not build a virtualenv from the internet), the registration of a
    custom one, and a digest of both, by which the xinference_models module sees a changed spec."""
    variable = "llmserve_xinference_models"
    models = inv.get(sup, variable) or []
    if not isinstance(models, list) or not all(isinstance(m, dict) and m.get("model_name") for m in models):
        inv.problem(sup, variable, "must be a list of launch requests, each a mapping with at least model_name (and "
                    "model_engine, model_format, size_in_billions as POST /v1/models takes them)")
        return []
    out, seen = [], set()
    for entry in models:
        wrong = [k for k in ("model_name", "model_uid", "model_type", "worker") if entry.get(k) is not None
                 and not isinstance(entry[k], str)]
        if wrong:
            inv.problem(sup, variable, "%s: %s must be a string, e.g. model_name: qwen2.5-instruct"
                        % (entry["model_name"], " and ".join(wrong)))
            continue
        launch = {k: v for k, v in entry.items() if k not in MODEL_KEYS}
        name = str(launch["model_name"])
        uid = str(launch.get("model_uid") or name)
        launch.update(model_uid=uid, model_type=str(launch.get("model_type") or "LLM"))
        launch.setdefault("enable_virtual_env", False)
        if uid in seen:
            inv.problem(sup, variable, "launches the uid %s twice; give one of them another model_uid" % uid)
        seen.add(uid)
        worker = entry.get("worker")
        if worker is not None:
            if worker not in workers:
                inv.problem(sup, variable, "%s: worker %r is not a host of xinference_worker (%s)"
                            % (name, worker, ", ".join(workers) or "none"))
            else:
                launch["worker_ip"] = inv.address(worker)
        registration = entry.get("register")
        if registration is not None and (not isinstance(registration, dict) or registration.get("model_name") != name):
            inv.problem(sup, variable, "%s: register must be the model's registration, a mapping whose model_name is "
                        "%s (Xinference's custom model JSON)" % (name, name))
            registration = None
        digest = hashlib.sha256(json.dumps([launch, registration], sort_keys=True).encode("utf-8")).hexdigest()[:16]
        out.append(dict(uid=uid, digest=digest, launch=launch, registration=registration))
    return out


def _allowed_ips(inv, sup):
    """XINFERENCE_ALLOWED_IPS, checked as Xinference reads it: comma-separated networks (CIDR) or addresses. It
    skips an entry it cannot read with only a log line, and reads a lone address as <address>/32, which no IPv6
    address is."""
    allowed = str(inv.get(sup, "llmserve_xinference_allowed_ips") or "")
    if not allowed:
        return {}
    for item in (i.strip() for i in allowed.split(",")):
        try:
            ipaddress.ip_network(item if "/" in item else item + "/32")
        except ValueError:
            try:
                hint = "did you mean %s?" % ipaddress.ip_network(item, strict=False)
            except ValueError:
                hint = "write 10.0.0.0/24, or fd00::1/128 for one IPv6 address"
            inv.problem(sup, "llmserve_xinference_allowed_ips", "%r is neither an IPv4 address nor a network in CIDR "
                        "form, so Xinference would skip it; %s" % (item, hint))
    return {"XINFERENCE_ALLOWED_IPS": allowed}


def _base(inv, host, role, image, env):
    """What the supervisor and a worker share: host networking, XINFERENCE_HOME on a host directory mounted at the
    same path, an env file (the auth keys join it at deploy), Docker's log rotation."""
    address = inv.address(host)
    home = str(inv.get(host, "llmserve_xinference_home"))
    container = "llmserve-xinference-" + role
    env = dict({"XINFERENCE_HOME": home}, **env)
    return dict(host=host, address=address, container=container, image=image, network_mode="host",
                keep_image_entrypoint=False, data_dir=home, env=env,
                env_file=config_file(inv, host, container + ".env"),
                volumes=["%s:%s" % (home, home)], device_nodes=[], device_requests=[], log_options=log_options(inv, host))


def plan(inv, ports):
    sup = single(inv, "xinference_supervisor", "Xinference supervisor", required=False)
    workers = list(inv.groups.get("xinference_worker", []))
    if sup is None or len(inv.groups["xinference_supervisor"]) > 1:
        if sup:
            return dict(instances=[], front_door=None)
        inv.problem(None, "xinference_supervisor", "has no host, but xinference_worker has %s; workers join a "
                    "supervisor: put one host in xinference_supervisor" % ", ".join(workers))
        return dict(instances=[], front_door=None)
    if not workers:
        inv.problem(None, "xinference_worker", "has no host; the supervisor runs no model itself: add the hosts that "
                    "serve models to xinference_worker (the supervisor host may be one of them)")
    image = inv.required(sup, "llmserve_xinference_image", "Xinference image, e.g. xprobe/xinference:v4.1.0 "
                         "(a -cpu tag for CPU-only workers)")
    one_value(inv, [sup] + workers, "llmserve_xinference_image", sup, "Xinference does not check versions between "
              "supervisor and workers, so they must run one image")
    auth, auth_env, auth_secrets = _auth(inv, sup)
    env = dict(mapping(inv, sup, "llmserve_xinference_env"), **dict(auth_env, **_allowed_ips(inv, sup)))

    # supervisor
    member = _base(inv, sup, "supervisor", image, env)
    address = member["address"]
    member["port"] = port(inv, ports, sup, "llmserve_xinference_port", "xinference-api", "xinference-supervisor")
    member["supervisor_port"] = port(inv, ports, sup, "llmserve_xinference_supervisor_port", "xinference-supervisor-rpc",
                                     "xinference-supervisor")
    member["argv"] = ["xinference-supervisor", "-H", address, "-p", str(member["port"]),
                      "--supervisor-port", str(member["supervisor_port"])]
    member["secret_env"] = auth_secrets
    api = url(address, member["port"])
    member["health"] = [api + "/status"]
    sup_entry = dict(name="xinference-supervisor", kind="xinference_supervisor", hosts=[sup], master=sup,
                     endpoints=[api], members=[member], cluster="xinference", auth=auth, models=_models(inv, sup, workers),
                     models_record=config_file(inv, sup, "xinference-models.json"))

    # workers
    joined, members = [], []
    for host in workers:
        member = _base(inv, host, "worker", image, env)
        address = member["address"]
        member["worker_port"] = port(inv, ports, host, "llmserve_xinference_worker_port", "xinference-worker-rpc",
                                     "xinference-worker")
        member["metrics_port"] = port(inv, ports, host, "llmserve_xinference_metrics_port", "xinference-worker-metrics",
                                      "xinference-worker")
        member["argv"] = ["xinference-worker", "-e", api, "-H", address, "--worker-port", str(member["worker_port"]),
                          "-MH", address, "--metrics-exporter-port", str(member["metrics_port"])]
        member["secret_env"] = {}
        member["health"] = [url(address, member["metrics_port"], "/metrics")]
        devices = inv.devices(host, "llmserve_devices") if is_set(inv, host, "llmserve_devices") else []
        accelerator = inv.get(host, "llmserve_accelerator")
        member["env"].update(device_env(inv, host, devices))
        if accelerator in ("ascend_a2", "ascend_a3") and not devices:
            inv.problem(host, "llmserve_devices", "is not set; an Ascend worker is given the NPUs it lists (the "
                        "container needs their /dev/davinciN), e.g. llmserve_devices: \"0-7\"")
        member["devices"] = devices
        member["device_nodes"], mounts = ascend_devices(inv, host, devices)
        # NVIDIA without llmserve_devices: every GPU of the host, as the seed's `docker run --gpus all`
        member["device_requests"] = device_requests(inv, host, devices) or (
            [{"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}] if accelerator == "nvidia" else [])
        member["volumes"] += mounts + strings(inv, host, "llmserve_xinference_volumes")
        # how the supervisor's /status names it
        member["joined_as"] = host_port(address, member["worker_port"])
        joined.append(member["joined_as"])
        members.append(member)
    # the supervisor's /status lists every joined worker as "<address>:<worker port>" (no auth needed)
    sup_entry["ready"] = dict(url=api + "/status", workers=joined)
    instances = [sup_entry]
    if members:
        # a worker's only HTTP listener is its metrics exporter; models are reached through the supervisor
        instances.append(dict(name="xinference-worker", kind="xinference_worker", hosts=workers, master=workers[0],
                              endpoints=[url(m["address"], m["metrics_port"]) for m in members], members=members,
                              cluster="xinference", supervisor=api))
    # the supervisor is the front door: its REST API routes every model request to the worker that holds the model
    door = dict(kind="xinference", host=sup, url=api, backends={"supervisor": [api]}, workers=joined,
                health=api + "/status")
    return dict(instances=instances, front_door=door)
