"""Schema fuzzing: schemathesis drives every operation of the service's own OpenAPI document against a real server,
as a signed-in user whose workflows and uploads exist, so that path parameters name real resources as well.

Each operation gets the documented examples, schemathesis' coverage cases, and a fixed budget of valid and invalid
requests, all derived from a fixed seed. No answer may be a 5xx, and every status code, content type and body must
be one the document declares for that operation. `/metrics` is left out: it takes no input, and is Prometheus text.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from infra.settings import Settings
from tests.integration.jobs_support import running_worker, wait_until, worker_config
from tests.integration.support import Account
from tests.integration.upload_support import OFFSET_STREAM, TUS, append, create_upload, metadata
from tests.integration.ws_support import LiveServer, live_server

pytestmark = pytest.mark.slow

SEED = 20_260_101
MAX_EXAMPLES = 100
AUTH_MAX_EXAMPLES = 25
"""Register and login hash a password (argon2, ~100 ms) per request; their bodies are small, so fewer suffice."""
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
LEDGER = b"period,cash_flow\n0,-1000\n1,300\n2,400\n3,500\n"
"""Answers a handler gives that its OpenAPI does not declare yet: login's decorator is being reworked elsewhere."""
TUS_HEADERS = {
    "OPTIONS /api/uploads": TUS,
    "POST /api/uploads": TUS | {"Upload-Length": "10"},
    "HEAD /api/uploads/{upload_id}": TUS,
    "PATCH /api/uploads/{upload_id}": TUS | OFFSET_STREAM | {"Upload-Offset": "0"},
    "DELETE /api/uploads/{upload_id}": TUS,
}
"""What each tus verb needs to get past its header checks (the document describes them; these make sure the request
reaches the handler, the generated headers being mostly nonsense)."""
REVOKING_PATHS = ["/api/auth/logout", "/api/auth/password"]
"""Left out: each call revokes the token it is sent with (a password change, also the password), which would sign the
fuzzing account out of every later operation; tests/integration/test_revocation.py covers them."""

schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")


@dataclass(frozen=True)
class Seeded:
    """Resources that exist before fuzzing starts, so that path parameters also name real things.

    `doomed_*` are for DELETE alone: the others must outlive the run for the operations that read them.
    """

    account: Account
    workflow_ids: list[str]
    upload_ids: list[str]
    doomed_workflow_id: str
    doomed_upload_id: str

    def path_values(self, name: str, method: str) -> list[str]:
        if name == "workflow_id":
            return [self.doomed_workflow_id] if method == "DELETE" else self.workflow_ids
        if name == "upload_id":
            return [self.doomed_upload_id] if method == "DELETE" else self.upload_ids
        return []


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(settings, tmp_path, workers=1) as running:
        yield running


@pytest.fixture
async def seeded(server: LiveServer, settings: Settings, tmp_path: Path, alice: Account) -> Seeded:
    """A workflow that ran to a result, one made from a parsed upload, a draft, and an upload under way."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as api:

        async def new_workflow(**body: Any) -> str:
            body = {"name": "Seeded", "parameters": {"discount_rate": 0.08}} | body
            created = await api.post("/api/workflows", json=body, headers=alice.headers)
            assert created.status_code == 201, created.text
            return str(created.json()["id"])

        ledger = await create_upload(api, alice, len(LEDGER), **{"Upload-Metadata": metadata(filename="l.csv")})
        appended = await append(api, alice, ledger, 0, LEDGER)
        assert appended.status_code == 204, appended.text
        partial = await create_upload(api, alice, 1_000)
        ran = await new_workflow(cash_flows=[-1000, 300, 400, 500])
        async with running_worker(worker_config(settings, data_dir=tmp_path)):
            started = await api.post(f"/api/workflows/{ran}/run", headers=alice.headers)
            assert started.status_code == 202, started.text

            async def settled() -> bool:
                workflow = (await api.get(f"/api/workflows/{ran}/status", headers=alice.headers)).json()
                upload = (await api.get(ledger, headers=alice.headers)).json()
                return bool(workflow["status"] == "succeeded" and upload["status"] == "ready")

            await wait_until(settled, "the seeded workflow succeeded and the seeded upload is ready")
        from_ledger = await new_workflow(upload_id=ledger.rsplit("/", 1)[-1])
        draft = await new_workflow(cash_flows=[-5, 1, 2, 3], description="draft", priority="high")
        doomed_workflow = await new_workflow(cash_flows=[-1, 2])
        doomed_upload = await create_upload(api, alice, 10)
    return Seeded(
        account=alice,
        workflow_ids=[ran, from_ledger, draft],
        upload_ids=[ledger.rsplit("/", 1)[-1], partial.rsplit("/", 1)[-1]],
        doomed_workflow_id=doomed_workflow,
        doomed_upload_id=doomed_upload.rsplit("/", 1)[-1],
    )


def _config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            "operations": [{"include-path-regex": "^/api/auth/", "generation": {"max-examples": AUTH_MAX_EXAMPLES}}],
        }
    )


@pytest.fixture
def api_schema(server: LiveServer, seeded: Seeded) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"{server.base_url}/schema/openapi.json", config=_config())

    @schema.hook
    def before_generate_path_parameters(
        context: schemathesis.HookContext, strategy: st.SearchStrategy[dict[str, Any]]
    ) -> st.SearchStrategy[dict[str, Any]]:
        """Path parameters name a seeded resource, or are whatever the schema allows (mostly nothing that exists)."""
        operation = context.operation
        assert operation is not None
        names = [parameter.name for parameter in operation.path_parameters]
        values = {name: seeded.path_values(name, operation.method.upper()) for name in names}
        if not names or not all(values.values()):
            return strategy
        existing = st.fixed_dictionaries({name: st.sampled_from(values[name]) for name in names})
        return st.one_of(existing, strategy)

    return schema


FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "host", "connection"})
"""Generated values of these are left out: they frame the HTTP message itself, so a malformed one is refused by
Granian's HTTP parser (a bare 400) before roi sees the request; the client library sets them right."""

fuzzed = schemathesis.pytest.from_fixture("api_schema").exclude(path="/metrics").exclude(path=REVOKING_PATHS)


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32 renames the running test per operation through `Node._nodeid`, gone in pytest 9.2."""
    request.node._nodeid = request.node.nodeid


@pytest.fixture
def answers() -> Iterator[dict[str, set[int]]]:
    """The status codes each operation gave. Each must have succeeded at least once: proof that the fuzzing went
    past authentication and lookups into the handlers, rather than bouncing off a 401 or a 404 every time."""
    seen: dict[str, set[int]] = defaultdict(set)
    yield seen
    never_succeeded = sorted(label for label, codes in seen.items() if not any(200 <= code < 300 for code in codes))
    assert not never_succeeded, never_succeeded


@fuzzed.parametrize()
def test_every_answer_is_documented_and_none_is_a_server_error(
    case: schemathesis.Case[Any], seeded: Seeded, answers: dict[str, set[int]]
) -> None:
    if case.headers:
        case.headers = {name: value for name, value in case.headers.items() if name.lower() not in FRAMING_HEADERS}
    headers = seeded.account.headers | TUS_HEADERS.get(case.operation.label, {})
    response = case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)
    answers[case.operation.label].add(response.status_code)
