"""Word lists the synthetic campaign samples from: names, streets, notes, tags, domains.

Built once per run from static data (Faker's French name and job lists are read as plain
tuples, so no Faker instance and no hidden random state is involved), then sampled by
index with numpy. Every entry must round-trip through cp1252, because the French
door-to-door export is written the way French Excel saves it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl

STREET_TYPES: tuple[str, ...] = (
    "rue", "rue", "rue", "rue", "avenue", "boulevard", "impasse", "allée", "place", "chemin",
    "route", "quai", "square", "résidence",
)
STREET_NAMES: tuple[str, ...] = (
    "de la République", "Victor Hugo", "Jean Jaurès", "de la Gare", "de l'Église", "Pasteur",
    "du Moulin", "Gambetta", "du Général de Gaulle", "des Écoles", "de la Paix", "Jules Ferry",
    "du Stade", "des Lilas", "de la Fontaine", "Voltaire", "Émile Zola", "des Tilleuls",
    "du Château", "de la Mairie", "Carnot", "Anatole France", "Jean Moulin", "Pierre Curie",
    "Marie Curie", "de Verdun", "du 8 Mai 1945", "du 11 Novembre", "des Acacias", "Saint-Martin",
    "de Bretagne", "du Port", "des Vignes", "de la Liberté", "Aristide Briand", "Louis Pasteur",
    "Georges Clemenceau", "du Commerce", "des Peupliers", "Paul Bert", "de Provence", "Nationale",
    "des Cerisiers", "du Marché", "Lamartine", "Molière", "George Sand", "Simone Veil",
    "Olympe de Gouges", "Joséphine Baker", "Aimé Césaire", "des Jardins", "du Lavoir",
    "de la Forêt", "des Œillets", "du Cœur Volant", "Sainte-Thérèse", "de l'Hôtel de Ville",
)
ADDRESS_LINE2: tuple[str, ...] = (
    "Bât. A", "Bât. B", "Bât. C", "Bât. D", "Appt 3", "Appt 12", "Appt 24", "Appt 107",
    "Escalier B", "2e étage", "3e étage gauche", "Résidence les Tilleuls", "Résidence du Parc",
    "Lieu-dit la Croix", "Porte 5", "Chez M. et Mme", "BP 12", "Hameau des Prés",
)
NB_NOTES: tuple[str, ...] = (
    "Rencontré au marché, très motivé·e", "Préfère être contacté le soir",
    'A signé la pétition "Sauvons la gare"', "Ancien adhérent, à relancer",
    "Intéressé par l'écologie, les transports", "Ne souhaite plus recevoir de SMS",
    "Voisin de la permanence", "Disponible pour tracter le samedi",
    "Contact via réunion publique du 12/03", "Inquiet pour les retraites; parle du pouvoir d'achat",
    "Appeler après 18h.\nPas de porte-à-porte le dimanche.", "Veut tenir un bureau de vote",
    "Parent d'élève, école Jules Ferry", "Commerçant du centre-ville", "Procuration à prévoir",
)
FR_COMMENTS: tuple[str, ...] = (
    "Sympathisant, veut une affiche", "Pas le temps, repasser", "Hostile au projet de rocade",
    "Chien méchant !", "Très bon accueil", "Demande une procuration", "Parle de la sécurité",
    "Interphone cassé", "Avis de passage déposé", "Questions sur l'école du quartier",
    'Dit "on verra"', "Personne âgée, parler fort", "Ne veut plus être dérangé",
    "Intéressé par le programme santé; rappeler", "Déjà rencontré sur le marché",
)
EMPLOYERS: tuple[str, ...] = (
    "SNCF", "La Poste", "Éducation nationale", "AP-HP", "Mairie", "Renault", "Carrefour",
    "Indépendant", "Retraité·e", "Crédit Agricole", "Orange", "Airbus", "CHU", "E.Leclerc",
    "Conseil départemental", "Auto-entrepreneur", "Sans emploi", "Étudiant·e", "EDF",
    "Thales", "Decathlon", "Société Générale", "Michelin", "Safran", "Pôle emploi",
)
TAGS: tuple[str, ...] = (
    "sympathisant", "militant", "porte-à-porte", "phoning", "newsletter", "donateur",
    "bénévole", "jeunes", "retraités", "quartier-nord", "pétition-2025", "réunion-publique",
    "tractage", "élu-local", "assesseur", "procuration",
)
#: Email domains and how often French supporters use them.
EMAIL_DOMAINS: tuple[tuple[str, float], ...] = (
    ("gmail.com", 0.30), ("orange.fr", 0.17), ("hotmail.fr", 0.09), ("yahoo.fr", 0.07),
    ("free.fr", 0.08), ("laposte.net", 0.05), ("sfr.fr", 0.05), ("wanadoo.fr", 0.05),
    ("outlook.fr", 0.05), ("icloud.com", 0.04), ("hotmail.com", 0.03), ("live.fr", 0.02),
)
_FALLBACK_FIRST_F = ("Marie", "Hélène", "Élodie", "Françoise", "Camille", "Léa", "Chloé")
_FALLBACK_FIRST_M = ("Jean", "Jérôme", "François", "Léo", "Noël", "Loïc", "Raphaël")
_FALLBACK_LAST = ("Martin", "Bernard", "Lefèvre", "Dubœuf", "Mercier", "Fontaine", "Lemaître")


def cp1252_safe(words: Iterable[str]) -> tuple[str, ...]:
    """Keep the entries that survive a cp1252 round trip, in order, without duplicates."""
    out: dict[str, None] = {}
    for word in words:
        try:
            word.encode("cp1252")
        except UnicodeEncodeError:
            continue
        out.setdefault(word, None)
    return tuple(out)


def ascii_fold(word: str) -> str:
    """An email-style local part of a name: lower case, no accents, no spaces or quotes."""
    word = word.replace("œ", "oe").replace("Œ", "Oe").replace("æ", "ae").replace("Æ", "Ae")
    folded = unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in folded.lower() if ch.isalnum() or ch == "-")


def _faker_names() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Faker's fr_FR word lists, read as data (no Faker instance, no random state)."""
    try:
        from faker.providers.job.fr_FR import Provider as Jobs
        from faker.providers.person.fr_FR import Provider as Person
    except ImportError:  # pragma: no cover - faker is locked, this is a safety net
        return _FALLBACK_FIRST_F, _FALLBACK_FIRST_M, _FALLBACK_LAST, ("employé·e",)
    return (tuple(Person.first_names_female), tuple(Person.first_names_male),
            tuple(Person.last_names), tuple(Jobs.jobs))


@dataclass(frozen=True)
class Vocabulary:
    """Sampling tables: each is a polars string Series plus, where needed, its folded form."""

    first_female: pl.Series
    first_male: pl.Series
    first_names: pl.Series  # female then male
    first_names_ascii: pl.Series
    last: pl.Series
    last_ascii: pl.Series
    streets: pl.Series
    address2: pl.Series
    notes: pl.Series
    comments: pl.Series
    employers: pl.Series
    occupations: pl.Series
    domains: pl.Series
    domain_cum: np.ndarray
    tag_lists: pl.Series  # precomputed comma-joined tag combinations; index 0 is empty


def build_vocabulary(rng: np.random.Generator, tag_combinations: int = 256) -> Vocabulary:
    """Build the sampling tables; ``rng`` only chooses the tag combinations."""
    female, male, last, jobs = _faker_names()
    female = cp1252_safe(female) or _FALLBACK_FIRST_F
    male = cp1252_safe(male) or _FALLBACK_FIRST_M
    last = cp1252_safe(last) or _FALLBACK_LAST
    jobs = cp1252_safe(j for j in jobs if len(j) <= 60) or ("employé·e",)
    streets = cp1252_safe(f"{kind} {name}" for kind in STREET_TYPES for name in STREET_NAMES)
    weights = np.array([w for _, w in EMAIL_DOMAINS], dtype=np.float64)
    combos: list[str] = [""]
    for _ in range(tag_combinations - 1):
        k = int(rng.integers(1, 4))
        picked = rng.choice(len(TAGS), size=k, replace=False)
        combos.append(",".join(TAGS[i] for i in sorted(picked)))
    for table in (NB_NOTES, FR_COMMENTS, EMPLOYERS, TAGS, ADDRESS_LINE2):
        if cp1252_safe(table) != table:
            raise ValueError("a synthetic vocabulary entry does not round-trip through cp1252")

    def series(words: Iterable[str]) -> pl.Series:
        return pl.Series(list(words), dtype=pl.String)

    return Vocabulary(
        first_female=series(female), first_male=series(male),
        first_names=series(female + male),
        first_names_ascii=series(ascii_fold(w) for w in female + male),
        last=series(last), last_ascii=series(ascii_fold(w) for w in last),
        streets=series(streets), address2=series(ADDRESS_LINE2), notes=series(NB_NOTES),
        comments=series(FR_COMMENTS), employers=series(EMPLOYERS), occupations=series(jobs),
        domains=series(d for d, _ in EMAIL_DOMAINS), domain_cum=np.cumsum(weights / weights.sum()),
        tag_lists=series(combos),
    )
