"""Small hand-written exports in each tool's dialect, with canary identities, for ingest tests."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Canary:
    first: str
    last: str
    email: str
    phone_national: str  # 06 12 34 56 78 style
    street: str
    note: str


CANARIES = (
    Canary("Zephyrine", "Quatrebarbes", "Zephyrine.Quatrebarbes@Canary-Mail.fr", "06 71 82 93 04",
           "17 rue du Canari Jaune", "canari note Xylophone-Orange"),
    Canary("Anselme", "Brindacier", "anselme.brindacier@canary-mail.fr", "07 11 22 33 44",
           "3 impasse des Merles Bleus", "canari note Quokka-Violet"),
)

NB_HEADER = ["nationbuilder_id", "first_name", "last_name", "email", "email_opt_in", "phone_number",
             "mobile_number", "mobile_opt_in", "do_not_call", "do_not_contact", "born_at",
             "primary_address1", "primary_city", "primary_zip", "support_level", "tag_list",
             "is_volunteer", "is_donor", "created_at", "note", "employer"]


def _write(path: Path, header: list[str], rows: list[list[str]], *, encoding: str, delimiter: str,
           bom: bool = False) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n" if delimiter == ";" else "\n")
    writer.writerow(header)
    writer.writerows(rows)
    data = buf.getvalue().encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def nationbuilder_people(path: Path, extra_rows: int = 20, *, do_not_contact_ids: tuple[str, ...] = ()) -> Path:
    rows = []
    for i, c in enumerate(CANARIES):
        rows.append([str(1000 + i), c.first, c.last, c.email, "true", c.phone_national, "",
                     "false", "false", "false", "04/23/1961", c.street, "Lyon", "69003", "2",
                     "canvass,donor", "true", "false", "01/15/2026", c.note, "Canari SARL"])
    for j in range(extra_rows):
        nb_id = str(2000 + j)
        rows.append([nb_id, f"Prenom{j}", f"Nom{j}", f"person{j}@example.org", "false",
                     f"01 23 {j // 100 % 100:02d} {j % 100:02d} 00", "", "false", "false",
                     "true" if nb_id in do_not_contact_ids else "false", "11/02/1990",
                     f"{j} rue Haute", "Ajaccio", "20000", str(1 + j % 5), "", "false", "false",
                     "02/01/2026", "", ""])
    return _write(path, NB_HEADER, rows, encoding="utf-8", delimiter=",", bom=True)


VAN_HEADER = ["VanID", "DateCanvassed", "ContactType", "InputType", "ResultShortName", "CanvassedBy",
              "SurveyQuestionName", "SurveyResponseName", "Address", "City", "Zip5", "Phone", "Email"]


def van_contacts(path: Path, extra_rows: int = 10) -> Path:
    rows = []
    for i, c in enumerate(CANARIES):
        digits = c.phone_national.replace(" ", "")
        # same human, written differently: +33 form, upper-case email with spaces
        rows.append([str(50 + i), "03/02/2026", "Walk", "MiniVAN", "Canvassed", "Jean Militant",
                     "Support ID", "2 - Lean Support", c.street, "Lyon", "69003",
                     "+33 " + digits[1] + " " + digits[2:], "  " + c.email.upper() + " "])
        rows.append([str(50 + i), "03/09/2026", "Phone", "Phone Bank", "Not Home", "Jean Militant",
                     "", "", c.street, "Lyon", "69003", "", ""])
    for j in range(extra_rows):
        rows.append([str(900 + j), "03/03/2026", "Walk", "MiniVAN", "Refused", "Paul Militant", "",
                     "", f"{j} rue Basse", "Paris", "75011", "", ""])
    return _write(path, VAN_HEADER, rows, encoding="utf-8", delimiter="\t")


FR_HEADER = ["id_contact", "date_passage", "nom", "prénom", "adresse", "code_postal", "commune",
             "téléphone", "email", "résultat", "intention", "commentaire", "militant", "durée_min"]


def fr_canvass(path: Path, extra_rows: int = 10) -> Path:
    rows = []
    for i, c in enumerate(CANARIES):
        digits = c.phone_national.replace(" ", "")
        rows.append([f"P{i}", "10/02/2026", c.last.upper(), c.first, c.street, "69003", "Lyon",
                     "0033" + digits[1:], "", "Contacté", "1", c.note, "Hélène Militante", "3,5"])
    for j in range(extra_rows):
        rows.append([f"Q{j}", "11/02/2026", f"NOM{j}", f"Prénom{j}", f"{j} allée Verte", "97100",
                     "Basse-Terre", "", "", "Absent", "", "", "Hélène Militante", "1,0"])
    return _write(path, FR_HEADER, rows, encoding="cp1252", delimiter=";")


DON_HEADER = ["donor_id", "first_name", "last_name", "email", "zip", "amount", "date", "method",
              "recurring"]


def donations(path: Path) -> Path:
    rows = [[str(1000 + i), c.first, c.last, c.email, "69003", "50.00", "2026-02-14", "card", "false"]
            for i, c in enumerate(CANARIES)]
    rows += [[str(2000 + j), f"Prenom{j}", f"Nom{j}", "", "20000", "20.00", "2026-03-01", "cheque",
              "false"] for j in range(5)]
    return _write(path, DON_HEADER, rows, encoding="utf-8", delimiter=",")


def canary_strings() -> list[str]:
    """Every canary value, in forms a leak could take (case and spacing folded by the checker)."""
    out = []
    for c in CANARIES:
        digits = c.phone_national.replace(" ", "")
        out += [c.first, c.last, c.email, c.email.lower(), digits, digits[1:], c.street,
                c.street.split(" ", 2)[-1], c.note, "Canari SARL", "1961-04-23", "04/23/1961"]
    return out


def find_canaries(blob: bytes | str) -> list[str]:
    """Canaries found in ``blob``, compared case-insensitively and ignoring spaces."""
    text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
    folded = "".join(text.lower().split())
    return [c for c in canary_strings() if "".join(c.lower().split()) in folded]
