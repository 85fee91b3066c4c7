"""The ``agent-etl`` command line: run, validate, schema, demo, runs, store, serve, tokens.

It renders what the engine returns and nothing more. Errors print as one
line naming what failed, where, and what to do; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.exceptions import TyperException

from agent_orchestrated_etl.cli_memory import init as init_spec
from agent_orchestrated_etl.cli_memory import memory_app
from agent_orchestrated_etl.exceptions import AgentETLError, ConfigurationError, SpecError, SpecProblem, from_os_error
from agent_orchestrated_etl.model.vocabulary import Remedy, RunStatus
from agent_orchestrated_etl.redaction import redact

if TYPE_CHECKING:
    from rich.live import Live

    from agent_orchestrated_etl.config import Settings


def load_settings() -> Settings:
    # Imported when a command needs the settings: pydantic-settings and yaml would
    # otherwise load for `--help` too (issue 14: start-up).
    from agent_orchestrated_etl.config import load_settings

    return load_settings()


app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="ETL where cooperating agents extract, transform, validate and load data.",
)
runs_app = typer.Typer(help="List past runs, or show one with its tasks and decisions.", invoke_without_command=True)
app.add_typer(runs_app, name="runs")
tokens_app = typer.Typer(
    help="API tokens of agent-etl serve, each with a role: viewer, operator or admin (kept hashed in the store).",
    no_args_is_help=True,
)
app.add_typer(tokens_app, name="tokens")
store_app = typer.Typer(
    help="The metadata store's schema revision (any command that opens the store upgrades it).", no_args_is_help=True
)
app.add_typer(store_app, name="store")
app.add_typer(memory_app, name="memory")
app.command("init")(init_spec)
out = Console()
err = Console(stderr=True)
_state = {"debug": False}

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import version

        print(f"agent-etl {version('agent-orchestrated-etl')}")
        raise typer.Exit(0)


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks on errors, and debug logs (before or after the command).")
    ] = False,
    _version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit."),
    ] = False,
) -> None:
    from agent_orchestrated_etl.logging_config import setup_logging

    _state["debug"] = debug
    setup_logging("DEBUG" if debug else load_settings().log_level)


@app.command()
def run(spec: Annotated[Path, typer.Argument(help="Pipeline spec (YAML).")], as_json: JsonFlag = False) -> None:
    """Run a pipeline, with live progress per task, then a summary."""
    from agent_orchestrated_etl.orchestrator import new_run_id, run_pipeline
    from agent_orchestrated_etl.spec import load_spec

    loaded = load_spec(spec)
    # Chosen here, so that a Ctrl-C before the run's first event still names the run to resume.
    run_id = new_run_id()
    result = _render(
        lambda listener: run_pipeline(loaded, load_settings(), listener=listener, run_id=run_id),
        as_json=as_json,
        run_id=run_id,
    )
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="The run to go on with (its first characters will do).")],
    as_json: JsonFlag = False,
) -> None:
    """Go on with a failed, cancelled or crashed run from its last checkpoints."""
    from agent_orchestrated_etl.orchestrator import resume_run

    result = _render(lambda listener: resume_run(run_id, load_settings(), listener=listener), as_json=as_json)
    raise typer.Exit(0 if result.ok else 1)


def _render(execute: Callable[[Any], Any], *, as_json: bool, run_id: str | None = None) -> Any:
    """Run with live progress on stderr (or none, for --json), then print the result."""
    from rich.live import Live

    from agent_orchestrated_etl.model.failure import make_failure
    from agent_orchestrated_etl.monitoring.live import RunState
    from agent_orchestrated_etl.reports import progress_table, summary

    seen: dict[str, str] = {"run_id": run_id} if run_id else {}

    def follow(state: Any, _event: Any, live: Live | None = None) -> None:
        seen["run_id"] = state.run_id
        if live is not None:
            live.update(progress_table(state, err.width))

    try:
        if as_json:
            result = execute(follow)
        else:
            # The first frame at once, before the plan and the sources' connections, so the screen is never blank.
            planning = progress_table(RunState(run_id=""), err.width)
            with Live(planning, console=err, refresh_per_second=4, transient=True) as live:
                result = execute(lambda state, event: follow(state, event, live))
    except KeyboardInterrupt:
        _traceback()
        run_id = seen.get("run_id", "<run id>")
        if as_json:
            failure = make_failure(Remedy.RESUME, "Cancelled", "cancelled", run_id=run_id, spec_file=None).model_dump(
                mode="json"
            )
            print(
                json.dumps(
                    {
                        "ok": False,
                        "run_id": seen.get("run_id"),
                        "status": RunStatus.CANCELLED,
                        "error": "cancelled",
                        "failure": failure,
                    }
                )
            )
        err.print(
            f"cancelled; destinations not yet committed are unchanged. Go on with: agent-etl resume {run_id}",
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    if as_json:
        out.print_json(json.dumps(result.to_dict(), default=str))
        return result
    summary(out, result)
    if not result.ok:
        err.print(f"[red]error:[/] {escape(str(result.error))}", soft_wrap=True)
        err.print(f"see the decisions: agent-etl runs show {result.run_id}; {next_step(result)}", soft_wrap=True)
    return result


def next_step(result: Any) -> str:
    """What to do after a run that did not succeed, from its typed failure (model/failure.py), never its text."""
    if result.failure is None:  # a partial run: the tasks that did not run are resumable
        return f"go on from the checkpoints: agent-etl resume {result.run_id}"
    return str(result.failure.next_step)


@app.command()
def validate(
    spec: Annotated[Path, typer.Argument(help="Pipeline spec (YAML).")],
    as_json: JsonFlag = False,
    offline: Annotated[
        bool, typer.Option("--offline", help="Do not read the sources; check transform syntax only.")
    ] = False,
) -> None:
    """Check a spec and report every problem with its line; exit 2 if there are any.

    Transforms and checks are bound against each source's schema (its first batch),
    so a bad expression or column is reported here with its step, not mid-run.
    """
    from agent_orchestrated_etl.planning.preflight import check_loaded, spec_problems
    from agent_orchestrated_etl.spec import load_spec, unset_variables

    notes: list[str] = []
    try:
        try:
            loaded = load_spec(spec)
        except SpecError:
            raise
        except ConfigurationError as exc:  # the spec file itself cannot be read
            raise SpecError([SpecProblem(str(spec), None, "", str(exc))]) from None
        findings = check_loaded(loaded, offline=offline)
        notes = findings.notes
        problems = unset_variables(loaded) + spec_problems(loaded, findings)
        if problems:
            raise SpecError(sorted(problems, key=lambda p: p.line or 0))
    except SpecError as exc:
        _traceback()
        if as_json:
            out.print_json(json.dumps({"valid": False, "problems": [vars(p) for p in exc.problems], "notes": notes}))
        else:
            for problem in exc.problems:
                err.print(str(problem), markup=False, highlight=False, soft_wrap=True)
            for note in notes:
                err.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
            err.print(f"{len(exc.problems)} problem(s) found", style="red")
        raise typer.Exit(2) from None
    if as_json:
        out.print_json(
            json.dumps({"valid": True, "name": loaded.name, "workflow": loaded.workflow is not None, "notes": notes})
        )
    else:
        for note in notes:
            err.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
        kind = f"workflow of {len(loaded.workflow.pipelines)} pipelines" if loaded.workflow else "pipeline"
        out.print(f"{spec}: {kind} [bold]{loaded.name}[/] is valid")


@app.command()
def schema() -> None:
    """Print the JSON Schema of a pipeline spec, for editors."""
    from agent_orchestrated_etl.spec import json_schema

    print(json.dumps(json_schema(), indent=2))


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Where to write the demo data and warehouse.")] = Path(
        "agent-etl-demo"
    ),
    scale: Annotated[float, typer.Option(help="Multiply the demo's row counts.")] = 1.0,
    as_json: JsonFlag = False,
) -> None:
    """Generate a small shop's data, run the bundled pipeline into DuckDB, and say what to try next."""
    from agent_orchestrated_etl.demo.data import generate_demo_data
    from agent_orchestrated_etl.spec import load_spec

    directory.mkdir(parents=True, exist_ok=True)
    generate_demo_data(directory, scale=scale)
    spec_path = directory / "shop.yaml"
    spec_path.write_text(resources.files("agent_orchestrated_etl.demo").joinpath("shop.yaml").read_text())
    (directory / "warehouse.duckdb").unlink(missing_ok=True)
    from agent_orchestrated_etl.orchestrator import run_pipeline

    loaded = load_spec(spec_path)
    result = _render(lambda listener: run_pipeline(loaded, load_settings(), listener=listener), as_json=as_json)
    if result.ok and not as_json:
        warehouse = directory / "warehouse.duckdb"
        query = "SELECT category, sum(amount) FROM order_lines GROUP BY 1 ORDER BY 2 DESC"
        out.print(f"\nThe warehouse is [bold]{warehouse}[/]. Try next:")
        for line in (
            f"agent-etl runs show {result.run_id}    # the plan and every decision",
            f"agent-etl run {spec_path}    # again, with live progress",
            f"python -c \"import duckdb; duckdb.connect('{warehouse}').sql('{query}').show()\"",
        ):
            out.print(f"  {escape(line)}", soft_wrap=True, highlight=False)
    raise typer.Exit(0 if result.ok else 1)


SampleRows = Annotated[
    int | None, typer.Option("--sample", help="Profile a sample of this many rows instead of the whole source.")
]
SampleMethod = Annotated[str, typer.Option("--method", help="Sampling: reservoir, random, systematic or stratified.")]
SampleSeed = Annotated[int, typer.Option("--seed", help="Seed of the sample, so it can be drawn again.")]
SampleBy = Annotated[str | None, typer.Option("--by", help="Column to stratify by (--method stratified).")]
SourceRef = Annotated[str, typer.Argument(help="A data file or glob (csv, jsonl, parquet), or spec.yaml:source_name.")]


def _profile(source: str, sample: int | None, method: str, seed: int, by: str | None, whole: bool) -> Any:
    from agent_orchestrated_etl.profiling.run import profile_reference

    if method not in ("reservoir", "random", "systematic", "stratified"):
        raise ConfigurationError(
            f"unknown sampling method {method!r}", hint="use reservoir, random, systematic or stratified"
        )
    if method == "stratified" and (by is None or sample is None):
        raise ConfigurationError("a stratified sample needs --sample N and --by COLUMN")
    return profile_reference(
        source,
        sample_rows=sample,
        method=method,  # type: ignore[arg-type]  # checked against the names just above
        seed=seed,
        by=by,
        whole=whole,
        memory_limit_bytes=load_settings().memory_limit_bytes,
    )


@app.command()
def profile(
    source: SourceRef,
    sample: SampleRows = None,
    method: SampleMethod = "reservoir",
    seed: SampleSeed = 0,
    by: SampleBy = None,
    whole: Annotated[
        bool, typer.Option("--whole", help="Profile every row even of a big file (over 2 GB is sampled by default).")
    ] = False,
    as_json: JsonFlag = False,
    html: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML report here.")] = None,
) -> None:
    """Profile a source: types, nulls, distinct counts, ranges, quantiles, top values, semantic types and PII."""
    from agent_orchestrated_etl.profiling import render
    from agent_orchestrated_etl.reports import PROFILE_DROP, fit

    result = _profile(source, sample, method, seed, by, whole)
    if html is not None:
        html.write_text(render.as_html(result), encoding="utf-8")
    if as_json:
        print(render.as_json(result))
    else:
        out.print(fit(render.as_table(result), out.width, PROFILE_DROP))
        if html is not None:
            out.print(f"HTML report: {html}")


@app.command("suggest-checks")
def suggest_checks(
    source: SourceRef,
    input_name: Annotated[
        str | None, typer.Option("--input", help="The name the checks apply to (default: the source's name).")
    ] = None,
    sample: SampleRows = None,
    method: SampleMethod = "reservoir",
    seed: SampleSeed = 0,
    by: SampleBy = None,
) -> None:
    """Propose quality checks from a profile, as YAML to paste under `quality:`, each with its reason."""
    from agent_orchestrated_etl.profiling.sources import source_name
    from agent_orchestrated_etl.profiling.suggest import as_yaml

    result = _profile(source, sample, method, seed, by, whole=False)
    print(as_yaml(result, input_name or source_name(source)), end="")


@runs_app.callback()
def runs_list(
    ctx: typer.Context, limit: Annotated[int, typer.Option(help="How many runs.")] = 20, as_json: JsonFlag = False
) -> None:
    """List recent runs."""
    if ctx.invoked_subcommand:
        return
    from agent_orchestrated_etl.reports import runs_table
    from agent_orchestrated_etl.settlement import settle_dead_runs
    from agent_orchestrated_etl.store.records import RunStore

    settings = load_settings()
    store = RunStore(settings.store_url)
    settle_dead_runs(store, settings, limit)  # a run whose process died shows what it did, not "running"
    rows = store.list_runs(limit)
    if as_json:
        out.print_json(json.dumps(rows, default=str))
    else:
        out.print(runs_table(rows, out.width))


@runs_app.command("discard")
def runs_discard(
    run_id: Annotated[str | None, typer.Argument(help="A failed or cancelled run.")] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Every failed, cancelled or crashed run instead of one.")
    ] = False,
) -> None:
    """Drop what a run you will not resume left staged (its targets were never touched)."""
    from agent_orchestrated_etl.orchestrator import discard_failed_runs, discard_run

    if failed == (run_id is not None):
        raise ConfigurationError(
            "runs discard takes a run id or --failed",
            hint="agent-etl runs discard <run id>, or agent-etl runs discard --failed",
        )
    for full_id in discard_failed_runs(load_settings()) if failed else [discard_run(run_id or "", load_settings())]:
        out.print(f"discarded the staged output of run {full_id}")


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="A run id, or its first characters.")], as_json: JsonFlag = False
) -> None:
    """Show one run with its tasks, decisions and errors."""
    from agent_orchestrated_etl.reports import run_details
    from agent_orchestrated_etl.store.records import RunStore

    run_record = RunStore(load_settings().store_url).get_run(run_id)
    if run_record is None:
        raise ConfigurationError(f"no run {run_id!r} in the store", hint="`agent-etl runs` lists them")
    if as_json:
        from agent_orchestrated_etl.quality.verdicts import report
        from agent_orchestrated_etl.verify.stored import latest

        run_record["quality"] = report(
            [*(c for t in run_record["tasks"] for c in t.get("checks") or []), *latest(run_record["events"])]
        )
        out.print_json(json.dumps(run_record, default=str))
    else:
        run_details(out, run_record)


@app.command()
def verify(
    run_id: Annotated[str, typer.Argument(help="A committed run, or its first characters.")], as_json: JsonFlag = False
) -> None:
    """Reconcile a committed run's targets with their sources again; exit 1 on a mismatch.

    Counts, key set and hash where the target's rows are the source's one to one,
    counts elsewhere (README: verify). The result is recorded with the run.
    """
    from agent_orchestrated_etl.quality.verdicts import report
    from agent_orchestrated_etl.reports import quality_table
    from agent_orchestrated_etl.verify.stored import verify_run

    full_id, results = verify_run(run_id, load_settings())
    judged = report(results)
    if as_json:
        out.print_json(json.dumps({"run_id": full_id, "verify": judged}, default=str))
    else:
        out.print(f"run {full_id}")
        out.print(quality_table(judged))
    raise typer.Exit(0 if all(r["passed"] for r in judged) else 1)


@store_app.command("current")
def store_current(as_json: JsonFlag = False) -> None:
    """Show the store's schema revision and the newest this agent-etl knows, changing nothing."""
    from agent_orchestrated_etl.store.records import store_revisions

    settings = load_settings()
    revisions = store_revisions(settings.store_url)
    if as_json:
        out.print_json(json.dumps({"current": revisions.current, "head": revisions.head}))
    elif revisions.current == revisions.head:
        out.print(f"revision {revisions.current} (the newest)")
    elif revisions.current is None:
        out.print(
            "no revision: the store is empty or was made before migrations; `agent-etl store upgrade` brings it to"
            f" {revisions.head}"
        )
    else:
        out.print(
            f"revision {revisions.current}; this agent-etl's newest is {revisions.head} (`agent-etl store upgrade`"
            " upgrades an older store, a newer one needs a newer agent-etl)"
        )


@store_app.command("upgrade")
def store_upgrade() -> None:
    """Upgrade the store to this agent-etl's schema now, rather than at the next command that opens it."""
    from agent_orchestrated_etl.store.records import RunStore

    store = RunStore(load_settings().store_url)
    store.close()
    before, head = store.revisions.current, store.revisions.head
    out.print(
        f"revision {head} (the newest)" if before == head else f"upgraded from revision {before or '(none)'} to {head}"
    )


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Argument(help="Who or what holds it (the audit log names it): ci-bot, alice, ...")],
    role: Annotated[
        str,
        typer.Option(
            help=(
                "viewer: read and follow /ws; operator: also start, cancel and resume runs; "
                "admin: also register and delete pipelines."
            )
        ),
    ] = "viewer",
) -> None:
    """Make a token and print it, once: only its hash is kept, in the metadata store that every serve on it shares."""
    from agent_orchestrated_etl.store.records import RunStore
    from agent_orchestrated_etl.store.tokens import TokenStore

    token = TokenStore(RunStore(load_settings().store_url).engine).create(name, role)
    shown = f"token {name!r} ({role}), shown once; send it as 'Authorization: Bearer <token>':"
    err.print(shown, highlight=False, soft_wrap=True)
    out.print(token, highlight=False, soft_wrap=True)


@tokens_app.command("list")
def tokens_list(as_json: JsonFlag = False) -> None:
    """The tokens' names, roles and creation times (never the tokens)."""
    from agent_orchestrated_etl.store.records import RunStore
    from agent_orchestrated_etl.store.tokens import TokenStore

    tokens = TokenStore(RunStore(load_settings().store_url).engine).list()
    if as_json:
        rows = [{"name": t.name, "role": t.role, "created_at": t.created_at} for t in tokens]
        out.print_json(json.dumps(rows, default=str))
        return
    for t in tokens:
        out.print(f"{t.name}\t{t.role}\t{t.created_at:%Y-%m-%d %H:%M:%S}Z", highlight=False, soft_wrap=True)
    if not tokens:
        err.print(
            "no tokens yet (the single API token of AGENT_ETL_API_TOKEN is an admin's); "
            "make one: agent-etl tokens create NAME --role viewer"
        )


@tokens_app.command("revoke")
def tokens_revoke(
    name: Annotated[str, typer.Argument(help="The token's name, as `agent-etl tokens list` shows it.")],
) -> None:
    """Revoke a token and end its dashboard sessions, for every serve on this store at once."""
    from agent_orchestrated_etl.store.records import RunStore
    from agent_orchestrated_etl.store.tokens import TokenStore

    if not TokenStore(RunStore(load_settings().store_url).engine).revoke(name):
        raise ConfigurationError(f"no token named {name!r}", hint="`agent-etl tokens list` shows them")
    out.print(f"revoked {name!r}", highlight=False)


@app.command()
def serve(
    specs: Annotated[
        list[Path] | None, typer.Argument(help="Pipeline specs to register at start (schedules in them run).")
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind; 127.0.0.1 keeps the server local. Use 0.0.0.0 to expose it.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for the API, the dashboard, /ws and /metrics.")] = 8080,
    max_body: Annotated[str, typer.Option(help="Largest request body accepted, e.g. 1MB.")] = "1MB",
    alert_webhook: Annotated[
        str | None,
        typer.Option(
            help="Send every alert here too (JSON POST); pipelines add their own with `alerts: {webhook: ...}`."
        ),
    ] = None,
    slack: Annotated[bool, typer.Option(help="Post --alert-webhook alerts as Slack messages.")] = False,
    data_root: Annotated[
        Path | None,
        typer.Option(
            help=(
                "Specs registered through the API read and write files only under this directory (default: the working"
                " directory); relative paths start there."
            )
        ),
    ] = None,
    public_read: Annotated[
        bool,
        typer.Option(help="Serve the reading routes (pipelines, runs, events, alerts, metrics) without the token."),
    ] = False,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help="A name clients reach serve by, besides the bind address and localhost (repeatable; '*' for any)."
        ),
    ] = None,
    rate_limit: Annotated[
        int,
        typer.Option(
            help="Requests a minute per token (per address without one), a tenth of it at once; 0: no limit.",
        ),
    ] = 1200,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            help="An origin (https://app.example.com) whose pages may call the API with a token (repeatable).",
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            help="Serve HTTPS with this PEM certificate (chain); needs --tls-key.",
        ),
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="The PEM private key of --tls-cert.")] = None,
    session_hours: Annotated[float, typer.Option(help="How long the dashboard's session cookie lasts.")] = 12.0,
) -> None:
    """Serve the REST API, the live dashboard, /ws and /metrics; run pipelines on their schedules."""
    try:
        import uvicorn

        from agent_orchestrated_etl.api.app import create_app
        from agent_orchestrated_etl.api.security import TOKEN_ENV, allowed_hosts, resolve_token
        from agent_orchestrated_etl.api.service import ServeOptions
    except ImportError:
        from agent_orchestrated_etl.exceptions import MissingDependencyError

        raise MissingDependencyError("agent-etl serve", "server") from None
    from agent_orchestrated_etl.api.service import check_spec
    from agent_orchestrated_etl.config import parse_size
    from agent_orchestrated_etl.spec import load_spec

    for path in specs or []:
        check_spec(load_spec(path).text, file=str(path))  # fail here, with the line, not in the server's start-up
    tls = _tls_files(tls_cert, tls_key)
    settings = load_settings()
    token, generated = resolve_token(settings.home_dir)
    url = f"{'https' if tls else 'http'}://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    if generated:
        err.print(
            f"[bold]API token[/] (shown once; kept in {settings.home_dir / 'api-token'}): {token}",
            highlight=False,
            soft_wrap=True,
        )
        err.print(f"Dashboard: {url}#token={token}", highlight=False, soft_wrap=True)
    else:
        source = TOKEN_ENV if TOKEN_ENV in os.environ else str(settings.home_dir / "api-token")
        err.print(f"Dashboard: {url} (API token from {source})", highlight=False, soft_wrap=True)
    root = (data_root or Path.cwd()).resolve()
    options = ServeOptions(
        settings=settings,
        token=token,
        max_body_bytes=parse_size(max_body),
        specs=list(specs or []),
        alert_webhook=alert_webhook,
        alert_slack=slack,
        base_dir=root,
        data_root=root,
        public_read=public_read,
        allowed_hosts=allowed_hosts(host, allowed_host or []),
        rate_per_minute=rate_limit,
        session_hours=session_hours,
        cors_origins=tuple(cors_origin or ()),
    )
    # No permessage-deflate on /ws: it compresses every frame once per client, which undoes sharing
    # one encoded frame among clients, and frames of a few kB every quarter second need no compression.
    uvicorn.run(
        create_app(options),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn logs through our handler, so through its redaction
        ws_max_size=options.max_body_bytes,
        ws_per_message_deflate=False,
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )


def _tls_files(cert: Path | None, key: Path | None) -> tuple[str, str] | None:
    """Both files or neither, readable PEM, checked here so a typo is one line and not uvicorn's traceback."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigurationError(
            "--tls-cert and --tls-key go together",
            hint="give both, the certificate and its private key",
        )
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"cannot use the TLS certificate {cert} with the key {key}: {exc}",
            where="agent-etl serve --tls-cert/--tls-key",
            hint="give a PEM certificate (chain) and the PEM private key that matches it",
        ) from exc
    return str(cert), str(key)


@app.command()
def worker(
    hub: Annotated[str | None, typer.Option(help="The hub's Redis URL; AGENT_ETL_HUB_URL by default.")] = None,
    name: Annotated[
        str | None, typer.Option(help="Its name on the hub; restarted under it, it gets its unacknowledged tasks.")
    ] = None,
    capacity: Annotated[int, typer.Option(min=1, help="How many tasks it runs at once.")] = 2,
) -> None:
    """Run an ETL agent in this process, taking tasks from orchestrators on the hub, until SIGTERM."""
    from agent_orchestrated_etl.agents import worker as etl_worker

    etl_worker.main([*(["--hub", hub] if hub else []), *(["--name", name] if name else []), f"--capacity={capacity}"])


def main() -> None:
    """Console entry point: turn our errors into one readable line and an exit code."""
    try:
        code = app(args=_debug_first(sys.argv[1:]), standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except (typer.Exit, SystemExit) as exc:
        code = exc.exit_code if isinstance(exc, typer.Exit) else exc.code
        sys.exit(code if isinstance(code, int) else 0)
    except AgentETLError as exc:
        _traceback()
        _json_error(
            exc.next_remedy,
            type(exc).__name__,
            exc.message,
            where=exc.where,
            next_step=exc.hint,
            problems=exc.problems if isinstance(exc, SpecError) else None,
        )
        err.print(f"[red]error:[/] {escape(redact(str(exc)))}", highlight=False, soft_wrap=True)
        sys.exit(2 if isinstance(exc, SpecError) else 1)
    except (typer.Abort, KeyboardInterrupt):
        _traceback()
        _json_error(Remedy.RESUME, "Cancelled", "aborted")
        err.print("aborted")
        sys.exit(130)
    except TyperException as exc:  # usage errors: a missing argument, an unknown command
        _traceback()
        _json_error(
            Remedy.FIX_CONFIG,
            type(exc).__name__,
            exc.format_message(),
            next_step="agent-etl --help lists the commands and options",
        )
        exc.show()  # type: ignore[attr-defined]  # typer raises only its (private) ClickExceptions
        sys.exit(getattr(exc, "exit_code", 2))
    except Exception as exc:  # our bugs
        _traceback()
        if (
            isinstance(exc, OSError) and (mapped := from_os_error(exc)) is not None
        ):  # e.g. --html into a read-only folder
            _json_error(mapped.next_remedy, type(mapped).__name__, mapped.message, next_step=mapped.hint)
            err.print(f"[red]error:[/] {escape(redact(str(mapped)))}", highlight=False, soft_wrap=True)
            sys.exit(1)
        if _state["debug"]:
            sys.exit(70)
        _json_error(
            Remedy.BUG,
            type(exc).__name__,
            f"{type(exc).__name__}: {exc}",
            next_step="rerun with --debug for the traceback; please report it",
        )
        err.print(
            f"[red]internal error:[/] {type(exc).__name__}: {escape(redact(str(exc)))} (rerun with --debug for the"
            " traceback; please report it)"
        )
        sys.exit(70)


def _traceback() -> None:
    """Under --debug, the traceback of the exception being handled, its secrets masked."""
    if _state["debug"]:
        err.print(redact(traceback.format_exc()), markup=False, highlight=False, soft_wrap=True, end="")


def _debug_first(args: list[str]) -> list[str]:
    """``--debug`` is an option of the program, not of a command: accept it anywhere before a ``--``."""
    end = args.index("--") if "--" in args else len(args)
    if "--debug" not in args[:end]:
        return args
    _state["debug"] = True  # known before the callback runs, so a usage error shows its traceback too
    return ["--debug", *(a for a in args[:end] if a != "--debug"), *args[end:]]


def _json_error(
    remedy: Remedy,
    error_type: str,
    message: str,
    *,
    where: str | None = None,
    next_step: str | None = None,
    problems: list[SpecProblem] | None = None,
) -> None:
    """Under --json, every outcome is one JSON document on stdout, an error before any run included."""
    if "--json" not in sys.argv[1:]:
        return
    failure = {
        "remedy": str(remedy),
        "error_type": error_type,
        "message": message,
        "where": where,
        "holder_run_id": None,
        "next_step": next_step,
    }
    document: dict[str, Any] = {"ok": False, "error": message, "failure": failure}
    if problems is not None:
        document["problems"] = [vars(p) for p in problems]
    print(redact(json.dumps(document, default=str)), flush=True)
