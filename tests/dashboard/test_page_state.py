"""Page state from GET parameters: the one parser of numbers and switches."""

from __future__ import annotations

import pytest
from django.http import QueryDict

from apps.dashboard.page_state import flag_param, int_param


@pytest.mark.parametrize(
    ("query", "low", "high", "number"),
    [
        ("page=3", 1, 10**9, 3),
        ("page=", 1, 10**9, None),
        ("", 1, 10**9, None),
        ("page=x", 1, 10**9, None),
        ("page=0", 1, 10**9, None),  # below the range
        ("page=-2", 1, 10**9, None),
        ("page=1000000001", 1, 10**9, None),  # above the range
        ("page=99999999999999999999999", 1, 10**9, None),  # past SQLite's integers
        ("page=%20 7", 1, 10**9, 7),  # int() allows surrounding spaces
        ("page=599", 100, 599, 599),
    ],
)
def test_it_reads_a_number_within_its_range_or_none(query, low, high, number):
    assert int_param(QueryDict(query), "page", low=low, high=high) == number


@pytest.mark.parametrize(
    ("query", "on"),
    [("advanced=1", True), ("advanced=0", False), ("advanced=yes", False), ("", False)],
)
def test_it_reads_a_switch_as_on_only_when_it_is_1(query, on):
    assert flag_param(QueryDict(query), "advanced") is on
