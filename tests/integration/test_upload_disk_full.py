"""A full disk while an upload streams in: 507, nothing kept past the offset of record, and the upload resumes
once there is room again. Uses a real 3 MiB tmpfs (the test needs the right to mount; it is root in CI)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from app.asgi import create_app
from infra.settings import Settings
from tests.integration.support import sign_up
from tests.integration.upload_support import append, create_upload, offset_of, stored_file

MIB = 1 << 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.fixture
async def on_small_disk(settings: Settings, small_disk: Path) -> AsyncIterator[AsyncTestClient]:
    async with AsyncTestClient(create_app(msgspec.structs.replace(settings, roi_data_dir=small_disk))) as client:
        yield client


async def test_a_full_disk_is_507_keeps_nothing_and_the_upload_resumes_when_there_is_room(
    on_small_disk: AsyncTestClient, small_disk: Path
) -> None:
    alice = await sign_up(on_small_disk)
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (2 * MIB + MIB // 2))
    data = os.urandom(MIB)
    location = await create_upload(on_small_disk, alice, len(data))

    full = await append(on_small_disk, alice, location, 0, data)
    assert full.status_code == 507, full.text
    assert "retry later" in full.json()["detail"]
    assert await offset_of(on_small_disk, alice, location) == 0

    filler.unlink()
    resumed = await append(on_small_disk, alice, location, 0, data)
    assert (resumed.status_code, resumed.headers["upload-offset"]) == (204, str(MIB))
    assert stored_file(small_disk, location).read_bytes() == data
