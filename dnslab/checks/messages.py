"""Trainee-facing messages of the checks, one template per key and language.

Prose is translated, keys and parameters are written once; a language missing a key
falls back to English.
"""
from __future__ import annotations

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "resolves.pass": "{name} {type} resolves through {via} to {got}",
        "resolves.wrong_answer": "{name} {type} resolves through {via} to {got}, expected {expected}",
        "resolves.rcode": "{name} {type} through {via} failed with {rcode}",
        "resolves.no_answer": "{via} answered {name} {type} with no data",
        "resolves.timeout": "{via} did not answer {name} {type}: {error}",
        "authoritative.pass": "{server} answers authoritatively (AA) for {zone}",
        "authoritative.not_aa": "{server} answered for {zone} without the AA flag ({rcode}): it is not authoritative",
        "authoritative.timeout": "{server} did not answer for {zone}: {error}",
        "delegation.pass": "the delegation of {zone} from {parent} matches the zone: NS {ns}",
        "delegation.ns_mismatch": "{parent} delegates {zone} to {parent_ns} but the zone's own NS are {child_ns}",
        "delegation.glue_mismatch": "glue for {host} in {parent} is {parent_glue} but the name server is at {child_addr}",
        "delegation.lame": "{host} is listed as a name server of {zone} but does not answer authoritatively for it",
        "delegation.no_parent": "{zone} has no parent zone in this lab",
        "delegation.timeout": "{server} did not answer: {error}",
        "serials.pass": "all {count} servers of {zone} serve serial {serial}",
        "serials.differ": "servers of {zone} disagree on the SOA serial: {serials}",
        "serials.timeout": "{server} did not answer the SOA of {zone}: {error}",
        "recursion.pass": "recursion on {server} is {actual}, as expected",
        "recursion.wrong": "recursion on {server} is {actual} but should be {expected}",
        "recursion.timeout": "{server} did not answer: {error}",
    },
}


def render(key: str, params: dict, lang: str = "en") -> str:
    template = MESSAGES.get(lang, {}).get(key) or MESSAGES["en"].get(key, key)
    try:
        return template.format(**params)
    except (KeyError, IndexError):
        return f"{template} {params}"
