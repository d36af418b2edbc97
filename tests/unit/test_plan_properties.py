"""Properties of the plan over generated topologies (hypothesis): no port clash, determinism, stable scale-out."""
import copy
import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ansible_collections.llmserve.cluster.plugins.plugin_utils._plan_vllm import KV_CONNECTORS, PEER_SIZED
from plan_inventories import check_contract, omni, plan_of
from vllm_argv import check_argv_opens_the_listeners

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROLE_SETS = (("prefill",), ("decode",), ("prefill", "decode"))


@st.composite
def topologies(draw):
    """A valid llmserve-shape inventory: hosts in chunks of 1-3, each chunk one instance per role it serves.

    A chunk serving both roles holds a prefill and a decode instance on every one of its hosts, on
    disjoint devices (llmserve_prefill_devices / llmserve_decode_devices). TP x PP divides each share.
    """
    tp = draw(st.sampled_from([1, 2, 4]))
    pp = draw(st.sampled_from([1, 2]))
    group = tp * pp
    connector = draw(st.sampled_from(sorted(KV_CONNECTORS)))
    common = dict(llmserve_model="/models/m", llmserve_image="registry.example.com:5000/vllm:0.32.0",
                  llmserve_kv_connector=connector, llmserve_tensor_parallel_size=tp,
                  llmserve_pipeline_parallel_size=pp,
                  llmserve_accelerator=draw(st.sampled_from(["nvidia", "cpu", "ascend_a3"])))
    if connector == "ExampleConnector":
        common["llmserve_kv_shared_path"] = "/srv/kv"
    if connector == "LMCacheConnectorV1":
        common["llmserve_lmcache_config"] = {"chunk_size": 256, "remote_url": "lm://10.9.9.9:65432"}
    if draw(st.booleans()):
        common["llmserve_api_key"] = "<set>"
    chunks = draw(st.lists(st.tuples(st.integers(1, 3), st.sampled_from(ROLE_SETS)), min_size=1, max_size=5))
    roles_present = {r for _, roles in chunks for r in roles}
    if roles_present != {"prefill", "decode"}:   # every plan needs both sides
        chunks.append((1, ("decode",) if "prefill" in roles_present else ("prefill",)))
        if not roles_present:
            chunks.append((1, ("decode",)))
    groups = {"prefill": [], "decode": [], "proxy": ["router"]}
    hostvars = {}
    n = 0
    for c, (size, roles) in enumerate(chunks):
        for i in range(size):
            host = "h%02d" % n
            n += 1
            hv = dict(common, ansible_host="10.9.0.%d" % n)
            if size > 1:
                hv["llmserve_instance"] = "i%d" % c
            first = 0
            for role in roles:   # each role gets ranks of `group` devices, after the previous role's
                count = group * draw(st.integers(1, 2 if len(roles) > 1 else 4))
                hv["llmserve_%s_devices" % role if len(roles) > 1 else "llmserve_devices"] = (
                    "%d-%d" % (first, first + count - 1) if count > 1 else str(first))
                first += count
                groups[role].append(host)
            if i == 0 and draw(st.booleans()):   # base ports of the chunk's instances, read on their master (first host)
                hv["llmserve_vllm_port"] = draw(st.integers(8000, 8100))
                hv["llmserve_vllm_dp_rpc_port"] = draw(st.integers(13000, 13100))
                hv["llmserve_nixl_side_channel_port"] = draw(st.integers(5600, 5700))
            hostvars[host] = hv
    # an A3 host has 16 NPUs (0-15): more devices than that make it a GPU host
    last = max(int(v.split("-")[-1]) for hv in hostvars.values() for k, v in hv.items() if k.endswith("_devices"))
    if common["llmserve_accelerator"] == "ascend_a3" and last >= 16:
        common["llmserve_accelerator"] = "nvidia"
        for hv in hostvars.values():
            hv["llmserve_accelerator"] = "nvidia"
    # the front door on its own machine or on an engine's
    hosts = sorted(hostvars)
    where = draw(st.sampled_from(["10.9.1.1"] + [hostvars[h]["ansible_host"] for h in hosts]))
    hostvars["router"] = dict(common, ansible_host=where)
    # the order in which hosts are listed inside a group (masters are the first of their instance)
    return groups, hostvars


def effective_listeners(plan):
    """(address, port) of every socket the processes open (or hold), read back from their argv and env
    with vLLM 0.32's parser (vllm_argv), which also checks them against each host's listeners."""
    found = check_argv_opens_the_listeners(plan)
    for door in plan["front_doors"]:
        address = plan["hosts"][door["host"]]["address"]
        for member in door["members"]:
            if "vllm-router" in member["argv"][:4]:   # itself, or behind its igw start script
                argv = member["argv"]
                host, port = argv[argv.index("--host") + 1], int(argv[argv.index("--port") + 1])
                # a router behind nginx listens on the loopback of the same machine
                found.append((address if host == "127.0.0.1" else host, port))
                found.append((argv[argv.index("--prometheus-host") + 1],
                              int(argv[argv.index("--prometheus-port") + 1])))
            else:
                found.append(tuple(member["nginx"]["listen"]))
    return found


def dumps(plan):
    return json.dumps(plan, sort_keys=True)


@SETTINGS
@given(topologies())
def test_no_two_listeners_share_a_machine_and_port(topology):
    plan = plan_of(*topology)
    claimed = check_contract(plan)   # asserts the plan's own listeners are unique per machine
    opened = effective_listeners(plan)
    assert len(opened) == len(set(opened)), sorted(opened)
    assert set(opened) == set(claimed)   # every socket a process opens is a listener of the plan, and back
    for inst in plan["instances"]:
        assert sum(m["local_dp"] for m in inst["members"]) == inst["data_parallel_size"]
        starts = [m["dp_start_rank"] for m in inst["members"]]
        assert starts == [sum(m["local_dp"] for m in inst["members"][:i]) for i in range(len(starts))]


@SETTINGS
@given(topologies(), st.randoms(use_true_random=False))
def test_the_plan_is_deterministic_whatever_the_order_of_the_host_variables(topology, rnd):
    groups, hostvars = topology
    first = dumps(plan_of(groups, hostvars))
    assert dumps(plan_of(groups, hostvars)) == first
    names = list(hostvars)
    rnd.shuffle(names)
    shuffled = {}
    for host in names:
        items = list(hostvars[host].items())
        rnd.shuffle(items)
        shuffled[host] = dict(items)
    assert dumps(plan_of(groups, shuffled)) == first


@SETTINGS
@given(topologies(), st.sampled_from(["prefill", "decode"]), st.integers(0, 20), st.integers(1, 8))
def test_adding_an_instance_moves_nothing_that_runs(topology, role, position, devices):
    groups, hostvars = topology
    # by design these connectors' configuration names the other side's sizes, which grow with the cluster
    assume(hostvars["h00"]["llmserve_kv_connector"] not in PEER_SIZED)
    before = plan_of(groups, hostvars)
    grown_groups, grown_vars = copy.deepcopy(groups), copy.deepcopy(hostvars)
    new = dict(hostvars["h00"], ansible_host="10.9.2.1", llmserve_devices="0-%d" % (devices - 1))
    for key in ("llmserve_instance", "llmserve_prefill_devices", "llmserve_decode_devices"):
        new.pop(key, None)
    group = hostvars["h00"]["llmserve_tensor_parallel_size"] * hostvars["h00"]["llmserve_pipeline_parallel_size"]
    new["llmserve_devices"] = "0-%d" % (group * devices - 1) if group * devices > 1 else "0"
    if new["llmserve_accelerator"] == "ascend_a3" and group * devices > 16:   # an A3 host has 16 NPUs
        new["llmserve_devices"] = "0-%d" % (16 // group * group - 1) if group > 1 else "0-15"
    grown_vars["new0"] = new
    grown_groups[role].insert(position % (len(grown_groups[role]) + 1), "new0")
    after = plan_of(grown_groups, grown_vars)
    assert [i["name"] for i in after["instances"] if i["name"] != "%s-new0" % role] == \
        [i["name"] for i in before["instances"]]
    old = {i["name"]: i for i in before["instances"]}
    for inst in after["instances"]:
        if inst["name"] in old:
            assert inst == old[inst["name"]]   # hosts, ranks, ports, argv, env, endpoints: all unchanged
    def running(entry):   # the front door's own argv lists the backends, which grow (checked below), as do the
        # ports a host connects to
        return dict(entry, workloads=[w for w in entry["workloads"] if w["system"] != "front_door"], peers=None)

    for host, entry in before["hosts"].items():
        assert running(after["hosts"][host]) == running(entry)
        assert all(p in after["hosts"][host]["peers"] for p in entry["peers"])
    door_before, door_after = before["front_door"], after["front_door"]
    assert door_after["url"] == door_before["url"]
    for side, urls in door_before["backends"].items():
        assert set(urls) <= set(door_after["backends"][side])


@SETTINGS
@given(topologies())
def test_the_plan_round_trips_through_json(topology):
    plan = plan_of(*topology)
    assert json.loads(json.dumps(plan)) == plan
    assert json.loads(json.dumps(plan, sort_keys=True, indent=2)) == plan


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 4), st.sampled_from([100, 200, 300]), st.integers(1, 16))
def test_omni_ports_follow_its_formulas_for_any_size(n_prefill, n_decode, d_offset, n_devices):
    devices = ",".join(str(i) for i in range(n_devices))
    plan = plan_of(*omni(n_prefill, n_decode, d_offset, devices=devices))
    claimed = check_contract(plan)
    assert sorted(effective_listeners(plan)) == sorted(claimed)
    for k in range(n_prefill):
        assert [e["port"] for e in plan["hosts"]["p%d" % k]["listeners"]] == [8000 + k, 9000 + k]
    decode = [p for r in range(n_decode) for p in range(9000 + d_offset + r, 9000 + d_offset + r + n_devices)]
    assert [int(u.rsplit(":", 1)[1]) for u in plan["front_door"]["backends"]["decode"]] == decode
    assert plan["front_door"]["url"].endswith(":7000")
