"""Profile a source end to end: open it, decide whether to sample, and profile (the CLI and the tool use this)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from agent_orchestrated_etl.profiling.profile import Profile, profile_stream
from agent_orchestrated_etl.profiling.sampling import Method, SampleSpec
from agent_orchestrated_etl.profiling.sources import Opened, open_source

#: Files bigger than this are profiled on a reservoir sample unless told otherwise.
AUTO_SAMPLE_BYTES = 2 << 30
AUTO_SAMPLE_ROWS = 1_000_000


def profile_reference(
    reference: str,
    *,
    sample_rows: int | None = None,
    method: Method = "reservoir",
    seed: int = 0,
    by: str | None = None,
    whole: bool = False,
    memory_limit_bytes: int = 1 << 30,
) -> Profile:
    spec = SampleSpec(method, sample_rows, seed, by) if sample_rows is not None else None
    return profile_opened(open_source(reference), spec, whole=whole, memory_limit_bytes=memory_limit_bytes)


def profile_opened(
    opened: Opened, spec: SampleSpec | None, *, whole: bool = False, memory_limit_bytes: int = 1 << 30
) -> Profile:
    """Profile a source, on ``spec``'s sample, or on an automatic one when it is a big file."""
    if spec is None and not whole and (opened.estimated_bytes() or 0) > AUTO_SAMPLE_BYTES:
        spec = SampleSpec("reservoir", AUTO_SAMPLE_ROWS)
    total = None
    if spec is not None and spec.method in ("random", "systematic"):
        _, counting = opened.batches()  # these methods need the row count: one pass to count
        total = sum(batch.num_rows for batch in counting)
    schema, batches = opened.batches()
    with tempfile.TemporaryDirectory(prefix="agent-etl-profile-") as spill:
        return profile_stream(
            opened.label,
            schema,
            batches,
            sample_spec=spec,
            total=total,
            memory_limit_bytes=memory_limit_bytes,
            spill_dir=Path(spill),
        )
