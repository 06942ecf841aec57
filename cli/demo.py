"""`isoloir demo`: the main job on the embedded default, end to end (what `make run` runs).

Synthetic campaign → landing/ → ingestion DAG → release DAG → reports, all in-process with
Airflow's ``dag.test()`` on SQLite. A second run reuses what exists and says so: it does not
regenerate loaded data, and its releases reuse their ids, so nothing is charged twice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cli.app import app
from cli.common import console, handled_errors, settings_or_exit
from core.settings import ENV_KEY_FILE, ENV_MASTER_KEY, ENV_SIGNING_KEY_FILE, default_key_file

DEMO_RUN_KEY = "demo"


@app.command("demo")
def demo(
    people: Annotated[int, typer.Option(help="Synthetic supporters to generate.", min=100)] = 50_000,
    seed: Annotated[int, typer.Option(help="Generator seed (same seed, same files).")] = 2026,
    with_bad_file: Annotated[bool, typer.Option(
        help="Also drop a deliberately broken export, to show quarantine.")] = True,
) -> None:
    """Run the whole pipeline on synthetic data and print where the reports are."""
    settings = settings_or_exit()
    with handled_errors():
        settings.ensure_dirs()
        env = dict(os.environ)
        _ensure_keys(settings, env)
        _stage_campaign(settings, env, people, seed, with_bad_file)

        from cli.airflow_runner import airflow_env, ensure_metadata_db, run_dag

        af_env = airflow_env(settings, env)
        with console.status("preparing the embedded Airflow (SQLite metadata)..."):
            ensure_metadata_db(af_env)
        with console.status("running DAG isoloir_ingest (validate → pseudonymize → load)..."):
            run_dag("isoloir_ingest", af_env)
        console.print("[green]✓[/] isoloir_ingest")
        with console.status("running DAG isoloir_release (DP release → reports → audit)..."):
            run_dag("isoloir_release", af_env, conf={"run_key": DEMO_RUN_KEY})
        console.print("[green]✓[/] isoloir_release")
        _print_outputs(settings)


def _ensure_keys(settings, env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    """Use the configured keys, or create demo keys under ISOLOIR_HOME/keys (mode 0600)."""
    from privacy.keys import write_new_key_file
    from privacy.signing import create_signing_key

    if not env.get(ENV_MASTER_KEY) and settings.key_file is None:
        key_file = default_key_file(settings)
        if key_file.exists():
            console.print(f"reusing master key file {key_file}")
        else:
            write_new_key_file(key_file)
            console.print(f"created master key file {key_file} (mode 0600)")
        env[ENV_KEY_FILE] = str(key_file)
    signing = settings.signing_key_file
    if signing.exists():
        console.print(f"reusing ledger signing key {signing}")
    else:
        create_signing_key(signing)
        console.print(f"created ledger signing key {signing} (public half: {signing}.pub)")
    env[ENV_SIGNING_KEY_FILE] = str(signing)


def _stage_campaign(settings, env: dict[str, str], people: int, seed: int,  # type: ignore[no-untyped-def]
                    with_bad_file: bool) -> None:
    from cli.runtime import warehouse_engine
    from warehouse import store

    engine = warehouse_engine(settings)
    with engine.connect() as conn:
        loaded = store.table_counts(conn)["ingested_files"]
    waiting = [p for p in settings.landing.iterdir() if p.is_file()]
    if loaded:
        console.print(f"reusing the warehouse: {loaded} file(s) already loaded; "
                      f"{len(waiting)} file(s) waiting in landing/")
        return
    if waiting:
        console.print(f"reusing {len(waiting)} file(s) already in landing/")
        return
    from transforms.synth import SynthConfig, generate_campaign

    with console.status(f"generating a synthetic campaign of {people:,} supporters..."):
        manifest = generate_campaign(SynthConfig(people=people, seed=seed), settings.landing)
    ground_truth = settings.landing / "ground_truth.json"
    if ground_truth.exists():  # for tests and benchmarks only: never ingested
        target = settings.home / "synth" / "ground_truth.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        ground_truth.replace(target)
    console.print(f"generated {len(manifest.files)} export files in {settings.landing}")
    if with_bad_file:
        bad = write_demo_bad_file(settings.landing)
        console.print(f"added a deliberately broken export: {bad.name}")


def write_demo_bad_file(folder: Path) -> Path:
    """A donations export with a negative amount: the raw suite quarantines it."""
    path = folder / "donations_broken_export.csv"
    path.write_text("donor_id,first_name,last_name,email,zip,amount,date,method,recurring\n"
                    "900001,Demo,Broken,demo.broken@example.org,75011,-50.00,2026-03-01,card,false\n"
                    "900002,Demo,Other,demo.other@example.org,69003,20.00,2026-03-02,card,false\n",
                    encoding="utf-8")
    return path


def _print_outputs(settings) -> None:  # type: ignore[no-untyped-def]
    reports = settings.reports
    strategist = sorted(reports.glob("strategist*.html"))
    auditor = sorted(reports.glob("audit*.html"))
    console.print(f"published tables: {settings.published}")
    if auditor:
        console.print(f"auditor report:   {auditor[-1]}")
    if strategist:
        console.print(f"strategist report: {strategist[-1]}")
    quarantined = sorted(settings.quarantine.glob("*.report.html"))
    if quarantined:
        console.print(f"quarantine reports: {', '.join(str(q) for q in quarantined)}")
    main_report = strategist[-1] if strategist else settings.published
    console.print(str(main_report), soft_wrap=True, highlight=False)
