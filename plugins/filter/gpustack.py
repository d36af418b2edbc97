# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One line per GPUStack server, worker and cluster for the status view."""

from __future__ import annotations


def gpustack_ready_line(result):
    """'<url>: ready' or '<url>: DOWN (...)' from a uri result of GET <url>/readyz (a loop item)."""
    where = str(result.get("item", "?"))
    if result.get("status") == 200:
        return "%s: ready" % where
    return "%s: DOWN (%s)" % (where, result.get("msg") or "HTTP %s" % result.get("status", "?"))


def gpustack_worker_line(worker):
    """'<name> at <address>:<port>: ready, 2 CPUs, 18.5 of 25.3 GB memory free, 0 GPUs' from an item of /v2/workers."""
    status = worker.get("status") or {}
    cpu, memory = status.get("cpu") or {}, status.get("memory") or {}
    total, used = memory.get("total") or 0, memory.get("used") or 0
    line = "%s at %s:%s: %s, %s CPUs" % (worker.get("name"), worker.get("advertise_address") or worker.get("ip"),
                                         worker.get("port"), worker.get("state"), cpu.get("total", "?"))
    if total:
        line += ", %.1f of %.1f GB memory free" % ((total - used) / 1e9, total / 1e9)
    line += ", %d GPUs" % len(status.get("gpu_devices") or [])
    if worker.get("state") != "ready" and worker.get("state_message"):
        line += " (%s)" % worker["state_message"]
    return line


def gpustack_cluster_line(cluster):
    """'<name>: ready, 2 of 2 workers ready, 0 GPUs, 0 models' from an item of /v2/clusters."""
    return "%s: %s, %s of %s workers ready, %s GPUs, %s models" % (
        cluster.get("name"), cluster.get("state"), cluster.get("ready_workers", "?"), cluster.get("workers", "?"),
        cluster.get("gpus", "?"), cluster.get("models", "?"))


class FilterModule:
    def filters(self):
        return {"gpustack_ready_line": gpustack_ready_line, "gpustack_worker_line": gpustack_worker_line,
                "gpustack_cluster_line": gpustack_cluster_line}
