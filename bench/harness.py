"""Measure a command run as a subprocess and report the results.

Peak RSS is the larger of two lower bounds on the true peak of the process
tree:

* the kernel's high-water mark for the child, from os.wait4() on its pid. It
  is exact and sees spikes of any length, but it is per process (a reaped
  grandchild contributes its own peak, not the sum of concurrent ones).
  Using wait4 on the one pid avoids getrusage(RUSAGE_CHILDREN), whose
  ru_maxrss is the max over every child this process has ever reaped, so a
  later, smaller contender would just repeat an earlier one's figure.
* the sum of RSS over the child and its descendants, sampled every 50 ms with
  psutil. It covers contenders that fan out into worker processes but can
  miss spikes shorter than the interval.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

POLL_SECONDS = 0.05
MB = 1024 * 1024  # "MB" in the table and README means MiB, like ru_maxrss / 1024


@dataclass(frozen=True)
class Measurement:
    seconds: float
    kernel_maxrss_bytes: int
    sampled_tree_rss_bytes: int
    returncode: int
    stdout: str
    stderr: str

    @property
    def peak_rss_bytes(self) -> int:
        return max(self.kernel_maxrss_bytes, self.sampled_tree_rss_bytes)


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in family:
        with contextlib.suppress(psutil.Error):  # exited between listing and reading
            total += member.memory_info().rss
    return total


def run_measured(argv: Sequence[str], cwd: Path | None = None) -> Measurement:
    """Run argv to completion; wall time covers spawn to reap."""
    # Output goes to files, not pipes, so a chatty child cannot block on a
    # full pipe while this thread sits in wait4.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=cwd)
        # Looked up before wait4 reaps the child: until then the pid cannot be
        # reused, even if the child has already exited.
        watched = psutil.Process(proc.pid)
        done = threading.Event()
        sampled = 0

        def sample() -> None:
            nonlocal sampled
            while not done.is_set():
                sampled = max(sampled, _tree_rss(watched))
                done.wait(POLL_SECONDS)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # A blocking wait4 (not a poll loop) keeps the exit time exact.
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return Measurement(
            seconds=seconds,
            kernel_maxrss_bytes=usage.ru_maxrss * 1024,  # Linux reports KiB
            sampled_tree_rss_bytes=sampled,
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_bytes: int
    kernel_maxrss_bytes: int
    sampled_tree_rss_bytes: int
    load_1m_at_start: float


@dataclass
class Result:
    name: str
    rows: int
    input_bytes: int
    status: str = "ok"
    runs: list[Run] = field(default_factory=list)

    @property
    def typical(self) -> Run | None:
        """The run with the median wall time; the table reports it whole."""
        if not self.runs:
            return None
        median = statistics.median_low(run.seconds for run in self.runs)
        return next(run for run in self.runs if run.seconds == median)


def print_table(title: str, results: Sequence[Result], reference: str) -> None:
    ref = next((r.typical for r in results if r.name == reference), None)
    table = Table(title=title)
    for header in ("contender", "rows", "seconds", "rows/s", "MB/s in", "peak RSS MB", "% of ref", "load 1m"):
        table.add_column(header, justify="left" if header == "contender" else "right", no_wrap=True)
    notes = []
    for result in results:
        run = result.typical
        if run is None:
            table.add_row(result.name, "n/a", *[""] * 6)
            notes.append(f"{result.name}: {result.status}")
            continue
        share = f"{ref.seconds / run.seconds:.0%}" if ref else "-"
        table.add_row(
            result.name,
            f"{result.rows:,}",
            f"{run.seconds:.2f}",
            f"{result.rows / run.seconds:,.0f}",
            f"{result.input_bytes / MB / run.seconds:.1f}",
            f"{run.peak_rss_bytes / MB:.0f}",
            share,
            f"{run.load_1m_at_start:.2f}",
        )
    # Pipes and logs get rich's 80-column default, which would wrap the figures.
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(table)
    console.print(f"reference: {reference}")
    for note in notes:
        console.print(note)


def write_json(directory: Path, scenario: str, record: dict[str, object], results: Sequence[Result]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    path = directory / f"{scenario}-{stamp}.json"
    payload = {**record, "results": [asdict(r) for r in results]}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
