from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ratings.reputation import (
    ReputationConfig,
    ReviewInput,
    customers_always_one_star,
    five_star_burst_from_new_accounts,
    flag_for_retraining,
    reputation,
    reputation_by_kind,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CONFIG = ReputationConfig(
    prior_mean=4.2,
    prior_weight=5.0,
    half_life_days=180.0,
    automatic_weight=0.3,
    repeat_customer_weight=0.25,
    repeat_period_days=30.0,
)


def review(stars, days_ago=0.0, *, customer="c1", automatic=False, excluded=False, kind=None):
    return ReviewInput(
        stars=stars,
        at=NOW - timedelta(days=days_ago),
        automatic=automatic,
        customer_id=customer,
        excluded=excluded,
        kind=kind,
    )


def test_one_five_star_review_ranks_below_fifty_averaging_four_point_eight():
    single = reputation([review(5)], NOW, CONFIG)
    fifty = [review(5, i, customer=f"a{i}") for i in range(40)]
    fifty += [review(4, i, customer=f"b{i}") for i in range(10)]
    many = reputation(fifty, NOW, CONFIG)
    assert single.score < many.score
    assert many.count == 50


def test_no_reviews_gives_the_prior_mean():
    rep = reputation([], NOW, CONFIG)
    assert rep.score == CONFIG.prior_mean
    assert (rep.effective_count, rep.count) == (0.0, 0)


def test_excluding_a_review_changes_the_reputation():
    kept = review(5, 1, customer="a")
    with_all = reputation([kept, review(1, 2, customer="b")], NOW, CONFIG)
    without = reputation([kept, review(1, 2, customer="b", excluded=True)], NOW, CONFIG)
    assert without.score > with_all.score
    assert without.count == 1


def test_recent_reviews_weigh_more_than_old_ones():
    recent_bad = reputation([review(1, 0, customer="a"), review(5, 720, customer="b")], NOW, CONFIG)
    old_bad = reputation([review(1, 720, customer="a"), review(5, 0, customer="b")], NOW, CONFIG)
    assert recent_bad.score < old_bad.score


def test_review_one_half_life_old_counts_half():
    rep = reputation([review(5, CONFIG.half_life_days)], NOW, CONFIG)
    assert rep.effective_count == pytest.approx(0.5)


def test_automatic_review_counts_with_the_configured_weight():
    rep = reputation([review(5, automatic=True)], NOW, CONFIG)
    assert rep.effective_count == pytest.approx(CONFIG.automatic_weight)


def test_automatic_weight_zero_ignores_automatic_reviews():
    config = replace(CONFIG, automatic_weight=0.0)
    rep = reputation([review(1, automatic=True, customer="a"), review(5, customer="b")], NOW, config)
    assert rep.count == 1
    assert rep.score == reputation([review(5, customer="b")], NOW, config).score


def test_repeat_review_by_same_customer_within_period_counts_less():
    rep = reputation([review(5, 10), review(5, 0)], NOW, replace(CONFIG, half_life_days=1e12))
    assert rep.effective_count == pytest.approx(1 + CONFIG.repeat_customer_weight)


def test_same_customer_outside_repeat_period_counts_fully():
    rep = reputation([review(5, 100), review(5, 0)], NOW, replace(CONFIG, half_life_days=1e12))
    assert rep.effective_count == pytest.approx(2.0)


def test_excluded_review_does_not_make_the_next_one_a_repeat():
    rep = reputation(
        [review(1, 10, excluded=True), review(5, 0)], NOW, replace(CONFIG, half_life_days=1e12)
    )
    assert rep.effective_count == pytest.approx(1.0)


def test_reputation_per_kind_uses_only_that_kinds_reviews():
    reviews = [review(5, customer="a", kind="boiler"), review(1, customer="b", kind="meter")]
    by_kind = reputation_by_kind(reviews, NOW, CONFIG)
    assert set(by_kind) == {"boiler", "meter"}
    assert by_kind["boiler"].score > CONFIG.prior_mean > by_kind["meter"].score
    assert by_kind["meter"] == reputation(reviews, NOW, CONFIG, kind="meter")


@pytest.mark.parametrize("stars", [0, 6])
def test_stars_out_of_range_are_rejected(stars):
    with pytest.raises(ValueError, match="stars"):
        reputation([review(stars)], NOW, CONFIG)


def test_review_in_the_future_is_rejected():
    with pytest.raises(ValueError, match="after now"):
        reputation([review(5, -1)], NOW, CONFIG)


@pytest.mark.parametrize(
    "field,value",
    [("prior_mean", 0.5), ("prior_weight", 0.0), ("half_life_days", 0.0), ("automatic_weight", 1.5)],
)
def test_invalid_config_is_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        replace(CONFIG, **{field: value})


def test_low_score_with_enough_recent_evidence_is_flagged_for_retraining():
    bad = reputation([review(1, i, customer=f"c{i}") for i in range(20)], NOW, CONFIG)
    assert flag_for_retraining(bad, threshold=3.0, min_count=10)


def test_low_score_on_little_evidence_is_not_flagged():
    bad = reputation([review(1, customer="a")], NOW, CONFIG)
    assert bad.score < 4.0
    assert not flag_for_retraining(bad, threshold=4.0, min_count=10)


def test_old_bad_reviews_do_not_flag_for_retraining():
    old = reputation([review(1, 1500, customer=f"c{i}") for i in range(20)], NOW, CONFIG)
    assert old.count == 20
    assert not flag_for_retraining(old, threshold=4.1, min_count=10)


def test_customer_who_only_gives_one_star_is_reported():
    by_customer = {
        "grump": [review(1, i, customer="grump") for i in range(4)],
        "fair": [review(1, 0, customer="fair"), review(4, 1, customer="fair"), review(1, 2, customer="fair")],
        "new": [review(1, 0, customer="new")],
    }
    found = customers_always_one_star(by_customer, min_reviews=3)
    assert [e.customer_id for e in found] == ["grump"]
    assert found[0].review_count == 4
    assert found[0].first_at == NOW - timedelta(days=3)


def test_automatic_one_star_reviews_do_not_count_against_the_customer():
    by_customer = {"quiet": [review(1, i, customer="quiet", automatic=True) for i in range(5)]}
    assert customers_always_one_star(by_customer, min_reviews=3) == []


def _aged(stars, hours_ago, customer, account_days):
    return review(stars, hours_ago / 24, customer=customer), timedelta(days=account_days)


def test_burst_of_five_stars_from_new_accounts_is_reported_once():
    burst = [_aged(5, h, f"new{h}", 1) for h in range(6)]
    background = [_aged(5, 24 * d, f"old{d}", 400) for d in range(1, 30)]
    found = five_star_burst_from_new_accounts(
        burst + background, window=timedelta(hours=12), min_count=5, max_account_age=timedelta(days=7)
    )
    assert len(found) == 1
    assert found[0].review_count == 6
    assert found[0].customer_ids == tuple(sorted(f"new{h}" for h in range(6)))
    assert found[0].start_at == NOW - timedelta(hours=5)


def test_separate_bursts_are_reported_separately():
    first = [_aged(5, h, f"a{h}", 1) for h in range(5)]
    second = [_aged(5, 240 + h, f"b{h}", 1) for h in range(5)]
    found = five_star_burst_from_new_accounts(
        first + second, window=timedelta(hours=12), min_count=5, max_account_age=timedelta(days=7)
    )
    assert [b.review_count for b in found] == [5, 5]


def test_spread_out_new_account_reviews_are_not_a_burst():
    spread = [_aged(5, 24 * d, f"n{d}", 1) for d in range(10)]
    found = five_star_burst_from_new_accounts(
        spread, window=timedelta(hours=12), min_count=3, max_account_age=timedelta(days=7)
    )
    assert found == []


# --- properties ---------------------------------------------------------------------

configs = st.builds(
    ReputationConfig,
    prior_mean=st.floats(1, 5),
    prior_weight=st.floats(0.01, 100),
    half_life_days=st.floats(0.5, 3650),
    automatic_weight=st.floats(0, 1),
    repeat_customer_weight=st.floats(0, 1),
    repeat_period_days=st.floats(0, 365),
)
reviews_st = st.builds(
    ReviewInput,
    stars=st.integers(1, 5),
    at=st.floats(0, 2000).map(lambda d: NOW - timedelta(days=d)),
    automatic=st.booleans(),
    customer_id=st.sampled_from(["a", "b", "c", "d"]),
    excluded=st.booleans(),
    kind=st.sampled_from([None, "boiler", "meter"]),
)


@given(st.lists(reviews_st, max_size=40), configs)
def test_reputation_stays_within_star_range(reviews, config):
    rep = reputation(reviews, NOW, config)
    assert 1 <= rep.score <= 5
    assert 0 <= rep.effective_count <= rep.count


@given(st.lists(reviews_st, max_size=40), configs, st.integers(1, 5), st.data())
def test_adding_a_review_moves_the_score_toward_its_stars_and_no_further(
    reviews, config, stars, data
):
    # Reviews arrive in time order, so the new one is strictly later than the others.
    latest_age = min(((NOW - r.at).total_seconds() / 86400 for r in reviews), default=2000.0)
    age = data.draw(st.floats(0, latest_age, exclude_max=True)) if latest_age > 0 else None
    assume(age is not None)
    new = ReviewInput(
        stars=stars,
        at=NOW - timedelta(days=age),
        automatic=data.draw(st.booleans()),
        customer_id=data.draw(st.sampled_from(["a", "b", "z"])),
        excluded=False,
        kind=None,
    )
    assume(all(r.at < new.at for r in reviews))
    old = reputation(reviews, NOW, config).score
    after = reputation([*reviews, new], NOW, config).score
    assert min(old, stars) <= after <= max(old, stars)


@given(st.lists(reviews_st, max_size=40), configs, st.randoms(use_true_random=False))
def test_review_order_does_not_change_the_result(reviews, config, rnd):
    # Collapse times onto a few instants so many reviews tie.
    tied = [replace(r, at=NOW - timedelta(days=(NOW - r.at).days % 3)) for r in reviews]
    shuffled = list(tied)
    rnd.shuffle(shuffled)
    assert reputation(shuffled, NOW, config) == reputation(tied, NOW, config)
