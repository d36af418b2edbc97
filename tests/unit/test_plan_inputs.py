"""Bad inventories by class (issue 14): each is refused with every problem named by host and variable, and none
crashes the planner. Classes still to come are listed in the issue's notes."""
import pytest

from plan_inventories import native, problems_of
from test_plan_clusters import ray

# ---------------------------------------------------------------- a value of the wrong type, for any variable
# A value that is not of its spec's type is taken out before planning: the planner goes on with the default (so no
# system reads a list where it wants a name, and every other problem is found too) and says what was expected.
WRONG_TYPES = [
    ("a list where a name belongs", native(["p0"], ["d0"], p0=dict(llmserve_accelerator=["nvidia"])),
     "p0", "llmserve_accelerator", "must be one of nvidia, ascend_a2, ascend_a3, cpu, got ['nvidia']"),
    ("a list for the model", native(["p0"], ["d0"], common=dict(llmserve_model=["/models/a", "/models/b"])),
     "p0", "llmserve_model", "must be a string (str), e.g. "),
    ("a mapping for the image", native(["p0"], ["d0"], d0=dict(llmserve_image={"name": "vllm"})),
     "d0", "llmserve_image", "must be a string (str), e.g. "),
    ("a string where a list belongs", native(["p0"], ["d0"], d0=dict(llmserve_vllm_volumes="/models:/models:ro")),
     "d0", "llmserve_vllm_volumes", "must be a list of strings (list), e.g. "),
    ("a string for the router's arguments", native(["p0"], ["d0"], router=dict(llmserve_proxy_extra_args="--x 1")),
     "router", "llmserve_proxy_extra_args", "must be a list of strings (list), e.g. "),
    ("a list for an instance name", native(["p0"], ["d0", "d1"], d0=dict(llmserve_instance=["x"]),
                                           d1=dict(llmserve_instance=["x"])),
     "d0", "llmserve_instance", "must be a string (str), e.g. "),
    ("a list for a Ray port", ray(1, common=dict(llmserve_ray_port=[6379])),
     "head", "llmserve_ray_port", "must be a whole number (int), e.g. 6379, got [6379]"),
]


@pytest.mark.parametrize("inventory,host,variable,message", [c[1:] for c in WRONG_TYPES],
                         ids=[c[0] for c in WRONG_TYPES])
def test_a_value_of_the_wrong_type_is_named_never_a_crash(inventory, host, variable, message):
    problems = problems_of(*inventory)      # PlanError with problems, not TypeError and friends
    mine = [p for p in problems if p.variable == variable]
    assert [p.host for p in mine] == [host], problems
    assert message in mine[0].message, mine[0].message
