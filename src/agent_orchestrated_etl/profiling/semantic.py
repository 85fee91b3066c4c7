"""What a string column holds: email, phone, URL, UUID, IP, ISO date, number, card, name, free text.

Each kind is a pattern (RE2, matched in DuckDB) over up to 10,000 non-null
values of the profile's reservoir sample (table ``sample``); a column is of the first kind, in the order below, that at
least 90% of its values match. Kinds that identify people are flagged as PII.
"""

from __future__ import annotations

from typing import Any

from agent_orchestrated_etl.transform.sql import ident, literal

SAMPLE_VALUES = 10_000
SHARE = 0.9

# Order matters: the first kind most values match wins (a UUID is not free text).
PATTERNS: dict[str, str] = {
    "uuid": r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    "email": r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    "url": r"(https?|ftp)://[^\s/$.?#][^\s]*",
    "ip": r"((25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(25[0-5]|2[0-4]\d|1?\d?\d)|[0-9a-fA-F]{0,4}(:[0-9a-fA-F]{0,4}){2,7}",
    "iso_date": r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?",
    "credit_card": r"(\d[ -]?){12,18}\d",
    "number": r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?",
    "phone": r"\+?[\d\s().-]{7,20}",
    # Two or three capitalised words, allowing particles: Ann Smith, Carla de Vries, Jan van der Berg.
    "person_name": r"[A-Z][a-z'’-]+(( [a-z]{1,3}){0,2} [A-Z][a-z'’.-]+){1,2}",
}
PII = frozenset({"email", "phone", "ip", "credit_card", "person_name"})
FREE_TEXT_MIN_LENGTH = 30


def luhn(number: str) -> bool:
    digits = [int(d) for d in number if d.isdigit()]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(reversed(digits)))
    return len(digits) >= 13 and total % 10 == 0


def infer_semantics(con: Any, columns: list[Any]) -> None:
    """Set ``semantic``, ``semantic_share`` and ``pii`` on the string columns' profiles."""
    for column in columns:
        if column.length is None:
            continue
        name = ident(column.name)
        values = f"(SELECT {name} AS v FROM sample WHERE {name} IS NOT NULL LIMIT {SAMPLE_VALUES})"
        shares = ", ".join(f"avg(regexp_full_match(v, {literal(p)})::INTEGER)" for p in PATTERNS.values())
        row = con.execute(
            f"SELECT count(*), {shares}, avg(length(v)), avg(contains(v, ' ')::INTEGER) FROM {values}"
        ).fetchone()
        if not row[0]:
            continue
        matched = dict(zip(PATTERNS, row[1 : 1 + len(PATTERNS)], strict=True))
        if matched["credit_card"] >= SHARE:
            cards = [
                v
                for (v,) in con.execute(
                    f"SELECT v FROM {values} WHERE regexp_full_match(v, {literal(PATTERNS['credit_card'])})"
                ).fetchall()
            ]
            matched["credit_card"] = matched["credit_card"] * sum(map(luhn, cards)) / len(cards)
        kind = next((k for k, share in matched.items() if share >= SHARE), None)
        share = matched[kind] if kind else None
        mean_length, spaced = row[-2], row[-1]
        if kind is None and mean_length >= FREE_TEXT_MIN_LENGTH and spaced >= SHARE:
            kind, share = "free_text", spaced
        column.semantic = kind
        column.semantic_share = round(share, 4) if share is not None else None
        column.pii = kind in PII
