from datetime import datetime, timedelta, timezone

from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from ratings import jobs, service
from tests.factories import make_customer, make_staff, make_technician
from tests.ratings.factories import completed_order, finalized_review

NOW = datetime.now(timezone.utc)


async def test_one_five_star_review_ranks_below_fifty_averaging_four_point_eight(session: AsyncSession) -> None:
    newcomer, veteran = await make_technician(session), await make_technician(session)
    await finalized_review(session, await make_customer(session), newcomer, stars=5, at=NOW - timedelta(days=1))
    for i in range(50):
        stars = 4 if i % 5 == 0 else 5  # 40 x 5 + 10 x 4 = 4.8
        await finalized_review(session, await make_customer(session), veteran, stars=stars, at=NOW - timedelta(days=i))
    single = await service.technician_reputation(session, newcomer.technician.id, now=NOW)
    many = await service.technician_reputation(session, veteran.technician.id, now=NOW)
    assert single.score < many.score
    assert (single.count, many.count) == (1, 50)
    batch = await service.reputations(session, [newcomer.technician.id, veteran.technician.id], now=NOW)
    assert batch == {newcomer.technician.id: single.score, veteran.technician.id: many.score}


async def test_unreviewed_technician_gets_the_platform_mean_and_unfinalized_reviews_do_not_count(session: AsyncSession) -> None:
    c, t, fresh = await make_customer(session), await make_technician(session), await make_technician(session)
    order = await completed_order(session, c, t)
    await service.submit_review(session, order_id=order.id, customer_id=c.customer.id, stars=1)
    scores = await service.reputations(session, [t.technician.id, fresh.technician.id])
    assert scores[t.technician.id] == scores[fresh.technician.id]
    assert 1 <= scores[fresh.technician.id] <= 5


async def test_a_customers_repeat_reviews_of_the_same_technician_count_less(session: AsyncSession) -> None:
    loyal, t = await make_customer(session), await make_technician(session)
    spread_t = await make_technician(session)
    for day in range(3):
        await finalized_review(session, loyal, t, stars=1, at=NOW - timedelta(days=day))
        await finalized_review(session, await make_customer(session), spread_t, stars=1, at=NOW - timedelta(days=day))
    repeated = await service.technician_reputation(session, t.technician.id, now=NOW)
    distinct = await service.technician_reputation(session, spread_t.technician.id, now=NOW)
    assert repeated.score > distinct.score
    assert repeated.effective_count < distinct.effective_count


async def test_reputation_route_shows_overall_and_per_kind_with_counts(client: AsyncClient, session: AsyncSession) -> None:
    t = await make_technician(session)
    await finalized_review(session, await make_customer(session), t, stars=5, at=NOW - timedelta(days=2), kind="repair")
    await finalized_review(session, await make_customer(session), t, stars=3, at=NOW - timedelta(days=2), kind="inspection")
    viewer = await make_customer(session)
    response = await client.get(f"/v1/technicians/{t.technician.id}/reputation", headers=viewer.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["overall"]["count"] == 2
    assert set(body["by_kind"]) == {"repair", "inspection"}
    assert body["by_kind"]["repair"]["score"] > body["by_kind"]["inspection"]["score"]
    assert body["by_kind"]["repair"]["count"] == 1
    missing = await client.get(f"/v1/technicians/{viewer.customer.id}/reputation", headers=viewer.headers)
    assert missing.status_code == 404


async def test_upheld_appeal_excludes_the_review_and_changes_the_reputation(client: AsyncClient, session: AsyncSession) -> None:
    t, other_tech = await make_technician(session), await make_technician(session)
    admin_account, admin = await make_staff(session, "admin")
    _, auditor = await make_staff(session, "auditor")
    await finalized_review(session, await make_customer(session), t, stars=5, at=NOW - timedelta(days=3))
    unfair = await finalized_review(session, await make_customer(session), t, stars=1, at=NOW - timedelta(days=2))
    before = (await client.get(f"/v1/technicians/{t.technician.id}/reputation", headers=t.headers)).json()["overall"]

    assert (await client.post(f"/v1/reviews/{unfair.id}/appeals", headers=other_tech.headers,
                              json={"reason": "not mine"})).status_code == 404
    filed = await client.post(f"/v1/reviews/{unfair.id}/appeals", headers=t.headers,
                              json={"reason": "the customer was not home; I never entered"})
    assert filed.status_code == 201, filed.text
    assert (await client.post(f"/v1/reviews/{unfair.id}/appeals", headers=t.headers,
                              json={"reason": "again"})).status_code == 409
    pending = (await client.get("/v1/appeals?status=pending", headers=auditor)).json()["data"]
    assert [a["id"] for a in pending] == [filed.json()["id"]]
    assert (await client.post(f"/v1/appeals/{filed.json()['id']}/decision", headers=auditor,
                              json={"decision": "upheld", "reason": "gps shows no visit"})).status_code == 403

    decided = await client.post(f"/v1/appeals/{filed.json()['id']}/decision", headers=admin,
                                json={"decision": "upheld", "reason": "gps shows no visit"})
    assert decided.status_code == 200, decided.text
    body = decided.json()
    assert (body["status"], body["decided_by"], body["decision_reason"]) == ("upheld", str(admin_account.id), "gps shows no visit")
    assert body["decided_at"] is not None
    after = (await client.get(f"/v1/technicians/{t.technician.id}/reputation", headers=t.headers)).json()["overall"]
    assert after["score"] > before["score"]
    assert (before["count"], after["count"]) == (2, 1)
    review = await service.review_for(session, unfair.order_id, role="admin")
    assert review.excluded is True
    again = await client.post(f"/v1/appeals/{filed.json()['id']}/decision", headers=admin,
                              json={"decision": "rejected", "reason": "changed my mind"})
    assert again.status_code == 409


async def test_rejected_appeal_leaves_the_reputation_unchanged(session: AsyncSession) -> None:
    t = await make_technician(session)
    admin_account, _ = await make_staff(session, "admin")
    review = await finalized_review(session, await make_customer(session), t, stars=1, at=NOW - timedelta(days=1))
    before = await service.technician_reputation(session, t.technician.id, now=NOW)
    appeal = await service.file_appeal(session, review_id=review.id, technician_id=t.technician.id, reason="unfair")
    decided = await service.decide_appeal(session, appeal_id=appeal.id, decided_by=admin_account.id,
                                          decision="rejected", reason="the photos show a leak left open")
    assert decided.status == "rejected"
    assert await service.technician_reputation(session, t.technician.id, now=NOW) == before


async def test_technician_rates_the_customer_and_the_customer_never_sees_it(client: AsyncClient, session: AsyncSession) -> None:
    c, t, other_tech = await make_customer(session), await make_technician(session), await make_technician(session)
    _, admin = await make_staff(session, "admin")
    _, auditor = await make_staff(session, "auditor")
    order = await completed_order(session, c, t)
    assert (await client.post(f"/v1/orders/{order.id}/customer-rating", headers=other_tech.headers,
                              json={"stars": 1})).status_code == 404
    assert (await client.post(f"/v1/orders/{order.id}/customer-rating", headers=t.headers,
                              json={"stars": 2, "tags": ["yelled"]})).status_code == 422
    rated = await client.post(f"/v1/orders/{order.id}/customer-rating", headers=t.headers,
                              json={"stars": 2, "tags": ["aggressive_pet", "unsafe_premises"]})
    assert rated.status_code == 201, rated.text
    assert (await client.post(f"/v1/orders/{order.id}/customer-rating", headers=t.headers,
                              json={"stars": 5})).status_code == 409

    for headers in (c.headers, t.headers, auditor):
        assert (await client.get(f"/v1/customers/{c.customer.id}/ratings", headers=headers)).status_code == 403
    seen_by_ops = (await client.get(f"/v1/customers/{c.customer.id}/ratings", headers=admin)).json()
    assert (seen_by_ops["count"], seen_by_ops["average_stars"]) == (1, 2.0)
    assert seen_by_ops["data"][0]["tags"] == ["aggressive_pet", "unsafe_premises"]
    # Nothing the customer can read carries it.
    await client.post(f"/v1/orders/{order.id}/review", headers=c.headers, json={"stars": 5})
    for path in (f"/v1/orders/{order.id}", f"/v1/orders/{order.id}/review", f"/v1/orders/{order.id}/events"):
        assert "aggressive_pet" not in (await client.get(path, headers=c.headers)).text
    assert await service.customer_rating_summary(session, c.customer.id) == (2.0, 1)


async def test_customer_of_an_unfinished_order_cannot_be_rated(client: AsyncClient, session: AsyncSession) -> None:
    c, t = await make_customer(session), await make_technician(session)
    order = await completed_order(session, c, t, until="arrive")
    response = await client.post(f"/v1/orders/{order.id}/customer-rating", headers=t.headers, json={"stars": 3})
    assert response.status_code == 409


async def test_customer_who_always_gives_one_star_is_flagged_with_evidence(client: AsyncClient, session: AsyncSession) -> None:
    grumpy = await make_customer(session)
    t0 = NOW - timedelta(days=10)
    reviews = []
    for day in range(3):
        order = await completed_order(session, grumpy, await make_technician(session), completed_at=t0 + timedelta(days=day))
        reviews.append(await service.submit_review(session, order_id=order.id, customer_id=grumpy.customer.id,
                                                   stars=1, now=t0 + timedelta(days=day, hours=1)))
    await jobs.finalize_due(session, NOW)
    _, auditor = await make_staff(session, "auditor")
    response = await client.get("/v1/ratings/flags?kind=customer_always_one_star", headers=auditor)
    assert response.status_code == 200
    [flag] = [f for f in response.json()["data"] if f["subject_id"] == str(grumpy.customer.id)]
    assert flag["subject_type"] == "customer"
    assert flag["evidence"]["review_count"] == 3
    assert flag["evidence"]["review_ids"] == sorted(str(r.id) for r in reviews)
    assert (await client.get("/v1/ratings/flags", headers=grumpy.headers)).status_code == 403


async def test_burst_of_five_star_reviews_from_new_accounts_is_flagged(session: AsyncSession) -> None:
    t = await make_technician(session)
    burst_at = NOW - timedelta(hours=30)
    for i in range(5):  # accounts created moments before reviewing
        shill = await make_customer(session)
        shill.customer.created_at = burst_at - timedelta(hours=1)
        order = await completed_order(session, shill, t, completed_at=burst_at + timedelta(minutes=10 * i))
        await service.submit_review(session, order_id=order.id, customer_id=shill.customer.id, stars=5,
                                    now=burst_at + timedelta(minutes=10 * i + 5))
    await session.flush()
    await jobs.finalize_due(session, NOW)
    flags, _ = await service.list_flags(session, kind="five_star_burst")
    [flag] = [f for f in flags if f.subject_id == t.technician.id]
    [burst] = flag.evidence["bursts"]
    assert burst["review_count"] == 5 and len(burst["customer_ids"]) == 5


async def test_five_star_reviews_from_established_accounts_are_not_flagged(session: AsyncSession) -> None:
    t = await make_technician(session)
    burst_at = NOW - timedelta(hours=30)
    for i in range(5):
        regular = await make_customer(session)
        regular.customer.created_at = burst_at - timedelta(days=400)
        order = await completed_order(session, regular, t, completed_at=burst_at + timedelta(minutes=10 * i))
        await service.submit_review(session, order_id=order.id, customer_id=regular.customer.id, stars=5,
                                    now=burst_at + timedelta(minutes=10 * i + 5))
    await session.flush()
    await jobs.finalize_due(session, NOW)
    flags, _ = await service.list_flags(session, kind="five_star_burst")
    assert [f for f in flags if f.subject_id == t.technician.id] == []


async def test_low_reputation_on_enough_reviews_flags_retraining_and_clears_after_appeals(session: AsyncSession) -> None:
    t = await make_technician(session)
    admin_account, _ = await make_staff(session, "admin")
    t0 = NOW - timedelta(days=5)
    reviews = []
    for i in range(10):
        c = await make_customer(session)
        order = await completed_order(session, c, t, completed_at=t0 + timedelta(hours=i))
        reviews.append(await service.submit_review(session, order_id=order.id, customer_id=c.customer.id, stars=1,
                                                   now=t0 + timedelta(hours=i, minutes=30)))
    assert await jobs.finalize_due(session, NOW) == 10
    flags, _ = await service.list_flags(session, kind="retraining")
    [flag] = [f for f in flags if f.subject_id == t.technician.id]
    assert flag.evidence["score"] < flag.evidence["threshold"]
    assert flag.evidence["effective_count"] >= flag.evidence["min_count"]
    await session.refresh(t.technician)
    assert t.technician.status == "offline"  # flagged for review, never suspended automatically

    for review in reviews[:4]:  # ops uphold appeals until too little evidence remains
        appeal = await service.file_appeal(session, review_id=review.id, technician_id=t.technician.id, reason="unfair")
        await service.decide_appeal(session, appeal_id=appeal.id, decided_by=admin_account.id,
                                    decision="upheld", reason="coordinated complaint")
    open_flags, _ = await service.list_flags(session, kind="retraining")
    assert [f for f in open_flags if f.subject_id == t.technician.id] == []
    history, _ = await service.list_flags(session, kind="retraining", include_cleared=True)
    assert [f.cleared_at is not None for f in history if f.subject_id == t.technician.id] == [True]


async def test_few_low_reviews_do_not_flag_retraining(session: AsyncSession) -> None:
    t = await make_technician(session)
    for i in range(3):
        await finalized_review(session, await make_customer(session), t, stars=1, at=NOW - timedelta(days=i + 1))
    await service.refresh_flags(session, technician_ids=[t.technician.id], now=NOW)
    flags, _ = await service.list_flags(session, kind="retraining")
    assert [f for f in flags if f.subject_id == t.technician.id] == []
