"""The gateway's OpenAPI document: the request bodies the routes read by hand, their error answers, and
the two ways of sending a key as security schemes."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

__all__ = ["ERRORS", "INPUT_NAME", "OIP_BODY", "PREDICT_BODY", "SECURITY", "body_doc", "document_security"]

INPUT_NAME = "input-0"
OIP_BODY = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "inputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "shape", "datatype", "data"],
                "properties": {
                    "name": {"type": "string", "example": INPUT_NAME},
                    "shape": {"type": "array", "items": {"type": "integer"}},
                    "datatype": {"type": "string", "example": "FP32"},
                    "data": {"type": "array", "items": {}},
                },
            },
        }
    },
}
PREDICT_BODY = {
    "type": "object",
    "required": ["model", "inputs"],
    "properties": {"model": {"type": "string"}, "inputs": {"type": "array", "items": {}}},
}
ERRORS = {
    str(code): {"description": what, "content": {"application/json": {"schema": {"type": "object"}}}}
    for code, what in (
        (400, "malformed input (the message names the field)"),
        (401, "missing or unknown API key"),
        (403, "revoked key, model out of scope, or key blocked"),
        (404, "unknown model"),
        (413, "body or batch too large"),
        (429, "rate limit, quota or throttle (see Retry-After)"),
        (502, "upstream model failed"),
        (503, "audit log unavailable"),
    )
}
SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]


def body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` of a route that reads a JSON body of ``schema`` itself."""
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": ERRORS,
        "security": SECURITY,
    }


def document_security(app: FastAPI) -> None:
    """Add the two ways of sending a key to the OpenAPI document's security schemes."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
