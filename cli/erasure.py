"""`isoloir forget` and `isoloir purge`: the rights to erasure and to object; retention.

Both print counts (and, for purge, raw file names), never an identifier. Exit codes:
0 ok (a request that matches nobody is ok), 2 bad input (a malformed identifier or request
file: file, line, column and rule are named, never the value), 1 failure.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from cli.app import app
from cli.common import console, emit_json, handled_errors, settings_or_exit


@app.command("forget")
def forget(
    email: Annotated[list[str] | None, typer.Option(
        "--email", help="An e-mail address of the person (repeatable).")] = None,
    phone: Annotated[list[str] | None, typer.Option(
        "--phone", help="A phone number of the person, any usual form (repeatable).")] = None,
    source_id: Annotated[list[str] | None, typer.Option(
        "--source-id", help="A source-system id as NAMESPACE:ID, e.g. nb:123 or van:456 "
        "(repeatable).")] = None,
    from_file: Annotated[Path | None, typer.Option(
        "--from-file", help="A request file: CSV with a header of email, phone, source_id, "
        "reason (one line per person). Deleted once processed unless --keep-file.",
        dir_okay=False)] = None,
    reason: Annotated[str, typer.Option(
        "--reason", help="erasure (GDPR Art. 17) or objection (Art. 21); in a request file, "
        "the default for lines without a reason.")] = "erasure",
    keep_file: Annotated[bool, typer.Option(
        "--keep-file", help="Keep the request file after processing (it holds personal "
        "data: delete it yourself).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Delete a person everywhere in the warehouse and put all their pseudonyms on the
    objection list, so later exports naming them are excluded and only counted.

    Identifiers are given as options (one person) or in a request file (one person per
    line). They are normalized as ingest does and pseudonymized under every key version.
    Prints how many persons and rows were removed; a request that matches nobody says so
    (exit 0). Published DP releases are not changed and spent budget stays spent.
    """
    settings = settings_or_exit()
    with handled_errors(as_json):
        from core.errors import InputFileError
        from transforms.requests import REASONS, parse_identifiers

        if reason not in REASONS:
            raise InputFileError("command line", "reason_value",
                                 "--reason must be erasure or objection", column="--reason")
        given = bool(email or phone or source_id)
        if given == (from_file is not None):
            raise InputFileError("command line", "request",
                                 "give identifiers (--email, --phone, --source-id) or "
                                 "--from-file, not both and not neither")
        if from_file is not None and not from_file.is_file():
            raise InputFileError(from_file.name, "file_missing",
                                 "the request file does not exist or is not a file")
        from cli.runtime import warehouse_engine
        from pipeline.connections import load_master_keyring
        from pipeline.erasure import forget as forget_requests
        from pipeline.erasure import forget_file

        now = datetime.now(UTC)  # the CLI's clock, read here, once
        keyring = load_master_keyring(settings)
        engine = warehouse_engine(settings)
        if from_file is not None:
            result = forget_file(from_file, engine, keyring, now=now,
                                 default_reason=reason,  # type: ignore[arg-type]
                                 keep_file=keep_file)
        else:
            request = parse_identifiers(emails=email or [], phones=phone or [],
                                        source_ids=source_id or [],
                                        reason=reason)  # type: ignore[arg-type]
            result = forget_requests([request], engine, keyring, now=now)
    total = result.total
    file_state = None if from_file is None else "kept" if keep_file else "deleted"
    if as_json:
        emit_json({"ok": True, "request_file": file_state} | result.to_dict())
        return
    console.print(f"{total.requests} request(s): removed {total.persons} person(s) and "
                  f"{total.rows} row(s) ({total.contacts} contacts, {total.donations} "
                  f"donations, {total.identifier_links} identifier links); "
                  f"{total.objections_added} pseudonym(s) added to the objection list",
                  highlight=False)
    if total.requests_unmatched:
        already = total.requests_already_forgotten
        console.print(f"{total.requests_unmatched} request(s) matched nobody in the warehouse"
                      + (f" ({already} already forgotten earlier)" if already else "")
                      + "; their pseudonyms are on the objection list, so later exports "
                      "naming them are excluded", highlight=False)
    if file_state is not None:
        console.print(f"request file {file_state}", highlight=False)


@app.command("purge")
def purge(
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Count what would be removed; remove nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Retention: delete persons inactive for more than ISOLOIR_RETENTION_DAYS (default
    1095) with all their rows, and raw files in processed/ and quarantine/ older than
    ISOLOIR_RAW_RETENTION_DAYS (default 30) with their reports.

    Prints counts and the names of the raw files removed, never a value.
    """
    settings = settings_or_exit()
    with handled_errors(as_json):
        from cli.runtime import warehouse_engine
        from pipeline.retention import purge as run_purge

        result = run_purge(settings, warehouse_engine(settings), now=datetime.now(UTC),
                           dry_run=dry_run)
    if as_json:
        emit_json({"ok": True} | result.to_dict())
        return
    verb = "would remove" if dry_run else "removed"
    console.print(f"{verb} {result.persons} person(s) inactive since before {result.cutoff} "
                  f"({result.rows} rows: {result.contacts} contacts, {result.donations} "
                  f"donations, {result.identifier_links} identifier links)", highlight=False)
    console.print(f"{verb} {len(result.raw_files)} raw file(s) older than "
                  f"{settings.raw_retention_days} days (and {result.report_files} report "
                  "file(s))", highlight=False)
    for name in result.raw_files:
        console.print(f"  {name}", highlight=False)
