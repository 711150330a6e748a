"""The `roi` command: serve, worker, db, users, bench."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import click
import msgspec

from infra.settings import Settings, get_settings


@contextmanager
def service_urls(settings: Settings) -> Iterator[Settings]:
    """Settings with DATABASE_URL and REDIS_URL filled in, starting embedded servers for the ones not set.

    The URLs are also exported to the environment so that server and worker processes spawned inside inherit them.
    """
    from app.embedded import start_postgres, start_valkey

    with ExitStack() as servers:
        changes: dict[str, str] = {}
        if not settings.database_url:
            postgres = start_postgres(settings.roi_data_dir)
            servers.callback(postgres.stop)
            changes["database_url"] = postgres.url
            click.echo(f"No DATABASE_URL: started embedded PostgreSQL, its data in {postgres.data}", err=True)
        if not settings.redis_url:
            valkey = start_valkey(settings.roi_data_dir)
            servers.callback(valkey.stop)
            changes["redis_url"] = valkey.url
            click.echo(f"No REDIS_URL: started embedded Valkey, its data in {valkey.data}", err=True)
        os.environ.update({name.upper(): value for name, value in changes.items()})
        os.environ.setdefault("SECRET_KEY", settings.secret_key)
        # Absolute, so that API and worker processes agree on where uploads live whatever their directory.
        os.environ["ROI_DATA_DIR"] = str(settings.roi_data_dir.resolve())
        get_settings.cache_clear()
        yield msgspec.structs.replace(settings, **changes)


def _migrate(settings: Settings) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from db.migrate import upgrade

    assert settings.database_url
    try:
        upgrade(settings.database_url)
    except (OSError, DBAPIError) as error:
        where = make_url(settings.database_url).render_as_string(hide_password=True)
        raise click.ClickException(
            f"cannot migrate the database at {where} ({_first_line(error)}): is PostgreSQL running there? "
            "Check DATABASE_URL, or leave it unset to use an embedded PostgreSQL"
        ) from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


class RoiCommands(click.Group):
    """Every failure the user can act on ends in one line saying what to do; a traceback only with LOG_LEVEL=DEBUG."""

    def invoke(self, ctx: click.Context) -> object:
        from app.embedded import EmbeddedServerError

        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except msgspec.ValidationError as error:
            raise click.ClickException(f"a setting is invalid: {error} (set in the environment or .env)") from error
        except EmbeddedServerError as error:
            raise click.ClickException(_first_line(error)) from error
        except PermissionError as error:
            raise click.ClickException(
                f"{_first_line(error)}: choose a ROI_DATA_DIR this account can write to"
            ) from error
        except Exception as error:
            if os.environ.get("LOG_LEVEL", "").upper() == "DEBUG":
                raise
            raise click.ClickException(
                f"{type(error).__name__}: {_first_line(error)} (LOG_LEVEL=DEBUG shows the traceback)"
            ) from error


@click.group(cls=RoiCommands)
def main() -> None:
    """roi: ROI-analysis workflows as background jobs."""


API_WORKER_KILL_TIMEOUT_S = 10


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=os.cpu_count() or 1, show_default="the number of cores", type=click.IntRange(1))
def serve(host: str, port: int, workers: int) -> None:
    """Migrate the database and serve the API with Granian (embedded PostgreSQL/Valkey when no URLs are set)."""
    from granian import Granian
    from granian.constants import Interfaces, Loops

    from app.logs import granian_logging
    from app.supervisor import WorkerSupervisor

    data_dir = get_settings().roi_data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="metrics-", dir=data_dir) as metrics,
        service_urls(get_settings()) as settings,
    ):
        # Before any API or job worker starts (and imports prometheus_client): each writes its samples here,
        # /metrics sums them. Fresh per run, so nothing of a previous run is counted.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics
        _migrate(settings)
        job_workers = WorkerSupervisor(settings.worker_processes, settings.worker_concurrency)
        job_workers.start()
        click.echo(f"roi: API on http://{host}:{port} (docs at /schema), {workers} worker(s)", err=True)
        try:
            Granian(
                "app.asgi:create_app",
                factory=True,
                address=host,
                port=port,
                interface=Interfaces.ASGI,
                loop=Loops.uvloop,
                workers=workers,
                # A worker that dies (killed, out of memory) is replaced instead of taking the whole server down;
                # Granian still exits when the same worker dies again within ~5 s of its respawn (a crash loop).
                respawn_failed_workers=True,
                # A worker that misses SIGTERM (one still starting, e.g. a replacement, inherits the main process's
                # handler) would otherwise hold `roi serve` forever; a graceful stop takes a few seconds at most.
                workers_kill_timeout=API_WORKER_KILL_TIMEOUT_S,
                backlog=settings.api_backlog,
                backpressure=settings.api_backpressure,
                log_access=False,
                log_dictconfig=granian_logging(settings.log_level),
            ).serve()
        finally:
            job_workers.stop()


@main.command()
@click.option("--concurrency", type=click.IntRange(1), help="Jobs run at once by this process [WORKER_CONCURRENCY].")
def worker(concurrency: int | None) -> None:
    """Run job workers alone (no API): workflow runs from the priority lanes, and the reconciler."""
    import uvloop

    from workers.worker import serve_worker

    settings = get_settings()
    if not settings.database_url or not settings.redis_url:
        raise click.UsageError("roi worker needs DATABASE_URL and REDIS_URL (roi serve passes them to its workers)")
    if concurrency is not None:
        settings = msgspec.structs.replace(settings, worker_concurrency=concurrency)
    uvloop.run(serve_worker(settings))


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema."""
    with service_urls(get_settings()) as settings:
        _migrate(settings)
    click.echo("database is up to date", err=True)


@main.group()
def users() -> None:
    """Account commands."""


@users.command("create")
@click.argument("email")
@click.option("--name", default=None, help="Display name (default: the part of the email before @).")
@click.option("--admin", is_flag=True, help="Give the account admin rights (the SAQ UI).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of a prompt.")
def users_create(email: str, name: str | None, admin: bool, password_stdin: bool) -> None:
    """Create an account."""
    password = (
        sys.stdin.readline().rstrip("\n")
        if password_stdin
        else click.prompt("Password", hide_input=True, confirmation_prompt=True)
    )
    if len(password) < 8:
        raise click.BadParameter("the password needs at least 8 characters", param_hint="password")
    with service_urls(get_settings()) as settings:
        _migrate(settings)
        user_id = asyncio.run(_create_user(settings, email, name or email.split("@")[0], password, admin))
    click.echo(f"created {'admin ' if admin else ''}{email} ({user_id})")


async def _create_user(settings: Settings, email: str, name: str, password: str, is_admin: bool) -> str:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from db.pools import create_engine
    from domain.accounts.service import UserService
    from domain.errors import DomainError

    engine = create_engine(settings, "roi-cli")
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            user = await UserService(session=session).register(email, password, name, is_admin=is_admin)
            return str(user.id)
    except DomainError as error:
        raise click.ClickException(error.detail) from error
    finally:
        await engine.dispose()


@main.command()
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1), help="Granian worker processes.")
@click.option("--connections", default=32, show_default=True, type=click.IntRange(1), help="Concurrent connections.")
@click.option(
    "--duration",
    type=click.FloatRange(min=0.1),
    help="Seconds measured per scenario, round [10; quick 2]; for chaos, of the whole load [60].",
)
@click.option("--quick", is_flag=True, help="Short windows (2 s after a 0.5 s warm-up) for a fast check.")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1), help="Interleaved rounds.")
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    help="Run this scenario (repeatable); the floor always runs. `scale` (11,000 vs 1,000,000 workflows: minutes, GBs "
    "and a kept template database) runs only when named; ROI_BENCH_SCALE_ROWS sets a smaller large size. `chaos` "
    "(faults under the mixed load, then checks; exit 1 if one fails) runs only when named, and alone.",
)
@click.option("--all", "run_all", is_flag=True, help="Run every registered scenario but `scale` (the default).")
@click.option("--output", type=click.Path(dir_okay=False), help="The JSON report [bench-results/bench-<time>.json].")
@click.option(
    "--seed", type=click.IntRange(0), help="chaos: the seed of the faults' order and timing [random, printed]."
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    help="chaos: inject only this kind of fault (repeatable) [every kind; revoke_token when logout exists].",
)
def bench(
    workers: int,
    connections: int,
    duration: float | None,
    quick: bool,
    rounds: int,
    scenarios: tuple[str, ...],
    run_all: bool,
    output: str | None,
    seed: int | None,
    faults: tuple[str, ...],
) -> None:
    """Load the service on its own servers; report req/s and latencies against the /health floor of the same run."""
    try:
        # By name: the benchmark lives beside the product in a checkout and is not installed with it.
        runner = importlib.import_module("bench.runner")
    except ModuleNotFoundError as error:
        missing = "the bench/ folder" if (error.name or "").startswith("bench") else f"the package {error.name}"
        raise click.ClickException(
            f"roi bench runs from a source checkout installed with `pip install -e '.[dev]'`; {missing} is missing"
        ) from error
    if "chaos" in scenarios:
        if len(scenarios) > 1:
            raise click.UsageError("--scenario chaos runs alone: it owns and breaks its servers")
        importlib.import_module("bench.chaos").run_chaos(duration, seed, faults, output)
        return
    runner.run_bench(
        workers=workers,
        connections=connections,
        duration_s=duration,
        quick=quick,
        rounds=rounds,
        scenario_names=scenarios,
        run_all=run_all,
        output=output,
    )
