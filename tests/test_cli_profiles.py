"""`isoloir profiles [--json]` lists every built-in profile with its columns."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli.main import app
from transforms.sources import BUILTIN_PROFILES


def test_profiles_json_lists_every_profile_with_columns() -> None:
    result = CliRunner().invoke(app, ["profiles", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    by_name = {p["name"]: p for p in doc["profiles"]}
    assert set(by_name) == set(BUILTIN_PROFILES)
    ap = by_name["action_populaire"]
    assert ap["required"] == ["id", "email", "location_citycode"]
    assert "location_zip" in ap["optional"] and ap["description"]
    assert by_name["nationbuilder_donations"]["event_id"] == "id"
    assert by_name["van_contacts"]["event_key"][0] == "source_id"


def test_profiles_table() -> None:
    result = CliRunner().invoke(app, ["profiles"])
    assert result.exit_code == 0
    assert "van_people" in result.output and "required" in result.output
