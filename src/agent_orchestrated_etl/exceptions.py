"""One exception tree for everything a user can see, branched by remedy.

The orchestrator's recovery policy reads the branch, never the message::

    AgentETLError                     what happened, where, and how to fix it
    ├── RetriableError                transient: retry with backoff
    │   ├── ConnectionFailedError     a server did not answer or dropped us
    │   ├── RateLimitedError          the server asked us to slow down
    │   │   └── CircuitOpenError      a breaker refuses calls to a failing system for a while
    │   └── ResourceExhaustedError    out of memory: retry with smaller batches
    ├── DataError                     bad rows: quarantine them and go on, where the spec allows
    ├── ConfigurationError            fail fast: the user must change something
    │   ├── SpecError                 the pipeline YAML is invalid (every problem, with line numbers)
    │   ├── StepError                 a transform step or check does not fit its input (bad expression, column)
    │   ├── MissingDependencyError    an optional extra is not installed
    │   └── AuthError                 credentials were refused
    ├── FatalError                    fail fast: retrying cannot help (missing file or table, ...)
    │   ├── SourceNotFoundError
    │   └── UnreachableError          nothing accepts a connection at the address, after the client's own tries
    ├── InternalError                 a bug in agent-etl: fail, and report the run id
    └── RunFailedError                a run did not succeed (the Python API's run(check=True)); carries its result

``remedy`` is what the orchestrator does about a failed task; ``next_remedy`` is
what the user does about a failed run (a ``Remedy``), carried in its result and record.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from agent_orchestrated_etl.model.vocabulary import FailureKind, Remedy


class AgentETLError(Exception):
    """Base of every error agent-etl raises on purpose.

    ``where`` names the place (pipeline, task, file:line, column, YAML key) and
    ``hint`` says what to do next. ``str()`` gives the one line a user sees.
    """

    remedy = FailureKind.FAIL
    next_remedy = Remedy.FIX_CONFIG

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"{text} ({self.hint})" if self.hint else text

    def at(self, where: str) -> AgentETLError:
        """Prefix the location with an outer one (a task, a source) and return self."""
        self.where = f"{where}: {self.where}" if self.where else where
        return self


class RetriableError(AgentETLError):
    remedy = FailureKind.RETRY
    next_remedy = Remedy.RESUME


class ConnectionFailedError(RetriableError):
    pass


class TransactionConflictError(RetriableError):
    """A deadlock or serialization failure: the database chose this transaction to roll back."""


class RateLimitedError(RetriableError):
    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: str | None) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class CircuitOpenError(RateLimitedError):
    """Retriable once ``retry_after`` seconds have passed, when the breaker lets a probe through."""


class ResourceExhaustedError(RetriableError):
    pass


class DataError(AgentETLError):
    remedy = FailureKind.QUARANTINE
    next_remedy = Remedy.FIX_DATA


class ConfigurationError(AgentETLError):
    remedy = FailureKind.FIX_CONFIG


@dataclass(frozen=True)
class SpecProblem:
    """One problem in a spec file: ``pipeline.yaml:14: sources.orders.table: field required``."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        place = f"{self.file}:{self.line}" if self.line else self.file
        return f"{place}: {self.path}: {self.message}" if self.path else f"{place}: {self.message}"


class SpecError(ConfigurationError):
    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(
            f"{len(problems)} {noun} in the pipeline spec:\n" + "\n".join(f"  {p}" for p in problems),
            hint="fix them and run `agent-etl validate FILE` again",
        )

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class StepError(ConfigurationError):
    """A transform step or a check that does not bind to its input; ``path`` is its YAML key path."""

    def __init__(self, message: str, *, path: tuple[str | int, ...], where: str, hint: str | None = None) -> None:
        super().__init__(message, where=where, hint=hint)
        self.path = path


class MissingDependencyError(ConfigurationError):
    def __init__(self, what: str, extra: str) -> None:
        super().__init__(
            f"{what} needs an optional dependency that is not installed",
            hint=f"pip install 'agent-orchestrated-etl[{extra}]'",
        )


class AuthError(ConfigurationError):
    next_remedy = Remedy.FIX_AUTH


class FatalError(AgentETLError):
    pass


class SourceNotFoundError(FatalError):
    pass


class UnreachableError(FatalError):
    """A host that never answered refused or timed out every connect attempt: a wrong host or port,
    or a server that is down; retrying the task would wait out the same backoff again."""


class InternalError(AgentETLError):
    next_remedy = Remedy.BUG


class RunFailedError(AgentETLError):
    """A run that did not succeed, raised by the Python API when asked (``run(check=True)``).

    ``result`` is the run's RunResult; ``next_remedy`` is its failure's (None for a partial run: resume it).
    """

    def __init__(
        self, message: str, *, run_id: str, remedy: Remedy | None, hint: str, result: object, where: str | None = None
    ) -> None:
        super().__init__(message, where=where, hint=hint)
        self.run_id = run_id
        self.next_remedy = remedy or Remedy.RESUME
        self.result = result


_ELSEWHERE = "or point `path:` elsewhere"
# Local file system errors the user fixes (by errno); the rest stay unmapped.
_OS_ERRORS = {
    errno.EACCES: ("permission denied", f"give this user access to it, {_ELSEWHERE}"),
    errno.EPERM: ("operation not permitted", f"give this user access to it, {_ELSEWHERE}"),
    errno.EROFS: ("read-only file system", f"mount it writable, {_ELSEWHERE}"),
    errno.ENOSPC: ("no space left on the device", f"free space there, {_ELSEWHERE}"),
    errno.EDQUOT: ("disk quota exceeded", f"free space there, {_ELSEWHERE}"),
    errno.ENOTDIR: ("a file stands where a folder is needed", "check `path:` in the spec"),
    errno.EISDIR: ("a folder stands where a file is needed", "check `path:` in the spec"),
    errno.EEXIST: ("something of another kind exists there already", "check `path:` in the spec"),
    errno.ENAMETOOLONG: ("the path is too long", "check `path:` in the spec"),
}


def from_os_error(exc: OSError, where: str | None = None) -> AgentETLError | None:
    """A local file system error (permissions, a read-only or full disk, ...) as a ConfigurationError naming the path."""
    known = _OS_ERRORS.get(exc.errno) if exc.errno is not None else None
    if known is None:
        return None
    what, hint = known
    # pyarrow names the path only in its text; Python's own errors carry it in filename.
    return ConfigurationError(f"{what}: {exc.filename}" if exc.filename else f"{what} ({exc})", where=where, hint=hint)
