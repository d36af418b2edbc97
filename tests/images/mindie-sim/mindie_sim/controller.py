"""Stand-in for the MindIE Motor Controller (`mindie_motor_controller`, old `ms_controller`)."""

from __future__ import annotations

import os
import time

from . import common as c

COMP = "mindie-controller"
OK_BODY = {"message": "", "status": "0"}
INT_KEYS = {  # key: (lo, hi)
    "cluster_synchronization_seconds": (1, 65535), "rank_table_detecting_seconds": (1, 65535),
    "disappeared_server_waiting_seconds": (1, 65535), "server_online_attempt_times": (1, 65535),
    "server_online_wait_seconds": (1, 65535), "init_role_attempt_times": (1, 65535),
    "check_role_attempt_times": (1, 65535), "check_role_wait_seconds": (1, 65535),
    "http_timeout_seconds": (1, 65535), "http_retries": (0, 65535),
    "digs_request_summary_input_length": (1, 65535), "digs_request_summary_output_length": (1, 65535),
    "digs_prefill_slo": (1, 65535), "digs_decode_slo": (1, 65535), "digs_pp": (1, 65535)}
PORT_KEYS = ["mindie_server_control_port", "mindie_server_port", "mindie_server_metric_port",
             "mindie_ms_coordinator_port", "node_manager_port", "mindie_ms_coordinator_external_port",
             "controller_alarm_port", "initial_dist_server_port"]
TLS_USED = ["request_coordinator", "request_server", "http_server", "external_coordinator", "alarm"]


class Controller:
    def __init__(self, argv: list[str]):
        if argv:
            c.die(COMP, [f"argv: the controller takes no arguments, got {argv}; the config comes from "
                         "$MINDIE_MS_CONTROLLER_CONFIG_FILE_PATH (else ./conf/ms_controller.json)"])
        self.file, self.check, cfg, errs = c.motor_config(COMP, "MINDIE_MS_CONTROLLER_CONFIG_FILE_PATH", "ms_controller.json")
        self.validate(cfg, errs)
        errs.exit_if_any()
        self.nodes, self.coordinator = [], None

    def validate(self, cfg, errs: c.Errors) -> None:
        k = c.Keys(errs, self.file, cfg)
        self.cfg = cfg
        allow0 = k.get("allow_all_zero_ip_listening", "bool", default=False)
        k.get("is_heterogeneous", "bool")
        self.hetero = cfg.get("is_heterogeneous") is True
        for sub in ("process_manager", "cluster_status"):
            s = k.sub(sub)
            if s.get("to_file", "bool"):
                s.get("file_path", "str")
        self.deploy = k.get("deploy_mode", "str", choices=["pd_separate", "pd_disaggregation",
                                                           "pd_disaggregation_single_container", "single_node"])
        k.get("role_decision_methods", "str", choices=["digs"])
        k.get("transfer_type", "str", choices=["D2DTransfer"])
        k.get("model_type", "str")
        self.rank_path = os.environ.get("GLOBAL_RANK_TABLE_FILE_PATH") or k.get("global_rank_table_file_path", "str")
        for key in ("digs_model_config_path", "digs_machine_config_path"):
            p = k.get(key, "str")
            if p and not os.path.isfile(p):
                errs.add(self.file, key, f"file {p} does not exist (relative paths resolve against the working "
                                         f"directory {os.getcwd()})")
        p_rate = k.get("default_p_rate", "int", lo=0, hi=767)
        d_rate = k.get("default_d_rate", "int", lo=0, hi=767)
        for var, name in (("MINDIE_MS_P_RATE", "p"), ("MINDIE_MS_D_RATE", "d")):
            if os.environ.get(var, "").isdigit() and int(os.environ[var]) <= 767:
                p_rate, d_rate = (int(os.environ[var]), d_rate) if name == "p" else (p_rate, int(os.environ[var]))
        if p_rate is not None and d_rate is not None:
            if (p_rate == 0) != (d_rate == 0):
                errs.add(self.file, "default_p_rate/default_d_rate",
                         f"{p_rate}/{d_rate}: both must be 0 (automatic) or both non-zero")
            elif p_rate + d_rate > 768:
                errs.add(self.file, "default_p_rate/default_d_rate", f"sum {p_rate + d_rate} exceeds 768")
        self.rates = (p_rate or 0, d_rate or 0)
        for key in PORT_KEYS:
            setattr(self, key, k.get(key, "port"))
        for key, (lo, hi) in INT_KEYS.items():
            setattr(self, key, k.get(key, "int", lo=lo, hi=hi))
        drd = k.sub("digs_periodic_role_decision")
        drd.get("auto_pd_role_switching_enable", "bool")
        drd.get("role_decision_time_period", "int", lo=3600, hi=3600 * 24 * 15)
        drd.get("tasks_end_wait_seconds", "int", lo=1, hi=65535)
        mn = cfg.get("multi_node_infer_config")
        if mn is not None:
            mk = k.sub("multi_node_infer_config")
            if mk.get("multi_node_infer_enable", "bool"):
                errs.add(self.file, "multi_node_infer_config.multi_node_infer_enable",
                         "multi-node instances (v2 role API) are not modelled by this stand-in")
        if cfg.get("has_flex") is True:
            errs.add(self.file, "has_flex", "Feature has_flex is currently not supported, please set it to false")
        hs = k.sub("http_server")
        self.ip = hs.get("ip", "str")
        if self.ip is not None and not c.is_ip(self.ip, allow0):
            errs.add(self.file, "http_server.ip", f"{self.ip!r} is not a valid IPv4 address")
        pod_ip = os.environ.get("POD_IP")
        if pod_ip:
            if c.is_ip(pod_ip, allow0):
                self.ip = pod_ip
            else:
                c.log(COMP, f"ERROR POD IP {pod_ip} is invalid, using HTTP server IP {self.ip}")
        self.port = hs.get("port", "port")
        tls = k.sub("tls_config")
        self.tls = {}
        for name in TLS_USED:
            if not tls.get(f"{name}_tls_enable", "bool", required=name != "alarm", default=False):
                continue
            it = tls.sub(f"{name}_tls_items")
            vals = {x: it.get(x, "str") for x in ("ca_cert", "tls_cert", "tls_key", "tls_passwd")}
            crl = it.get("tls_crl", "str")
            if crl is not None and len(crl) > 4096:
                errs.add(self.file, f"tls_config.{name}_tls_items.tls_crl", "longer than 4096 characters")
            if None in vals.values() or errs.lines:
                continue
            if c.tls_files(errs, self.file, f"tls_config.{name}_tls_items", [vals["ca_cert"]], vals["tls_cert"],
                           vals["tls_key"], 0o400 if self.check else 0o640):
                self.tls[name] = ([vals["ca_cert"]], vals["tls_cert"], vals["tls_key"])

    def ctx(self, name, server=False):
        t = self.tls.get(name)
        return None if not t else (c.server_ctx(*t) if server else c.client_ctx(*t))

    # ------------------------------------------------------------ rank table
    def load_rank_table(self) -> dict:
        path, deadline_tries = self.rank_path, self.server_online_attempt_times * self.server_online_wait_seconds
        start, status = time.monotonic(), None
        while True:
            errs = c.Errors(COMP)
            if os.path.isfile(path):
                table = c.read_json(path, errs, path, check=self.check)
                errs.exit_if_any()
                status = table.get("status") if isinstance(table, dict) else None
                if status == "completed":
                    return table
            if time.monotonic() - start > deadline_tries:
                c.die(COMP, [f"{path}: status: global rank table never became \"completed\" "
                             f"(last status {status!r}, waited {deadline_tries}s)"])
            time.sleep(min(self.rank_table_detecting_seconds, 1.0))

    def validate_rank_table(self, t: dict) -> None:
        f, errs = self.rank_path, c.Errors(COMP)
        groups = t.get("server_group_list")
        if not isinstance(groups, list) or not 2 <= len(groups) <= 3:
            errs.add(f, "server_group_list", "must be an array of 2 to 3 groups (0 Coordinator, 1 Controller, "
                                             "2 Servers)")
            errs.exit_if_any()
        for gi, g in enumerate(groups):
            key = f"server_group_list[{gi}]"
            if not isinstance(g, dict) or not isinstance(g.get("group_id"), str) or not g["group_id"].isdigit():
                errs.add(f, key + ".group_id", "must be a string holding a number")
                continue
            gid, servers = int(g["group_id"]), g.get("server_list")
            limit = 2 if gid == 0 else 96
            if gid == 1:
                continue
            if not isinstance(servers, list) or len(servers) > limit:
                errs.add(f, key + ".server_list", f"must be an array of 0 to {limit} servers")
                continue
            for si, s in enumerate(servers):
                sk = f"{key}.server_list[{si}]"
                if not isinstance(s, dict) or not c.is_ip(s.get("server_ip")):
                    errs.add(f, sk + ".server_ip", "missing or not a valid IPv4 string")
                    continue
                if gid == 0:
                    if self.coordinator is None:
                        self.coordinator = s["server_ip"]
                    continue
                if not c.is_ip(s.get("server_id")):
                    errs.add(f, sk + ".server_id", "missing or not a valid IPv4 string (the host IP)")
                for pk in ("predict_port", "mgmt_port", "metric_port", "inter_comm_port"):
                    if pk in s and (not isinstance(s[pk], str) or not s[pk].isdigit()
                                    or not 1024 <= int(s[pk]) <= 65535):
                        errs.add(f, f"{sk}.{pk}", f"{s[pk]!r} must be a string holding a port in [1024, 65535]")
                devs = s.get("device")
                if not isinstance(devs, list) or not 1 <= len(devs) <= 128:
                    n = len(devs) if isinstance(devs, list) else "no"
                    errs.add(f, sk + ".device", f"Server IP {s['server_ip']} has invalid device number ({n} "
                                                "entries; MindIE needs 1 to 128)")
                    continue
                for di, d in enumerate(devs):
                    dk = f"{sk}.device[{di}]"
                    if not isinstance(d, dict) or not c.is_ip(d.get("device_ip")):
                        errs.add(f, dk + ".device_ip", "missing or not a valid IPv4 string")
                        continue
                    for ik in ("device_id", "device_logical_id", "rank_id") + (
                            ("super_device_id",) if "super_device_id" in d else ()):
                        v = d.get(ik)
                        hi = 1073741824 if ik == "super_device_id" else 2048
                        if not isinstance(v, str) or not v.isdigit() or int(v) > hi:
                            errs.add(f, f"{dk}.{ik}", f"{v!r} must be a string holding a number in [0, {hi}]")
                if self.hetero and s.get("hardware_type") not in ("800I A2(64G)", "800I A2(32G)"):
                    errs.add(f, sk + ".hardware_type", "must be '800I A2(64G)' or '800I A2(32G)' (is_heterogeneous)")
                self.nodes.append({
                    "id": len(self.nodes), "group_id": gid, "ip": s["server_ip"], "host": s.get("server_id"),
                    "port": s.get("predict_port", str(self.mindie_server_port)),
                    "mgmt": s.get("mgmt_port", str(self.mindie_server_control_port)),
                    "metric": s.get("metric_port", str(self.mindie_server_metric_port)),
                    "ic": s.get("inter_comm_port", ""), "devices": devs})
        errs.exit_if_any()
        if len(self.nodes) < 2:
            die_msg = f"{f}: server_group_list: {len(self.nodes)} Server(s) in groups >= 2; PD needs at least 2"
            c.die(COMP, [die_msg])
        if self.coordinator is None:
            c.die(COMP, [f"{f}: server_group_list: no Coordinator in group \"0\""])

    # ------------------------------------------------------------ cluster bring-up
    def retry(self, what: str, fn, attempts=None, wait=None):
        attempts = attempts or self.server_online_attempt_times
        wait = wait or self.server_online_wait_seconds
        last = None
        for i in range(attempts):
            try:
                res = fn()
                if res is True:
                    return
                last = res
            except OSError as e:
                last = str(e)
            if i + 1 < attempts:
                time.sleep(wait)
        c.die(COMP, [f"{what}: failed after {attempts} attempts: {last}"])

    def srv(self, n, path, method="GET", body=None):
        ctx = self.ctx("request_server")
        return c.call(method, c.url(ctx, n["ip"], n["mgmt"]) + path, body, ctx=ctx, timeout=self.http_timeout_seconds)

    def assign(self) -> None:
        n = len(self.nodes)
        p, d = self.rates
        n_p = n // 2 if p == 0 else round(n * p / (p + d))
        n_p = min(max(n_p, 1), n - 1)
        for i, node in enumerate(self.nodes):
            node["role"] = "prefill" if i < n_p else "decode"
        where = "rank table mgmt_port or ms_controller.json mindie_server_control_port"
        for node in self.nodes:
            def ready(node=node):
                st, _, _ = self.srv(node, "/v2/health/ready")
                return True if st == 200 else f"HTTP {st}"
            self.retry(f"Server {node['ip']}:{node['mgmt']} ({where}) /v2/health/ready", ready)
            st, cfg, _ = self.srv(node, "/v1/config")
            if st != 200 or not isinstance(cfg, dict) or not isinstance(cfg.get("modelName"), str):
                c.die(COMP, [f"Server {node['ip']}:{node['mgmt']} /v1/config: invalid answer {st} {cfg}"])
            node["cfg"] = cfg
        for node in self.nodes:
            peers = [m for m in self.nodes if m["role"] != node["role"]]
            body = {"local": dict(self.node_json(node), instance_idx_in_pod=0, num_instances_per_pod=1,
                                  is_single_container=self.deploy == "pd_disaggregation_single_container"),
                    "peers": [self.node_json(m) for m in peers]}
            st, ans, _ = self.srv(node, f"/v1/role/{node['role']}", "POST", body)
            if st != 200:
                c.die(COMP, [f"Server {node['ip']}:{node['mgmt']} refused role {node['role']}: HTTP {st} {ans}"])
            node["peers"] = [m["id"] for m in peers]

            def role_ready(node=node):
                st, s, _ = self.srv(node, "/v1/status")
                svc = (s or {}).get("service", {}) if isinstance(s, dict) else {}
                return True if (svc.get("roleStatus"), svc.get("currentRole")) == ("RoleReady", node["role"]) \
                    else f"status {st} {s}"
            self.retry(f"Server {node['ip']}:{node['mgmt']} /v1/status role {node['role']}", role_ready,
                       self.check_role_attempt_times, self.check_role_wait_seconds)
            c.log(COMP, f"server {node['ip']} (id {node['id']}) is {node['role']}")

    @staticmethod
    def node_json(n) -> dict:
        devs = [{k: d[k] for k in ("device_id", "device_ip", "device_logical_id", "rank_id", "super_device_id")
                 if k in d} for d in n["devices"]]
        return {"device": devs, "server_ip": n["ip"], "id": n["id"], "host_ip": n["host"]}

    def refresh_body(self) -> dict:
        inst = []
        for n in self.nodes:
            cfg = n["cfg"]
            inst.append({
                "id": n["id"], "ip": n["ip"], "port": n["port"], "metric_port": n["metric"],
                "inter_comm_port": n["ic"], "model_name": cfg["modelName"],
                "static_info": {"group_id": n["group_id"], "max_seq_len": cfg.get("maxSeqLen", 0), "virtual_id": n["id"],
                                "max_output_len": cfg.get("maxOutputLen", 1), "total_slots_num": 200,
                                "total_block_num": 1024, "block_size": cfg.get("cacheBlockSize", 128),
                                "label": 0, "role": ord("P" if n["role"] == "prefill" else "D"), "p_percentage": 0},
                "dynamic_info": {"peers": n["peers"], "avail_slots_num": 200, "avail_block_num": 1024,
                                 "waiting_request_num": 0, "running_request_num": 0, "swapped_request_num": 0,
                                 "free_npu_block_nums": 1024, "free_cpu_block_nums": 0, "total_npu_block_nums": 1024,
                                 "total_cpu_block_nums": 0}})
        return {"ids": [n["id"] for n in self.nodes], "instances": inst}

    def refresh(self, once=False):
        ctx = self.ctx("request_coordinator")
        target = f"Coordinator {self.coordinator}:{self.mindie_ms_coordinator_port} (mindie_ms_coordinator_port, " \
                 "must be the Coordinator's http_config.manage_port) /v1/instances/refresh"

        def post():
            st, ans, _ = c.call("POST", c.url(ctx, self.coordinator, self.mindie_ms_coordinator_port)
                                + "/v1/instances/refresh", self.refresh_body(), ctx=ctx,
                                timeout=self.http_timeout_seconds, source=self.ip)
            return True if st == 200 else f"HTTP {st} {ans}"
        if once:
            self.retry(target, post)
        else:
            try:
                res = post()
                if res is not True:
                    c.log(COMP, f"ERROR {target}: {res}")
            except OSError as e:
                c.log(COMP, f"ERROR {target}: {e}")

    def check_external(self):
        ctx = self.ctx("external_coordinator")

        def get():
            st, _, _ = c.call("GET", c.url(ctx, self.coordinator, self.mindie_ms_coordinator_external_port)
                              + "/metrics", ctx=ctx, timeout=self.http_timeout_seconds)
            return True if st == 200 else f"HTTP {st}"
        self.retry(f"Coordinator {self.coordinator}:{self.mindie_ms_coordinator_external_port} "
                   "(mindie_ms_coordinator_external_port, must be the Coordinator's http_config.external_port) "
                   "/metrics", get)

    def run(self):
        ok = lambda req: c.reply(200, OK_BODY)  # noqa: E731
        c.serve(COMP, self.ip, self.port, [("GET", "/v1/startup", ok), ("GET", "/v1/health", ok)],
                self.ctx("http_server", True), "http_server")

        def alarm(req):
            c.log(COMP, f"alarm {req.path} from {req.client}: {req.body[:200].decode(errors='replace')}")
            return c.reply(200, OK_BODY)
        c.serve(COMP, self.ip, self.controller_alarm_port,
                [("POST", r"/v1/alarm/(coordinator|llm_engine)", alarm), ("POST", "/v1/terminate-service", alarm)],
                self.ctx("alarm", True), "controller_alarm_port")
        table = self.load_rank_table()
        self.validate_rank_table(table)
        c.log(COMP, f"rank table {self.rank_path}: {len(self.nodes)} servers, coordinator {self.coordinator}")
        self.assign()
        self.refresh(once=True)
        self.check_external()
        c.log(COMP, "cluster is up: roles assigned and instances sent to the Coordinator")
        while True:
            time.sleep(self.cluster_synchronization_seconds)
            self.refresh()


def main(argv: list[str], old: bool = False) -> int:
    Controller(argv).run()
    return 0
