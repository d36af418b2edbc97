# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""mindie_config: the plan's keys of a MindIE file merged over the file the image ships."""

from __future__ import annotations


def mindie_config(shipped, keys):
    """Mappings merge key by key; a list of mappings merges item by item (ModelConfig[0] keeps the shipped
    backendType, npuMemSize... under the plan's modelName, worldSize, tp); any other value is the plan's."""
    if isinstance(shipped, dict) and isinstance(keys, dict):
        merged = dict(shipped)
        for name, value in keys.items():
            merged[name] = mindie_config(shipped[name], value) if name in shipped else value
        return merged
    if isinstance(shipped, list) and isinstance(keys, list) and keys and all(isinstance(k, dict) for k in keys):
        return [mindie_config(shipped[i], k) if i < len(shipped) else k for i, k in enumerate(keys)]
    return keys


class FilterModule:
    def filters(self):
        return {"mindie_config": mindie_config}
