"""The nginx configuration the proxy role writes, rendered from the plan and read back by an nginx parser.

omni-infer's global proxy needs nginx modules found only in omni-infer's image, so no nginx here can load
it: its content is checked against reference/omni-infer.md §4 (upstreams from the plan, the prefill
subrequest, the decode pass), and crossplane (NGINX Inc.'s parser) checks its syntax and that every
standard directive sits in a context nginx allows and has the arguments nginx accepts.
"""
from __future__ import annotations

from pathlib import Path

import crossplane
import jinja2
import pytest

from plan_inventories import native, omni_2p1d, plan_of, problems_of

TEMPLATE = Path(__file__).resolve().parents[2] / "roles" / "proxy" / "templates" / "nginx.conf.j2"
KEY = "k" * 24


def render(member, tmp_path, hostvars=None):
    """What ansible.builtin.template writes (its Jinja settings: trim_blocks on, lstrip_blocks off)."""
    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    text = env.from_string(TEMPLATE.read_text()).render(item=member, hostvars=hostvars or {},
                                                        ansible_managed="Ansible managed")
    path = tmp_path / "nginx.conf"
    path.write_text(text)
    parsed = crossplane.parse(str(path), single=True, check_ctx=True, check_args=True, catch_errors=False)
    assert parsed["status"] == "ok", parsed["errors"]
    return text, parsed["config"][0]["parsed"]


def find(block, directive, *args):
    """The directives named ``directive`` in ``block`` whose arguments start with ``args``."""
    return [d for d in block if d["directive"] == directive and d["args"][:len(args)] == list(args)]


def one(block, directive, *args):
    (found,) = find(block, directive, *args)
    return found


def servers(upstream):
    return [d["args"][0] for d in find(upstream["block"], "server")]


def omni_door(**overrides):
    plan = plan_of(*omni_2p1d(llmserve_proxy_type="omni-global-proxy", **overrides))
    return plan, plan["front_door"]


def test_omni_global_proxy_is_one_nginx_from_omni_infers_image_on_the_c_host():
    plan, door = omni_door()
    assert door["kind"] == "omni-global-proxy" and door["url"] == "http://10.0.0.1:7000"
    (proxy,) = door["members"]
    assert proxy["host"] == "c0" and proxy["container"] == "llmserve-omni-proxy"
    assert proxy["image"] == "registry.example.com:5000/omni-infer/omni_infer-a3-arm:latest"
    conf = "/etc/llmserve/front-door/nginx.conf"
    assert proxy["argv"] == ["nginx", "-c", conf, "-g", "daemon off;"]
    assert proxy["volumes"] == ["%s:%s:ro" % (conf, conf)]
    assert "llmserve/vllm-router:0.1.17" not in plan["hosts"]["c0"]["images"]


def test_omni_global_proxy_image_can_be_named_apart():
    _, door = omni_door(llmserve_omni_proxy_image="registry.example.com:5000/omni-infer/proxy:1")
    assert door["members"][0]["image"] == "registry.example.com:5000/omni-infer/proxy:1"


def test_omni_global_proxy_configuration_routes_prefill_then_decode(tmp_path):
    plan, door = omni_door()
    _, parsed = render(door["members"][0], tmp_path)
    modules = [d["args"][0] for d in find(parsed, "load_module")]
    assert modules == ["/usr/local/nginx/modules/ngx_http_%s_module.so" % m
                       for m in ("set_request_id", "prefill", "upstream_pd_score_balance")]
    http = one(parsed, "http")["block"]
    prefill, decode = one(http, "upstream", "prefill_servers"), one(http, "upstream", "decode_servers")
    # the API servers of the plan: p0 and p1 on their api_port, every decode device's server
    assert servers(prefill) == ["10.0.0.1:9000", "10.0.0.2:9001"]
    assert servers(decode) == ["10.0.0.3:%d" % (9100 + i) for i in range(16)] + \
        ["10.0.0.4:%d" % (9101 + i) for i in range(16)]
    assert servers(decode) == [u[len("http://"):] for u in door["backends"]["decode"]]
    assert one(prefill["block"], "pd_score_balance")["args"] == ["prefill"]
    assert one(decode["block"], "pd_score_balance")["args"] == ["decode"]
    server = one(http, "server")["block"]
    assert one(server, "listen")["args"] == ["10.0.0.1:7000", "reuseport"]
    completions = one(server, "location", "~", "^/v1(/chat)?/completions$")["block"]
    assert one(completions, "prefill")["args"] == ["/prefill_internal"]
    assert one(completions, "proxy_pass")["args"] == ["http://decode_servers"]
    internal = one(server, "location", "/prefill_internal")["block"]
    assert find(internal, "internal") and one(internal, "proxy_pass")["args"] == ["http://prefill_servers"]
    assert one(internal, "rewrite")["args"] == ["/prefill_internal/(.*)", "/$1", "break"]
    assert one(one(server, "location", "/v1")["block"], "proxy_pass")["args"] == ["http://prefill_servers"]
    assert one(one(server, "location", "=", "/health")["block"], "proxy_pass")["args"] == ["http://prefill_servers"]


@pytest.mark.parametrize("extra, prefill, decode", [
    (None, 256, 256),                                          # vLLM's own default
    (["--max-num-seqs", "16"], 16, 256),
    (["--max-num-seqs=8", "--max-num-seqs", "12"], 12, 256),   # the last one wins, as in vLLM's parser
])
def test_the_balancer_weighs_load_against_the_engines_own_max_num_seqs(tmp_path, extra, prefill, decode):
    groups, hostvars = omni_2p1d(llmserve_proxy_type="omni-global-proxy")
    for host in groups["P"]:
        if extra:
            hostvars[host]["llmserve_vllm_extra_args"] = extra
    door = plan_of(groups, hostvars)["front_door"]
    _, parsed = render(door["members"][0], tmp_path)
    http = one(parsed, "http")["block"]
    for side, value in (("prefill", prefill), ("decode", decode)):
        upstream = one(http, "upstream", side + "_servers")["block"]
        assert one(upstream, "pd_score_balance_max_num_seqs")["args"] == [str(value)]


def test_omni_global_proxy_checks_the_api_key_on_every_client_location(tmp_path):
    _, door = omni_door(llmserve_api_key=KEY)
    (proxy,) = door["members"]
    assert proxy["nginx"]["api_key"] == {"variable": "llmserve_api_key", "host": "c0"}
    text, parsed = render(proxy, tmp_path, hostvars={"c0": {"llmserve_api_key": KEY}})
    http = one(parsed, "http")["block"]
    assert one(http, "map")["block"][1]["directive"] == "Bearer %s" % KEY
    server = one(http, "server")["block"]
    for location in (("~", "^/v1(/chat)?/completions$"), ("/v1",)):
        block = one(server, "location", *location)["block"]
        assert one(block, "if")["args"] == ["$llmserve_authorized", "=", "0"], location
    assert not find(one(server, "location", "/prefill_internal")["block"], "if")   # internal only
    assert text.count(KEY) == 1


@pytest.mark.parametrize("kind", ["router", "nginx-router", "omni"])
def test_an_unknown_proxy_type_is_a_problem_naming_the_front_door_host(kind):
    (problem,) = problems_of(*omni_2p1d(llmserve_proxy_type=kind))
    assert problem.host == "c0" and problem.variable == "llmserve_proxy_type"
    assert "vllm-router, omni-global-proxy" in problem.message


def test_replicas_behind_nginx_and_the_key_gate_before_the_router_parse_as_nginx_reads_them(tmp_path):
    groups, hostvars = native([], [], proxy=("door",))
    groups["replica"] = ["r0", "r1"]
    for n, host in enumerate(groups["replica"]):
        hostvars[host] = dict(hostvars["door"], ansible_host="10.1.0.%d" % (20 + n), llmserve_devices="0")
    door = plan_of(groups, hostvars)["front_door"]
    _, parsed = render(door["members"][0], tmp_path)
    http = one(parsed, "http")["block"]
    assert not find(parsed, "load_module")
    upstream = one(http, "upstream", "llmserve_backends")["block"]
    assert find(upstream, "least_conn") and servers({"block": upstream}) == ["10.1.0.20:8000", "10.1.0.21:8000"]

    plan = plan_of(*native(["p"], ["d"], common=dict(llmserve_api_key=KEY)))
    router, nginx = plan["front_door"]["members"]
    _, parsed = render(nginx, tmp_path, hostvars={"router": {"llmserve_api_key": KEY}})
    upstream = one(one(parsed, "http")["block"], "upstream", "llmserve_backends")["block"]
    assert not find(upstream, "least_conn") and servers({"block": upstream}) == ["127.0.0.1:10002"]
    assert router["listen"] == ["127.0.0.1", 10002]


def test_ipv6_addresses_are_bracketed_in_every_url_and_in_nginx(tmp_path):
    """fd00:1::20 is an address, [fd00:1::20]:8000 the address with a port: URLs, backends, the router's arguments,
    health checks and nginx's listen and server lines all need the brackets; --host takes the bare address."""
    groups, hostvars = native([], [], proxy=("door",), door=dict(ansible_host="fd00:1::10"))
    groups["replica"] = ["r0", "r1"]
    for n, host in enumerate(groups["replica"]):
        hostvars[host] = dict(hostvars["door"], ansible_host="fd00:1::%d" % (20 + n), llmserve_devices="0")
    plan = plan_of(groups, hostvars)
    door = plan["front_door"]
    assert door["url"] == "http://[fd00:1::10]:10001" and door["backends"]["replica"][0] == "http://[fd00:1::20]:8000"
    engine = plan["hosts"]["r0"]["workloads"][0]
    assert engine["ready"]["url"] == "http://[fd00:1::20]:8000"
    assert engine["container"]["command"][engine["container"]["command"].index("--host") + 1] == "fd00:1::20"
    _, parsed = render(door["members"][0], tmp_path)
    http = one(parsed, "http")["block"]
    upstream = one(http, "upstream", "llmserve_backends")["block"]
    assert servers({"block": upstream}) == ["[fd00:1::20]:8000", "[fd00:1::21]:8000"]
    assert one(one(http, "server")["block"], "listen")["args"][0] == "[fd00:1::10]:10001"

    pd = plan_of(*native(["p0"], ["d0"], p0=dict(ansible_host="fd00:1::1"), d0=dict(ansible_host="fd00:1::2"),
                         router=dict(ansible_host="fd00:1::3")))
    router = pd["front_door"]["members"][0]
    assert router["url"] == "http://[fd00:1::3]:10001"   # the admin API the deploy, upgrade and remove talk to
    assert [(w["url"], w["worker_type"]) for w in router["workers"]] == [
        ("http://[fd00:1::1]:8000", "prefill"), ("http://[fd00:1::2]:8000", "decode")]
    assert pd["front_door"]["health_url"] == "http://[fd00:1::3]:10001/readiness"


@pytest.mark.parametrize("knobs,fails,timeout,interval", [
    ({}, "1", "2s", "1"),
    (dict(llmserve_proxy_max_fails=3, llmserve_proxy_fail_timeout=10, llmserve_proxy_health_check_interval=5),
     "3", "10s", "5"),
])
def test_a_dead_backend_is_taken_out_after_max_fails_and_tried_again_after_fail_timeout(tmp_path, knobs, fails,
                                                                                        timeout, interval):
    groups, hostvars = native([], [], proxy=("door",))
    groups["replica"] = ["r0", "r1"]
    for n, host in enumerate(groups["replica"]):
        hostvars[host] = dict(hostvars["door"], ansible_host="10.1.0.%d" % (20 + n), llmserve_devices="0")
    hostvars["door"].update(knobs)
    _, parsed = render(plan_of(groups, hostvars)["front_door"]["members"][0], tmp_path)
    http = one(parsed, "http")["block"]
    for server in find(one(http, "upstream", "llmserve_backends")["block"], "server"):
        assert server["args"][1:] == ["max_fails=" + fails, "fail_timeout=" + timeout], server
    # a refused, failed or dropped completion (a POST) goes to the other replica
    assert one(one(http, "server")["block"], "proxy_next_upstream")["args"] == [
        "error", "timeout", "http_502", "http_503", "http_504", "non_idempotent"]

    # vllm-router: health checks each `interval` s, out after max_fails failed checks (it takes no passive hint,
    # and in PD mode it retries nothing: docs/deploy.md, "When an engine dies"); in igw mode the threshold of
    # workers added at runtime is the router's own (3), so only the interval is given
    plan = plan_of(*native(["p0", "p1"], ["d0"], router=dict(knobs, llmserve_proxy_router_mode="pd")))
    argv = plan["front_door"]["members"][0]["argv"]
    for flag_, value in (("--health-check-interval-secs", interval), ("--health-failure-threshold", fails),
                         ("--worker-startup-check-interval", "1")):
        assert argv[argv.index(flag_) + 1] == value, argv
    argv = plan_of(*native(["p0", "p1"], ["d0"], router=knobs))["front_door"]["members"][0]["argv"]
    assert argv[argv.index("--health-check-interval-secs") + 1] == interval and "--health-failure-threshold" not in argv
    # the router is ready while one prefill and one decode are (its /health fails while any one backend is down)
    assert plan["front_door"]["health_url"] == "http://10.1.0.13:10001/readiness"
    assert plan["front_door"]["members"][0]["health_url"] == "http://10.1.0.13:10001/readiness"
    keyed = plan_of(*native(["p0"], ["d0"], common=dict(llmserve_api_key=KEY)))["front_door"]
    _, parsed = render(keyed["members"][1], tmp_path, hostvars={"router": {"llmserve_api_key": KEY}})
    health = one(one(one(parsed, "http")["block"], "server")["block"], "location", "=", "/health")
    assert one(health["block"], "proxy_pass")["args"] == ["http://llmserve_backends/readiness"]
    assert keyed["health_url"].endswith(":10001/health")
    plan, door = omni_door(llmserve_proxy_max_fails=2)
    _, parsed = render(door["members"][0], tmp_path, hostvars={})
    for side in ("prefill_servers", "decode_servers"):
        for server in find(one(one(parsed, "http")["block"], "upstream", side)["block"], "server"):
            assert server["args"][1:] == ["max_fails=2", "fail_timeout=2s"], server
