"""pyarrow.compute and pyarrow.parquet, loaded on first use.

Together they cost about 12 MB of resident memory. A pushed-down copy (the
destination's engine reads the source itself) never touches them, and that
copy is where an agent's memory peaks (bench/README.md, lineitem peak RSS).
The standard library's LazyLoader does the work: the module object exists at
once and executes on its first attribute access.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def _lazy(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


pc = _lazy("pyarrow.compute")
pq = _lazy("pyarrow.parquet")
