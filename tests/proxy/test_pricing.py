"""Prices as data: family matching, effective dates, tiers, overrides."""

from __future__ import annotations

import json
from datetime import date

import pytest
from django.core.exceptions import ImproperlyConfigured

from apps.proxy import pricing
from apps.proxy.pricing import Usage, cache_savings, price_family, usage_cost

MILLION = Usage(input=1_000_000)


@pytest.mark.parametrize(
    ("model", "family", "input_price"),
    [
        ("claude-opus-4-8", "claude-opus-4-8", 5),
        ("claude-opus-4-8[1m]", "claude-opus-4-8", 5),
        ("claude-opus-4-6", "claude-opus-4-6", 5),
        ("claude-opus-4-7", "claude-opus-4-5+", 5),
        ("claude-opus-4-5-20251101", "claude-opus-4-5+", 5),
        (
            "claude-opus-4-9",
            "claude-opus-4-5+",
            5,
        ),  # a new minor version, no code change
        ("claude-opus-4-1-20250805", "claude-opus-4", 15),
        ("claude-opus-4-20250514", "claude-opus-4", 15),
        ("claude-opus-5", "claude-opus-5", 5),
        ("claude-opus-5-5", "claude-opus-5-5", 4),
        ("claude-3-opus-20240229", "claude-3-opus", 15),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4", 3),
        ("claude-sonnet-4-6", "claude-sonnet-4-6+", 3),
        ("claude-sonnet-5", "claude-sonnet-5", 2),
        ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet", 3),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5+", 1),
        ("claude-haiku-5-5", "claude-haiku-5-5", 0.1),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku", 0.8),
        ("claude-3-haiku-20240307", "claude-3-haiku", 0.25),
    ],
)
def test_it_resolves_model_ids_to_their_family(model, family, input_price):
    assert price_family(model).name == family
    # 100K tokens: under every long-context threshold.
    usage = Usage(input=100_000)
    assert usage_cost(model=model, usage=usage, at=date(2026, 11, 1)) == pytest.approx(
        input_price / 10
    )


@pytest.mark.parametrize("model", ["gpt-4o", "claude-unknown-9", "", "<synthetic>"])
def test_it_gives_unknown_models_no_cost(model):
    assert usage_cost(model=model, usage=MILLION, at=date(2026, 11, 1)) is None


def test_it_prices_every_kind_of_token():
    usage = Usage(
        input=1000,
        output=2000,
        cache_read=3000,
        cache_write_5m=4000,
        cache_write_1h=5000,
    )

    cost = usage_cost(model="claude-sonnet-4-6", usage=usage, at=date(2026, 11, 1))

    assert cost == pytest.approx(
        (1000 * 3 + 2000 * 15 + 3000 * 0.3 + 4000 * 3.75 + 5000 * 6) / 1e6
    )


def test_it_applies_the_long_context_tier_to_the_whole_request():
    small = Usage(input=200_000, output=1000)
    large = Usage(input=150_000, cache_read=50_001, output=1000)

    assert usage_cost(model="claude-sonnet-4-5", usage=small, at=date(2026, 1, 1)) == (
        pytest.approx((200_000 * 3 + 1000 * 15) / 1e6)
    )
    assert usage_cost(model="claude-sonnet-4-5", usage=large, at=date(2026, 1, 1)) == (
        pytest.approx((150_000 * 6 + 50_001 * 0.6 + 1000 * 22.5) / 1e6)
    )


def test_it_uses_the_rate_in_effect_on_the_day_of_the_call():
    reads = Usage(cache_read=1_000_000)

    before = usage_cost(model="claude-sonnet-5-5", usage=reads, at=date(2026, 10, 6))
    after = usage_cost(model="claude-sonnet-5-5", usage=reads, at=date(2026, 10, 7))

    assert (before, after) == (pytest.approx(0.2), pytest.approx(0.1))


def test_it_computes_cache_savings_against_plain_input():
    savings = cache_savings(
        model="claude-opus-4-8", usage=Usage(cache_read=1_000_000), at=date(2026, 11, 1)
    )

    assert savings == pytest.approx(5 - 0.5)


def test_it_lets_a_user_file_override_and_extend_the_table(tmp_path, settings):
    override = tmp_path / "prices.json"
    override.write_text(
        json.dumps(
            {
                "families": [
                    {
                        "family": "mine",
                        "match": "^claude-opus-4-8",
                        "rates": [
                            {
                                "from": "2020-01-01",
                                "input": 1,
                                "cache_write_5m": 1,
                                "cache_write_1h": 1,
                                "cache_read": 1,
                                "output": 1,
                            }
                        ],
                    },
                    {
                        "family": "new",
                        "match": "^claude-brand-new",
                        "rates": [
                            {
                                "from": "2020-01-01",
                                "input": 7,
                                "cache_write_5m": 1,
                                "cache_write_1h": 1,
                                "cache_read": 1,
                                "output": 1,
                            }
                        ],
                    },
                ]
            }
        )
    )
    settings.CLAUDEMON_PRICES_FILE = str(override)
    pricing.price_table.cache_clear()
    try:
        assert (
            usage_cost(model="claude-opus-4-8", usage=MILLION, at=date(2026, 1, 1)) == 1
        )
        assert (
            usage_cost(model="claude-brand-new", usage=MILLION, at=date(2026, 1, 1))
            == 7
        )
        assert (
            usage_cost(model="claude-haiku-4-5", usage=MILLION, at=date(2026, 1, 1))
            == 1
        )
    finally:
        settings.CLAUDEMON_PRICES_FILE = ""
        pricing.price_table.cache_clear()


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '{"families": [{"family": "x"}]}',
        '{"families": [{"family": "x", "match": "(", "rates": []}]}',
        '{"families": [{"family": "x", "match": "a", "rates": [{"from": "soon"}]}]}',
    ],
)
def test_it_names_the_file_when_the_price_table_is_invalid(tmp_path, settings, content):
    broken = tmp_path / "prices.json"
    broken.write_text(content)
    settings.CLAUDEMON_PRICES_FILE = str(broken)
    pricing.price_table.cache_clear()
    try:
        with pytest.raises(ImproperlyConfigured, match=str(broken)):
            pricing.price_table()
    finally:
        settings.CLAUDEMON_PRICES_FILE = ""
        pricing.price_table.cache_clear()


# Fast mode: its own rates per family, over the whole context window.
_FAST = [
    # model, usage, expected USD
    ("claude-opus-4-8", Usage(input=1_000_000), 10.0),
    ("claude-opus-4-8", Usage(output=1_000_000), 50.0),
    ("claude-opus-5", Usage(input=1_000_000, cache_read=1_000_000), 11.0),
    ("claude-opus-4-6", Usage(input=100_000, output=100_000), 3.0 + 15.0),
    # over 200K prompt tokens in the request: the whole request at the upper tier
    ("claude-opus-4-6", Usage(input=150_000, cache_write_5m=60_000), 9.0 + 4.5),
    ("claude-opus-4-6", Usage(input=250_000, output=10_000), 15.0 + 2.25),
]


@pytest.mark.parametrize(("model", "usage", "expected"), _FAST)
def test_it_prices_fast_mode_with_the_familys_own_rates(model, usage, expected):
    at = date(2026, 11, 1)
    assert usage_cost(model=model, usage=usage, at=at, speed="fast") == pytest.approx(
        expected
    )
    assert usage_cost(model=model, usage=usage, at=at) < expected


@pytest.mark.parametrize(
    "model", ["claude-opus-5-5", "claude-sonnet-4-6", "claude-haiku-4-5", "gpt-4o"]
)
def test_it_gives_fast_calls_without_a_fast_price_no_cost(model):
    at = date(2026, 11, 1)
    assert usage_cost(model=model, usage=MILLION, at=at, speed="fast") is None
    assert cache_savings(model=model, usage=MILLION, at=at, speed="fast") is None


def test_it_scales_fast_cache_savings_with_the_fast_rates():
    reads = Usage(cache_read=1_000_000)
    at = date(2026, 11, 1)
    assert cache_savings(
        model="claude-opus-4-8", usage=reads, at=at, speed="fast"
    ) == pytest.approx(10 - 1)
