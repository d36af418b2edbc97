"""Where the benchmarks write their figures: bench/results/<name>.json (not committed)."""
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def write_results(name, data):
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / (name + ".json")
    path.write_text(json.dumps(data, indent=2) + "\n")
    print("results: %s" % path)
