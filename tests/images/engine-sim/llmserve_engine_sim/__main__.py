"""`python3 -m llmserve_engine_sim serve MODEL [vllm serve flags]`."""

import sys

from .main import module_main

sys.exit(module_main())
