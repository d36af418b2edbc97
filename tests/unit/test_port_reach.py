"""Peer reachability before any engine starts: the plan's peers (who connects to which port of which host) and
port_reach (listen where peers will connect, connect to every peer port), on loopback."""
import socket
import threading
import time

from plan_inventories import native, plan_of
from sim_process import free_port
from test_image_pull import home, run_module  # noqa: F401 (fixture)

from ansible_collections.llmserve.cluster.plugins.modules.port_reach import reach, serve


def peers(plan, host):
    return [(p["peer"], p["port"], p["service"], p["variable"]) for p in plan["hosts"][host]["peers"]]


def test_the_plan_says_who_connects_to_which_port():
    plan = plan_of(*native(["p0"], ["d0"], common=dict(llmserve_kv_connector="NixlConnector")))
    # decode reads prefill's KV through its side channel; the front door sends requests to both engines
    assert peers(plan, "d0") == [("p0", 5600 + rank, "nixl-side-channel", "llmserve_nixl_side_channel_port")
                                 for rank in range(8)]   # one per rank of its eight devices
    assert peers(plan, "router") == [("d0", 8000, "vllm-api", "llmserve_vllm_port"),
                                     ("p0", 8000, "vllm-api", "llmserve_vllm_port")]
    assert peers(plan, "p0") == []
    # one machine in two inventory roles does not check itself
    same = plan_of(*native(["p0"], ["d0"], router=dict(ansible_host="10.1.0.10")))
    assert [p[0] for p in peers(same, "router")] == ["d0"]


def test_a_listener_stays_until_told_and_a_peer_reaches_it(tmp_path):
    port, stop = free_port(), tmp_path / "stop"
    result = {}
    server = threading.Thread(target=lambda: result.update(serve([port, port], 20, str(stop))))
    server.start()
    started = time.monotonic()
    # something else that talks to the port (a router's health check) does not end it before the peer came
    assert reach(dict(address="127.0.0.1", port=port), 5) is None
    assert reach(dict(address="127.0.0.1", port=port), 5) is None
    time.sleep(0.5)
    assert server.is_alive()
    stop.write_text("")
    server.join(10)
    assert result == {port: 2} and time.monotonic() - started < 10   # it ends when told, not at its timeout


def test_a_port_in_use_is_left_to_its_owner(tmp_path):
    with socket.socket() as owner:
        owner.bind(("127.0.0.1", 0))
        owner.listen(1)
        port = owner.getsockname()[1]
        started = time.monotonic()
        assert serve([port], 20, str(tmp_path / "stop")) == {} and time.monotonic() - started < 5
        assert reach(dict(address="127.0.0.1", port=port), 1) is None


def test_an_unreachable_peer_port_fails_naming_both_hosts_the_port_and_its_variable(home):  # noqa: F811
    port = free_port()
    rc, result = run_module("llmserve.cluster.port_reach", dict(host="node3", wait=1, connect=[dict(
        peer="node1", address="127.0.0.1", port=port, service="vllm-api", instance="prefill-node1",
        variable="llmserve_vllm_port")]), home)
    assert rc != 0
    assert result["msg"] == ("node3 cannot reach node1 at 127.0.0.1 port %d (vllm-api of prefill-node1, set by "
                             "llmserve_vllm_port): refused; open TCP %d from node3 to node1 (firewall, security group)"
                             % (port, port))


def test_mindie_xinference_and_gpustack_peers_are_the_components_that_call_each_other():
    from test_plan_clusters import GPS_HA, gpustack, xinference
    from test_ranktable import mindie_plan
    mindie = mindie_plan()   # four Servers s0..s3, the Controller and the Coordinator on ms
    assert peers(mindie, "ms") == [(s, port, service, variable) for s in ("s0", "s1", "s2", "s3") for port, service, variable in (
        (1025, "mindie-server", "llmserve_mindie_server_port"),
        (1026, "mindie-server-management", "llmserve_mindie_server_management_port"),
        (1027, "mindie-server-metrics", "llmserve_mindie_server_metrics_port"))]
    # Servers exchange KV with each other; the Controller and Coordinator share one host, so they check nothing between them
    assert peers(mindie, "s1") == [(s, 1121, "mindie-server-inter-comm", "llmserve_mindie_server_inter_comm_port")
                                   for s in ("s0", "s2", "s3")]
    xinf = plan_of(*xinference())
    assert peers(xinf, "w0") == [("sup", 9999, "xinference-supervisor-rpc", "llmserve_xinference_supervisor_port")]
    assert [p[:3] for p in peers(xinf, "sup")] == [("w0", 30001, "xinference-worker-rpc"), ("w1", 30001, "xinference-worker-rpc")]
    # GPUStack behind our load balancer: servers to the database and the workers, the balancer to the servers, workers
    # to the balancer
    gps = plan_of(*gpustack(servers=("s0", "s1"), db_hosts=("db",), lb_hosts=("lb",), common=GPS_HA))
    services = {h: sorted({(p[0], p[2]) for p in peers(gps, h)}) for h in ("s0", "lb", "w0", "db")}
    assert services == {"s0": [("db", "postgresql"), ("w0", "gpustack-worker")],
                        "lb": [("s0", "gpustack-http"), ("s1", "gpustack-http")],
                        "w0": [("lb", "gpustack-lb")], "db": []}
    # with one server and no balancer, workers register at the server itself
    single = plan_of(*gpustack())
    assert {(p[0], p[2]) for p in peers(single, "w0")} == {("s0", "gpustack-http")}
