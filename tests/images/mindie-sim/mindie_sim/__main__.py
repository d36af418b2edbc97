"""`python3 -m mindie_sim BINARY [ARGS...]`: run one of the stand-in's binaries by name."""

from __future__ import annotations

import os
import signal
import sys

# binary name -> (module, old generation)
BINARIES = {
    "mindie_llm_server": ("server", False), "mindieservice_daemon": ("server", True),
    "mindie_motor_controller": ("controller", False), "ms_controller": ("controller", True),
    "mindie_motor_coordinator": ("coordinator", False), "ms_coordinator": ("coordinator", True),
}


def run(name: str, argv: list[str]) -> int:
    if name not in BINARIES:
        print(f"ERROR [mindie-sim] unknown binary {name!r}; one of {sorted(BINARIES)}", file=sys.stderr)
        return 1
    mod, old = BINARIES[name]
    # MindIE's programs end on SIGTERM (docker stop); a process as PID 1 would otherwise ignore it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    module = __import__(f"mindie_sim.{mod}", fromlist=["main"])
    return module.main(argv, old)


def main() -> int:
    if len(sys.argv) < 2:
        print(f"usage: python3 -m mindie_sim BINARY [ARGS...]; BINARY one of {sorted(BINARIES)}", file=sys.stderr)
        return 2
    return run(sys.argv[1], sys.argv[2:])


def shim() -> int:
    return run(os.path.basename(sys.argv[0]), sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
