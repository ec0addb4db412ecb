"""Names as a lab file, a check or a trainee writes them: a zone's canonical form, and a hint for
a near-miss. Standard library only: the schema, the plan and the trainee's side share them without
loading each other's dependencies."""
from __future__ import annotations


def zone_name(name: str) -> str:
    """Canonical absolute zone name: lower case, one trailing dot (``.`` for the root)."""
    name = name.strip().lower().rstrip(".")
    return name + "." if name else "."


def suggest(word: str, known: set[str]) -> str:
    """`` (did you mean 'x'?)`` for a near-miss of ``word`` among ``known``, else ``""``."""
    import difflib
    close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.6) or sorted(
        k for k in known if min(len(k), len(word)) >= 3 and (k.startswith(word) or word.startswith(k)))
    return f" (did you mean {close[0]!r}?)" if close else ""
