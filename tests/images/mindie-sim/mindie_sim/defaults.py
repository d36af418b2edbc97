"""Default configuration files as the real MindIE packages ship them (key sets and default values).

Facts and their sources: docs/mindie-contract.md. `python3 -m mindie_sim.defaults ROOT` writes them under
ROOT with the real images' layout (done at image build).
"""

from __future__ import annotations

import json
import os
import sys

LLM_HOME = "/usr/local/lib/python3.11/site-packages/mindie_llm"
MOTOR_HOME = "/usr/local/lib/python3.11/site-packages/mindie_motor"
OLD_HOME = "/usr/local/Ascend/mindie/latest/mindie-service"


def _crl(prefix):
    return {f"{prefix}TlsCrlPath": f"security/{prefix}/certs/" if prefix else "security/certs/",
            f"{prefix}TlsCrlFiles": ["server_crl.pem"]}


def server_config() -> dict:
    sc = {
        "ipAddress": "127.0.0.1", "managementIpAddress": "127.0.0.2", "port": 1025, "managementPort": 1026,
        "metricsPort": 1027, "allowAllZeroIpListening": False, "maxLinkNum": 1000, "httpsEnabled": True,
        "fullTextEnabled": False, "tlsCaPath": "security/ca/", "tlsCaFile": ["ca.pem"],
        "tlsCert": "security/certs/server.pem", "tlsPk": "security/keys/server.key.pem",
        "tlsCrlPath": "security/certs/", "tlsCrlFiles": ["server_crl.pem"],
    }
    for p in ("management", "metrics"):
        sc.update({f"{p}TlsCaFile": [f"{p}_ca.pem"], f"{p}TlsCert": f"security/certs/{p}/server.pem",
                   f"{p}TlsPk": f"security/keys/{p}/server.key.pem", **_crl(p)})
    sc.update({
        "inferMode": "standard", "interCommTLSEnabled": True, "interCommPort": 1121,
        "interCommTlsCaPath": "security/grpc/ca/", "interCommTlsCaFiles": ["ca.pem"],
        "interCommTlsCert": "security/grpc/certs/server.pem", "interCommPk": "security/grpc/keys/server.key.pem",
        "interCommTlsCrlPath": "security/grpc/certs/", "interCommTlsCrlFiles": ["server_crl.pem"],
        "openAiSupport": "vllm", "tokenTimeout": 600, "e2eTimeout": 600, "distDPServerEnabled": False,
        "layerwiseDisaggregated": False, "layerwiseDisaggregatedRoleType": "",
        "layerwiseDisaggregatedMasterIpAddress": "127.0.0.3", "layerwiseDisaggregatedSlaveIpAddress": ["127.0.0.4"],
        "layerwiseDisaggregatedDataPort": 10024, "layerwiseDisaggregatedCrtlPort": [10001, 10002],
        "HealthCheckConfig": {"npuUsageThreshold": 0},
    })
    model = {
        "modelInstanceType": "Standard", "modelName": "llama_65b",
        "modelWeightPath": "/data/atb_testdata/weights/llama1-65b-safetensors", "worldSize": 4,
        "cpuMemSize": 0, "npuMemSize": -1, "backendType": "atb", "trustRemoteCode": False,
        "async_scheduler_wait_time": 120, "kv_trans_timeout": 10, "kv_link_timeout": 1080,
        "models": {"layerwiseDisaggregatedMasterDeviceNum": 2, "layerwiseDisaggregatedSlaveDeviceNum": 8},
    }
    backend = {
        "backendName": "mindieservice_llm_engine", "modelInstanceNumber": 1, "npuDeviceIds": [[0, 1, 2, 3]],
        "tokenizerProcessNumber": 8, "multiNodesInferEnabled": False, "multiNodesInferPort": 1120,
        "interNodeTLSEnabled": True, "interNodeTlsCaPath": "security/grpc/ca/", "interNodeTlsCaFiles": ["ca.pem"],
        "interNodeTlsCert": "security/grpc/certs/server.pem", "interNodeTlsPk": "security/grpc/keys/server.key.pem",
        "interNodeTlsCrlPath": "security/grpc/certs/", "interNodeTlsCrlFiles": ["server_crl.pem"],
        "kvPoolConfig": {"backend": "", "configPath": ""},
        "ModelDeployConfig": {"maxSeqLen": 2560, "maxInputTokenLen": 2048, "truncation": 0, "ModelConfig": [model]},
        "ScheduleConfig": {
            "templateType": "Standard", "templateName": "Standard_LLM", "cacheBlockSize": 128,
            "maxPrefillBatchSize": 50, "maxPrefillTokens": 8192, "prefillTimeMsPerReq": 150,
            "prefillPolicyType": 0, "decodeTimeMsPerReq": 50, "decodePolicyType": 0, "maxBatchSize": 200,
            "maxIterTimes": 512, "maxPreemptCount": 0, "supportSelectBatch": False,
            "maxQueueDelayMicroseconds": 5000, "maxFirstTokenWaitTime": 2500},
    }
    return {"Version": "1.0.0", "ServerConfig": sc, "BackendConfig": backend,
            "LogConfig": {"dynamicLogLevel": "", "dynamicLogLevelValidHours": 2, "dynamicLogLevelValidTime": ""},
            "EnableDynamicAdjustTimeoutConfig": False}


def tls_items(d):
    return {"ca_cert": f"./security/{d}/security/certs/ca.pem", "tls_cert": f"./security/{d}/security/certs/cert.pem",
            "tls_key": f"./security/{d}/security/keys/cert.key.pem",
            "tls_passwd": f"./security/{d}/security/pass/key_pwd.txt", "tls_crl": ""}


CONTROLLER_TLS = [("request_coordinator", "request_coordinator"), ("request_server", "request_server"),
                  ("http_server", "http_server"), ("cluster", "cluster"), ("etcd_server", "etcd_server"),
                  ("ccae", "ccae"), ("alarm", "alarm_server"), ("external_coordinator", "external_coordinator")]
COORDINATOR_TLS = [("controller_server", "controller"), ("request_server", "request"), ("mindie_client", "mindie"),
                   ("mindie_mangment", "mindie_mgmt"), ("external", "external"), ("status", "status"),
                   ("etcd_server", "etcd_server"), ("alarm_client", "alarm")]


def _tls(pairs):
    out = {}
    for name, d in pairs:
        out[f"{name}_tls_enable"] = True
        out[f"{name}_tls_items"] = tls_items(d)
    return out


def controller_config() -> dict:
    node = {"enable_dist_dp_server": False, "node_machine_num": 2, "tp_size": 4, "dp_size": 4, "sp_size": 1,
            "cp_size": 1}
    return {
        "allow_all_zero_ip_listening": False, "deploy_mode": "pd_separate", "initial_dist_server_port": 10000,
        "cluster_port": 8899,
        "process_manager": {"to_file": True, "file_path": "./logs/controller_process_status.json"},
        "cluster_status": {"to_file": True, "file_path": "./logs/cluster_status_output.json"},
        "controller_backup_cfg": {"function_sw": False, "database_server_dns": "etcd.default.svc.cluster.local",
                                  "database_server_port": 2379},
        "fault_recovery_func_dict": {"lingqu_link": False, "oom": True, "hbm": False, "roce": True},
        "global_rank_table_file_path": "./conf/global_rank_table_file.json",
        "scaling_rule_file_path": "./conf/elastic_scaling.json", "cluster_synchronization_seconds": 1,
        "rank_table_detecting_seconds": 5, "disappeared_server_waiting_seconds": 7200, "default_p_rate": 0,
        "default_d_rate": 0, "is_heterogeneous": False, "server_online_attempt_times": 36,
        "server_online_wait_seconds": 5, "init_role_attempt_times": 2, "check_role_attempt_times": 300,
        "check_role_wait_seconds": 5, "mindie_server_control_port": 1026, "mindie_server_port": 1025,
        "mindie_server_metric_port": 1027, "controller_alarm_port": 1027, "mindie_ms_coordinator_port": 1026,
        "node_manager_port": 1028, "mindie_ms_coordinator_external_port": 1028, "http_timeout_seconds": 5,
        "http_retries": 3, "role_decision_methods": "digs", "digs_request_summary_input_length": 3000,
        "digs_request_summary_output_length": 200,
        "digs_model_config_path": "./conf/model_config/llama2-70B.json",
        "digs_machine_config_path": "./conf/machine_config/800IA2.json", "digs_prefill_slo": 1000,
        "digs_decode_slo": 50,
        "multi_node_infer_config": {"multi_node_infer_enable": False, "p_node_config": dict(node),
                                    "d_node_config": dict(node)},
        "model_type": "llama2-70B", "transfer_type": "D2DTransfer", "digs_pp": 1,
        "digs_periodic_role_decision": {"auto_pd_role_switching_enable": True, "role_decision_time_period": 86400,
                                        "tasks_end_wait_seconds": 300},
        "http_server": {"ip": "127.0.0.1", "port": 1026},
        "tls_config": _tls(CONTROLLER_TLS),
        "log_info": {"log_level": "INFO", "to_file": True, "to_stdout": True,
                     "run_log_path": "./logs/ms_controller_run_log.txt",
                     "operation_log_path": "./logs/ms_controller_operation_log.txt", "max_log_str_size": 8192,
                     "max_log_file_size": 20, "max_log_file_num": 10},
    }


def coordinator_config() -> dict:
    return {
        "http_config": {"allow_all_zero_ip_listening": False, "predict_ip": "127.0.0.1", "predict_port": "1025",
                        "manage_ip": "127.0.0.1", "manage_port": "1026", "alarm_port": "1027",
                        "external_port": "1028", "status_port": "1029", "server_thread_num": 10,
                        "client_thread_num": 10, "http_timeout_seconds": 600, "keep_alive_seconds": 180,
                        "server_name": "MindIE-MS", "user_agent": "Coordinator/1.0"},
        "request_limit": {"single_node_max_requests": 1000, "max_requests": 10000, "body_limit": 1},
        "metrics_config": {"enable": False, "trigger_size": 100},
        "prometheus_metrics_config": {"reuse_time": 3},
        "exception_config": {"max_retry": 5, "schedule_timeout": 600, "first_token_timeout": 600,
                             "infer_timeout": 600, "tokenizer_timeout": 300},
        "log_info": {"log_level": "INFO", "to_file": True, "to_stdout": True,
                     "run_log_path": "./logs/ms_coordinator_run_log.txt",
                     "operation_log_path": "./logs/ms_coordinator_operation_log.txt", "max_log_str_size": 4096,
                     "max_log_file_size": 20, "max_log_file_num": 10},
        "digs_scheduler_config": {"deploy_mode": "pd_separate", "scheduler_type": "digs_scheduler",
                                  "algorithm_type": "load_balance", "cache_size": "100", "slots_thresh": "0.05",
                                  "block_thresh": "0.05", "max_schedule_count": "10000", "reordering_type": "1",
                                  "max_res_num": "5000", "res_limit_rate": "1.1", "select_type": "2",
                                  "load_cost_values": "1, 0",
                                  "load_cost_coefficient": "0, 0.22, 1024, 24, 6, 0, 1, 0, 1"},
        "string_token_rate": 4.02,
        "tls_config": _tls(COORDINATOR_TLS),
        "backup_config": {"database_server_dns": "etcd.default.svc.cluster.local", "database_server_port": 2379,
                          "function_enable": False},
    }


def http_client_ctl_config() -> dict:
    return {"tls_enable": True,
            "cert": {"ca_cert": "./security/http_client/ca/ca.pem", "tls_cert": "./security/http_client/certs/cert.pem",
                     "tls_key": "./security/http_client/keys/cert.key.pem",
                     "tls_passwd": "./security/http_client/pass/key_pwd.txt", "tls_crl": ""},
            "log_info": {"log_level": "INFO", "to_file": False, "run_log_path": "/var/log/mindie-ms/run/log.txt",
                         "operation_log_path": "/var/log/mindie-ms/operation/log.txt"}}


def write_all(root: str) -> None:
    files = {
        f"{LLM_HOME}/conf/config.json": server_config(),
        f"{OLD_HOME}/conf/config.json": server_config(),
        f"{MOTOR_HOME}/conf/ms_controller.json": controller_config(),
        f"{MOTOR_HOME}/conf/ms_coordinator.json": coordinator_config(),
        f"{MOTOR_HOME}/conf/http_client_ctl.json": http_client_ctl_config(),
        # the DIGS files named by the controller's defaults (their content is not modelled)
        f"{MOTOR_HOME}/conf/model_config/llama2-70B.json": {"model_type": "llama2-70B"},
        f"{MOTOR_HOME}/conf/machine_config/800IA2.json": {"machine": "800I A2"},
    }
    for path, data in files.items():
        full = root.rstrip("/") + path
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            json.dump(data, f, indent=4)
        os.chmod(full, 0o640)
    open(root.rstrip("/") + LLM_HOME + "/__init__.py", "a").close()  # the LLM home is a python package


if __name__ == "__main__":
    write_all(sys.argv[1] if len(sys.argv) > 1 else "/")
