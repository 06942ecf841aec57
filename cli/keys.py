"""`isoloir keys`: create and rotate the master key, create and rotate the ledger signing key,
show key ids."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cli.app import app
from cli.common import console, emit_json, handled_errors, settings_or_exit
from core.errors import EXIT_FAILURE, KeyMaterialError
from core.settings import ENV_SIGNING_KEY_FILE, Settings, default_key_file

keys_app = typer.Typer(help="Create, rotate and inspect keys (ids only: key bytes are never shown).",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")


class KeyInUse(KeyMaterialError):
    """A key version cannot be retired: stored rows are still keyed by it."""

    exit_code = EXIT_FAILURE


@keys_app.command("init")
def init(
    key_file: Annotated[Path | None, typer.Option(
        help="Master key file to create (default: ISOLOIR_KEY_FILE, else ISOLOIR_HOME/keys/isoloir-master.key).")] = None,
    signing_key_file: Annotated[Path | None, typer.Option(
        help="Ledger signing key to create (default: ISOLOIR_SIGNING_KEY_FILE, else beside the master key).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Create the master key file (mode 0600) and the Ed25519 ledger signing key; never overwrites.

    The signing key's public half is written beside it (`.pub`) for auditors. Back both up,
    separately and offline: losing the master key breaks identity linkage of future loads.
    """
    settings = settings_or_exit()
    with handled_errors(as_json):
        from privacy.keys import write_new_key_file
        from privacy.signing import create_signing_key

        master = key_file or default_key_file(settings)
        signing = signing_key_file or _default_signing(settings, key_file)
        created: dict[str, str] = {}
        if master.exists() and signing.exists():
            raise KeyMaterialError(f"{master} and {signing} already exist; refusing to overwrite keys")
        if master.exists():
            raise KeyMaterialError(f"{master} already exists; refusing to overwrite a key "
                                   "(use `isoloir keys rotate` to add a new version)")
        key = write_new_key_file(master)
        created["master_key_file"] = str(master)
        created["master_key_id"] = key.key_id
        if signing.exists():
            console.print(f"signing key {signing} already exists: kept")
        else:
            info = create_signing_key(signing)
            created["signing_key_file"] = str(signing)
            created["signing_key_id"] = info.key_id
            created["signing_public_key_file"] = str(info.public_path)
    if as_json:
        emit_json({"ok": True} | created)
        return
    for name, value in created.items():
        console.print(f"{name}: {value}")
    console.print("Set ISOLOIR_KEY_FILE (and ISOLOIR_SIGNING_KEY_FILE) to these paths; back them up "
                  "separately, offline.")


def _default_signing(settings: Settings, key_file: Path | None) -> Path:
    """Beside an explicitly given master key file unless ISOLOIR_SIGNING_KEY_FILE says otherwise."""
    if key_file is not None and not os.environ.get(ENV_SIGNING_KEY_FILE):
        return key_file.parent / "isoloir-signing.key"
    return settings.signing_key_file


@keys_app.command("rotate")
def rotate(
    key_file: Annotated[Path | None, typer.Option(help="Master key file (default: ISOLOIR_KEY_FILE).")] = None,
) -> None:
    """Add a new master key version; new pseudonyms use it, old versions stay for reading."""
    settings = settings_or_exit()
    with handled_errors():
        from privacy.keys import add_key_version

        path = key_file or default_key_file(settings)
        key = add_key_version(path)
    console.print(f"added key {key.key_id} to {path}")


@keys_app.command("rotate-signing")
def rotate_signing(
    signing_key_file: Annotated[Path | None, typer.Option(
        help="Ledger signing key to rotate (default: ISOLOIR_SIGNING_KEY_FILE).")] = None,
    destroy_old: Annotated[bool, typer.Option(
        "--destroy-old", help="Delete the old private half instead of keeping it aside as "
        "<file>.<old id>.retired (for a leaked key: it must never sign again).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Make a new Ed25519 ledger signing key; entries from then on carry its key id.

    The old public half is kept as <file>.<old id>.pub (give it to the auditors: past entries
    verify with it); the old private half is moved aside, or deleted with --destroy-old. Run
    it where the key lives (offline), then install the new key and every .pub file.
    """
    settings = settings_or_exit()
    with handled_errors(as_json):
        from privacy.signing import rotate_signing_key

        path = signing_key_file or settings.signing_key_file
        done = rotate_signing_key(path, destroy_old=destroy_old)
    payload = {"ok": True, "signing_key_file": str(done.new.path),
               "signing_key_id": done.new.key_id,
               "signing_public_key_file": str(done.new.public_path),
               "old_signing_key_id": done.old_key_id,
               "old_public_key_file": str(done.retired_public),
               "old_private_key": "destroyed" if done.retired_private is None and destroy_old
               else str(done.retired_private) if done.retired_private else "missing (lost)"}
    if as_json:
        emit_json(payload)
        return
    for name, value in payload.items():
        if name != "ok":
            console.print(f"{name}: {value}", highlight=False)
    console.print("Give the auditors both .pub files; record the date of the change.",
                  highlight=False)


@keys_app.command("retire")
def retire(
    version: Annotated[int, typer.Option("--version", help="Key version to retire (N of kN).")],
    key_file: Annotated[Path | None, typer.Option(help="Master key file (default: ISOLOIR_KEY_FILE).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Remove an old master key version, once nothing stored is keyed by it any more.

    Refuses (exit 1) while any identifier link, objection, people row or event still uses
    version N, and says how many: re-ingest the exports that name them with
    `isoloir keys rekey FILE...` first. Refuses to remove the current version.
    """
    settings = settings_or_exit()
    with handled_errors(as_json):
        from cli.runtime import warehouse_engine
        from privacy.keys import read_key_file, remove_key_version
        from warehouse.store import key_version_usage

        path = key_file or default_key_file(settings)
        if version not in read_key_file(path).keys:
            raise KeyMaterialError(f"{path} holds no key version k{version}")
        with warehouse_engine(settings).connect() as conn:
            usage = key_version_usage(conn, f"k{version}")
        if any(usage.values()):
            raise KeyInUse(
                f"key k{version} still keys {sum(usage.values())} stored rows ("
                + ", ".join(f"{n} in {t}" for t, n in usage.items() if n)
                + "); re-ingest the exports that name them with `isoloir keys rekey FILE...`, "
                "then retire it")
        remove_key_version(path, version)
    if as_json:
        emit_json({"ok": True, "retired": f"k{version}", "key_file": str(path)})
        return
    console.print(f"retired key k{version} from {path}: nothing stored used it", highlight=False)


@keys_app.command("rekey")
def rekey(
    files: Annotated[list[Path], typer.Argument(help="Exports that name the people to move.",
                                                exists=True, dir_okay=False, readable=True)],
    source: Annotated[str, typer.Option("--source", help="Source profile (as for ingest).")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Move what these exports name to the current key version, even files already loaded.

    Pseudonyms can only be re-made from raw identifiers, so links, objections and events
    move when an export naming them comes in again: ingest does it for every new file, and
    this command does it for files loaded before. It then shows what each older key version
    still keys (what `isoloir keys retire` checks).
    """
    settings = settings_or_exit()
    results: list[dict[str, object]] = []
    with handled_errors(as_json):
        from cli.runtime import warehouse_engine
        from pipeline.connections import load_master_keyring
        from pipeline.ingest import ingest_file
        from warehouse.store import key_version_usage

        keyring = load_master_keyring(settings)
        engine = warehouse_engine(settings)
        for path in files:
            done = ingest_file(path, settings, engine, keyring, source=source, again=True)
            results.append({"file": path.name, "rows_read": done.rows_read,
                            "rows_written": done.rows_loaded})
        with engine.connect() as conn:
            usage = {key_id: key_version_usage(conn, key_id) for key_id in keyring.key_ids
                     if key_id != keyring.current.key_id}
    if as_json:
        emit_json({"ok": True, "files": results, "older_key_usage": usage})
        return
    for r in results:
        console.print(f"{r['file']}: {r['rows_read']} rows read, {r['rows_written']} written",
                      highlight=False)
    for key_id, per_table in usage.items():
        left = sum(per_table.values())
        console.print(f"{key_id}: {left} stored rows still keyed by it"
                      + (" (ready to retire)" if not left else ""), highlight=False)


@keys_app.command("show")
def show(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """Show which keys are configured: key ids and file locations, never key material."""
    settings = settings_or_exit()
    with handled_errors(as_json):
        from pipeline.connections import load_master_keyring
        from privacy.signing import load_verify_key, public_key_path

        ring = load_master_keyring(settings)
        payload: dict[str, object] = {"master_key_ids": list(ring.key_ids),
                                      "current_master_key_id": ring.current.key_id}
        try:
            payload["signing_key_id"] = load_verify_key(public_key_path(settings.signing_key_file)).key_id
        except KeyMaterialError as err:
            payload["signing_key_error"] = str(err)
    if as_json:
        emit_json(payload)
        return
    for name, value in payload.items():
        console.print(f"{name}: {value}")
