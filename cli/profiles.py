"""`isoloir profiles`: the source profiles Isoloir reads, with their columns."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from cli.app import app
from cli.common import console, emit_json


@app.command("profiles")
def profiles(
    as_json: Annotated[bool, typer.Option("--json", help="Print the profiles as JSON.")] = False,
) -> None:
    """List the built-in source profiles: kind, required and optional columns, description.

    ``isoloir ingest --source auto`` picks one of these from a file's header; a YAML profile
    (``--source my_tool.yaml``) reads any other export.
    """
    from transforms.headers import profile_columns
    from transforms.read import required_columns
    from transforms.sources import BUILTIN_PROFILES

    rows: list[dict[str, Any]] = []
    for profile in BUILTIN_PROFILES.values():
        required = list(required_columns(profile))
        rows.append({
            "name": profile.name, "kind": profile.kind, "namespace": profile.namespace,
            "required": required,
            "optional": [c for c in profile_columns(profile) if c not in required],
            "description": profile.description,
            "event_key": list(profile.natural_key) if profile.kind != "people" else [],
            "event_id": profile.fields.get("event_id"),
        })
    if as_json:
        emit_json({"ok": True, "profiles": rows})
        return
    table = Table("profile", "kind", "required columns", "optional columns", "description")
    for r in rows:
        table.add_row(str(r["name"]), str(r["kind"]), ", ".join(r["required"]),
                      ", ".join(r["optional"]), str(r["description"]))
    console.print(table)
