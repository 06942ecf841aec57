"""How well identity resolution keeps one human one privacy unit, as measured and recorded.

The DP guarantee is per person: it holds for a human only if all their rows resolve to one
``person_id``. A human *split* into two persons contributes up to twice the declared
bounds, so for them the guarantee degrades as group privacy for a group of two (in zCDP, ρ
becomes 4ρ). A *merge* (two humans in one person, e.g. a household sharing a phone) only
bounds them together, which keeps each one's guarantee. The rates are measured on a
synthetic campaign, where the generator knows every human's ids in every tool
(``pipeline.identity_check`` runs it); the auditor report states them, so the statement an
inspector signs rests on a measured number, not a typed one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

IDENTITY_AUDIT_FILE = "identity_split.json"


@dataclass(frozen=True)
class IdentitySplit:
    """One measurement: counts only (synthetic humans, never real ones)."""

    people: int  # synthetic campaign size
    seed: int
    humans: int  # humans with at least one row loaded
    persons: int  # persons those humans resolved to
    split_humans: int  # humans found under two persons or more
    merged_persons: int  # persons holding two humans or more
    measured_at: str  # ISO timestamp (UTC)

    def __post_init__(self) -> None:
        if min(self.humans, self.persons, self.split_humans, self.merged_persons) < 0 or \
                self.split_humans > self.humans or self.merged_persons > self.persons:
            raise ValueError("identity split counts are inconsistent")

    @property
    def split_rate(self) -> float:
        return self.split_humans / self.humans if self.humans else 0.0

    @property
    def merge_rate(self) -> float:
        return self.merged_persons / self.persons if self.persons else 0.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self) | {"split_rate": self.split_rate, "merge_rate": self.merge_rate}


def write_identity_split(folder: Path, result: IdentitySplit) -> Path:
    """Record the last measurement where the auditor report finds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / IDENTITY_AUDIT_FILE
    path.write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n",
                    encoding="utf-8")
    return path


def read_identity_split(folder: Path) -> IdentitySplit | None:
    """The last recorded measurement, or ``None`` when none was made (or it is unreadable)."""
    path = folder / IDENTITY_AUDIT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return IdentitySplit(**{k: data[k] for k in IdentitySplit.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None
