"""The latest split of each host's sessions by agent and kind (guardian.core.records.Split), and the split under way
(SplitPass) on a store larger than one page, in splits.json: {host: {"split": ..., "pass": ...}}.

A check lists rows for a split only at warning or above, or once every attribution.every, one page a check; between
those it shows the latest split kept here, with the `as_of` it was counted at. A missing or unreadable file is no
split yet.
"""

from __future__ import annotations

import json
from pathlib import Path

from guardian.adapters.files import write_private
from guardian.core.records import Split, SplitPass


class SplitCache:
    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / "splits.json"

    def read(self) -> tuple[dict[str, Split], dict[str, SplitPass]]:
        """Host name -> its latest split, and host name -> its split under way; an entry that cannot be read is
        none."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}, {}
        splits, passes = {}, {}
        for host, entry in (data.items() if isinstance(data, dict) else ()):
            for kept, key, record in ((splits, "split", Split), (passes, "pass", SplitPass)):
                try:
                    if entry.get(key) is not None:
                        kept[host] = record.from_json(entry[key])
                except (AttributeError, KeyError, TypeError, ValueError):
                    continue
        return splits, passes

    def write(self, splits: dict[str, Split], passes: dict[str, SplitPass]) -> None:
        """Replace the file (OSError if it cannot be)."""
        def as_json(record):
            return None if record is None else record.as_json()

        entries = {host: {"split": as_json(splits.get(host)), "pass": as_json(passes.get(host))}
                   for host in {**splits, **passes}}
        write_private(self.path, json.dumps(entries))
