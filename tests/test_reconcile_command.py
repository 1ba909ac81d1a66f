"""``reconcile``'s account check: a gateway whose account is not the journal's or the
settings' is a problem, as ``run`` would refuse it."""

from __future__ import annotations

import pytest

from supervisor.commands.reconcile import account_problems

pytestmark = pytest.mark.timeout(30)


def test_the_journals_and_the_settings_account_at_the_gateway_is_no_problem():
    assert account_problems(["DU1", "DU2"], "DU1", "DU1") == []
    assert account_problems(["DU1"], "", "") == []  # a journal of no run yet, dry run


@pytest.mark.parametrize(
    "accounts, journal, wanted, words",
    [
        (["DU9"], "DU1", "", "not the journal's account DU1"),
        (["DU9"], "", "DU1", "not ibkr.account DU1"),
        (["DU1", "DU2"], "DU1", "DU2", "the journal belongs to account DU1"),
        ([], "DU1", "", "none reported"),
    ],
)
def test_an_account_run_would_refuse_is_a_problem(accounts, journal, wanted, words):
    problems = account_problems(accounts, journal, wanted)
    assert problems and any(words in p for p in problems), problems
