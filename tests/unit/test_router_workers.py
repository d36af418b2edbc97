"""vllm-router in igw mode: the plan's router (its argv, workers and the /workers check deploy_state asks), its start
script (roles/proxy/files/router_start.py), and router_workers, against fake_router (the admin API as the real
0.1.17 answers it)."""
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fake_router import Router
from plan_inventories import native, plan_of, problems_of
from sim_process import free_port
from test_image_pull import home, run_module  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[2]
START = REPO / "roles" / "proxy" / "files" / "router_start.py"
P0, P1, D0 = ("http://10.1.0.%d:8000" % n for n in (10, 11, 12))
# GET /workers of the real vllm-router 0.1.17 with two prefill engines and a decode (one line, as it answers)
REAL_ANSWER = json.dumps({"workers": [
    {"id": "a", "url": P0, "model_id": "qwen3-32b", "priority": 50, "cost": 1.0, "worker_type": "prefill",
     "is_healthy": True, "load": 0, "connection_mode": "Http", "metadata": {"model_id": "qwen3-32b"}},
    {"id": "b", "url": D0, "model_id": "qwen3-32b", "priority": 50, "cost": 1.0, "worker_type": "decode",
     "is_healthy": False, "load": 0, "connection_mode": "Http", "metadata": {"model_id": "qwen3-32b"}},
    {"id": "c", "url": P1, "model_id": "qwen3-32b", "priority": 50, "cost": 1.0, "worker_type": "prefill",
     "is_healthy": True, "load": 0, "connection_mode": "Http", "metadata": {"model_id": "qwen3-32b"}}],
    "total": 3, "stats": {"total_workers": 3}}, separators=(",", ":"))


def router_of(**router):
    return plan_of(*native(["p0", "p1"], ["d0"], router=router))["front_door"]["members"][0]


def matches(check, answer):
    return re.search(check["expect"], answer, re.M) is not None


def test_the_router_starts_empty_behind_its_start_script_and_is_given_the_plans_workers():
    router = router_of()
    argv = router["argv"]
    assert argv[:5] == ["python3", "/etc/llmserve/front-door/router_start.py",
                        "/etc/llmserve/front-door/router_workers.json", "vllm-router", "--enable-igw"]
    assert "--prefill" not in argv and "--decode" not in argv and "--vllm-pd-disaggregation" not in argv
    assert [(w["url"], w["worker_type"], w["model_id"], w["host"]) for w in router["workers"]] == [
        (P0, "prefill", "qwen3-32b", "p0"), (P1, "prefill", "qwen3-32b", "p1"), (D0, "decode", "qwen3-32b", "d0")]
    assert "/etc/llmserve/front-door:/etc/llmserve/front-door:ro" in router["volumes"]


def test_the_workers_check_passes_on_the_real_routers_answer_and_fails_on_any_other_list():
    (check,) = router_of()["checks"]
    assert check["path"] == "/workers" and matches(check, REAL_ANSWER)
    answer = json.loads(REAL_ANSWER)
    missing = dict(answer, workers=answer["workers"][:2], total=2)
    extra = dict(answer, workers=answer["workers"] + [dict(answer["workers"][0], url="http://10.1.0.99:8000")], total=4)
    retyped = dict(answer, workers=[dict(answer["workers"][0], worker_type="decode")] + answer["workers"][1:])
    unknown = dict(answer, workers=[dict(answer["workers"][0], model_id="unknown")] + answer["workers"][1:])
    for wrong in (missing, extra, retyped, unknown):
        assert not matches(check, json.dumps(wrong, separators=(",", ":"))), wrong
    assert check["mismatch"].startswith("it does not list exactly the plan's 3 workers (prefill %s" % P0)


def test_pd_mode_lists_the_workers_as_arguments_and_mooncake_chooses_it():
    argv = router_of(llmserve_proxy_router_mode="pd")["argv"]
    assert argv[:2] == ["vllm-router", "--vllm-pd-disaggregation"] and argv[argv.index("--decode") + 1] == D0
    mooncake = dict(llmserve_kv_connector="MooncakeConnector")
    assert plan_of(*native(["p0"], ["d0"], common=mooncake))["front_door"]["members"][0]["mode"] == "pd"
    (problem,) = problems_of(*native(["p0"], ["d0"], common=mooncake, router=dict(llmserve_proxy_router_mode="igw")))
    assert (problem.host, problem.variable) == ("router", "llmserve_proxy_router_mode") and "set it to pd" in str(problem)


def run_start(tmp_path, workers):
    (tmp_path / "workers.json").write_text(json.dumps(workers))
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(START), str(tmp_path / "workers.json"), sys.executable,
                             str(Path(__file__).with_name("fake_router.py")), "--enable-igw", "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.PIPE, text=True)
    return proc, "http://127.0.0.1:%d" % port


def test_the_start_script_registers_every_worker_and_passes_signals_and_the_exit_code_on(tmp_path):
    workers = [dict(url=P0, worker_type="prefill", model_id="m", host="p0", instance="prefill-p0"),
               dict(url=D0, worker_type="decode", model_id="m", host="d0", instance="decode-d0")]
    proc, url = run_start(tmp_path, workers)
    try:
        for line in proc.stdout:   # the router's own output comes first, then the script's line
            if line.startswith("router_start:"):
                break
        assert line.strip() == "router_start: registered 2 workers from %s" % (tmp_path / "workers.json")
        with urllib.request.urlopen(url + "/workers", timeout=5) as resp:
            listed = json.loads(resp.read())["workers"]
        assert [(w["url"], w["worker_type"], w["model_id"]) for w in listed] == [(P0, "prefill", "m"), (D0, "decode", "m")]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 7   # the fake router's exit code on SIGTERM
    finally:
        proc.kill()


def workers(*urls, kind="prefill"):
    return [dict(url=u, worker_type=kind, model_id="m") for u in urls]


def call(home, router, wanted, check_mode=False, **args):  # noqa: F811 (fixture)
    return run_module("llmserve.cluster.router_workers", dict(url=router.url, workers=wanted, **args), home,
                      check_mode=check_mode)


def test_exact_adds_the_missing_before_it_removes_the_extra_and_then_changes_nothing(home):  # noqa: F811
    with Router() as router:
        call(home, router, workers(P0, "http://10.1.0.99:8000"), state="present")
        router.calls.clear()
        wanted = workers(P0, P1) + workers(D0, kind="decode")
        rc, result = call(home, router, wanted, check_mode=True)
        assert rc == 0 and result["changed"] and router.calls == [], "check mode changed the router"
        rc, result = call(home, router, wanted)
        assert rc == 0 and result["changed"], result
        assert router.calls == [("POST", P1), ("POST", D0), ("DELETE", "http://10.1.0.99:8000")]
        assert sorted((w["url"], w["worker_type"]) for w in result["workers"]) == [
            (P0, "prefill"), (P1, "prefill"), (D0, "decode")]
        rc, again = call(home, router, wanted)
        assert rc == 0 and not again["changed"] and len(router.calls) == 3


def test_an_engine_listed_twice_or_in_the_wrong_pool_is_put_right(home):  # noqa: F811
    with Router() as router:
        call(home, router, workers(P0) + workers(P0) + workers(D0, kind="prefill"), state="present")
        rc, result = call(home, router, workers(P0) + workers(D0, kind="decode"))
        assert rc == 0 and [(w["url"], w["worker_type"]) for w in router.workers] == [(P0, "prefill"), (D0, "decode")]


def test_settle_waits_for_a_starting_router_to_register_its_workers_itself(home):  # noqa: F811
    with Router() as router:
        wanted = workers(P0)
        later = __import__("threading").Timer(1.5, lambda: router.workers.append(
            dict(url=P0, worker_type="prefill", model_id="m", is_healthy=True)))
        later.start()
        rc, result = call(home, router, wanted, settle=20)
        assert rc == 0 and not result["changed"] and router.calls == [] and len(router.workers) == 1


def test_absent_takes_the_engine_out_and_waits_until_it_runs_no_request(home):  # noqa: F811
    with Router() as router, Router() as engine:
        call(home, router, workers(engine.url, P1), state="present")
        engine.busy[:] = [2, 1, 1, 0, 0]
        started = time.monotonic()
        rc, result = call(home, router, workers(engine.url), state="absent", drain_timeout=30)
        assert rc == 0 and result["removed"] == [engine.url] and [w["url"] for w in router.workers] == [P1]
        assert engine.busy == [] and result["drained_seconds"] >= 3 and time.monotonic() - started >= 4


def test_an_engine_still_busy_after_the_drain_timeout_fails_naming_it(home):  # noqa: F811
    with Router() as router, Router() as engine:
        call(home, router, workers(engine.url), state="present")
        engine.busy[:] = [1] * 100
        wanted = [dict(url=engine.url, worker_type="prefill", model_id="m", instance="prefill-node1", host="node1")]
        rc, result = call(home, router, wanted, state="absent", drain_timeout=2)
        assert rc != 0 and result["msg"].startswith("still busy after 2 s (drain_timeout): prefill-node1 on node1 (%s)"
                                                    % engine.url), result["msg"]


@pytest.mark.parametrize("path", ["/workers"])
def test_a_router_without_the_admin_api_is_named_with_the_mode_it_needs(home, path):  # noqa: F811
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    try:
        for _ in range(50):
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        rc, result = run_module("llmserve.cluster.router_workers", dict(
            url="http://127.0.0.1:%d" % port, workers=workers(P0)), home)
    finally:
        server.kill()
    assert rc != 0 and "does not list its workers (GET %s: HTTP 404" % path in result["msg"]
    assert "llmserve_proxy_router_mode: igw" in result["msg"]


def test_engine_probe_reads_the_model_from_the_routers_own_listing(home):  # noqa: F811
    with Router() as router:
        call(home, router, workers(P0) + workers(D0, kind="decode"), state="present")
        rc, result = run_module("llmserve.cluster.engine_probe", dict(url=router.url), home)
    assert rc == 0 and result["models"] == ["m"], result
