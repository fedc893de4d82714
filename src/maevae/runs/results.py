"""``eval.json``: the results file of a run directory (written by ``maevae eval``).

One reader for every command that reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

from maevae.errors import MaevaeError


def read_eval_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        out = json.loads(path.read_text())
    except ValueError:
        raise MaevaeError(f"{path} is not valid JSON; delete it and run `maevae eval "
                          f"{path.parent}` again") from None
    if not isinstance(out, dict):
        raise MaevaeError(f"{path} does not hold a JSON object; delete it and run "
                          f"`maevae eval {path.parent}` again")
    return out
