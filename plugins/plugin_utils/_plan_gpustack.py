# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A GPUStack v2 cluster (Docker only): one or more servers, workers, optionally a database and a load balancer.

Inventory model
- group ``gpustack_server``: one or more hosts, each a ``gpustack/gpustack`` container (host
  networking, the image's entrypoint kept: ``argv`` are the arguments of ``gpustack start``) with
  its data in ``llmserve_gpustack_data_dir`` (/var/lib/gpustack, mounted at the same path).
  One server keeps its embedded PostgreSQL unless a database is given.
- group ``gpustack_worker``: hosts that run a privileged worker container with the Docker socket
  (it starts the inference containers beside itself), ``--runtime nvidia`` on NVIDIA hosts, data
  in ``llmserve_gpustack_worker_data_dir`` (/var/lib/gpustack-worker). A host may also be a server:
  two containers.
- group ``gpustack_database`` (optional, at most one host): a PostgreSQL container the servers
  share (``llmserve_gpustack_database_image`` postgres:17, ``_port`` 5432, ``_name`` and ``_user``
  gpustack, password in the vaulted ``llmserve_gpustack_database_password``). Instead, an existing
  PostgreSQL or MySQL can be given as the vaulted ``llmserve_gpustack_database_url``
  (postgresql://... or mysql://...); not both.
- group ``gpustack_lb`` (optional, at most one host): a load balancer (``llmserve_gpustack_lb_image``
  haproxy:3.0 on ``llmserve_gpustack_lb_port`` 80) in front of the servers, checking ``/readyz``;
  workers register through it. An existing load balancer or VIP is given as
  ``llmserve_gpustack_server_url`` instead.

High availability, as far as released GPUStack goes: several servers are stateless peers over one
external database behind one load balancer, sharing the registration token
(``llmserve_gpustack_token``), the JWT key (``llmserve_gpustack_jwt_secret_key``) and the admin
bootstrap password (``llmserve_gpustack_bootstrap_password``), each with its own
``GPUSTACK_SERVER_ID`` (``llmserve_gpustack_server_id``, default the inventory name). Open-source
GPUStack ships only a single-node coordinator: only a coordinator plugin (an extension such as the
enterprise edition's) elects one leader to run the scheduler and controllers. So several servers
also need ``llmserve_gpustack_distributed_coordinator: true``, an assertion that the image carries
one. ``server_urls``, ``scheduling_mode``, ``coordinator_url``, ``distributed_scheduling`` and
``schedule_lock_timeout`` come from an unmerged pull request (#4358), not from GPUStack: the plan
refuses them in variables, extra arguments and environment.

Variables (read on the first server unless said otherwise; defaults in roles/defaults/meta/argument_specs.yml)
- ``llmserve_gpustack_image`` (required, one for every member: upgrade servers then workers to
  the same version), e.g. gpustack/gpustack:v2.3.0.
- server ports: ``llmserve_gpustack_port`` (80, UI, API and the OpenAI API through the embedded
  gateway), ``_api_port`` (30080), ``_proxy_port`` (30079), ``_metrics_port`` (10161),
  ``_database_port`` (5432: the embedded PostgreSQL, or the gpustack_database host's),
  ``_prometheus_port`` (19090) and ``_grafana_port`` (13000) unless
  ``llmserve_gpustack_builtin_observability`` is false; the embedded gateway's fixed ports
  (18443, 9876, 15010, 15012, 8888, 15051, 15000, 15021, 15090, 15020) are claimed too.
- worker ports (per worker): ``llmserve_gpustack_worker_port`` (10150, serves /healthz),
  ``_worker_metrics_port`` (10151), ``_service_ports`` ("40000-40063", inference) and
  ``_ray_ports`` ("41000-41999", Ray for distributed vLLM), both ranges reserved.
- secrets, by variable name only (keep them in ansible-vault), in each container's env file (0600):
  ``llmserve_gpustack_token`` (required: GPUStack 2.3.0 makes the default cluster and its registration token
  only from a server's ``--token``; at most 58 characters, best ``gpustack_<16 hex>_<32 hex>``),
  ``llmserve_gpustack_bootstrap_password`` (required: the admin's password, which the collection logs in with),
  ``llmserve_gpustack_jwt_secret_key``, ``llmserve_gpustack_database_url``,
  ``llmserve_gpustack_database_password``.
- every other setting of a server or worker is a key of its configuration file
  (``<llmserve_config_dir>/<container>.yaml``, mounted read-only, ``gpustack start --config-file``), so the
  container's command stays ``--config-file <path>`` plus the extra arguments. Servers always run without the
  embedded worker (``disable_worker``: a second start of a server whose data directory lacks bootstrap_version
  would otherwise start one, gpustack 2.3.0 config.py ``_is_both_role``).
- ``llmserve_gpustack_gateway_mode``: ``embedded`` (the official image: Higress on ``llmserve_gpustack_port``,
  the API on 127.0.0.1) or ``disabled`` (the API on ``llmserve_gpustack_api_port`` of every address; images without
  the gateway, such as one built from the PyPI package).
- ``llmserve_gpustack_worker_name`` (per worker, default the inventory name),
  ``llmserve_gpustack_server_extra_args``, ``llmserve_gpustack_worker_extra_args``,
  ``llmserve_gpustack_env`` (every GPUStack container).
"""

from __future__ import annotations

import json
import re

from ._cluster_util import (boolean, claim_range, config_file, host_port, is_set, log_options, mapping, one_value, port, port_range, secret,
                            single, strings, url)
from ._planner import SECRET_PLACEHOLDER

GROUPS = ("gpustack_server", "gpustack_worker", "gpustack_database", "gpustack_lb")
# the embedded gateway (Higress/Envoy) of every server listens on these fixed ports (gpustack/utils/s6_services.py)
GATEWAY_PORTS = (18443, 9876, 15010, 15012, 8888, 15051, 15000, 15021, 15090, 15020)
# keys of the unmerged multi-server PR #4358/#4379, not of released GPUStack
UNRELEASED = ("server_urls", "scheduling_mode", "coordinator_url", "distributed_scheduling", "schedule_lock_timeout")
UNRELEASED_WHY = ("comes from GPUStack's unmerged pull request #4358 (multi-server scheduling), not from a release; "
                  "released HA is several servers over one external database behind a load balancer")


def _unreleased(inv, hosts):
    """Refuse the multi-server keys that only exist in an unmerged pull request (once each, on the first host)."""
    found = {}
    for host in hosts:
        for key in UNRELEASED:
            if is_set(inv, host, "llmserve_gpustack_" + key):
                found.setdefault(("llmserve_gpustack_" + key, ""), host)
        for name in ("llmserve_gpustack_server_extra_args", "llmserve_gpustack_worker_extra_args"):
            for arg in strings(inv, host, name):
                if arg.split("=")[0].lstrip("-").replace("-", "_") in UNRELEASED:
                    found.setdefault((name, arg.split("=")[0] + " "), host)
        for key in mapping(inv, host, "llmserve_gpustack_env"):
            if key.upper().startswith("GPUSTACK_") and key[len("GPUSTACK_"):].lower() in UNRELEASED:
                found.setdefault(("llmserve_gpustack_env", key + " "), host)
    for (variable, what), host in found.items():
        inv.problem(host, variable, what + UNRELEASED_WHY)


def _database(inv, ports, lead, servers):
    """Where the servers keep their state: None (embedded), an external URL, or the gpustack_database host."""
    db_host = single(inv, "gpustack_database", "shared PostgreSQL", required=False)
    has_url = is_set(inv, lead, "llmserve_gpustack_database_url")
    if has_url and db_host:
        inv.problem(db_host, "llmserve_gpustack_database_url", "is set and gpustack_database has a host; use one: the "
                    "URL of an existing database, or the host for a PostgreSQL the collection runs")
    if has_url:
        value = inv.get(lead, "llmserve_gpustack_database_url")
        # never echo the value: it holds a password. The plan action passes secrets as SECRET_PLACEHOLDER
        # (set, not read), so the scheme is checked only where the value itself is at hand.
        if isinstance(value, str) and value != SECRET_PLACEHOLDER and not value.startswith(("postgresql://", "mysql://")):
            inv.problem(lead, "llmserve_gpustack_database_url", "must start with postgresql:// or mysql:// (GPUStack "
                        "accepts no other database)")
        return dict(kind="external", secret=secret("llmserve_gpustack_database_url", lead)), None
    if not db_host:
        if len(servers) > 1:
            inv.problem(lead, "llmserve_gpustack_database_url", "%d gpustack_server hosts (HA) need one shared database, "
                        "but each would keep its own embedded PostgreSQL; set llmserve_gpustack_database_url (vault) "
                        "or add a gpustack_database host" % len(servers))
        return None, None
    if not is_set(inv, db_host, "llmserve_gpustack_database_password"):
        inv.problem(db_host, "llmserve_gpustack_database_password", "is not set; give the password of the GPUStack "
                    "database (ansible-vault encrypt_string)")
    address = inv.address(db_host)
    name, user = str(inv.get(db_host, "llmserve_gpustack_database_name")), str(inv.get(db_host, "llmserve_gpustack_database_user"))
    number = port(inv, ports, db_host, "llmserve_gpustack_database_port", "postgresql", "gpustack-database")
    data_dir = str(inv.get(db_host, "llmserve_gpustack_database_data_dir"))
    member = dict(host=db_host, address=address, container="llmserve-gpustack-database",
                  image=inv.get(db_host, "llmserve_gpustack_database_image"), network_mode="host",
                  keep_image_entrypoint=True, port=number, data_dir=data_dir,
                  env_file=config_file(inv, db_host, "llmserve-gpustack-database.env"),
                  log_options=log_options(inv, db_host),
                  volumes=["%s:/var/lib/postgresql/data" % data_dir],
                  argv=["postgres", "-p", str(number), "-c", "listen_addresses=%s" % address],
                  env={"POSTGRES_DB": name, "POSTGRES_USER": user},
                  secret_env={"POSTGRES_PASSWORD": secret("llmserve_gpustack_database_password", db_host)},
                  health=["tcp://" + host_port(address, number)],
                  ready_command=["pg_isready", "-h", address, "-p", str(number), "-U", user, "-d", name])
    fmt = "postgresql://%s:{}@%s/%s" % (user, host_port(address, number), name)
    entry = dict(name="gpustack-database", kind="gpustack_database", hosts=[db_host], master=db_host,
                 endpoints=["postgresql://%s/%s" % (host_port(address, number), name)], members=[member], cluster="gpustack")
    return dict(kind="gpustack_database", secret=secret("llmserve_gpustack_database_password", db_host, fmt)), entry


def _config(inv, host, container, settings):
    """The configuration file of a server or worker (its keys are Config's fields, gpustack 2.3.0 config.py), and the
    argv that reads it."""
    path = config_file(inv, host, container + ".yaml")
    content = "".join("%s: %s\n" % (key, json.dumps(value)) for key, value in settings.items())
    return dict(path=path, content="# Written by llmserve.cluster from the plan; edit the inventory, not this file.\n"
                + content), ["--config-file", path]


def _ha(inv, lead, servers, public):
    """Checks that only matter with several servers."""
    if public is None:
        inv.problem(None, "gpustack_lb", "%d gpustack_server hosts (HA) need one address for users and workers; add a "
                    "gpustack_lb host, or set llmserve_gpustack_server_url to your own load balancer" % len(servers))
    for variable, why in (("llmserve_gpustack_token", "the registration token every server accepts and every worker "
                           "presents"),
                          ("llmserve_gpustack_jwt_secret_key", "the JWT key, so a session signed by one server verifies "
                           "on the others"),
                          ("llmserve_gpustack_bootstrap_password", "the admin password every server bootstraps (otherwise "
                           "it lands in initial_admin_password of whichever server starts first)")):
        if not is_set(inv, lead, variable):
            inv.problem(lead, variable, "is not set; %d servers (HA) must share %s: give it once for all of them "
                        "(ansible-vault encrypt_string)" % (len(servers), why))
    if not boolean(inv, lead, "llmserve_gpustack_distributed_coordinator"):
        inv.problem(lead, "llmserve_gpustack_distributed_coordinator", "is false, but %d gpustack_server hosts need a "
                    "coordinator plugin for leader election (open-source GPUStack ships only a single-node "
                    "coordinator, so every server would run the scheduler); set it true once the image has one, or "
                    "keep one server" % len(servers))
    ids = {}
    for host in servers:
        server_id = str(inv.get(host, "llmserve_gpustack_server_id") or host)
        if server_id in ids:
            inv.problem(host, "llmserve_gpustack_server_id", "%r is also %s's; every server needs its own id"
                        % (server_id, ids[server_id]))
        ids.setdefault(server_id, host)


def _front(inv, ports, lead, servers):
    """The load balancer (a gpustack_lb host, or llmserve_gpustack_server_url) and the URL workers register at."""
    lb = single(inv, "gpustack_lb", "load balancer in front of the GPUStack servers", required=False)
    external = inv.get(lead, "llmserve_gpustack_server_url")
    if lb and external:
        inv.problem(lb, "llmserve_gpustack_server_url", "is set and gpustack_lb has a host; use one load balancer")
    if external and not re.match(r"https?://", str(external)):
        inv.problem(lead, "llmserve_gpustack_server_url", "must be an http:// or https:// URL, got %r" % (external,))
    if lb:
        number = port(inv, ports, lb, "llmserve_gpustack_lb_port", "gpustack-lb", "gpustack-lb")
        return lb, url(inv.address(lb), number), number
    if external:
        return None, str(external).rstrip("/"), None
    return None, None, None


def _server(inv, ports, host, ctx):
    address = inv.address(host)
    inst = "gpustack-server"
    container = "llmserve-gpustack-server"
    data_dir = str(inv.get(host, "llmserve_gpustack_data_dir"))
    member = dict(host=host, address=address, container=container, image=ctx["image"], network_mode="host",
                  keep_image_entrypoint=True, data_dir=data_dir, env_file=config_file(inv, host, container + ".env"),
                  log_options=log_options(inv, host))
    embedded = ctx["gateway_mode"] == "embedded"
    settings = dict(data_dir=data_dir, advertise_address=address, gateway_mode=ctx["gateway_mode"],
                    disable_worker=True, disable_update_check=True)
    if embedded:
        member["port"] = settings["port"] = port(inv, ports, host, "llmserve_gpustack_port", "gpustack-http", inst)
        for number in GATEWAY_PORTS:
            ports.claim(host, number, "gpustack-gateway", inst, "gpustack_server")
    member["api_port"] = settings["api_port"] = port(inv, ports, host, "llmserve_gpustack_api_port", "gpustack-api", inst)
    if not embedded:   # the API serves every address; the UI, the API and the OpenAI API are on it
        member["port"] = member["api_port"]
    member["proxy_port"] = settings["proxy_port"] = port(inv, ports, host, "llmserve_gpustack_proxy_port",
                                                         "gpustack-proxy", inst)
    member["metrics_port"] = settings["metrics_port"] = port(inv, ports, host, "llmserve_gpustack_metrics_port",
                                                             "gpustack-metrics", inst)
    if ctx["database"] is None:
        member["database_port"] = settings["database_port"] = port(
            inv, ports, host, "llmserve_gpustack_database_port", "gpustack-embedded-postgresql", inst)
    if ctx["observability"]:
        member["prometheus_port"] = settings["builtin_prometheus_port"] = port(
            inv, ports, host, "llmserve_gpustack_prometheus_port", "gpustack-prometheus", inst)
        member["grafana_port"] = settings["builtin_grafana_port"] = port(
            inv, ports, host, "llmserve_gpustack_grafana_port", "gpustack-grafana", inst)
    else:
        settings["disable_builtin_observability"] = True
    if ctx["public"]:
        settings["server_external_url"] = ctx["public"]
    if ctx["registry"]:
        settings["system_default_container_registry"] = ctx["registry"]
    member["config"], argv = _config(inv, host, container, settings)
    argv += strings(inv, host, "llmserve_gpustack_server_extra_args")
    env = dict(ctx["env"], GPUSTACK_SERVER_ID=str(inv.get(host, "llmserve_gpustack_server_id") or host))
    secret_env = {}
    if ctx["database"]:
        secret_env["GPUSTACK_DATABASE_URL"] = ctx["database"]["secret"]
    for variable, name in (("llmserve_gpustack_token", "GPUSTACK_TOKEN"),
                           ("llmserve_gpustack_jwt_secret_key", "GPUSTACK_JWT_SECRET_KEY"),
                           ("llmserve_gpustack_bootstrap_password", "GPUSTACK_BOOTSTRAP_PASSWORD")):
        if is_set(inv, ctx["lead"], variable):
            secret_env[name] = secret(variable, ctx["lead"])
    member.update(argv=argv, env=env, secret_env=secret_env,
                  volumes=["%s:%s" % (data_dir, data_dir), "%s:%s:ro" % ((member["config"]["path"],) * 2)],
                  health=[url(address, member["port"], "/healthz"), url(address, member["port"], "/readyz")])
    return member


def _worker(inv, ports, host, ctx):
    address = inv.address(host)
    inst = "gpustack-worker"
    container = "llmserve-gpustack-worker"
    data_dir = str(inv.get(host, "llmserve_gpustack_worker_data_dir"))
    member = dict(host=host, address=address, container=container, image=ctx["image"], network_mode="host",
                  keep_image_entrypoint=True, privileged=boolean(inv, host, "llmserve_gpustack_worker_privileged"),
                  data_dir=data_dir, env_file=config_file(inv, host, container + ".env"),
                  runtime="nvidia" if inv.get(host, "llmserve_accelerator") == "nvidia" else None,
                  log_options=log_options(inv, host))
    member["worker_port"] = port(inv, ports, host, "llmserve_gpustack_worker_port", "gpustack-worker", inst)
    member["metrics_port"] = port(inv, ports, host, "llmserve_gpustack_worker_metrics_port", "gpustack-worker-metrics", inst)
    name = str(inv.get(host, "llmserve_gpustack_worker_name") or host)
    settings = dict(data_dir=data_dir, server_url=ctx["server_url"], advertise_address=address, worker_name=name,
                    worker_port=member["worker_port"], worker_metrics_port=member["metrics_port"])
    ranges = []
    for variable, service, key in (("llmserve_gpustack_service_ports", "gpustack-inference", "service_port_range"),
                                   ("llmserve_gpustack_ray_ports", "gpustack-ray", "ray_port_range")):
        span = port_range(inv, host, variable)
        claimed = claim_range(inv, ports, host, span, service, inst, variable)
        if claimed:
            ranges.append(claimed)
        if span:
            settings[key] = "%d-%d" % span
    member["config"], argv = _config(inv, host, container, settings)
    argv += strings(inv, host, "llmserve_gpustack_worker_extra_args")
    # GPUStack starts inference containers with the worker container's mounts (its cloud-init does the same)
    env = dict(ctx["env"], GPUSTACK_RUNTIME_DEPLOY_MIRRORED_NAME=container)
    if not is_set(inv, host, "llmserve_gpustack_token") and is_set(inv, ctx["lead"], "llmserve_gpustack_token"):
        inv.problem(host, "llmserve_gpustack_token", "is not set for this worker, which registers with it; give it "
                    "where the servers get theirs (group_vars/all)")
    # the worker registers again at every start, so it always needs the registration token (its own host's value,
    # the same as the servers' unless a host_vars file says otherwise)
    member.update(argv=argv, env=env, secret_env={"GPUSTACK_TOKEN": secret("llmserve_gpustack_token", host)},
                  port_ranges=ranges, worker_name=name,
                  volumes=["/var/run/docker.sock:/var/run/docker.sock", "%s:%s" % (data_dir, data_dir),
                           "%s:%s:ro" % ((member["config"]["path"],) * 2)],
                  health=[url(address, member["worker_port"], "/healthz")])
    return member


def _haproxy(servers, bind):
    """HAProxy's configuration of the load balancer: every server checked on /readyz; long timeouts, as the workers
    and the UI hold watch streams (GET ...?watch=true) open."""
    lines = ["# Written by llmserve.cluster from the plan.", "global", "    log stdout format raw local0", "",
             "defaults", "    mode http", "    log global", "    option httplog", "    timeout connect 5s",
             "    timeout client 1h", "    timeout server 1h", "    timeout http-request 30s", "",
             "frontend gpustack", "    bind %s" % bind, "    default_backend servers", "",
             "backend servers", "    balance roundrobin", "    option httpchk GET /readyz",
             "    http-check expect status 200"]
    lines += ["    server %s %s check inter 2s fall 2 rise 2" % (m["host"], host_port(m["address"], m["port"]))
              for m in servers]
    return "\n".join(lines) + "\n"


def plan(inv, ports):
    servers = list(inv.groups.get("gpustack_server", []))
    workers = list(inv.groups.get("gpustack_worker", []))
    if not servers:
        present = [g for g in GROUPS[1:] if inv.groups.get(g)]
        inv.problem(None, "gpustack_server", "has no host, but %s %s; put the GPUStack server(s) in gpustack_server"
                    % (" and ".join(present), "has hosts" if len(present) == 1 else "have hosts"))
        return dict(instances=[], front_door=None)
    lead = servers[0]
    members = servers + [w for w in workers if w not in servers]
    _unreleased(inv, members + [h for g in ("gpustack_database", "gpustack_lb") for h in inv.groups.get(g, [])])
    image = inv.required(lead, "llmserve_gpustack_image", "GPUStack v2 image, e.g. gpustack/gpustack:v2.3.0")
    one_value(inv, members, "llmserve_gpustack_image", lead, "run one GPUStack version everywhere (upgrade the "
              "servers, then the workers to the same version)")
    if image and re.search(r":v?0\.", str(image)):
        inv.problem(lead, "llmserve_gpustack_image", "%r is GPUStack v0.x (pip/systemd, other flags and API); this plan "
                    "runs GPUStack v2 containers" % (image,))
    for variable, why in (("llmserve_gpustack_token", "the registration token: GPUStack 2.3.0 makes the default cluster "
                           "only from a server's token, and workers join with it; make one as gpustack_<16 hex>_<32 "
                           "hex> (58 characters at most)"),
                          ("llmserve_gpustack_bootstrap_password", "the admin's password, which the collection logs in "
                           "with (without it GPUStack writes a random one that must be changed at the first login)")):
        if not is_set(inv, lead, variable):
            inv.problem(lead, variable, "is not set; give %s (ansible-vault encrypt_string)" % why)
    database, db_entry = _database(inv, ports, lead, servers)
    lb, public, lb_port = _front(inv, ports, lead, servers)
    if len(servers) > 1:
        _ha(inv, lead, servers, public)
    ctx = dict(image=image, lead=lead, database=database, public=public, env=mapping(inv, lead, "llmserve_gpustack_env"),
               observability=boolean(inv, lead, "llmserve_gpustack_builtin_observability"),
               gateway_mode=str(inv.get(lead, "llmserve_gpustack_gateway_mode")),
               registry=inv.get(lead, "llmserve_gpustack_container_registry"))
    server_members = [_server(inv, ports, h, ctx) for h in servers]
    ctx["server_url"] = public or url(server_members[0]["address"], server_members[0]["port"])
    worker_members = [_worker(inv, ports, h, ctx) for h in workers]
    endpoints = [url(m["address"], m["port"]) for m in server_members]
    common = dict(cluster="gpustack", server_url=ctx["server_url"], high_availability=len(servers) > 1,
                  database=(database or {"kind": "embedded"})["kind"])
    instances = [dict(name="gpustack-server", kind="gpustack_server", hosts=servers, master=lead, endpoints=endpoints,
                      members=server_members, admin_password_variable="llmserve_gpustack_bootstrap_password",
                      ready=dict(url=ctx["server_url"] + "/readyz", workers_url=ctx["server_url"] + "/v2/workers",
                                 workers=[m["worker_name"] for m in worker_members]),
                      **common)]
    if worker_members:
        instances.append(dict(name="gpustack-worker", kind="gpustack_worker", hosts=workers, master=workers[0],
                              endpoints=[url(m["address"], m["worker_port"]) for m in worker_members],
                              members=worker_members, **common))
    if db_entry:
        instances.insert(0, db_entry)
    if lb:
        address = inv.address(lb)
        config = config_file(inv, lb, "llmserve-gpustack-lb.cfg")
        member = dict(host=lb, address=address, container="llmserve-gpustack-lb", image=inv.get(lb, "llmserve_gpustack_lb_image"),
                      port=lb_port, network_mode="host", keep_image_entrypoint=True, env={},
                      argv=["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"],
                      volumes=["%s:/usr/local/etc/haproxy/haproxy.cfg:ro" % config],
                      config=dict(path=config, content=_haproxy(server_members, host_port(address, lb_port))),
                      log_options=log_options(inv, lb), health=[public + "/readyz"])
        instances.append(dict(name="gpustack-lb", kind="gpustack_lb", hosts=[lb], master=lb, endpoints=[public],
                              members=[member], **common))
        door = dict(kind="gpustack-lb", host=lb, url=public, backends={"server": endpoints}, external_url=None,
                    container=member["container"], image=member["image"], port=lb_port, network_mode="host",
                    backend_health_path="/readyz", health=public + "/readyz")
    else:
        # one server is its own front door; with a load balancer outside the inventory, the plan's door is
        # still the first server and external_url is where users and workers go
        door = dict(kind="gpustack", host=lead, url=endpoints[0], backends={"server": endpoints},
                    external_url=public, health=endpoints[0] + "/readyz")
    return dict(instances=instances, front_door=door)
