"""The filters the ray role reads the dashboard's node list with (shapes as Ray 2.60's GET /api/v0/nodes)."""
from ansible_collections.llmserve.cluster.plugins.filter.ray_nodes import FilterModule, ray_joined, ray_nodes


def node(ip, state="ALIVE", node_id=None, **resources):
    return {"node_id": node_id or "id-" + ip, "node_ip": ip, "state": state, "is_head_node": False,
            "resources_total": dict({"CPU": 1.0, "memory": 1e10, "node:" + ip: 1.0}, **resources)}


def answer(*nodes):
    return {"result": True, "msg": "", "data": {"result": {"total": len(nodes), "result": list(nodes)}}}


PLANNED = {"10.0.0.1": {"CPU": 1}, "10.0.0.2": {"CPU": 1, "worker_marker": 1}}


def test_the_plan_matches_when_every_node_is_alive_with_its_resources():
    nodes = [node("10.0.0.1"), node("10.0.0.2", worker_marker=1.0), node("10.0.0.9")]   # unplanned: ignored
    assert ray_nodes(nodes, PLANNED) == []


def test_a_missing_dead_or_short_node_is_named_with_what_differs():
    nodes = [node("10.0.0.1", state="DEAD"), node("10.0.0.2", CPU=2.0)]
    assert ray_nodes(nodes, PLANNED) == ["10.0.0.1 is not ALIVE", "10.0.0.2 has CPU 2, the plan 1",
                                         "10.0.0.2 has worker_marker 0, the plan 1"]
    assert ray_nodes([], {"10.0.0.1": {"NPU": 16}}) == ["10.0.0.1 is not ALIVE"]
    assert ray_nodes([node("10.0.0.1", NPU=0.5)], {"10.0.0.1": {"NPU": 16}}) == ["10.0.0.1 has NPU 0.5, the plan 16"]


def test_a_restarted_node_counts_only_as_a_new_node():
    before = answer(node("10.0.0.2", node_id="old"))
    still_old = answer(node("10.0.0.2", node_id="old"))
    assert ray_joined(still_old, "10.0.0.2")                                   # not restarted: old is fine
    assert not ray_joined(still_old, "10.0.0.2", before, restarted=True)       # restarted: the old entry lingers
    assert ray_joined(answer(node("10.0.0.2", "DEAD", "old"), node("10.0.0.2", node_id="new")), "10.0.0.2",
                      before, restarted=True)
    assert not ray_joined(answer(node("10.0.0.2", "DEAD", "new")), "10.0.0.2", before, restarted=True)
    assert not ray_joined({}, "10.0.0.2") and not ray_joined(answer(node("10.0.0.3")), "10.0.0.2")


def test_both_filters_are_registered():
    assert set(FilterModule().filters()) == {"ray_nodes", "ray_joined"}
