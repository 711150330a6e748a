"""Settings read once from the environment (and a `.env` file), typed and validated."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import msgspec
from dotenv import dotenv_values

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Every setting of the service; each field reads the environment variable of its upper-cased name."""

    database_url: str | None = None
    redis_url: str | None = None
    secret_key: str = ""
    roi_data_dir: Path = Path(".roi-data")
    redis_namespace: str = "roi"

    db_pool_size: PositiveInt = 10
    db_max_overflow: Annotated[int, msgspec.Meta(ge=0)] = 10
    db_pool_recycle_s: PositiveInt = 1800
    db_pool_timeout_s: NonNegativeFloat = 5.0
    db_asyncpg_pool_size: PositiveInt = 10
    redis_max_connections: PositiveInt = 64
    redis_timeout_s: NonNegativeFloat = 0.05

    worker_processes: Annotated[int, msgspec.Meta(ge=0)] = 1
    """Job workers `roi serve` runs beside the API; 0 for an API-only host whose jobs run on `roi worker` hosts."""
    worker_concurrency: PositiveInt = 4
    worker_lost_after_s: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    worker_requeue_after_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    worker_reconcile_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0

    api_max_in_flight: PositiveInt = 32
    """Requests one API worker process handles at once; more are refused at once with 503 and Retry-After, so that
    past capacity the admitted ones stay fast and the rest learn to come back instead of timing out. A request waits
    for the others in flight (Little's law: latency = in flight / throughput), and a few already keep the CPU busy
    while the rest wait on PostgreSQL: at 3x capacity on 2 shared cores, 64 gave an admitted p99 of 0.7-1.3 s, 24 of
    0.36-0.39 s at the same throughput."""
    api_max_queue_ms: Annotated[float, msgspec.Meta(gt=0)] = 1000.0
    """How far behind its event loop may be (requests waiting their turn) before a process refuses new requests. A
    CPU-starved process lags too, with nothing queued: at 100 ms, tests on a machine at load 15 were refused."""
    api_retry_after_s: PositiveInt = 1
    api_backlog: Annotated[int, msgspec.Meta(ge=128)] = 2048
    """Connections the kernel holds for Granian before it accepts them (`roi serve`)."""
    api_backpressure: PositiveInt = 4096
    """Connections one Granian worker keeps open at once (`roi serve`). Granian counts connections, not requests: a
    keep-alive client holds one whether idle or not, and past the limit new connections wait in the kernel's backlog,
    never answered, until their clients time out. So it is far above what clients keep open, and the admission limits
    (API_MAX_IN_FLIGHT, API_MAX_QUEUE_MS) answer the excess with a 503 instead; an open, idle connection costs a worker
    ~21 KB (4,000 measured), so the limit bounds memory at ~90 MB per worker."""

    access_token_ttl_s: PositiveInt = 86_400
    token_revocation_poll_s: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.25
    """How often each API process reads new revocations (logouts, password changes) from PostgreSQL."""
    slow_query_ms: NonNegativeFloat = 100.0

    ws_heartbeat_s: Annotated[float, msgspec.Meta(gt=0)] = 20.0
    ws_send_backlog: PositiveInt = 1000
    event_history_size: PositiveInt = 1000
    event_history_age_s: PositiveInt = 3600
    log_level: str = "INFO"

    login_max_failures_per_account: PositiveInt = 10
    login_max_failures_per_address: PositiveInt = 100
    login_failure_window_s: PositiveInt = 900
    cors_allow_origins: str = ""
    """Comma-separated origins allowed to call the API from a browser; empty (the default) turns CORS off."""
    max_json_body_bytes: PositiveInt = 4 << 20

    upload_store: Annotated[str, msgspec.Meta(pattern=r"^(file|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?)$")] = "file"
    """`file` (ROI_DATA_DIR/uploads, one host) or `s3://BUCKET[/PREFIX]`, shared by every host (AWS_* variables)."""
    tus_max_size: PositiveInt = 1 << 30
    upload_expiry_s: PositiveInt = 86_400
    upload_idle_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 20.0


def _environment() -> dict[str, Any]:
    values: dict[str, Any] = {k: v for k, v in dotenv_values(".env").items() if v is not None}
    values.update(os.environ)
    names = {name.upper(): name for name in Settings.__struct_fields__}
    return {names[key]: value for key, value in values.items() if key in names and value != ""}


def load_settings() -> Settings:
    """Read and validate the settings; raises `msgspec.ValidationError` naming a bad variable."""
    settings = msgspec.convert(_environment(), Settings, strict=False, dec_hook=_decode_path)
    if not settings.secret_key:
        settings = msgspec.structs.replace(settings, secret_key=_persistent_secret(settings.roi_data_dir))
    return settings


def _decode_path(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(kind)


def _persistent_secret(data_dir: Path) -> str:
    """A SECRET_KEY generated once and kept under the data dir, so tokens survive restarts."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(key)
    return key


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
