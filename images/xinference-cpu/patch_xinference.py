#!/usr/bin/env python3
"""Fix a deadlock of xinference 4.1.0's supervisor on hosts with 1 or 2 CPUs.

`xinference-supervisor` (POSIX) runs a host process that keeps the public actor
address (--supervisor-port) and forwards every RPC to the supervisor and API
child processes.  For each child, `deploy/api_host.py:_wait_process` parks
three calls for the child's whole lifetime in the event loop's *default*
executor (`asyncio.to_thread`: process.wait and the stdout/stderr forwarders).
Python 3.11 sizes that executor min(32, os.cpu_count() + 4): 6 threads on a
2-CPU host, so two children take all of them.  xoscar deserializes any message
of more than 100 objects with `asyncio.to_thread` too, and such a message then
never completes: e.g. GET /v1/model_registrations/LLM (172 entries) or
/v1/model_registrations/image hang for ever while /embedding (47) answers.
Measured on this 2-CPU machine: a reply of >100 objects through
<supervisor>:9999 times out, the same call to the child's own address answers
in 9 ms; py-spy shows the 6 executor threads in Popen.wait/_forward_output.

The fix gives those lifetime calls their own thread pool, so the default
executor stays free.  The script fails if the source is not the expected one.

Usage: patch_xinference.py SITE_PACKAGES_DIR
"""

import sys
from pathlib import Path

OLD_WAIT = """    waiting = asyncio.create_task(asyncio.to_thread(process.wait))
    forwarding = asyncio.gather(
        asyncio.to_thread(
            _forward_output, process.stdout, sys.stdout, diagnostics, stopping
        ),
        asyncio.to_thread(
            _forward_output, process.stderr, sys.stderr, diagnostics, stopping
        ),
    )
"""
NEW_WAIT = """    waiting = asyncio.create_task(_child_io(process.wait))
    forwarding = asyncio.gather(
        _child_io(_forward_output, process.stdout, sys.stdout, diagnostics, stopping),
        _child_io(_forward_output, process.stderr, sys.stderr, diagnostics, stopping),
    )
"""
ANCHOR = "async def _wait_process("
HELPER = '''# llmserve patch: the lifetime calls of _wait_process (process.wait and the two
# output forwarders, three per child) must not occupy the event loop's default
# executor, which Python 3.11 sizes cpu_count + 4 (6 on a 2-CPU host): xoscar
# needs it to (de)serialize any message of more than 100 objects.
_CHILD_IO_EXECUTOR = concurrent.futures.ThreadPoolExecutor(
    max_workers=64, thread_name_prefix="xinference-child-io"
)


async def _child_io(func, *args):
    return await asyncio.get_running_loop().run_in_executor(
        _CHILD_IO_EXECUTOR, functools.partial(func, *args)
    )


'''


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    path = Path(sys.argv[1]) / "xinference" / "deploy" / "api_host.py"
    src = path.read_text()
    if "_CHILD_IO_EXECUTOR" in src:
        print(f"already patched: {path}")
        return
    if src.count(OLD_WAIT) != 1 or src.count(ANCHOR) != 1 or "\nimport asyncio\n" not in src:
        sys.exit(f"{path}: not the xinference 4.1.0 source this patch expects")
    src = src.replace(OLD_WAIT, NEW_WAIT)
    src = src.replace(ANCHOR, HELPER + ANCHOR)
    src = src.replace("\nimport asyncio\n", "\nimport asyncio\nimport concurrent.futures\nimport functools\n", 1)
    path.write_text(src)
    print(f"patched: {path}")


if __name__ == "__main__":
    main()
