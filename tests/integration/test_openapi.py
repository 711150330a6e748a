"""The OpenAPI document is valid 3.1, says which operations need a token and names each as its handler does."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator
from litestar.testing import AsyncTestClient
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.integration.support import Account

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


def _examples(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any], Any]]:
    """Every example in the document, with the schema it must satisfy: JSON Schema `examples` beside their schema,
    and a media type's named examples beside its `schema`."""
    if isinstance(node, dict):
        if isinstance(node.get("examples"), list):
            schema = {key: value for key, value in node.items() if key != "examples"}
            for example in node["examples"]:
                yield path, schema, example
        if isinstance(node.get("examples"), dict) and "schema" in node:
            for name, example in node["examples"].items():
                yield f"{path}/examples/{name}", node["schema"], example["value"]
        for key, value in node.items():
            if key != "examples":
                yield from _examples(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _examples(value, f"{path}/{index}")


async def test_every_example_satisfies_its_own_schema(client: AsyncTestClient) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    registry = Registry().with_resource("urn:roi", Resource.from_contents(document, default_specification=DRAFT202012))
    broken = []
    examples = list(_examples(document))
    for path, schema, example in examples:
        resolved = json.loads(json.dumps(schema).replace('"$ref": "#/', '"$ref": "urn:roi#/'))
        errors = list(Draft202012Validator(resolved, registry=registry).iter_errors(example))
        if errors:
            broken.append((path, errors[0].message))
    assert examples, "the document has examples to check"
    assert broken == []


async def test_the_documented_create_workflow_example_is_accepted(client: AsyncTestClient, alice: Account) -> None:
    """Swagger's "Try it out" sends the first example of the body."""
    document = (await client.get("/schema/openapi.json")).json()
    content = document["paths"]["/api/workflows"]["post"]["requestBody"]["content"]["application/json"]
    first = next(iter(content["examples"].values()))["value"]
    created = await client.post("/api/workflows", json=first, headers=alice.headers)
    assert created.status_code == 201, created.text


async def test_the_tus_operations_document_their_headers_and_body(client: AsyncTestClient) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]

    def request_headers(operation: dict[str, Any]) -> dict[str, bool]:
        return {p["name"]: p["required"] for p in operation.get("parameters", []) if p["in"] == "header"}

    def answer_headers(operation: dict[str, Any], status: str) -> set[str]:
        return set(operation["responses"][status].get("headers", {}))

    create, upload = paths["/api/uploads"]["post"], paths["/api/uploads/{upload_id}"]
    assert request_headers(create) == {
        "Tus-Resumable": True,
        "Upload-Length": True,
        "Upload-Metadata": False,
        "Upload-Checksum": False,
    }
    assert answer_headers(create, "201") == {"Location", "Upload-Offset", "Upload-Expires"}
    assert set(create["requestBody"]["content"]) == {"application/offset+octet-stream"}
    assert create["requestBody"]["required"] is False, "creation-with-upload: the body is optional"

    append = upload["patch"]
    assert request_headers(append) == {"Tus-Resumable": True, "Upload-Offset": True, "Upload-Checksum": False}
    assert append["requestBody"]["required"] is True
    assert set(append["requestBody"]["content"]) == {"application/offset+octet-stream"}
    assert answer_headers(append, "204") == {"Upload-Offset", "Upload-Expires"}

    assert answer_headers(upload["head"], "200") == {
        "Upload-Offset",
        "Upload-Length",
        "Upload-Metadata",
        "Upload-Expires",
    }
    assert request_headers(upload["delete"]) == {"Tus-Resumable": True}
    assert answer_headers(paths["/api/uploads"]["options"], "204") >= {"Tus-Version", "Tus-Extension", "Tus-Max-Size"}
