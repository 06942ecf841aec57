"""The auditor report's opening: a guarantee statement a DPO or a CNIL inspector can sign.

Every number in it is computed when the report is written: the ε spent comes from the
ledger's exact ρ at the dataset's δ (the accountant's conversion), and the identity split
rate from the last ``isoloir audit identity`` measurement. A statement with a typed number
would be a claim; this one is a computation the auditor can redo.

Why group privacy for a split human: a human resolved into two persons contributes as two
privacy units; a ρ-zCDP release is (k²ρ)-zCDP for groups of k, so for them the statement
holds with 4ρ in place of ρ.
"""

from __future__ import annotations

from collections.abc import Sequence

from privacy.accountant import BudgetState, epsilon_equivalent
from privacy.identity_audit import IdentitySplit
from reports.html import Markup, join, tag
from reports.i18n import Translator


def _eps(tr: Translator, value: float) -> str:
    return tr.number(value, 2)


def _percent(tr: Translator, value: float) -> str:
    return tr.number(100 * value, 2) + ("\u00a0%" if tr.lang == "fr" else "%")


def guarantee_section(budgets: Sequence[BudgetState], split: IdentitySplit | None,
                      tr: Translator) -> Markup:
    """The statement, per dataset, then its assumptions and what it does not cover."""
    parts: list[object] = [tag("h2", tr.t("guarantee_title")), tag("p", tr.t("guarantee_unit"))]
    spent_eps: float | None = None
    group_eps: float | None = None
    for b in budgets:
        if b.cap.delta is None:
            continue
        spent = epsilon_equivalent(b.spent, b.cap.delta) if b.spent else 0.0
        spent_eps = spent if spent_eps is None else max(spent_eps, spent)
        group = epsilon_equivalent(4 * b.spent, b.cap.delta) if b.spent else 0.0
        group_eps = group if group_eps is None else max(group_eps, group)
        cap_eps = b.cap.epsilon if b.cap.epsilon is not None else \
            _eps(tr, epsilon_equivalent(b.cap.rho, b.cap.delta))
        parts.append(tag("p", tr.t(
            "guarantee_spent", dataset=b.dataset_id, cap_epsilon=cap_eps,
            delta=str(b.cap.delta).lower(), spent_epsilon=_eps(tr, spent),
            releases=b.releases, spent_rho=tr.number(float(b.spent), 6),
            cap_rho=tr.number(float(b.cap.rho), 6)), class_="statement",
            data_spent_epsilon=f"{spent:.6f}"))
    if split is not None:
        identity = tr.t("guarantee_identity", date=split.measured_at[:10],
                        people=tr.number(split.people), split=_percent(tr, split.split_rate),
                        merged=_percent(tr, split.merge_rate),
                        group_epsilon=_eps(tr, group_eps or 0.0),
                        spent_epsilon=_eps(tr, spent_eps or 0.0))
    else:
        identity = tr.t("guarantee_identity_missing")
    assumptions = join([
        Markup("<ul>"),
        tag("li", identity, class_="identity-split",
            data_split_rate="" if split is None else f"{split.split_rate:.6f}"),
        tag("li", tr.t("guarantee_bounds")), tag("li", tr.t("guarantee_keys")),
        Markup("</ul>")])
    parts += [tag("p", tr.t("guarantee_assumes")), assumptions,
              tag("p", tr.t("guarantee_not")), tag("p", tr.t("guarantee_sign"), class_="note")]
    return join([Markup('<section class="report-section" id="guarantee">'), *parts,
                 Markup("</section>")])
