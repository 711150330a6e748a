"""`roi users create` makes an account that can log in at once, and says in one line why when it cannot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from litestar.testing import AsyncTestClient

from infra.settings import Settings

PASSWORD = "correct horse battery"


def users_create(settings: Settings, email: str, password: str) -> subprocess.CompletedProcess[str]:
    assert settings.database_url
    assert settings.redis_url
    environment = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "ROI_DATA_DIR": str(settings.roi_data_dir),
    }
    roi = Path(sys.executable).with_name("roi")
    return subprocess.run(
        [str(roi), "users", "create", email, "--admin", "--password-stdin"],
        input=f"{password}\n",
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_users_create_makes_an_admin_who_can_log_in(client: AsyncTestClient, settings: Settings) -> None:
    created = users_create(settings, "Admin@Example.com", PASSWORD)
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created admin Admin@Example.com (")

    login = await client.post("/api/auth/login", json={"email": "admin@example.com", "password": PASSWORD})
    assert login.status_code == 200, login.text
    me = await client.get("/api/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"})
    assert me.json()["is_admin"] is True


async def test_users_create_says_in_one_line_that_the_email_is_taken(settings: Settings) -> None:
    assert users_create(settings, "twice@example.com", PASSWORD).returncode == 0
    again = users_create(settings, "twice@example.com", PASSWORD)
    assert again.returncode == 1
    assert "Traceback" not in again.stderr
    assert again.stderr.strip().splitlines() == ["Error: an account with this email already exists"]
