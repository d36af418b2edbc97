"""Stand-in for the MindIE LLM Server (`mindie_llm_server --config-file F`, old `mindieservice_daemon`)."""

from __future__ import annotations

import glob
import os
import re
import stat
import threading
import time
import uuid

from . import common as c
from .defaults import LLM_HOME, OLD_HOME

COMP = "mindie-server"
ROLE_FAIL = "Req body converts to json fail. Reset to previous node status."


def home_path(old: bool) -> str:
    if old:
        return OLD_HOME
    h = os.environ.get("MINDIE_LLM_HOME_PATH", "")
    if h and os.path.isfile(os.path.join(h, "__init__.py")):
        return h
    return os.environ.get("MIES_INSTALL_PATH") or LLM_HOME


def config_path(argv: list[str], old: bool, home: str) -> tuple[str, bool]:
    """Returns (path, explicit). Explicit paths follow MINDIE_CHECK_INPUTFILES_PERMISSION, the default is always checked."""
    args = list(argv)
    path = None
    while args:
        a = args.pop(0)
        if a == "--config-file" and args and not old:
            path = args.pop(0)
        elif a.startswith("--config-file=") and not old:
            path = a.split("=", 1)[1]
        else:
            c.die(COMP, [f"argv: unknown argument {a!r}; usage: "
                         + ("mindieservice_daemon (config: $MIES_CONFIG_JSON_PATH or <install>/conf/config.json)"
                            if old else "mindie_llm_server [--config-file PATH]")])
    if path:
        return path, True
    if os.environ.get("MIES_CONFIG_JSON_PATH"):
        return os.environ["MIES_CONFIG_JSON_PATH"], True
    return os.path.join(home, "conf", "config.json"), False


def device_dir() -> str:
    return os.environ.get("LLMSERVE_MINDIE_SIM_DEV", "/dev")


def check_devices(errs: c.Errors, file: str, ids: list[int]) -> None:
    d = device_dir()
    testing = "LLMSERVE_MINDIE_SIM_DEV" in os.environ

    def is_dev(p):
        try:
            return stat.S_ISCHR(os.stat(p).st_mode) or (testing and os.path.exists(p))
        except OSError:
            return False
    visible = sorted(p for p in glob.glob(os.path.join(d, "davinci*")) if re.fullmatch(r"davinci\d+", os.path.basename(p))
                     and is_dev(p))
    for name in ("davinci_manager", "devmm_svm", "hisi_hdc"):
        if not is_dev(os.path.join(d, name)):
            errs.add(file, "BackendConfig.npuDeviceIds", f"NPU device {d}/{name} is not present in the container "
                                                         "(pass it with --device)")
    need = max(ids) + 1 if ids else 0
    if len(visible) < need:
        errs.add(file, "BackendConfig.npuDeviceIds",
                 f"logical NPU ids {sorted(ids)} need {need} visible /dev/davinciN nodes but the container has "
                 f"{len(visible)} ({', '.join(os.path.basename(v) for v in visible) or 'none'})")


class Server:
    def __init__(self, argv: list[str], old: bool):
        self.home = home_path(old)
        path, explicit = config_path(argv, old, self.home)
        self.file = path
        errs = c.Errors(COMP)
        cfg = c.read_json(path, errs, path, check=None if explicit else True)
        errs.exit_if_any()
        self.validate(cfg, errs)
        errs.exit_if_any()
        self.role, self.role_status, self.local_id, self.peers = None, "RoleUnknown", None, {}
        self.kv, self.lock, self.counts = {}, threading.Lock(), {"prefill": 0, "decode": 0}

    # ------------------------------------------------------------ validation
    def validate(self, cfg, errs: c.Errors) -> None:
        f = self.file
        root = c.Keys(errs, f, cfg)
        sc, be = root.sub("ServerConfig"), root.sub("BackendConfig")
        allow0 = sc.get("allowAllZeroIpListening", "bool", default=False)
        self.ip = os.environ.get("MIES_CONTAINER_IP") or sc.get("ipAddress", "str")
        self.mgmt_ip = (os.environ.get("MIES_CONTAINER_MANAGEMENT_IP") or sc.get("managementIpAddress", "str", False)
                        or self.ip)
        for key, val in (("ipAddress", self.ip), ("managementIpAddress", self.mgmt_ip)):
            if val is not None and not c.is_ip(val, allow0):
                errs.add(f, "ServerConfig." + key, f"{val!r} is not a valid IPv4 address"
                         + (" (0.0.0.0 needs allowAllZeroIpListening: true)" if val == "0.0.0.0" else ""))
        self.port = sc.get("port", "port")
        self.mgmt_port = sc.get("managementPort", "port", False, default=self.port)
        self.metrics_port = sc.get("metricsPort", "port")
        self.ic_port = sc.get("interCommPort", "port")
        sc.get("maxLinkNum", "int", lo=1, hi=4096)
        sc.get("tokenTimeout", "int", lo=1, hi=3600)
        sc.get("e2eTimeout", "int", lo=1, hi=65535)
        self.https = sc.get("httpsEnabled", "bool")
        self.ic_tls = sc.get("interCommTLSEnabled", "bool", default=False)
        mode = sc.get("inferMode", "str", choices=["standard", "dmi"])
        if mode == "standard":
            errs.add(f, "ServerConfig.inferMode", "is 'standard' (PD-mixed); a PD-disaggregated instance needs 'dmi'")
        ports = [(self.ip, self.port, "port"), (self.mgmt_ip, self.mgmt_port, "managementPort"),
                 (self.mgmt_ip, self.metrics_port, "metricsPort"), (self.ip, self.ic_port, "interCommPort")]
        seen = {}
        for ipaddr, p, key in ports:
            if p is None:
                continue
            other = seen.get((ipaddr, p))
            if other and not (key == "managementPort" and other == "port"):
                errs.add(f, "ServerConfig." + key, f"port {p} on {ipaddr} collides with ServerConfig.{other}")
            seen.setdefault((ipaddr, p), key)
        # backend and model
        n_inst = be.get("modelInstanceNumber", "int", lo=1)
        ids = be.get("npuDeviceIds", "list")
        be.get("multiNodesInferEnabled", "bool")
        mdc = be.sub("ModelDeployConfig")
        self.max_seq = mdc.get("maxSeqLen", "int", lo=1)
        mdc.get("maxInputTokenLen", "int", lo=1)
        models = mdc.get("ModelConfig", "list")
        if isinstance(models, list) and not models:
            errs.add(f, "BackendConfig.ModelDeployConfig.ModelConfig", "must hold one model entry")
        mc = c.Keys(errs, f, (models or [{}])[0], "BackendConfig.ModelDeployConfig.ModelConfig[0].")
        self.model = mc.get("modelName", "str")
        weights = mc.get("modelWeightPath", "str")
        world = mc.get("worldSize", "int", lo=1)
        for k, t in (("modelInstanceType", "str"), ("backendType", "str"), ("cpuMemSize", "int"),
                     ("npuMemSize", "int"), ("trustRemoteCode", "bool")):
            mc.get(k, t)
        tp = mc.get("tp", "int", required=(mode == "dmi"), lo=1)
        if tp is not None and world is not None and tp != world:
            errs.add(f, "BackendConfig.ModelDeployConfig.ModelConfig[0].tp", f"tp {tp} must equal worldSize {world}")
        flat = []
        if isinstance(ids, list):
            if n_inst is not None and len(ids) != n_inst:
                errs.add(f, "BackendConfig.npuDeviceIds", f"has {len(ids)} sets but modelInstanceNumber is {n_inst}")
            for i, sub in enumerate(ids):
                if not isinstance(sub, list) or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                                                        for x in sub):
                    errs.add(f, f"BackendConfig.npuDeviceIds[{i}]", f"must be a list of device ids (int), got {sub!r}")
                    continue
                if world is not None and len(sub) != world:
                    errs.add(f, f"BackendConfig.npuDeviceIds[{i}]",
                             f"has {len(sub)} devices but worldSize is {world}")
                flat += sub
        self.device_ids = sorted(set(flat))
        sch = be.sub("ScheduleConfig")
        self.block = sch.get("cacheBlockSize", "int", lo=1, hi=128)
        self.max_iter = sch.get("maxIterTimes", "int", lo=1)
        sch.get("maxBatchSize", "int", lo=1)
        sch.get("maxPrefillBatchSize", "int", lo=1)
        sch.get("maxPrefillTokens", "int", lo=1)
        if errs.lines:
            return
        check_devices(errs, f, self.device_ids)
        key = "BackendConfig.ModelDeployConfig.ModelConfig[0].modelWeightPath"
        if not os.path.isdir(weights):
            errs.add(f, key, f"model weight directory {weights} does not exist")
        else:
            if os.getuid() != 0:
                c.mode_ok(weights, 0o750, errs, f, key, owner=False)
            if not os.path.isfile(os.path.join(weights, "config.json")):
                errs.add(f, key, f"{weights}/config.json (the model's config) does not exist")
        self.ctx = {}
        if self.https:
            h = self.home.rstrip("/") + "/"
            ca_dir = h + (sc.get("tlsCaPath", "str") or "")
            same = (self.mgmt_ip, self.mgmt_port) == (self.ip, self.port) and self.mgmt_port == self.metrics_port
            for name, pre in (("business", "tls"), ("management", "managementTls"), ("metrics", "metricsTls")):
                if name != "business" and same:
                    continue
                cas = sc.get(pre + "CaFile", "list") or []
                if not 1 <= len(cas) <= 3:
                    errs.add(f, f"ServerConfig.{pre}CaFile", "must list 1 to 3 CA files")
                cert, pk = sc.get(pre + "Cert", "str"), sc.get(pre + "Pk", "str")
                if cert and pk and c.tls_files(errs, f, f"ServerConfig.{pre}Cert/{pre}Pk (httpsEnabled)",
                                               [ca_dir + x for x in cas], h + cert, h + pk, 0o600):
                    self.ctx[name] = ([ca_dir + x for x in cas], h + cert, h + pk)
        if self.ic_tls:
            h = self.home.rstrip("/") + "/"
            ca_dir = h + (sc.get("interCommTlsCaPath", "str") or "")
            cas = sc.get("interCommTlsCaFiles", "list") or []
            cert, pk = sc.get("interCommTlsCert", "str"), sc.get("interCommPk", "str")
            if cert and pk and c.tls_files(errs, f, "ServerConfig.interCommTlsCert/interCommPk (interCommTLSEnabled)",
                                           [ca_dir + x for x in cas], h + cert, h + pk, 0o600):
                self.ctx["intercomm"] = ([ca_dir + x for x in cas], h + cert, h + pk)

    def sctx(self, name):
        t = self.ctx.get(name) or (self.ctx.get("business") if name != "intercomm" else None)
        return c.server_ctx(*t) if t else None

    def cctx(self, name):
        t = self.ctx.get(name)
        return c.client_ctx(*t) if t else None

    # ------------------------------------------------------------ management API
    def r_config(self, req):
        return c.reply(200, {"modelName": self.model, "maxSeqLen": self.max_seq, "npuMemSize": -1, "cpuMemSize": 0,
                             "worldSize": len(self.device_ids), "maxOutputLen": self.max_iter,
                             "cacheBlockSize": self.block})

    def r_status(self, req):
        res = {"availSlotsNum": 200, "availBlockNum": 1024, "totalAvailNpuSlotsNum": 200,
               "totalAvailNpuBlockNum": 1024, "maxAvailNpuBlockNum": 1024, "waitingRequestNum": 0,
               "runningRequestNum": 0, "swappedRequestNum": 0, "freeNpuBlockNums": 1024, "freeCpuBlockNums": 0,
               "totalNpuBlockNums": 1024, "totalCpuBlockNums": 0}
        return c.reply(200, {"service": {"roleStatus": self.role_status, "currentRole": self.role or "none"},
                             "resource": res,
                             "linkStatus": {"peers": [{"target": i, "link": "ok"} for i in sorted(self.peers)]}})

    def r_ready(self, req):  # no role needed: the engine is up, links are not abnormal
        return c.reply(200, "")

    def _bad_role(self, why: str, status=422):
        c.log(COMP, f"ERROR role request rejected: {why}")
        msg = ROLE_FAIL if status == 422 else "Update pd info failed. Reset to previous node status."
        return c.reply(status, {"message": msg, "detail": why})

    def check_node(self, node, where: str) -> str | None:
        if not isinstance(node, dict):
            return f"{where} must be an object"
        pp = node.get("p_percentage")
        if "p_percentage" in node and (not isinstance(pp, int) or isinstance(pp, bool) or not 0 <= pp <= 100):
            return f"{where}.p_percentage must be an integer in [0, 100]"
        if not c.is_ip(node.get("server_ip")):
            return f"{where}.server_ip missing or not a valid IPv4 string"
        if ("id" in node) != ("host_ip" in node):
            return f"{where}: id and host_ip must either both exist or both be absent"
        if "id" in node and (not isinstance(node["id"], int) or isinstance(node["id"], bool) or node["id"] < 0):
            return f"{where}.id must be an unsigned integer"
        if "host_ip" in node and not c.is_ip(node["host_ip"]):
            return f"{where}.host_ip is not a valid IPv4 string"
        devs = node.get("device")
        if not isinstance(devs, list):
            return f"{where}.device must be an array"
        for i, d in enumerate(devs):
            for k in ("device_logical_id", "device_id") + (("rank_id",) if "rank_id" in d else ()):
                if not isinstance(d.get(k), str) or not d[k].isdigit():
                    return f"{where}.device[{i}].{k} must be a string holding a number"
            if not c.is_ip(d.get("device_ip")):
                return f"{where}.device[{i}].device_ip is not a valid IPv4 string"
        return None

    def r_role(self, req):
        role, v2 = req.match.group(1), req.path.startswith("/v2/")
        body = req.json()
        if not isinstance(body, dict):
            return self._bad_role("body is not a JSON object")
        if v2:  # multi-node form: local = [node...], node.dp_inst_list[].device; peers = [[node...]...]
            local = body.get("local")
            if not isinstance(local, list) or not local or not isinstance(local[0], dict):
                return self._bad_role("v2 body needs local as a non-empty array")
            dp = local[0].get("dp_inst_list")
            if not isinstance(dp, list) or not dp:
                return self._bad_role("v2 local[0].dp_inst_list must be a non-empty array")
            node = dict(local[0], device=[d for g in dp for d in g.get("device", [])])
            peers = [dict(n, id=n["dp_inst_list"][0]["dp_inst_id"], device=[d for g in n["dp_inst_list"]
                                                                             for d in g.get("device", [])])
                     for grp in body.get("peers") or [] for n in grp]
        else:
            node, peers = body.get("local"), body.get("peers")
            if not isinstance(node, dict):
                return self._bad_role("'local' must be an object")
            if not isinstance(peers, list):
                peers = []
        for i, n in enumerate([node] + list(peers)):
            why = self.check_node(n, "local" if i == 0 else f"peers[{i - 1}]")
            if why:
                return self._bad_role(why)
        if role == "flex":
            return self._bad_role("flex instances are not supported (has_flex must be false)", 503)
        if self.role is None and not peers:
            return self._bad_role(f"peers can't be empty when a {role} role is first assigned", 503)
        # stand-in strictness: real MindIE would fail later, when it links its NPUs with the peers'
        if node["server_ip"] not in (self.ip, self.mgmt_ip):
            return self._bad_role(f"local.server_ip {node['server_ip']} is not this instance ({self.ip}); the rank "
                                  "table entry does not describe this server", 503)
        logical = sorted({int(d["device_logical_id"]) for d in node["device"]})
        if logical != self.device_ids:
            return self._bad_role(f"local.device logical ids {logical} do not match npuDeviceIds {self.device_ids}",
                                  503)
        with self.lock:
            self.role, self.role_status = role, "RoleReady"
            self.local_id = node.get("id")
            self.peers = {p.get("id", i): p for i, p in enumerate(peers)}
        c.log(COMP, f"role assigned: {role}, instance id {self.local_id}, peers "
                    f"{[p['server_ip'] for p in peers]}")
        return c.reply(200, {"result": "ok"})

    # ------------------------------------------------------------ business API
    def r_infer(self, req):
        if self.role is None:
            return c.reply(503, {"error": "instance role is not assigned (RoleUnknown); the Controller assigns it",
                                 "error_type": "Service Unavailable"})
        if self.role == "decode":
            return c.reply(400, {"error": "a decode instance takes no requests directly; the Coordinator sends them "
                                          "to a prefill instance and pulls the result from /dresult"})
        body = req.json()
        if not isinstance(body, dict):
            return c.reply(422, {"error": "request body must be a JSON object"})
        hdr = req.headers
        if hdr.get("req-type") != "prefill" or not hdr.get("req-id") or not hdr.get("d-target"):
            return c.reply(400, {"error": "a prefill instance serves only requests scheduled by the Coordinator "
                                          "(headers req-type: prefill, req-id, d-target)"})
        target = hdr["d-target"].split(";")
        d_ip, d_port = target[0], int(target[1]) if len(target) > 1 and target[1] else self.ic_port
        if d_ip not in {p["server_ip"] for p in self.peers.values()}:
            return c.reply(503, {"error": f"decode target {d_ip} is not a peer of this prefill instance"})
        msg = {"op": "kv", "req_id": hdr["req-id"], "path": req.path, "body": body,
               "prefill": f"{self.ip}:{self.port}", "prefill_id": self.local_id}
        try:
            ans = c.tcp_send(d_ip, d_port, msg, self.cctx("intercomm"), source=self.ip)
        except (OSError, ValueError) as e:
            c.log(COMP, f"ERROR KV transfer to decode {d_ip}:{d_port} failed: {e}")
            return c.reply(503, {"error": f"KV transfer to {d_ip}:{d_port} failed: {e}"})
        if not ans.get("ok"):
            return c.reply(503, {"error": f"decode {d_ip}:{d_port} refused the KV transfer: {ans.get('error')}"})
        self.counts["prefill"] += 1
        return c.reply(200, {"req_id": hdr["req-id"], "status": "prefilled", "prefill": msg["prefill"]})

    def on_kv(self, msg, sender):
        if self.role != "decode":
            return {"ok": False, "error": f"this instance's role is {self.role or 'unknown'}, not decode"}
        if sender not in {p["server_ip"] for p in self.peers.values()}:
            return {"ok": False, "error": f"{sender} is not a prefill peer of this decode instance"}
        with self.lock:
            self.kv[msg["req_id"]] = msg
        return {"ok": True}

    def r_dresult(self, req):
        rid = req.headers.get("req-id")
        with self.lock:
            msg = self.kv.pop(rid, None)
        if self.role != "decode" or msg is None:
            return c.reply(404, {"error": f"no prefilled request {rid!r} on this decode instance"})
        self.counts["decode"] += 1
        out = completion(msg["path"], msg["body"], self.model, rid)
        route = {"prefill": msg["prefill"], "decode": f"{self.ip}:{self.port}"}
        out["mindie_sim_route"] = route
        return c.reply(200, out, {"x-mindie-sim-route": f"P={route['prefill']};D={route['decode']}"})

    def r_models(self, req):
        return c.reply(200, {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "MindIE"}]})

    def r_metrics(self, req):
        text = "".join(f"# TYPE mindie_sim_{k}_requests_total counter\nmindie_sim_{k}_requests_total "
                       f"{v}\n" for k, v in self.counts.items())
        return c.reply(200, text, {"content-type": "text/plain; version=0.0.4"})

    def run(self):
        mgmt = [("GET", r"/v1/config", self.r_config), ("GET", r"/v[12]/status", self.r_status),
                ("GET", r"/v2/health/(ready|live)", self.r_ready),
                ("POST", r"/v1/role/(prefill|decode|flex)", self.r_role),
                ("POST", r"/v2/role/(prefill|decode|flex)", self.r_role)]
        biz = [("POST", r"/v1/chat/completions", self.r_infer), ("POST", r"/v1/completions", self.r_infer),
               ("GET", r"/dresult", self.r_dresult), ("GET", r"/v1/models", self.r_models),
               ("GET", r"/health", self.r_ready), ("GET", r"/v2/health/(ready|live)", self.r_ready)]
        if (self.mgmt_ip, self.mgmt_port) == (self.ip, self.port):
            c.serve(COMP, self.ip, self.port, biz + mgmt, self.sctx("business"), "business+management port")
        else:
            c.serve(COMP, self.ip, self.port, biz, self.sctx("business"), "business port")
            c.serve(COMP, self.mgmt_ip, self.mgmt_port, mgmt, self.sctx("management"), "management port")
        c.serve(COMP, self.mgmt_ip, self.metrics_port, [("GET", r"/metrics", self.r_metrics)], self.sctx("metrics"),
                "metrics port")
        c.tcp_listen(COMP, self.ip, self.ic_port, self.on_kv, self.sctx("intercomm"), "interCommPort")
        c.log(COMP, f"config {self.file}: model {self.model}, NPUs {self.device_ids}, role RoleUnknown")
        print("Daemon start success!", flush=True)
        c.wait_forever()


def completion(path: str, body: dict, model: str, rid: str) -> dict:
    chat = path.startswith("/v1/chat/")
    if chat:
        msgs = body.get("messages") if isinstance(body.get("messages"), list) else []
        prompt = " ".join(m.get("content", "") for m in msgs if isinstance(m, dict) and isinstance(m.get("content"), str))
    else:
        p = body.get("prompt", "")
        prompt = p if isinstance(p, str) else " ".join(map(str, p))
    pw = c.words(prompt)
    limit = body.get("max_tokens") if isinstance(body.get("max_tokens"), int) else 16
    full = ["echo", ":"] + pw
    out = full[:max(limit, 1)]
    text = " ".join(out)
    finish = "length" if len(out) < len(full) else "stop"
    choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish} if chat
              else {"index": 0, "text": text, "finish_reason": finish})
    return {"id": f"{'chatcmpl' if chat else 'cmpl'}-{rid or uuid.uuid4().hex}",
            "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
            "model": model, "choices": [choice],
            "usage": {"prompt_tokens": len(pw), "completion_tokens": len(out), "total_tokens": len(pw) + len(out)}}


def main(argv: list[str], old: bool = False) -> int:
    Server(argv, old).run()
    return 0
