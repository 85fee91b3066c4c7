"""Start-up time (issue 14, item 8): `agent-etl --help` and a 10-row CSV -> DuckDB run, whole processes.

    python bench/startup.py [--repeat 10] [--against /work/main/src]

Each command runs --repeat times in a fresh AGENT_ETL_HOME; the median is reported. With
--against, the same commands run interleaved with that source tree first on PYTHONPATH,
so the two are compared under the same load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """name: ten
sources:
  rows: {type: file, path: in.csv}
destinations:
  - {type: duckdb, path: out.duckdb, table: rows, input: rows, write: replace}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--against", help="another source tree to compare with (its src directory)")
    args = parser.parse_args()
    here = str(Path(__file__).resolve().parent.parent / "src")
    trees = {"this tree": here} | ({"against": args.against} if args.against else {})
    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    (work / "in.csv").write_text("id,name\n" + "".join(f"{i},n{i}\n" for i in range(10)))
    (work / "p.yaml").write_text(SPEC)
    commands = {"--help": ["--help"], "10-row run": ["run", "p.yaml", "--json"]}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeat):
        for tree, src in trees.items():
            for what, argv in commands.items():
                env = {**os.environ, "PYTHONPATH": src, "AGENT_ETL_HOME": tempfile.mkdtemp(dir=work)}
                started = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "agent_orchestrated_etl", *argv],
                    env=env,
                    cwd=work,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    check=True,
                )
                times.setdefault((tree, what), []).append(time.perf_counter() - started)
    for (tree, what), runs in times.items():
        print(f"{tree:10s} {what:11s} median {statistics.median(runs):.3f} s  min {min(runs):.3f} s")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
