"""Schemathesis against ``/api/v1/openapi.json`` of a real serve, with a token (issue 12: input validation).

Every check is on (no server error, status codes, content types, headers and bodies as documented,
auth not ignored, invalid input refused), with a few examples per operation here; the full run:

    AGENT_ETL_API_TOKEN=... agent-etl serve --rate-limit 0 &
    st --config-file tests/api/schemathesis.toml run http://127.0.0.1:8080/api/v1/openapi.json \\
        -H "Authorization: Bearer $AGENT_ETL_API_TOKEN" --max-examples 200
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.api.conftest import TOKEN
from tests.api.serve_process import serve, write_items

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = os.environ.get("AGENT_ETL_SCHEMATHESIS_EXAMPLES", "5")


def test_the_api_answers_as_its_openapi_document_says(tmp_path: Path) -> None:
    spec = write_items(tmp_path, 100)
    st = Path(sys.executable).with_name("st")
    with serve(tmp_path, spec, args=("--rate-limit", "0")) as url:
        done = subprocess.run(
            [
                str(st),
                "--config-file",
                str(CONFIG),
                "run",
                f"{url}/api/v1/openapi.json",
                "-H",
                f"Authorization: Bearer {TOKEN}",
                "--max-examples",
                EXAMPLES,
                "--workers",
                "1",
                "--phases",
                "examples,coverage,fuzzing",
                "--seed",
                "12",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    assert re.search(r"Selected: (\d+)/\1\b", done.stdout) and "Tested: 0" not in done.stdout, done.stdout[
        -3000:
    ]  # all operations
