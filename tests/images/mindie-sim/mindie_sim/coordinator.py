"""Stand-in for the MindIE Motor Coordinator (`mindie_motor_coordinator [PREDICT_IP [MANAGE_IP]]`,
old `ms_coordinator PREDICT_IP PREDICT_PORT MANAGE_IP MANAGE_PORT`)."""

from __future__ import annotations

import itertools
import threading
import uuid

from . import common as c

COMP = "mindie-coordinator"
TLS_NAMES = ["controller_server", "request_server", "mindie_client", "mindie_mangment", "external", "status",
             "etcd_server", "alarm_client"]
ROLES = {80: "prefill", 68: "decode", 70: "flex"}  # DIGSInstanceRole chars 'P' 'D' 'F' as JSON numbers


class Coordinator:
    def __init__(self, argv: list[str], old: bool):
        if old and len(argv) != 4:
            c.die(COMP, [f"argv: usage: ms_coordinator PREDICT_IP PREDICT_PORT MANAGE_IP MANAGE_PORT, got {argv}"])
        if not old and len(argv) > 2:
            c.die(COMP, [f"argv: Incorrect usage. The expected format is: mindie_motor_coordinator <predict_ip> "
                         f"<manage_ip>, got {argv}"])
        self.file, self.check, cfg, errs = c.motor_config(COMP, "MINDIE_MS_COORDINATOR_CONFIG_FILE_PATH", "ms_coordinator.json")
        self.validate(cfg, errs, argv, old)
        errs.exit_if_any()
        self.instances, self.lock, self.controller_ip, self.ready = {}, threading.Lock(), None, False
        self.rr, self.counts = itertools.count(), {"requests": 0, "failed": 0}

    def validate(self, cfg, errs: c.Errors, argv, old) -> None:
        f = self.file
        k = c.Keys(errs, f, cfg)
        h = k.sub("http_config")
        allow0 = h.get("allow_all_zero_ip_listening", "bool", default=False)
        self.predict_ip, self.manage_ip = h.get("predict_ip", "str"), h.get("manage_ip", "str")
        ports = {p: h.get(p, "strport") for p in ("predict_port", "manage_port", "alarm_port", "external_port",
                                                  "status_port")}
        for key, lo, hi in (("server_thread_num", 1, 10000), ("client_thread_num", 1, 10000),
                            ("http_timeout_seconds", 0, 3600), ("keep_alive_seconds", 0, 3600)):
            h.get(key, "int", lo=lo, hi=hi)
        h.get("server_name", "str")
        h.get("user_agent", "str")
        if argv:
            self.predict_ip = argv[0]
            if old:
                self.manage_ip = argv[2]
                for i, p in ((1, "predict_port"), (3, "manage_port")):
                    if not argv[i].isdigit() or not 1024 <= int(argv[i]) <= 65535:
                        errs.add("argv", p, f"{argv[i]!r} is not a port in [1024, 65535]")
                    else:
                        ports[p] = int(argv[i])
            elif len(argv) > 1:
                self.manage_ip = argv[1]
        for name, ip in (("predict_ip", self.predict_ip), ("manage_ip", self.manage_ip)):
            if ip is not None and not c.is_ip(ip, allow0):
                errs.add(f if not argv else "argv/" + f, "http_config." + name, f"{ip!r} is not a valid IPv4 address")
        listen = [("predict_port", self.predict_ip), ("manage_port", self.manage_ip),
                  ("external_port", self.manage_ip), ("status_port", self.manage_ip)]
        seen = {}
        for p, ip in listen:
            if ports[p] is not None and (ip, ports[p]) in seen:
                errs.add(f, "http_config." + p, f"port {ports[p]} collides with http_config.{seen[(ip, ports[p])]}")
            seen[(ip, ports[p])] = p
        self.ports = ports
        rl = k.sub("request_limit")
        rl.get("single_node_max_requests", "int", lo=1, hi=15000)
        rl.get("max_requests", "int", lo=1, hi=90000)
        self.body_limit = rl.get("body_limit", "int", lo=1, hi=20, default=1)
        mc = k.sub("metrics_config")
        mc.get("enable", "bool")
        mc.get("trigger_size", "int", lo=1, hi=10000)
        k.sub("prometheus_metrics_config").get("reuse_time", "int", lo=1, hi=100)
        ec = k.sub("exception_config")
        for key, hi in (("max_retry", 10), ("schedule_timeout", 3600), ("first_token_timeout", 3600),
                        ("infer_timeout", 65535), ("tokenizer_timeout", 3600)):
            ec.get(key, "int", lo=0, hi=hi)
        ds = k.sub("digs_scheduler_config")
        ds.get("deploy_mode", "str", choices=["pd_separate", "pd_disaggregation", "pd_disaggregation_single_container",
                                              "single_node"])
        ds.get("scheduler_type", "str", choices=["digs_scheduler", "default_scheduler"])
        ds.get("algorithm_type", "str")
        k.sub("backup_config").get("function_enable", "bool")
        tls = k.sub("tls_config")
        self.tls = {}
        for name in TLS_NAMES:
            if not tls.get(f"{name}_tls_enable", "bool", default=False):
                continue
            it = tls.sub(f"{name}_tls_items")
            v = {x: it.get(x, "str") for x in ("ca_cert", "tls_cert", "tls_key", "tls_passwd", "tls_crl")}
            if None in v.values() or errs.lines or name in ("etcd_server", "mindie_mangment"):
                continue
            if c.tls_files(errs, f, f"tls_config.{name}_tls_items", [v["ca_cert"]], v["tls_cert"], v["tls_key"],
                           0o400 if self.check else 0o640):
                self.tls[name] = ([v["ca_cert"]], v["tls_cert"], v["tls_key"])

    def ctx(self, name, server=False):
        t = self.tls.get(name)
        return None if not t else (c.server_ctx(*t) if server else c.client_ctx(*t))

    # ------------------------------------------------------------ manage port
    def r_refresh(self, req):
        body = req.json()
        why = None
        if not isinstance(body, dict) or not isinstance(body.get("instances"), list) \
                or not isinstance(body.get("ids"), list):
            why = "body needs 'ids' and 'instances' arrays"
        else:
            for i, ins in enumerate(body["instances"]):
                si = ins.get("static_info") if isinstance(ins, dict) else None
                if not isinstance(si, dict) or not isinstance(ins.get("dynamic_info"), dict):
                    why = f"instances[{i}] needs static_info and dynamic_info objects"
                elif not isinstance(ins.get("id"), int) or not c.is_ip(ins.get("ip")) \
                        or not str(ins.get("port", "")).isdigit() or not isinstance(ins.get("model_name"), str):
                    why = f"instances[{i}] needs id (int), ip, port and model_name"
                elif si.get("role") not in ROLES or not isinstance(si.get("block_size"), int):
                    why = f"instances[{i}].static_info needs role (80 'P' / 68 'D') and block_size"
                if why:
                    break
        if why:
            c.log(COMP, f"ERROR Failed to read controller instance refresh request: {why}")
            return c.reply(400, {"error": why})
        with self.lock:
            self.controller_ip = req.client
            self.instances = {ins["id"]: ins for ins in body["instances"] if ins["id"] in body["ids"]}
            roles = {ROLES[i["static_info"]["role"]] for i in self.instances.values()}
            now = {"prefill", "decode"} <= roles
            changed, self.ready = now != self.ready, now
        if changed:
            c.log(COMP, "MindIE-MS coordinator is ready!!!" if now else "MindIE-MS coordinator is not ready...")
            threading.Thread(target=self.alarm, args=(now,), daemon=True).start()
        return c.reply(200, "")

    def alarm(self, ready: bool) -> None:
        ctx, port = self.ctx("alarm_client"), self.ports["alarm_port"]
        try:
            st, _, _ = c.call("POST", c.url(ctx, self.controller_ip, port) + "/v1/alarm/coordinator",
                              {"alarm": "coordinator_ready" if ready else "coordinator_not_ready"}, ctx=ctx,
                              source=self.manage_ip)
            if st != 200:
                raise OSError(f"HTTP {st}")
        except OSError as e:
            c.log(COMP, f"ERROR alarm to the Controller {self.controller_ip}:{port} (http_config.alarm_port, must be "
                        f"the Controller's controller_alarm_port) failed: {e}")

    def r_info(self, req):
        return c.reply(200, {"ids": sorted(self.instances), "ready": self.ready})

    # ------------------------------------------------------------ predict port
    def r_predict(self, req):
        if len(req.body) > self.body_limit * 1024 * 1024:
            return c.reply(413, {"error": f"body exceeds request_limit.body_limit {self.body_limit} MB"})
        with self.lock:
            inst = dict(self.instances)
            ready = self.ready
        if not ready:
            return c.reply(503, {"error": "coordinator is not ready: no prefill and decode instances yet"})
        ps = [i for i in inst.values() if ROLES[i["static_info"]["role"]] == "prefill"]
        p = ps[next(self.rr) % len(ps)]
        ds = [inst[x] for x in p["dynamic_info"].get("peers", []) if x in inst
              and ROLES[inst[x]["static_info"]["role"]] == "decode"] \
            or [i for i in inst.values() if ROLES[i["static_info"]["role"]] == "decode"]
        d = ds[next(self.rr) % len(ds)]
        rid = uuid.uuid4().hex
        ctx = self.ctx("mindie_client")
        hdr = {"req-type": "prefill", "req-id": rid, "d-port": str(d["port"]),
               "d-target": d["ip"] + (f";{d['inter_comm_port']}" if d.get("inter_comm_port") else "")}
        self.counts["requests"] += 1
        try:
            st, ans, _ = c.call("POST", c.url(ctx, p["ip"], p["port"]) + req.path, req.body, hdr, ctx, 60)
            if st != 200:
                raise OSError(f"prefill {p['ip']}:{p['port']} answered {st}: {ans}")
            st, ans, rh = c.call("GET", c.url(ctx, d["ip"], d["port"]) + "/dresult", None, {"req-id": rid}, ctx, 60)
            if st != 200:
                raise OSError(f"decode {d['ip']}:{d['port']} answered {st}: {ans}")
        except OSError as e:
            self.counts["failed"] += 1
            c.log(COMP, f"ERROR request {rid} failed: {e}")
            return c.reply(503, {"error": str(e)})
        route = {k: v for k, v in rh.items() if k.lower() == "x-mindie-sim-route"}
        return c.reply(200, ans, route)

    def r_metrics(self, req):
        text = "".join(f"# TYPE mindie_sim_coordinator_{k}_total counter\nmindie_sim_coordinator_{k}_total {v}\n"
                       for k, v in self.counts.items())
        return c.reply(200, text, {"content-type": "text/plain; version=0.0.4"})

    def run(self):
        ok = lambda req: c.reply(200, "")  # noqa: E731

        def readiness(req):
            return c.reply(200 if self.ready else 503, "")
        p = self.ports
        c.serve(COMP, self.manage_ip, p["status_port"],
                [("GET", "/v1/startup", ok), ("GET", "/v1/health", ok), ("GET", "/v2/health/live", ok),
                 ("GET", "/v1/readiness", readiness), ("GET", "/v2/health/ready", readiness)],
                self.ctx("status", True), "status_port")
        c.serve(COMP, self.manage_ip, p["manage_port"],
                [("POST", "/v1/instances/refresh", self.r_refresh), ("GET", "/v1/coordinator_info", self.r_info)],
                self.ctx("controller_server", True), "manage_port")
        c.serve(COMP, self.manage_ip, p["external_port"], [("GET", "/metrics", self.r_metrics)],
                self.ctx("external", True), "external_port")
        c.serve(COMP, self.predict_ip, p["predict_port"],
                [("POST", "/v1/chat/completions", self.r_predict), ("POST", "/v1/completions", self.r_predict)],
                self.ctx("request_server", True), "predict_port")
        c.log(COMP, f"config {self.file}; waiting for instances from the Controller")
        c.wait_forever()


def main(argv: list[str], old: bool = False) -> int:
    Coordinator(argv, old).run()
    return 0
