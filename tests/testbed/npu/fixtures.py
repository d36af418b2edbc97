#!/usr/bin/env python3
"""Render an NPU fixture template for one test-bed host.

The templates in fixtures/ (a2-8, a2-16, a3-16) write "{host}" where a host's own number belongs:
in device IPs and, on A3, in the super pod's server index. make_fixture(kind, host_index) fills
it in and gives each A3 die its SDID; the npu-smi and hccn_tool stand-ins read the result.

    python3 tests/testbed/npu/fixtures.py a3-16 2 /etc/llmserve-testbed/npu.json

Standard library only, so it also runs on the test-bed hosts.
"""
import json
import sys
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "fixtures"
KINDS = tuple(sorted(p.stem for p in TEMPLATES.glob("*.json")))


def sdid(server_index, npu_id, chip_id, phy_id):
    """A die's super device id. The layout is read off public A3 samples (server index from bit 22,
    NPU from bit 18, chip from bit 16, physical id below), not from a specification; the module
    under test passes SDIDs through and never decodes them."""
    return (server_index << 22) | (npu_id << 18) | (chip_id << 16) | phy_id


def _fill(value, host):
    if isinstance(value, str):
        return value.replace("{host}", str(host))
    if isinstance(value, list):
        return [_fill(v, host) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, host) for k, v in value.items()}
    return value


def make_fixture(kind, host_index):
    """The fixture of test-bed host number host_index (1, 2, ...) for the template kind."""
    if kind not in KINDS:
        raise ValueError("unknown NPU fixture kind %r; known: %s" % (kind, ", ".join(KINDS)))
    if not isinstance(host_index, int) or not 1 <= host_index <= 254:
        raise ValueError("host_index must be an integer 1..254 (it becomes an IP octet), not %r" % (host_index,))
    fixture = _fill(json.loads((TEMPLATES / (kind + ".json")).read_text(encoding="utf-8")), host_index)
    if fixture["generation"] == "A3":
        pod = fixture["super_pod"]
        pod["server_index"] = int(pod["server_index"])
        for card in fixture["cards"]:
            for chip in card["chips"]:
                chip.setdefault("sdid", sdid(pod["server_index"], card["npu_id"], chip["chip_id"], chip["phy_id"]))
    return fixture


def write_fixture(kind, host_index, path):
    """Write the rendered fixture to path (mode 0644: the stand-ins run as any user)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(make_fixture(kind, host_index), indent=1) + "\n", encoding="utf-8")
    path.chmod(0o644)
    return path


def main(argv):
    if len(argv) not in (2, 3) or argv[0] not in KINDS or not argv[1].isdigit():
        sys.stderr.write("usage: fixtures.py {%s} HOST_INDEX [OUTPUT]\n" % "|".join(KINDS))
        return 2
    try:
        if len(argv) == 3:
            write_fixture(argv[0], int(argv[1]), argv[2])
        else:
            sys.stdout.write(json.dumps(make_fixture(argv[0], int(argv[1])), indent=1) + "\n")
    except ValueError as e:
        sys.stderr.write("fixtures.py: %s\n" % e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
