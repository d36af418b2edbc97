"""Run inside the vllm-cpu image: parse each argv with vLLM's own `vllm serve` parser.

stdin: a JSON list of argv lists ("vllm", "serve", ...); stdout: a JSON list of
{"ok": bool, "error": "<last line vLLM printed>"}.
"""
import contextlib
import io
import json
import sys

import vllm.entrypoints.cli.serve as serve
from vllm.utils.argparse_utils import FlexibleArgumentParser

parser = FlexibleArgumentParser(prog="vllm")
subparsers = parser.add_subparsers(dest="subparser")
commands = {}
for command in serve.cmd_init():
    command.subparser_init(subparsers).set_defaults(dispatch_function=command.cmd)
    commands[command.name] = command

results = []
for argv in json.load(sys.stdin):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            namespace = parser.parse_args(argv[1:])
            commands[namespace.subparser].validate(namespace)
        results.append({"ok": True})
    except SystemExit:
        lines = err.getvalue().strip().splitlines()
        results.append({"ok": False, "error": lines[-1] if lines else "exit"})
    except Exception as exc:  # a validator that raises instead of exiting
        results.append({"ok": False, "error": repr(exc)})
print(json.dumps(results))
