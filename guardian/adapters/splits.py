"""The latest split of each host's sessions by agent and kind (guardian.core.records.Split), in splits.json.

A check lists rows for a split only at warning or above, or once every attribution.every; between those it shows
the latest split kept here, with the `as_of` it was counted at. A missing or unreadable file is no split yet.
"""

from __future__ import annotations

import json
from pathlib import Path

from guardian.adapters.files import write_private
from guardian.core.records import Split


class SplitCache:
    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / "splits.json"

    def read(self) -> dict[str, Split]:
        """Host name -> its latest split; the hosts whose entry cannot be read have none."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        splits = {}
        for host, entry in (data.items() if isinstance(data, dict) else ()):
            try:
                splits[host] = Split.from_json(entry)
            except (KeyError, TypeError, ValueError):
                continue
        return splits

    def write(self, splits: dict[str, Split]) -> None:
        """Replace the file (OSError if it cannot be)."""
        write_private(self.path, json.dumps({host: split.as_json() for host, split in splits.items()}))
