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
        "validates.pass": "{name} {type} through {via} is {actual}, as expected{ede}",
        "validates.wrong": "{name} {type} through {via} is {actual}, expected {expected}",
        "validates.bogus": "{name} {type} through {via} fails validation (SERVFAIL{ede}), expected {expected}",
        "validates.timeout": "{via} did not answer {name} {type}: {error}",
        "chain.pass": "chain of trust to {target}: {chain}; signatures valid {days} more days",
        "chain.no_anchor": "the lab root is not signed: no trust anchor to start the chain to {target} from",
        "chain.no_ds": "{parent} publishes no DS for {zone}: the chain of trust to {target} stops there (insecure)",
        "chain.no_dnskey": "{server} serves no DNSKEY set for {zone}: it is not signed",
        "chain.ds_mismatch": "the DS of {zone} (key tag {ds}) matches none of its keys ({keys})",
        "chain.bad_dnskey_sig": "the DNSKEY set of {zone} ({keys}) is not validly signed by a key its DS vouches for: {error}",
        "chain.bad_soa_sig": "the SOA of {zone} is not validly signed by its keys ({keys}): {error}",
        "chain.expiring": "signatures of {zone} expire in {days} days, fewer than {min_days}",
        "chain.timeout": "{server} did not answer for {zone}: {error}",
    },
    "es": {
        "resolves.pass": "{name} {type} resuelve a través de {via} a {got}",
        "resolves.wrong_answer": "{name} {type} resuelve a través de {via} a {got}; se esperaba {expected}",
        "resolves.rcode": "{name} {type} a través de {via} falló con {rcode}",
        "resolves.no_answer": "{via} respondió {name} {type} sin datos",
        "resolves.timeout": "{via} no respondió {name} {type}: {error}",
        "authoritative.pass": "{server} responde como servidor autoritativo (AA) para {zone}",
        "authoritative.not_aa": "{server} respondió para {zone} sin el flag AA ({rcode}): no es autoritativo",
        "authoritative.timeout": "{server} no respondió para {zone}: {error}",
        "delegation.pass": "la delegación de {zone} desde {parent} coincide con la zona: NS {ns}",
        "delegation.ns_mismatch": "{parent} delega {zone} a {parent_ns} pero los NS de la propia zona son {child_ns}",
        "delegation.glue_mismatch": "el glue de {host} en {parent} es {parent_glue} pero el servidor de nombres está en {child_addr}",
        "delegation.lame": "{host} figura como servidor de nombres de {zone} pero no responde como autoritativo",
        "delegation.no_parent": "{zone} no tiene zona padre en este laboratorio",
        "delegation.timeout": "{server} no respondió: {error}",
        "serials.pass": "los {count} servidores de {zone} sirven el serial {serial}",
        "serials.differ": "los servidores de {zone} no coinciden en el serial del SOA: {serials}",
        "serials.timeout": "{server} no respondió el SOA de {zone}: {error}",
        "recursion.pass": "la recursión en {server} está {actual}, como se esperaba",
        "recursion.wrong": "la recursión en {server} está {actual} pero debería estar {expected}",
        "recursion.timeout": "{server} no respondió: {error}",
        "validates.pass": "{name} {type} a través de {via} es {actual}, como se esperaba{ede}",
        "validates.wrong": "{name} {type} a través de {via} es {actual}; se esperaba {expected}",
        "validates.bogus": "{name} {type} a través de {via} no pasa la validación (SERVFAIL{ede}); se esperaba {expected}",
        "validates.timeout": "{via} no respondió {name} {type}: {error}",
        "chain.pass": "cadena de confianza hasta {target}: {chain}; firmas válidas {days} días más",
        "chain.no_anchor": "la raíz del laboratorio no está firmada: no hay ancla de confianza desde donde empezar la cadena hasta {target}",
        "chain.no_ds": "{parent} no publica DS para {zone}: la cadena de confianza hasta {target} se detiene ahí (insegura)",
        "chain.no_dnskey": "{server} no sirve conjunto DNSKEY para {zone}: no está firmada",
        "chain.ds_mismatch": "el DS de {zone} (identificador {ds}) no coincide con ninguna de sus claves ({keys})",
        "chain.bad_dnskey_sig": "el conjunto DNSKEY de {zone} ({keys}) no está firmado válidamente por una clave que su DS avala: {error}",
        "chain.bad_soa_sig": "el SOA de {zone} no está firmado válidamente por sus claves ({keys}): {error}",
        "chain.expiring": "las firmas de {zone} vencen en {days} días, menos de {min_days}",
        "chain.timeout": "{server} no respondió para {zone}: {error}",
    },
    "pt": {
        "resolves.pass": "{name} {type} resolve pelo {via} para {got}",
        "resolves.wrong_answer": "{name} {type} resolve pelo {via} para {got}; esperado {expected}",
        "resolves.rcode": "{name} {type} pelo {via} falhou com {rcode}",
        "resolves.no_answer": "{via} respondeu {name} {type} sem dados",
        "resolves.timeout": "{via} não respondeu {name} {type}: {error}",
        "authoritative.pass": "{server} responde como servidor autoritativo (AA) para {zone}",
        "authoritative.not_aa": "{server} respondeu para {zone} sem o flag AA ({rcode}): não é autoritativo",
        "authoritative.timeout": "{server} não respondeu para {zone}: {error}",
        "delegation.pass": "a delegação de {zone} a partir de {parent} confere com a zona: NS {ns}",
        "delegation.ns_mismatch": "{parent} delega {zone} para {parent_ns} mas os NS da própria zona são {child_ns}",
        "delegation.glue_mismatch": "a cola de {host} em {parent} é {parent_glue} mas o servidor de nomes está em {child_addr}",
        "delegation.lame": "{host} consta como servidor de nomes de {zone} mas não responde como autoritativo",
        "delegation.no_parent": "{zone} não tem zona pai neste laboratório",
        "delegation.timeout": "{server} não respondeu: {error}",
        "serials.pass": "os {count} servidores de {zone} servem o serial {serial}",
        "serials.differ": "os servidores de {zone} discordam do serial do SOA: {serials}",
        "serials.timeout": "{server} não respondeu o SOA de {zone}: {error}",
        "recursion.pass": "a recursão em {server} está {actual}, como esperado",
        "recursion.wrong": "a recursão em {server} está {actual} mas deveria estar {expected}",
        "recursion.timeout": "{server} não respondeu: {error}",
        "validates.pass": "{name} {type} pelo {via} é {actual}, como esperado{ede}",
        "validates.wrong": "{name} {type} pelo {via} é {actual}; esperado {expected}",
        "validates.bogus": "{name} {type} pelo {via} falha na validação (SERVFAIL{ede}); esperado {expected}",
        "validates.timeout": "{via} não respondeu {name} {type}: {error}",
        "chain.pass": "cadeia de confiança até {target}: {chain}; assinaturas válidas por mais {days} dias",
        "chain.no_anchor": "a raiz do laboratório não está assinada: não há âncora de confiança de onde começar a cadeia até {target}",
        "chain.no_ds": "{parent} não publica DS para {zone}: a cadeia de confiança até {target} para aí (insegura)",
        "chain.no_dnskey": "{server} não serve conjunto DNSKEY para {zone}: ela não está assinada",
        "chain.ds_mismatch": "o DS de {zone} (identificador {ds}) não confere com nenhuma das suas chaves ({keys})",
        "chain.bad_dnskey_sig": "o conjunto DNSKEY de {zone} ({keys}) não está assinado validamente por uma chave que o seu DS garante: {error}",
        "chain.bad_soa_sig": "o SOA de {zone} não está assinado validamente pelas suas chaves ({keys}): {error}",
        "chain.expiring": "as assinaturas de {zone} vencem em {days} dias, menos de {min_days}",
        "chain.timeout": "{server} não respondeu para {zone}: {error}",
    },
}


# Words that checks pass as parameter values, in the languages whose prose needs them translated.
WORDS: dict[str, dict[str, str]] = {
    "es": {"open": "abierta", "closed": "cerrada", "secure": "seguro", "insecure": "inseguro",
           "bogus": "inválido (bogus)"},
    "pt": {"open": "aberta", "closed": "fechada", "secure": "seguro", "insecure": "inseguro",
           "bogus": "inválido (bogus)"},
}


def render(key: str, params: dict, lang: str = "en") -> str:
    template = MESSAGES.get(lang, {}).get(key) or MESSAGES["en"].get(key, key)
    words = WORDS.get(lang, {})
    try:
        return template.format(**{k: words.get(v, v) if isinstance(v, str) else v for k, v in params.items()})
    except (KeyError, IndexError):
        return f"{template} {params}"
