"""llmserve stand-in for Huawei MindIE PD-disaggregated serving (Server, Motor Controller, Motor Coordinator)."""
__version__ = "0.1.0"
