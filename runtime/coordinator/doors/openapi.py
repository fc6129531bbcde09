"""The OpenAPI 3.1 document of the HTTP door, generated from the deployment's manifests.

The fixed endpoints, each call endpoint's request body ``oneOf`` the functions a caller may name, every
function's argument and return schema in ``components/schemas`` (pydantic's ``$defs`` hoisted there,
bytes as the ``{"$bytes": BASE64}`` object the door speaks), and ``x-bulkhead-functions`` mapping each
path to its kind and both schemas.
"""

from __future__ import annotations

from typing import Any

from runtime.coordinator.kernel.core import Kernel

_ERROR_SCHEMA = {"type": "object", "required": ["type", "code", "message", "data"], "properties": {
    "type": {"type": "string"}, "code": {"type": "string"}, "message": {"type": "string"}, "data": {},
    "fields": {"type": "object"}}}
_BYTES_SCHEMA = {"type": "object", "required": ["$bytes"], "additionalProperties": False,
                 "properties": {"$bytes": {"type": "string", "contentEncoding": "base64"}}}


def _schema_name(*parts: str) -> str:
    return ".".join("".join(c if c.isalnum() or c in "-_" else "_" for c in p) or "app" for p in parts)


def _hoist(schema: dict[str, Any], prefix: str, into: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$defs`` moved into ``components/schemas`` (refs rewritten)."""
    schema = dict(schema)
    defs = schema.pop("$defs", {})
    renamed = {f"#/$defs/{n}": f"#/components/schemas/{_schema_name(prefix, n)}" for n in defs}

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("type") == "string" and node.get("format") == "binary":  # bytes travel as {"$bytes"}
                return {**{k: v for k, v in node.items() if k in ("title", "description")},
                        "$ref": "#/components/schemas/Bytes"}
            return {k: (renamed.get(v, v) if k == "$ref" and isinstance(v, str) else fix(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    for n, d in defs.items():
        into[_schema_name(prefix, n)] = fix(d)
    return dict(fix(schema))


def callable_functions(kernel: Kernel, admin: bool) -> list[tuple[str, dict[str, Any]]]:
    """``(path, function manifest)`` of every function a caller may name: the app's public ones, or with
    the admin key every function of every mount (``mount:fn`` outside the app)."""
    dep = kernel.deployment
    out: list[tuple[str, dict[str, Any]]] = []
    for mount_path, mount in sorted((dep.mounts if dep is not None else {}).items()):
        for name, fman in sorted(mount.manifest["functions"].items()):
            if mount_path == "" and (admin or fman["visibility"] == "public"):
                out.append((name, fman))
            elif mount_path and admin:
                out.append((f"{mount_path}:{name}", fman))
    return out


def document(kernel: Kernel, admin: bool, server: str, kinds: tuple[str, ...],
             idempotency_key_max: int) -> dict[str, Any]:
    """OpenAPI 3.1 of the fixed endpoints, each call endpoint's body one of the deployment's functions.

    ``components/schemas`` holds ``FN.args`` and ``FN.returns`` of every function (``x-bulkhead-functions``
    maps each path to its kind and both schemas); bytes anywhere are ``{"$bytes": BASE64}``.
    """
    schemas: dict[str, Any] = {"Error": _ERROR_SCHEMA, "Bytes": _BYTES_SCHEMA}
    functions: dict[str, Any] = {}
    bodies: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for path, fman in callable_functions(kernel, admin):
        args_name, ret_name = _schema_name(path, "args"), _schema_name(path, "returns")
        schemas[args_name] = _hoist(fman.get("args") or {"type": "object"}, path, schemas)
        schemas[ret_name] = _hoist(fman.get("returns") or {}, path, schemas)
        functions[path] = {"kind": fman["kind"], "args": f"#/components/schemas/{args_name}",
                           "returns": f"#/components/schemas/{ret_name}"}
        props: dict[str, Any] = {"path": {"const": path}, "args": {"$ref": f"#/components/schemas/{args_name}"}}
        if fman["kind"] == "mutation":
            props["idempotency_key"] = {"type": "string", "minLength": 1, "maxLength": idempotency_key_max}
        body_name = _schema_name(path, "call")
        schemas[body_name] = {"type": "object", "required": ["path"], "additionalProperties": False,
                              "properties": props}
        bodies[fman["kind"]].append({"$ref": f"#/components/schemas/{body_name}"})
    error = {"description": "an error", "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/Error"}}}}
    paths: dict[str, Any] = {}
    for kind in kinds:
        paths[f"/api/{kind}"] = {"post": {
            "operationId": kind, "summary": f"Run a {kind}",
            "requestBody": {"required": True, "content": {"application/json": {"schema": (
                {"oneOf": bodies[kind]} if bodies[kind] else {"not": {}})}}},
            "responses": {"200": {"description": "the function's value (see x-bulkhead-functions for its schema)",
                                  "content": {"application/json": {"schema": {
                                      "type": "object", "required": ["value", "commit_ts"],
                                      "properties": {"value": {}, "commit_ts": {"type": ["integer", "null"]}}}}}},
                          "default": error}}}
    paths["/api/openapi.json"] = {"get": {"operationId": "openapi", "summary": "This document",
                                          "responses": {"200": {"description": "OpenAPI 3.1"}}}}
    paths["/api/ws"] = {"get": {"operationId": "subscriptions",
                                "summary": "WebSocket: subscribe to queries (current value, then each change)",
                                "responses": {"101": {"description": "switching to the WebSocket protocol"}}}}
    return {"openapi": "3.1.0", "info": {"title": "Bulkhead deployment", "version": "1"},
            "servers": [{"url": server}], "paths": paths,
            "components": {"schemas": schemas, "securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}}},
            "x-bulkhead-functions": functions}
