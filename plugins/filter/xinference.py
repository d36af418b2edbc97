# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One line per Xinference worker and model for the status view: xinference_worker_line, xinference_model_line."""

from __future__ import annotations


def xinference_worker_line(address, workers):
    """'<address>: joined, 2 CPUs, 18.5 of 25.3 GB memory free, 0 GPUs' from the supervisor's /status workers."""
    entry = (workers or {}).get(address)
    if entry is None:
        return "%s: not joined" % address
    status = entry.get("status") or {}
    cpu = status.get("cpu") or {}
    gpus = [k for k in status if k != "cpu"]
    memory = ""
    if cpu.get("memory_total"):
        memory = ", %.1f of %.1f GB memory free" % (cpu.get("memory_available", 0) / 1e9, cpu["memory_total"] / 1e9)
    return "%s: joined, %s CPUs%s, %d GPUs" % (address, cpu.get("total", "?"), memory, len(gpus))


def xinference_model_line(model):
    """'<uid>: <model_name> (<model_type>) at <address>' from an entry of GET /v1/models."""
    where = model.get("address") or model.get("worker_address")
    return "%s: %s (%s)%s" % (model.get("id"), model.get("model_name", "?"), model.get("model_type", "?"),
                              " at %s" % where if where else "")


class FilterModule:
    def filters(self):
        return {"xinference_worker_line": xinference_worker_line, "xinference_model_line": xinference_model_line}
