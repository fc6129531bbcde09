"""Mounts and deployments: what is loaded where, and how a ``use()`` spec names code."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from runtime.coordinator.kernel.schemacheck import Check, compile_schema
from runtime.errors import NotFoundError, ValidationError
from sandbox.supervisor import WorkerHandle


@dataclass
class Mount:
    """One mounted instance: where it is, the code it loads, its manifest, its worker."""

    path: str
    spec: str
    """The ``use()`` spec it was mounted with (``"(app)"`` names the app)."""
    load_spec: dict[str, Any]
    """What a worker loads for it (module, attribute, app dir): handed to every worker started for it."""
    env: dict[str, str]
    manifest: dict[str, Any]
    children: dict[str, str]
    worker: WorkerHandle
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    restarts: int = 0
    _validators: dict[str, tuple[Check | None, Any]] = field(default_factory=dict)
    """Per table: the compiled fast check (None: the schema has keywords it does not know) and jsonschema's."""

    @property
    def label(self) -> str:
        return self.path or "(app)"

    def function(self, name: str) -> dict[str, Any] | None:
        fman: dict[str, Any] | None = self.manifest["functions"].get(name)
        return fman

    def check_document(self, table: str, doc: Any) -> None:
        """Validate a write against the table's JSON schema from the manifest.

        The worker already validated it with the pydantic model; this second
        check is the coordinator's, so a compromised worker cannot store
        documents its own schema forbids.  A predicate compiled once per table
        (:mod:`~runtime.coordinator.kernel.schemacheck`) says yes to a matching
        document in a few microseconds; anything else goes to jsonschema, which
        decides and names the error.
        """
        checks = self._validators.get(table)
        if checks is None:
            tman = self.manifest["tables"].get(table)
            if tman is None:
                raise NotFoundError(f"mount {self.label!r} has no table {table!r}")
            schema = tman["schema"]
            checks = self._validators[table] = (compile_schema(schema), jsonschema.Draft202012Validator(schema))
        fast, validator = checks
        if fast is not None and fast(doc):
            return
        error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path) or "document"
            raise ValidationError(
                f"document does not match the schema of table {table!r}: {where}: {error.message}",
                issues=[f"{where}: {error.message}"],
            )


@dataclass
class Deployment:
    """The app and every mount it uses, as switched to at one deploy."""

    app_code: dict[str, Any]
    mounts: dict[str, Mount]
    deployed_at: float
