"""The exercise source and its translations, offline: one source, every language built from
it with the same code, tests and points; a broken catalog is named precisely."""
from __future__ import annotations

import shutil

import pytest

from dnslab import exercise
from dnslab.checks import messages
from dnslab.errors import InputProblems

SOURCE = exercise.find("dns-basics")
SOURCES = [exercise.find(p.name) for p in sorted(exercise.exercises_root().iterdir()) if (p / "exercise.yaml").is_file()]


def code_of(nb):
    return [(c.source, c.metadata.get("nbgrader")) for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_three_languages_share_code_tests_and_points(source):
    assert source.languages == ["en", "es", "pt"]
    en = source.notebook("en")
    for lang in ("es", "pt"):
        other = source.notebook(lang)
        # code cells are identical except the translated note heading each test cell
        for (a, ma), (b, mb) in zip(code_of(en), code_of(other)):
            assert ma == mb
            strip = (lambda s: s.split("\n", 1)[1]) if ma and ma.get("grade") else (lambda s: s)
            assert strip(a).replace("lang='en'", "") == strip(b).replace(f"lang={lang!r}", "")
        assert [c.cell_type for c in en.cells] == [c.cell_type for c in other.cells]
        assert en.cells[0].source != other.cells[0].source  # the prose is translated


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_test_cells_judge_the_lab_and_hide_their_code(source):
    nb = source.notebook("en")
    tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert sum(c.metadata["nbgrader"]["points"] for c in tests) == 10
    for c in tests:
        assert c.metadata["nbgrader"]["locked"] and not c.metadata["nbgrader"]["solution"]
        assert "### BEGIN HIDDEN TESTS" in c.source and "### END HIDDEN TESTS" in c.source
    assert set(source.tests()) == {c.metadata["nbgrader"]["grade_id"] for c in tests}


def test_every_exercise_has_its_lab_and_scenario_in_every_language():
    from dnslab.lab import labs_root
    assert {s.name for s in SOURCES} >= {"dns-basics", "dnssec-signing"}
    for source in SOURCES:
        for lang in source.languages:
            assert (labs_root() / source.exercise.lab / f"scenario.{lang}.md").is_file(), (source.name, lang)


def test_a_missing_or_extra_translation_is_named(tmp_path):
    d = tmp_path / "dns-basics"
    shutil.copytree(SOURCE.directory, d)
    es = d / "i18n" / "es.yaml"
    es.write_text(es.read_text().replace("task3:", "task-three:"))
    with pytest.raises(InputProblems) as err:
        exercise.load(d)
    text = str(err.value)
    assert f"{es}" in text and "missing text 'task3'" in text and "'task-three' is not used" in text


def test_an_unknown_language_says_how_to_add_one():
    with pytest.raises(Exception) as err:
        SOURCE.notebook("fr")
    assert "i18n/fr.yaml" in str(err.value)


def test_check_messages_exist_in_every_language():
    for lang in ("es", "pt"):
        assert set(messages.MESSAGES[lang]) == set(messages.MESSAGES["en"])


def test_check_message_values_are_translated_too():
    params = {"server": "tld", "actual": "open", "expected": "closed"}
    assert messages.render("recursion.wrong", params, "es") == \
        "la recursión en tld está abierta pero debería estar cerrada"
    assert messages.render("recursion.wrong", params, "pt") == \
        "a recursão em tld está aberta mas deveria estar fechada"
    assert "is open but should be closed" in messages.render("recursion.wrong", params, "en")
