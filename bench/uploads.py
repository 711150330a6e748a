"""The upload scenario of `roi bench`: 10 MiB tus uploads to the service, beside a floor that only streams bytes.

Rows, measured in every round, the floor and the service interleaved:
- `upload_floor_<N>mb_chunks`: the same 10 MiB in the same requests (a POST, then PATCHes of N MiB) to
  bench/upload_floor.py, a bare Litestar handler on Granian with the same workers that appends each body to a
  file: what the server stack costs to take the bytes;
- `upload_<N>mb_chunks`: a tus upload to the deployed service: POST (`Upload-Length`), then the PATCHes in order;
  its req/s÷floor is its uploads/s (so its throughput) as a share of the floor row of the same chunk size;
- `upload_to_ready`: a 10 MiB ledger (about 280,000 rows) uploaded in 5 MiB chunks, then `GET /api/uploads/<id>`
  every POLL_S until `ready`; the parse runs on one `roi worker` process, started for that phase only.

An upload is timed from its POST to the 204 of its last PATCH (to `ready` for the last row); its DELETE follows,
untimed. The client is a lean HTTP/1.1 keep-alive connection on asyncio streams, the same for the floor and the
service: with the floor near 14 ms per upload, httpx's own cost shows (it measured 17-21 ms where this client
measured 11-13 ms, on the floor in 5 MiB chunks). A row's req/s column is uploads/s at the median upload time of
each round (the median of the rounds), so its ratio to the floor is the ratio of throughputs at the median; its
server CPU is per upload, its DELETE included (and for the last row the worker's CPU and the polling GETs); its
errors are uploads answered with an unexpected status, or parsed to other than the ledger's rows. The notes give
MB/s, and the Granian workers' peak RSS by round, which the issue asks to stay flat whatever the upload's size.
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import click
import msgspec

from bench.accounts import sign_up
from bench.connection import Answer, Connection, UploadFailed
from bench.memory import status_bytes
from bench.report import Round, RunSettings, ScenarioResult, percentile, pooled_result
from bench.scenarios import UPLOAD_ROWS
from bench.service import BenchFailed
from bench.workers import WorkerProcesses, forget_queue
from infra.queue import create_queue
from testkit.granian import FAILURE_LOG_LINES, Server, granian_server, log_tail
from testkit.ledgers import csv_ledger_bytes

FLOOR_5MB, SERVICE_5MB, FLOOR_1MB, SERVICE_1MB, TO_READY = UPLOAD_ROWS
MIB = 1 << 20
UPLOAD_BYTES = 10 * MIB
LEDGER_ROWS = 300_000
"""Generated, then cut to UPLOAD_BYTES: about 280,000 rows."""
CHUNKS = {FLOOR_5MB: 5 * MIB, SERVICE_5MB: 5 * MIB, FLOOR_1MB: MIB, SERVICE_1MB: MIB, TO_READY: 5 * MIB}
FLOOR_FACTORY = "bench.upload_floor:create_floor_app"
TUS = {"Tus-Resumable": "1.0.0"}
POLL_S = 0.01
READY_DEADLINE_S = 60.0
MIN_READY_SAMPLES = 5


@dataclass(frozen=True)
class Plan:
    """Uploads per row and round, and `upload_to_ready` samples per round: fewer with --quick."""

    uploads: int
    ready: int


@dataclass
class Phase:
    """One row's measurements in one round."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0


@dataclass(frozen=True)
class Ledger:
    """The bytes every upload sends, and the data rows the service must parse from them."""

    data: bytes
    rows: int


class _Upload(msgspec.Struct):
    status: str
    rows: int | None = None
    error: str | None = None


async def measure_uploads(
    server: Server, environment: dict[str, str], settings: RunSettings, quick: bool, floor: ScenarioResult
) -> tuple[list[ScenarioResult], list[str]]:
    """Every row in `settings.rounds` rounds; also the notes for the report: MB/s and the workers' peak RSS."""
    plan = Plan(
        uploads=15 if quick else 30, ready=max(2 if quick else 4, math.ceil(MIN_READY_SAMPLES / settings.rounds))
    )
    ledger = _ledger()
    queue = create_queue(environment["REDIS_URL"], environment["REDIS_NAMESPACE"])
    rounds: dict[str, list[Phase]] = {name: [] for name in UPLOAD_ROWS}
    upload_s: list[float] = []
    peaks = {"before them": _workers_peak_rss(server)}
    try:
        with tempfile.TemporaryDirectory(prefix="roi-bench-uploads-") as work_dir:
            work = Path(work_dir)
            floor_environment = {"UPLOAD_FLOOR_DIR": str(work / "floor")}
            with granian_server(FLOOR_FACTORY, floor_environment, settings.workers, work / "floor.log") as upload_floor:
                click.echo(f"roi bench: upload floor on {upload_floor.base_url}", err=True)
                token, _ = await sign_up(server.base_url, "uploads")
                floor_client, service_client = Connection(upload_floor), Connection(server)
                rows: dict[str, Callable[[], Awaitable[float]]] = {
                    FLOOR_5MB: lambda: _floor_upload(floor_client, ledger, CHUNKS[FLOOR_5MB]),
                    SERVICE_5MB: lambda: _service_upload(service_client, token, ledger, CHUNKS[SERVICE_5MB]),
                    FLOOR_1MB: lambda: _floor_upload(floor_client, ledger, CHUNKS[FLOOR_1MB]),
                    SERVICE_1MB: lambda: _service_upload(service_client, token, ledger, CHUNKS[SERVICE_1MB]),
                }
                await _check_storage(service_client, token, ledger)
                workers = WorkerProcesses(environment, work / "workers.log", queue)
                for round_number in range(1, settings.rounds + 1):
                    for name, upload in rows.items():
                        host = upload_floor if name.startswith("upload_floor") else server
                        phase = await _upload_phase(name, upload, host.cpu_s, plan.uploads)
                        rounds[name].append(phase)
                        _echo_round(round_number, settings.rounds, name, phase)
                    with workers.running(1):
                        await workers.ready(1)
                        phase = await _ready_phase(service_client, token, ledger, server, workers, plan, upload_s)
                    rounds[TO_READY].append(phase)
                    _echo_round(round_number, settings.rounds, TO_READY, phase)
                    if round_number in (1, settings.rounds):
                        peaks[f"after round {round_number}"] = _workers_peak_rss(server)
                floor_peak = _workers_peak_rss(upload_floor)
                floor_client.close()
                service_client.close()
    finally:
        await forget_queue(queue)
    results = _results(rounds, floor)
    notes = _notes(results, upload_s, peaks, floor_peak)
    return results, notes


def _ledger() -> Ledger:
    """A CSV ledger of exactly UPLOAD_BYTES: whole rows, the last one's ignored memo padded to fill the size."""
    data, _ = csv_ledger_bytes(LEDGER_ROWS)
    if len(data) < UPLOAD_BYTES:
        raise BenchFailed(f"uploads: {LEDGER_ROWS:,} ledger rows make {len(data):,} bytes, under {UPLOAD_BYTES:,}")
    cut = data.rindex(b"\n", 0, UPLOAD_BYTES) + 1
    padded = data[: cut - 1] + b"x" * (UPLOAD_BYTES - cut) + b"\n"
    return Ledger(padded, padded.count(b"\n") - 1)


def _chunks(ledger: Ledger, size: int) -> list[memoryview]:
    view = memoryview(ledger.data)
    return [view[start : start + size] for start in range(0, len(view), size)]


async def _floor_upload(client: Connection, ledger: Ledger, chunk_size: int) -> float:
    """The floor's round trips for one upload: seconds from the POST to the last PATCH's 204; then the DELETE."""
    path = "/upload/bench"
    started = time.perf_counter()
    _expect(await client.request("POST", path, {}), 201, "floor POST")
    for chunk in _chunks(ledger, chunk_size):
        _expect(await client.request("PATCH", path, {}, chunk), 204, "floor PATCH")
    elapsed = time.perf_counter() - started
    _expect(await client.request("DELETE", path, {}), 204, "floor DELETE")
    return elapsed


async def _service_upload(client: Connection, token: str, ledger: Ledger, chunk_size: int) -> float:
    """A tus upload: seconds from the POST to the last PATCH's 204; then the DELETE (tus termination)."""
    started = time.perf_counter()
    location = await tus_upload(client, token, ledger, chunk_size)
    elapsed = time.perf_counter() - started
    _expect(await client.request("DELETE", location, {**TUS, "Authorization": f"Bearer {token}"}), 204, "DELETE")
    return elapsed


async def tus_upload(client: Connection, token: str, ledger: Ledger, chunk_size: int) -> str:
    """POST, then the PATCHes in order, each answer checked; the upload's path (its `Location`)."""
    bearer = {**TUS, "Authorization": f"Bearer {token}"}
    created = await client.request("POST", "/api/uploads", {**bearer, "Upload-Length": str(len(ledger.data))})
    location = _expect(created, 201, "POST /api/uploads").headers.get("location", "")
    if not location.startswith("/api/uploads/"):
        raise UploadFailed(f"POST /api/uploads: Location {location!r}")
    offset = 0
    for chunk in _chunks(ledger, chunk_size):
        headers = {**bearer, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
        answer = _expect(await client.request("PATCH", location, headers, chunk), 204, f"PATCH at {offset}")
        offset += len(chunk)
        if answer.headers.get("upload-offset") != str(offset):
            raise UploadFailed(f"PATCH: Upload-Offset {answer.headers.get('upload-offset')}, expected {offset}")
    return location


def _expect(answer: Answer, status: int, what: str) -> Answer:
    if answer.status != status:
        raise UploadFailed(f"{what} answered {answer.status}: {answer.body[:300].decode(errors='replace')}")
    return answer


async def _upload_phase(
    name: str, upload: Callable[[], Awaitable[float]], server_cpu_s: Callable[[], float], uploads: int
) -> Phase:
    """A warm-up upload, then `uploads` of them one after the other; CPU read between them, outside the timing."""
    phase = Phase()
    failures: list[str] = []
    for number in range(uploads + 1):
        server_before, client_before = server_cpu_s(), time.process_time()
        try:
            seconds = await upload()
        except UploadFailed as error:
            failures.append(str(error))
            phase.errors += number > 0
            continue
        if number:
            phase.latencies_ms.append(seconds * 1000)
            phase.elapsed_s += seconds
            phase.server_cpu_s += server_cpu_s() - server_before
            phase.client_cpu_s += time.process_time() - client_before
    _fail_if_none(name, phase, failures)
    return phase


async def _ready_phase(
    client: Connection,
    token: str,
    ledger: Ledger,
    server: Server,
    workers: WorkerProcesses,
    plan: Plan,
    upload_s: list[float],
) -> Phase:
    """A warm-up (it also lets the worker drain the parse jobs of the uploads deleted before), then the samples."""
    phase = Phase()
    failures: list[str] = []
    for number in range(plan.ready + 1):
        server_before, client_before = server.cpu_s() + workers.cpu_s(), time.process_time()
        try:
            uploaded_s, ready_s = await _upload_until_ready(client, token, ledger)
        except UploadFailed as error:
            failures.append(str(error))
            phase.errors += number > 0
            continue
        if number:
            phase.latencies_ms.append(ready_s * 1000)
            phase.elapsed_s += ready_s
            phase.server_cpu_s += server.cpu_s() + workers.cpu_s() - server_before
            phase.client_cpu_s += time.process_time() - client_before
            upload_s.append(uploaded_s)
    if failures and not phase.latencies_ms:
        failures.append("the worker's log:\n" + log_tail(workers.log_path, FAILURE_LOG_LINES))
    _fail_if_none(TO_READY, phase, failures)
    return phase


async def _upload_until_ready(client: Connection, token: str, ledger: Ledger) -> tuple[float, float]:
    """Seconds from the POST to the last 204, and to the GET that shows `ready`; then the DELETE."""
    started = time.perf_counter()
    location = await tus_upload(client, token, ledger, CHUNKS[TO_READY])
    uploaded = time.perf_counter() - started
    bearer = {"Authorization": f"Bearer {token}"}
    while True:
        upload = msgspec.json.decode(
            _expect(await client.request("GET", location, bearer), 200, "GET").body, type=_Upload
        )
        if upload.status != "processing":
            break
        if time.perf_counter() - started > READY_DEADLINE_S:
            raise UploadFailed(f"GET {location}: still processing after {READY_DEADLINE_S:g} s")
        await asyncio.sleep(POLL_S)
    ready = time.perf_counter() - started
    _expect(await client.request("DELETE", location, {**TUS, **bearer}), 204, "DELETE")
    if upload.status != "ready":
        raise UploadFailed(f"GET {location}: {upload.status}, error {upload.error!r}")
    if upload.rows != ledger.rows:
        raise UploadFailed(f"GET {location}: {upload.rows} rows parsed, the ledger has {ledger.rows}")
    return uploaded, ready


async def _check_storage(client: Connection, token: str, ledger: Ledger) -> None:
    """The worker reads the file where the service stored it: both must have this process's ROI_DATA_DIR (the
    runner's temporary one, which the servers and the workers inherit)."""
    try:
        location = await tus_upload(client, token, ledger, CHUNKS[SERVICE_5MB])
        stored = Path(os.environ["ROI_DATA_DIR"]) / "uploads" / location.rsplit("/", 1)[1].replace("-", "")
        size = stored.stat().st_size if stored.exists() else None
        _expect(await client.request("DELETE", location, {**TUS, "Authorization": f"Bearer {token}"}), 204, "DELETE")
    except UploadFailed as error:
        raise BenchFailed(f"uploads: the first upload failed: {error}; see the server's log") from error
    if size != len(ledger.data):
        raise BenchFailed(f"uploads: the service did not store the upload at {stored} (size {size})")


def _fail_if_none(name: str, phase: Phase, failures: list[str]) -> None:
    if failures:
        click.echo(f"{name}: {len(failures)} failed upload(s), the first: {failures[0]}", err=True)
    if not phase.latencies_ms:
        raise BenchFailed(f"{name}: every upload failed; the first: {failures[0]}; see the server's log")


def _echo_round(round_number: int, rounds: int, name: str, phase: Phase) -> None:
    latencies = sorted(phase.latencies_ms)
    click.echo(
        f"round {round_number}/{rounds} {name}: median {percentile(latencies, 0.5):.1f} ms, "
        f"p95 {percentile(latencies, 0.95):.1f} ms, {phase.errors} errors",
        err=True,
    )


def upload_result(
    name: str, service: str, request: str, phases: list[Phase], against: ScenarioResult
) -> ScenarioResult:
    """One row from its rounds of whole uploads, against a floor row."""
    result = pooled_result(
        name,
        service,
        request,
        [
            Round(
                p.latencies_ms,
                len(p.latencies_ms),
                len(p.latencies_ms),
                p.errors,
                p.elapsed_s,
                p.client_cpu_s,
                p.server_cpu_s,
            )
            for p in phases
        ],
        against,
    )
    # Uploads/s at each round's median upload: on cores shared with other work, a few stalled uploads would
    # move a mean several-fold (they show in p95 and p99 instead).
    result.requests_per_s_by_round = [1000 / statistics.median(p.latencies_ms) for p in phases]
    result.requests_per_s = statistics.median(result.requests_per_s_by_round)
    result.requests_per_s_vs_floor = result.requests_per_s / against.requests_per_s
    return result


def _results(rounds: dict[str, list[Phase]], floor: ScenarioResult) -> list[ScenarioResult]:
    """The floor rows first (100% of themselves); each service row against the floor of its chunk size."""

    def pooled(name: str, against: ScenarioResult) -> ScenarioResult:
        size = CHUNKS[name] // MIB
        service = "upload_floor" if name.startswith("upload_floor") else "deployed"
        request = f"10 MiB: POST, then PATCHes of {size} MiB" + (", then GET until ready" if name == TO_READY else "")
        return upload_result(name, service, request, rounds[name], against)

    floors = {}
    for name in (FLOOR_5MB, FLOOR_1MB):
        floors[name] = pooled(name, floor)
        floors[name].requests_per_s_vs_floor = floors[name].p95_vs_floor = 1.0
    return [
        floors[FLOOR_5MB],
        pooled(SERVICE_5MB, floors[FLOOR_5MB]),
        floors[FLOOR_1MB],
        pooled(SERVICE_1MB, floors[FLOOR_1MB]),
        pooled(TO_READY, floors[FLOOR_5MB]),
    ]


def _notes(
    results: list[ScenarioResult],
    upload_s: list[float],
    peaks: dict[str, list[int]],
    floor_peak: list[int],
) -> list[str]:
    """Throughput in MB/s (10^6 bytes) at the median, and the Granian workers' peak RSS: the issue asks for flat.

    A peak's growth in round 1 can be the upload code's first use (imports, caches, pools); after it, every round
    makes as many 10 MiB uploads again, so a peak that keeps rising would be bodies held in memory.
    """
    notes = [
        f"{r.name}: median {r.p50_ms / 1000:.3f} s, p95 {r.p95_ms / 1000:.3f} s, "
        f"{UPLOAD_BYTES / 1e6 / (r.p50_ms / 1000):,.0f} MB/s"
        for r in results
        if r.name != TO_READY
    ]
    ready = next(r for r in results if r.name == TO_READY)
    notes.append(
        f"{TO_READY}: median {ready.p50_ms / 1000:.3f} s, p95 {ready.p95_ms / 1000:.3f} s "
        f"(of which the upload: median {statistics.median(upload_s):.3f} s)"
    )
    notes.append(
        "deployed Granian workers' peak RSS (VmHWM), MiB: "
        + "; ".join(f"{when} {_mib(sizes)}" for when, sizes in peaks.items())
        + f"; the upload floor's: {_mib(floor_peak)}"
    )
    return notes


def _mib(sizes: list[int]) -> str:
    return ", ".join(f"{size / MIB:.0f}" for size in sizes)


def _workers_peak_rss(server: Server) -> list[int]:
    """The peak resident bytes (VmHWM) of each of Granian's worker processes."""
    return sorted(status_bytes(pid, "VmHWM") for pid in server.worker_pids())
