"""Start-up stays light: `agent-etl --help` imports none of the heavy modules (issue 14, item 8).

Each is imported where it is used; a module-level import of one of them in cli.py or
in what cli.py imports at its top shows up here, long before anyone notices the time.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "duckdb",
    "pyarrow",
    "sqlalchemy",
    "alembic",
    "fastapi",
    "uvicorn",
    "boto3",
    "pandas",
    "numpy",
    "httpx",
    "aiohttp",
    "pydantic",
    "pydantic_settings",
    "yaml",
    "psutil",
)

PROBE = """
import json, sys
sys.argv = ["agent-etl", "--help"]
from agent_orchestrated_etl.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}), file=sys.stderr)
"""


def test_help_imports_no_heavy_module() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] == 0
    assert "Commands" in done.stdout
    assert sorted(set(HEAVY) & set(report["modules"])) == []
