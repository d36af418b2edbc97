"""Tests of the MindIE stand-in (tests/images/mindie-sim), run as local processes on 127.0.0.x.

Every check the stand-in makes (docs/mindie-contract.md) is shown to fail with an ERROR line and exit 1,
and the happy path runs Server x4 -> Controller -> Coordinator -> chat completion through P then D.
NPU device nodes are faked with files in a directory named by LLMSERVE_MINDIE_SIM_DEV (tests only).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SIM = REPO / "tests" / "images" / "mindie-sim"
sys.path.insert(0, str(SIM))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mindie_sim import defaults  # noqa: E402
from sim_process import free_port  # noqa: E402

from mindie_sim import common  # noqa: E402

COORD_IP, CTRL_IP = "127.0.0.10", "127.0.0.11"
SERVER_IPS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]


def write(path: Path, data, mode=0o640) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) if not isinstance(data, str) else data)
    os.chmod(path, mode)
    return path


class Proc:
    def __init__(self, name: str, args: list[str], env: dict, cwd: Path, log: Path):
        self.log = log
        self.fh = open(log, "wb")
        self.p = subprocess.Popen([sys.executable, "-m", "mindie_sim", name, *args], env=env, cwd=str(cwd),
                                  stdout=self.fh, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text()

    def wait_exit(self, timeout=30) -> int:
        return self.p.wait(timeout)

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.fh.close()


def wait_http(proc: Proc, url: str, code=200, timeout=30.0, ctx=None):
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.p.poll() is not None:
            raise AssertionError(f"process exited {proc.p.returncode}:\n{proc.output()}")
        try:
            st, body, _ = common.call("GET", url, ctx=ctx, timeout=2)
            last = (st, body)
            if st == code:
                return body
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered {code} (last {last}):\n{proc.output() if proc else ''}")


class Bed:
    """Config files for a cluster in tmp_path, built from the shipped defaults."""

    def __init__(self, tmp: Path, n_servers=4):
        self.tmp, self.procs = tmp, []
        self.dev = tmp / "dev"
        self.dev.mkdir()
        for name in ("davinci0", "davinci1", "davinci_manager", "devmm_svm", "hisi_hdc"):
            (self.dev / name).touch()
        self.weights = tmp / "weights" / "llama3-8b"
        write(self.weights / "config.json", {"model_type": "llama"})
        os.chmod(self.weights, 0o750)
        self.home = tmp / "llm_home"
        (self.home / "conf").mkdir(parents=True)
        (self.home / "__init__.py").touch()
        self.servers = []
        ic_port = free_port()  # P reaches D's interCommPort with its own value unless the rank table says otherwise
        for ip in SERVER_IPS[:n_servers]:
            cfg = defaults.server_config()
            sc = cfg["ServerConfig"]
            sc.update(ipAddress=ip, managementIpAddress=ip, port=free_port(), managementPort=free_port(),
                      metricsPort=free_port(), interCommPort=ic_port, httpsEnabled=False,
                      interCommTLSEnabled=False, inferMode="dmi")
            be = cfg["BackendConfig"]
            be.update(npuDeviceIds=[[0, 1]], interNodeTLSEnabled=False)
            be["ModelDeployConfig"]["ModelConfig"][0].update(modelName="llama3-8b", modelWeightPath=str(self.weights),
                                                             worldSize=2, tp=2)
            self.servers.append(cfg)
        self.ctrl = defaults.controller_config()
        self.coord = defaults.coordinator_config()
        h = self.coord["http_config"]
        h.update(predict_ip=COORD_IP, manage_ip=COORD_IP, predict_port=str(free_port()),
                 manage_port=str(free_port()), external_port=str(free_port()), status_port=str(free_port()))
        for k in self.coord["tls_config"]:
            if k.endswith("_enable"):
                self.coord["tls_config"][k] = False
        alarm = free_port()
        h["alarm_port"] = str(alarm)
        model_cfg = write(tmp / "motor" / "conf" / "model_config" / "llama2-70B.json", {})
        write(tmp / "motor" / "conf" / "machine_config" / "800IA2.json", {})
        assert model_cfg.exists()
        self.ctrl.update(
            http_server={"ip": CTRL_IP, "port": free_port()}, controller_alarm_port=alarm,
            mindie_ms_coordinator_port=int(h["manage_port"]), mindie_ms_coordinator_external_port=int(h["external_port"]),
            global_rank_table_file_path=str(tmp / "global_ranktable.json"), server_online_attempt_times=30,
            server_online_wait_seconds=1, check_role_attempt_times=10, check_role_wait_seconds=1)
        for k in self.ctrl["tls_config"]:
            if k.endswith("_enable"):
                self.ctrl["tls_config"][k] = False
        self.rank = {"version": "1.0", "status": "completed", "server_group_list": [
            {"group_id": "0", "server_count": "1", "server_list": [{"server_id": COORD_IP, "server_ip": COORD_IP}]},
            {"group_id": "1", "server_count": "1", "server_list": [{"server_id": CTRL_IP, "server_ip": CTRL_IP}]},
            {"group_id": "2", "server_count": str(n_servers), "server_list": [
                {"server_id": s["ServerConfig"]["ipAddress"], "server_ip": s["ServerConfig"]["ipAddress"],
                 "predict_port": str(s["ServerConfig"]["port"]), "mgmt_port": str(s["ServerConfig"]["managementPort"]),
                 "metric_port": str(s["ServerConfig"]["metricsPort"]),
                 "device": [{"device_id": str(d), "device_ip": f"192.168.{i}.{10 + d}", "device_logical_id": str(d),
                             "rank_id": str(d)} for d in (0, 1)]}
                for i, s in enumerate(self.servers)]}]}

    def env(self, **extra) -> dict:
        e = {k: v for k, v in os.environ.items() if not k.startswith(("MINDIE", "MIES", "GLOBAL_RANK", "POD_IP"))}
        e.update(PYTHONPATH=str(SIM), PYTHONUNBUFFERED="1", LLMSERVE_MINDIE_SIM_DEV=str(self.dev),
                 MINDIE_LLM_HOME_PATH=str(self.home), MINDIE_LOG_TO_STDOUT="1")
        e.update(extra)
        return e

    def start(self, name, args, env=None, cwd=None, log="x") -> Proc:
        p = Proc(name, args, env or self.env(), cwd or self.tmp / "motor", self.tmp / f"{log}.log")
        self.procs.append(p)
        return p

    def write_all(self):
        paths = [write(self.tmp / f"server{i}.json", s) for i, s in enumerate(self.servers)]
        write(self.tmp / "global_ranktable.json", self.rank)
        write(self.tmp / "ms_controller.json", self.ctrl)
        write(self.tmp / "ms_coordinator.json", self.coord)
        return paths

    def start_server(self, i, env=None) -> Proc:
        return self.start("mindie_llm_server", ["--config-file", str(self.tmp / f"server{i}.json")], env,
                          log=f"server{i}")

    def start_coordinator(self, env=None) -> Proc:
        return self.start("mindie_motor_coordinator", [COORD_IP, COORD_IP], env or self.env(
            MINDIE_MS_COORDINATOR_CONFIG_FILE_PATH=str(self.tmp / "ms_coordinator.json")), log="coordinator")

    def start_controller(self, env=None) -> Proc:
        return self.start("mindie_motor_controller", [], env or self.env(
            MINDIE_MS_CONTROLLER_CONFIG_FILE_PATH=str(self.tmp / "ms_controller.json"),
            GLOBAL_RANK_TABLE_FILE_PATH=str(self.tmp / "global_ranktable.json")), log="controller")

    def mgmt(self, i):
        sc = self.servers[i]["ServerConfig"]
        return f"http://{sc['managementIpAddress']}:{sc['managementPort']}"

    def stop(self):
        for p in self.procs:
            p.stop()


@pytest.fixture
def bed(tmp_path):
    b = Bed(tmp_path)
    yield b
    b.stop()


def errors(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("ERROR")]


def must_fail(proc: Proc, *needles: str):
    rc = proc.wait_exit(60)
    out = proc.output()
    errs = errors(out)
    assert rc == 1, out
    assert errs, out
    for n in needles:
        assert any(n in e for e in errs), f"{n!r} not in ERROR lines:\n{out}"
    return errs


# ---------------------------------------------------------------- happy path
def test_pd_cluster_happy_path(bed):
    bed.write_all()
    servers = [bed.start_server(i) for i in range(4)]
    for i, s in enumerate(servers):
        wait_http(s, bed.mgmt(i) + "/v2/health/ready")  # ready before any role, as real MindIE
        st, status, _ = common.call("GET", bed.mgmt(i) + "/v1/status")
        assert status["service"] == {"roleStatus": "RoleUnknown", "currentRole": "none"}
    sc0 = bed.servers[0]["ServerConfig"]
    st, body, _ = common.call("POST", f"http://{sc0['ipAddress']}:{sc0['port']}/v1/completions", {"prompt": "hi"})
    assert st == 503 and "RoleUnknown" in body["error"]
    coord = bed.start_coordinator()
    h = bed.coord["http_config"]
    status = f"http://{COORD_IP}:{h['status_port']}"
    wait_http(coord, status + "/v1/startup")
    st, _, _ = common.call("GET", status + "/v1/readiness")
    assert st == 503
    ctrl = bed.start_controller()
    body = wait_http(ctrl, f"http://{CTRL_IP}:{bed.ctrl['http_server']['port']}/v1/health")
    assert body == {"message": "", "status": "0"}
    wait_http(coord, status + "/v1/readiness", 200, timeout=60)
    roles = [common.call("GET", bed.mgmt(i) + "/v1/status")[1]["service"]["currentRole"] for i in range(4)]
    assert roles == ["prefill", "prefill", "decode", "decode"]
    predict = f"http://{COORD_IP}:{h['predict_port']}"
    st, ans, hdr = common.call("POST", predict + "/v1/chat/completions",
                               {"model": "llama3-8b", "messages": [{"role": "user", "content": "hello there"}],
                                "max_tokens": 8})
    assert st == 200, ans
    assert ans["object"] == "chat.completion" and ans["model"] == "llama3-8b"
    assert ans["choices"][0]["message"]["content"] == "echo : hello there"
    assert ans["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}
    route = ans["mindie_sim_route"]
    assert route["prefill"].split(":")[0] in SERVER_IPS[:2] and route["decode"].split(":")[0] in SERVER_IPS[2:]
    assert hdr.get("x-mindie-sim-route", "").startswith("P=")
    st, ans, _ = common.call("POST", predict + "/v1/completions", {"prompt": "a b c d e f", "max_tokens": 3})
    assert st == 200 and ans["choices"][0]["finish_reason"] == "length"
    # a decode instance refuses direct requests; a prefill one wants the Coordinator's headers
    sc3, sc0 = bed.servers[3]["ServerConfig"], bed.servers[0]["ServerConfig"]
    assert common.call("POST", f"http://{sc3['ipAddress']}:{sc3['port']}/v1/completions", {"prompt": "x"})[0] == 400
    assert common.call("POST", f"http://{sc0['ipAddress']}:{sc0['port']}/v1/completions", {"prompt": "x"})[0] == 400
    st, text, _ = common.call("GET", f"http://{COORD_IP}:{h['external_port']}/metrics")
    assert st == 200 and "mindie_sim_coordinator_requests_total 2" in text


def test_role_request_body_is_validated(bed):
    bed.write_all()
    s = bed.start_server(0)
    wait_http(s, bed.mgmt(0) + "/v2/health/ready")
    local = {"server_ip": SERVER_IPS[0], "id": 0, "host_ip": SERVER_IPS[0],
             "device": [{"device_id": "0", "device_ip": "192.168.0.10", "device_logical_id": "0", "rank_id": "0"},
                        {"device_id": "1", "device_ip": "192.168.0.11", "device_logical_id": "1", "rank_id": "1"}]}
    peer = dict(copy.deepcopy(local), server_ip=SERVER_IPS[2], id=2, host_ip=SERVER_IPS[2])
    url = bed.mgmt(0) + "/v1/role/prefill"
    assert common.call("POST", url, {"local": {k: v for k, v in local.items() if k != "server_ip"},
                                     "peers": [peer]})[0] == 422
    assert common.call("POST", url, {"local": dict(local, id="0"), "peers": [peer]})[0] == 422
    assert common.call("POST", url, {"local": local, "peers": []})[0] == 503  # peers can't be empty
    assert common.call("POST", url, {"local": dict(local, server_ip=SERVER_IPS[1]), "peers": [peer]})[0] == 503
    st, ans, _ = common.call("POST", url, {"local": local, "peers": [peer]})
    assert (st, ans) == (200, {"result": "ok"})
    assert common.call("GET", bed.mgmt(0) + "/v1/status")[1]["service"]["currentRole"] == "prefill"


# ---------------------------------------------------------------- Server checks
@pytest.mark.parametrize("patch,needle", [
    (lambda c: c["ServerConfig"].update(port="1025"), "ServerConfig.port: must be of JSON type int"),
    (lambda c: c["ServerConfig"].update(managementPort=80), "ServerConfig.managementPort: value 80 is out of range"),
    (lambda c: c["ServerConfig"].update(inferMode="standard"), "ServerConfig.inferMode"),
    (lambda c: c["ServerConfig"].update(ipAddress="0.0.0.0", managementIpAddress="127.0.0.2"),
     "0.0.0.0 needs allowAllZeroIpListening"),
    (lambda c: c["ServerConfig"].pop("metricsPort"), "ServerConfig.metricsPort: required key is missing"),
    (lambda c: c["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0].update(worldSize=4, tp=4),
     "has 2 devices but worldSize is 4"),
    (lambda c: c["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0].update(tp=1), "tp 1 must equal worldSize 2"),
    (lambda c: c["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0].pop("tp"), "ModelConfig[0].tp: required"),
    (lambda c: c["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0].update(modelWeightPath="/nonexistent/w"),
     "model weight directory /nonexistent/w does not exist"),
    (lambda c: c["BackendConfig"].update(npuDeviceIds=[[0, 1, 2, 3]]), "has 4 devices but worldSize is 2"),
    (lambda c: c["ServerConfig"].update(httpsEnabled=True), "does not exist"),  # shipped TLS paths, no certs
])
def test_server_refuses_bad_config(bed, patch, needle):
    patch(bed.servers[0])
    bed.write_all()
    must_fail(bed.start_server(0), needle)


def test_server_config_mode_and_permission_switch(bed):
    (path,) = bed.write_all()[:1]
    os.chmod(path, 0o644)
    must_fail(bed.start_server(0), "MindIE requires no greater than 0640")
    s = bed.start_server(0, bed.env(MINDIE_CHECK_INPUTFILES_PERMISSION="0"))
    wait_http(s, bed.mgmt(0) + "/v2/health/ready")


def test_server_needs_npu_device_nodes(bed):
    bed.write_all()
    (bed.dev / "davinci1").unlink()
    (bed.dev / "hisi_hdc").unlink()
    errs = must_fail(bed.start_server(0), "hisi_hdc is not present", "need 2 visible /dev/davinciN")
    assert all(e.startswith("ERROR [mindie-server]") for e in errs)


def test_server_weight_dir_needs_model_config(bed):
    bed.write_all()
    (bed.weights / "config.json").unlink()
    must_fail(bed.start_server(0), "config.json (the model's config) does not exist")


def test_old_daemon_reads_mies_config_json_path(bed):
    paths = bed.write_all()
    s = bed.start("mindieservice_daemon", [], bed.env(MIES_CONFIG_JSON_PATH=str(paths[0])), log="old")
    wait_http(s, bed.mgmt(0) + "/v2/health/ready")
    # the daemon says so once its last port listens, a moment after the management port answers
    deadline = time.monotonic() + 30
    while "Daemon start success!" not in s.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "Daemon start success!" in s.output()
    must_fail(bed.start("mindieservice_daemon", ["--config-file", str(paths[0])], log="old2"), "unknown argument")


# ---------------------------------------------------------------- Controller / Coordinator checks
@pytest.mark.parametrize("patch,needle", [
    (lambda c: c.update(default_p_rate=3, default_d_rate=0), "3/0: both must be 0 (automatic) or both non-zero"),
    (lambda c: c.update(mindie_ms_coordinator_port="1026"), "mindie_ms_coordinator_port: must be of JSON type int"),
    (lambda c: c.update(deploy_mode="pd"), "deploy_mode"),
    (lambda c: c["http_server"].update(ip="0.0.0.0"), "http_server.ip"),
    (lambda c: c["tls_config"].update(request_server_tls_enable=True),
     "tls_config.request_server_tls_items: CA file './security/request_server/security/certs/ca.pem' does not exist"),
    (lambda c: c.update(digs_model_config_path="./conf/model_config/nope.json"), "digs_model_config_path"),
])
def test_controller_refuses_bad_config(bed, patch, needle):
    patch(bed.ctrl)
    bed.write_all()
    must_fail(bed.start_controller(), needle)


def test_controller_refuses_rank_table(bed):
    bed.rank["server_group_list"][2]["server_list"][1].pop("device")
    bed.write_all()
    must_fail(bed.start_controller(), "server_list[1].device: Server IP 127.0.0.3 has invalid device number")
    bed.rank["server_group_list"][2]["server_list"][1]["device"] = []
    write(bed.tmp / "global_ranktable.json", bed.rank)
    must_fail(bed.start_controller(), "invalid device number (0 entries")
    bed.rank["server_group_list"][2]["server_list"][1]["device"] = [{"device_id": "0", "device_ip": "192.168.1.1",
                                                                      "device_logical_id": "0"}]
    write(bed.tmp / "global_ranktable.json", bed.rank)
    must_fail(bed.start_controller(), "device[0].rank_id")


def test_controller_rank_table_mode_and_status(bed):
    bed.ctrl.update(server_online_attempt_times=2, server_online_wait_seconds=1)
    bed.write_all()
    os.chmod(bed.tmp / "global_ranktable.json", 0o644)
    must_fail(bed.start_controller(), "global_ranktable.json: file mode")
    bed.rank["status"] = "initializing"
    write(bed.tmp / "global_ranktable.json", bed.rank)
    must_fail(bed.start_controller(), "never became \"completed\"")


@pytest.mark.parametrize("which", ["mismatch", "collides_with_server"])
def test_controller_fails_when_coordinator_port_is_wrong(tmp_path, which):
    b = Bed(tmp_path, n_servers=2)
    try:
        b.ctrl.update(server_online_attempt_times=3)
        b.ctrl["mindie_ms_coordinator_port"] = free_port() if which == "mismatch" else \
            b.servers[0]["ServerConfig"]["managementPort"]
        if which == "collides_with_server":
            b.rank["server_group_list"][0]["server_list"][0]["server_ip"] = SERVER_IPS[0]
        b.write_all()
        servers = [b.start_server(i) for i in range(2)]
        coord = b.start_coordinator()
        for i, s in enumerate(servers):
            wait_http(s, b.mgmt(i) + "/v2/health/ready")
        must_fail(b.start_controller(), f"{b.ctrl['mindie_ms_coordinator_port']} (mindie_ms_coordinator_port")
        st, _, _ = common.call("GET", f"http://{COORD_IP}:{b.coord['http_config']['status_port']}/v1/readiness")
        assert st == 503 and coord.p.poll() is None
    finally:
        b.stop()


@pytest.mark.parametrize("patch,needle", [
    (lambda c: c["http_config"].update(manage_port=1026), "http_config.manage_port: must be a string holding a port"),
    (lambda c: c["http_config"].update(alarm_port="99"), "http_config.alarm_port: port 99 is out of range"),
    (lambda c: c["http_config"].update(status_port=c["http_config"]["manage_port"]), "collides with"),
    (lambda c: c["tls_config"].update(status_tls_enable=True), "tls_config.status_tls_items"),
    (lambda c: c["request_limit"].update(max_requests=100000), "request_limit.max_requests"),
])
def test_coordinator_refuses_bad_config(bed, patch, needle):
    patch(bed.coord)
    bed.write_all()
    must_fail(bed.start_coordinator(), needle)


def test_coordinator_argv_and_file_mode(bed):
    bed.write_all()
    must_fail(bed.start("mindie_motor_coordinator", ["127.0.0.10", "1025", "127.0.0.10"], log="c1"),
              "Incorrect usage")
    must_fail(bed.start("ms_coordinator", ["127.0.0.10", "127.0.0.10"], log="c2"), "usage: ms_coordinator")
    os.chmod(bed.tmp / "ms_coordinator.json", 0o644)
    must_fail(bed.start_coordinator(), "ms_coordinator.json: file mode")


# ---------------------------------------------------------------- TLS
def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path):
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=mindiems", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "cert.key.pem", "-out", "cert.csr", "-subj",
             "/O=msgroup/CN=msclientuser", cwd=d)
    _openssl("x509", "-req", "-in", "cert.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
             "cert.pem", "-days", "2", cwd=d)
    os.chmod(d / "cert.key.pem", 0o400)
    return d


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_tls_cluster_happy_path_and_wrong_ca(tmp_path):
    b = Bed(tmp_path, n_servers=2)
    try:
        pki = make_pki(tmp_path / "pki")
        other = make_pki(tmp_path / "other")
        sec = b.home / "security"
        for sub in ("ca", "certs", "keys", "grpc"):
            (sec / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(pki / "ca.pem", sec / "ca" / "ca.pem")
        shutil.copy(pki / "cert.pem", sec / "certs" / "server.pem")
        shutil.copy(pki / "cert.key.pem", sec / "keys" / "server.key.pem")
        for s in b.servers:
            s["ServerConfig"].update(httpsEnabled=True, interCommTLSEnabled=True, tlsCaPath="security/ca/",
                                     tlsCaFile=["ca.pem"], managementTlsCaFile=["ca.pem"], metricsTlsCaFile=["ca.pem"],
                                     interCommTlsCaPath="security/ca/", interCommTlsCaFiles=["ca.pem"])
            for p in ("tls", "managementTls", "metricsTls"):
                s["ServerConfig"].update({p + "Cert": "security/certs/server.pem", p + "Pk": "security/keys/server.key.pem"})
            s["ServerConfig"].update(interCommTlsCert="security/certs/server.pem", interCommPk="security/keys/server.key.pem")
        items = {"ca_cert": str(pki / "ca.pem"), "tls_cert": str(pki / "cert.pem"), "tls_key": str(pki / "cert.key.pem"),
                 "tls_passwd": str(pki / "unused_pwd.txt"), "tls_crl": ""}
        for cfg in (b.ctrl, b.coord):
            for k in list(cfg["tls_config"]):
                if k.endswith("_enable") and not k.startswith(("etcd", "cluster", "ccae")):
                    cfg["tls_config"][k] = True
                    cfg["tls_config"][k.replace("_enable", "_items")] = dict(items)
        b.write_all()
        servers = [b.start_server(i) for i in range(2)]
        client = common.client_ctx([str(pki / "ca.pem")], str(pki / "cert.pem"), str(pki / "cert.key.pem"))
        for i, s in enumerate(servers):
            wait_http(s, b.mgmt(i).replace("http:", "https:") + "/v2/health/ready", ctx=client)
        # mutual TLS: a client without a certificate, or with one from another CA, is refused
        anon = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        anon.check_hostname = False
        wrong = common.client_ctx([str(pki / "ca.pem")], str(other / "cert.pem"), str(other / "cert.key.pem"))
        for ctx in (anon, wrong, None):
            with pytest.raises(OSError):
                st, _, _ = common.call("GET", b.mgmt(0).replace("http:", "https:") + "/v2/health/ready", ctx=ctx)
                if ctx is None:  # plain-TLS-less client: the handshake never completes
                    raise OSError(st)
        coord = b.start_coordinator()
        h = b.coord["http_config"]
        wait_http(coord, f"https://{COORD_IP}:{h['status_port']}/v1/startup", ctx=client)
        ctrl = b.start_controller()
        wait_http(ctrl, f"https://{CTRL_IP}:{b.ctrl['http_server']['port']}/v1/startup", ctx=client)
        wait_http(coord, f"https://{COORD_IP}:{h['status_port']}/v1/readiness", ctx=client, timeout=60)
        st, ans, _ = common.call("POST", f"https://{COORD_IP}:{h['predict_port']}/v1/completions",
                                 {"prompt": "tls works"}, ctx=client)
        assert st == 200 and ans["choices"][0]["text"] == "echo : tls works"
        # a certificate that the configured CA did not sign is refused at start
        b.ctrl["tls_config"]["request_server_tls_items"]["tls_cert"] = str(other / "cert.pem")
        b.ctrl["tls_config"]["request_server_tls_items"]["tls_key"] = str(other / "cert.key.pem")
        write(tmp_path / "ms_controller.json", b.ctrl)
        must_fail(b.start_controller(), "is not signed by the CA")
        os.chmod(pki / "cert.key.pem", 0o644)
        must_fail(b.start_coordinator(), "(private key): permission")
    finally:
        b.stop()
