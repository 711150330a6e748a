"""The OpenAPI document is valid 3.1, says which operations need a token and names each as its handler does."""

from __future__ import annotations

import re

from litestar.testing import AsyncTestClient
from openapi_spec_validator import validate

PUBLIC = {("GET", "/health"), ("GET", "/ready"), ("POST", "/api/auth/register"), ("POST", "/api/auth/login")}


async def test_the_document_is_valid_openapi_with_public_routes_public(client: AsyncTestClient) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    validate(document)
    assert "security" not in document, "no global requirement: each operation says whether it needs a token"
    assert document["components"]["securitySchemes"] == {
        "BearerToken": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A bearer token from POST /api/auth/login, in the Authorization header",
        }
    }
    operations = {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "operationId" in operation
    }
    assert operations.keys() >= PUBLIC
    for key, operation in operations.items():
        expected = None if key in PUBLIC else [{"BearerToken": []}]
        assert operation.get("security") == expected, key


async def test_operation_ids_are_the_handlers_names(client: AsyncTestClient) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values() if isinstance(op, dict)]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)*", operation_id) for operation_id in ids), ids
    assert {"listWorkflows", "createWorkflow", "getWorkflowStatus", "createUpload", "login"} <= set(ids)
