"""What a plan member's argv makes vLLM 0.32 open, read with the engine simulator's copy of vLLM's parser.

The simulator (tests/images/engine-sim) rebuilds `vllm serve`'s parser from the flag table dumped from vLLM
0.32, so an argv it rejects is one vLLM rejects. ``listens`` then follows vLLM 0.32's code to the
sockets a process binds: the API server, the data-parallel handshake (``launch_core_engines``), the
torch.distributed master of a TP group over several nodes, and NIXL's side channel.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import io
import sys
from pathlib import Path

SIM_DIR = Path(__file__).resolve().parents[2] / "tests" / "images" / "engine-sim"
if str(SIM_DIR) not in sys.path:
    sys.path.insert(0, str(SIM_DIR))

from llmserve_engine_sim import cli  # noqa: E402

VLLM_KINDS = ("vllm_prefill", "vllm_decode")
DEFAULT_DP_RPC_PORT = 29550   # ParallelConfig.data_parallel_rpc_port
HELD_SERVICE = "omni-node-port"   # claimed for omni-infer's node_port, opened by no process


@functools.lru_cache(maxsize=1)
def _parser():
    top, serve = cli.build_parsers()
    return top, set(serve._option_string_actions)


def parse(argv):
    """argv (``vllm serve ...``) as vLLM 0.32 parses and checks it; AssertionError with vLLM's message if rejected."""
    assert argv[:2] == ["vllm", "serve"], argv
    top, options = _parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            ns = top.parse_args(cli.preprocess(list(argv[1:]), options))
            cli.validate_parsed(ns, env={})
            # the start-up checks (one data-parallel load-balancing mode, ...); the KV connector is left
            # out: omni-infer's and vllm-ascend's connectors come from plugins the plain parser lacks
            checked = copy.copy(ns)
            checked.kv_transfer_config = None
            cli.startup_checks(checked)
    except SystemExit as exc:
        raise AssertionError("vLLM 0.32 rejects %s (exit %s): %s" % (" ".join(argv), exc.code, err.getvalue()))
    except cli.StartupError as exc:
        raise AssertionError("vLLM 0.32 refuses to start %s: %s" % (" ".join(argv), exc))
    return ns


def listens(member):
    """(opened, held): the (address, port) pairs the member's process binds, and those only held for it.

    Held: the RPC port of a data-parallel head whose ranks are all local (vLLM then does the handshake over
    IPC and binds the port only with elastic EP), and omni-infer's node_port of an engine that opens none.
    """
    ns = parse(member["argv"])
    env, address = member["env"], member["address"]
    opened, held = set(), set()
    if not ns.headless:
        opened.add((ns.host or address, ns.port))
    dp = ns.data_parallel_size
    rpc = (ns.data_parallel_address or "127.0.0.1", ns.data_parallel_rpc_port or DEFAULT_DP_RPC_PORT)
    ranks = [0]
    if dp > 1:
        if ns.data_parallel_external_lb or ns.data_parallel_rank is not None:
            # external LB: one process per rank; rank 0's front end binds the handshake the others dial
            ranks = [ns.data_parallel_rank]
            if ns.data_parallel_rank == 0:
                opened.add(rpc)
        else:
            local = dp if ns.data_parallel_size_local is None else ns.data_parallel_size_local
            first = ns.data_parallel_start_rank or 0
            ranks = list(range(first, first + local))
            if not ns.headless:
                if local != dp:
                    opened.add(rpc)   # remote ranks: the head binds tcp://address:rpc_port
                elif ns.data_parallel_rpc_port is not None:
                    held.add((address, ns.data_parallel_rpc_port))
    if ns.nnodes > 1 and ns.node_rank == 0:
        opened.add((ns.master_addr, ns.master_port))   # torch.distributed's store of the TP group
    if "VLLM_NIXL_SIDE_CHANNEL_PORT" in env:   # base + global DP rank (vLLM's data_parallel_index)
        base = int(env["VLLM_NIXL_SIDE_CHANNEL_PORT"])
        opened.update((env["VLLM_NIXL_SIDE_CHANNEL_HOST"], base + rank) for rank in ranks)
    if "VLLM_MOONCAKE_BOOTSTRAP_PORT" in env and not ns.headless:   # the prefill's bootstrap server
        opened.add((address, int(env["VLLM_MOONCAKE_BOOTSTRAP_PORT"])))
    if "VLLM_ASCEND_LLMDD_RPC_PORT" in env:   # vllm-ascend's LLMDataDistCMgrConnector workers, either formula:
        base, tp, ip = int(env["VLLM_ASCEND_LLMDD_RPC_PORT"]), ns.tensor_parallel_size, env["VLLM_ASCEND_LLMDD_RPC_IP"]
        opened.update((ip, base + local * tp + t) for local in range(len(ranks)) for t in range(tp))   # local DP rank
        opened.update((ip, base + tp + t) for t in range(tp))                                        # no DP rank
    if "node_port" in member:
        held.add((address, member["node_port"]))
    return opened, held


def check_argv_opens_the_listeners(plan):
    """Every vLLM member's argv is accepted by vLLM 0.32, each binds on its own address, no two members
    of a machine bind one port, and what the members of an instance on a host open (or hold) is exactly
    that instance's listeners on that host in the plan. Returns every (address, port) opened or held."""
    found = []
    for inst in plan["instances"]:
        if inst["kind"] not in VLLM_KINDS:
            continue
        per_host = {}
        for m in inst["members"]:
            opened, held = listens(m)
            assert not opened & held, (m["container"], opened, held)
            for addr, port in opened | held:
                assert addr == m["address"], (m["container"], addr, port)
            if not m["headless"]:
                assert (m["address"], m["port"]) in opened, m["container"]
            ports = per_host.setdefault(m["host"], [])
            ports.extend(port for _, port in opened | held)
            found.extend(opened | held)
        for host, ports in per_host.items():
            assert len(ports) == len(set(ports)), (inst["name"], host, sorted(ports))
            planned = [lis for lis in plan["hosts"][host]["listeners"] if lis["instance"] == inst["name"]]
            assert sorted(ports) == [lis["port"] for lis in planned], (inst["name"], host)
            held_ports = {p for m in inst["members"] if m["host"] == host for p in [m.get("node_port")] if p}
            assert {lis["port"] for lis in planned if lis["service"] == HELD_SERVICE} == held_ports
    return found
