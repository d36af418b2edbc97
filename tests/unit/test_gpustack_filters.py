"""The GPUStack status view's lines, from answers shaped as gpustack 2.3.0 gives them."""
from ansible_collections.llmserve.cluster.plugins.filter.gpustack import (gpustack_cluster_line, gpustack_ready_line,
                                                                          gpustack_worker_line)

WORKER = {"name": "node4", "advertise_address": "172.31.240.14", "ip": "172.31.240.14", "port": 10150,
          "state": "ready", "state_message": None,
          "status": {"cpu": {"total": 2, "utilization_rate": 3.1}, "memory": {"total": 25300000000, "used": 4900000000},
                     "gpu_devices": []}}


def test_a_ready_worker_shows_its_address_cpus_free_memory_and_gpus():
    assert gpustack_worker_line(WORKER) == "node4 at 172.31.240.14:10150: ready, 2 CPUs, 20.4 of 25.3 GB memory free, 0 GPUs"


def test_a_worker_not_ready_says_why():
    worker = dict(WORKER, state="not_ready", state_message="Heartbeat lost (last heartbeat: unknown).", status=None)
    assert gpustack_worker_line(worker) == ("node4 at 172.31.240.14:10150: not_ready, ? CPUs, 0 GPUs "
                                            "(Heartbeat lost (last heartbeat: unknown).)")


def test_cluster_and_readiness_lines():
    assert gpustack_cluster_line({"name": "Default Cluster", "state": "ready", "workers": 2, "ready_workers": 2,
                                  "gpus": 0, "models": 0}) == "Default Cluster: ready, 2 of 2 workers ready, 0 GPUs, 0 models"
    assert gpustack_ready_line({"item": "http://10.0.0.1:30080", "status": 200}) == "http://10.0.0.1:30080: ready"
    assert gpustack_ready_line({"item": "http://10.0.0.1:30080", "status": -1, "msg": "Connection refused"}) == \
        "http://10.0.0.1:30080: DOWN (Connection refused)"
