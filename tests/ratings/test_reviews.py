from datetime import datetime, timedelta, timezone

import pytest
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.models import Order
from kit.models import OutboxMessage
from dispatch.service import get_order
from ratings import events, jobs, service
from tests.factories import make_customer, make_staff, make_technician
from tests.ratings.factories import completed_order

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


async def _outbox(session: AsyncSession, topic: str, order: Order) -> list[dict]:
    rows = (await session.exec(select(OutboxMessage).where(OutboxMessage.topic == topic))).all()
    return [m.payload for m in rows if m.payload["order_id"] == str(order.id)]


async def test_customer_reviews_a_completed_order(client: AsyncClient, session: AsyncSession) -> None:
    c, t = await make_customer(session), await make_technician(session)
    order = await completed_order(session, c, t)
    response = await client.post(f"/v1/orders/{order.id}/review", headers=c.headers,
                                 json={"stars": 5, "tags": ["on_time", "explained_hazard"], "comment": "很专业"})
    assert response.status_code == 201, response.text
    review = response.json()
    assert (review["stars"], review["automatic"], review["finalized_at"]) == (5, False, None)
    assert review["technician_id"] == str(t.technician.id)
    submitted = await _outbox(session, events.ReviewSubmitted.topic, order)
    assert submitted == [{"order_id": str(order.id), "review_id": review["id"],
                          "technician_id": str(t.technician.id), "stars": 5}]
    assert (await get_order(session, order.id)).status == "completed"  # frozen only after the edit window


async def test_review_of_an_order_not_yet_completed_is_rejected(client: AsyncClient, session: AsyncSession) -> None:
    c, t = await make_customer(session), await make_technician(session)
    order = await completed_order(session, c, t, until="start_service")
    response = await client.post(f"/v1/orders/{order.id}/review", headers=c.headers, json={"stars": 4})
    assert response.status_code == 409
    assert response.json()["type"] == "/problems/order-not-reviewable"


async def test_review_by_another_customer_is_not_found(client: AsyncClient, session: AsyncSession) -> None:
    c, stranger, t = await make_customer(session), await make_customer(session), await make_technician(session)
    order = await completed_order(session, c, t)
    response = await client.post(f"/v1/orders/{order.id}/review", headers=stranger.headers, json={"stars": 1})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_second_review_of_the_same_order_is_rejected(client: AsyncClient, session: AsyncSession) -> None:
    c, t = await make_customer(session), await make_technician(session)
    order = await completed_order(session, c, t)
    assert (await client.post(f"/v1/orders/{order.id}/review", headers=c.headers, json={"stars": 4})).status_code == 201
    again = await client.post(f"/v1/orders/{order.id}/review", headers=c.headers, json={"stars": 1})
    assert again.status_code == 409
    assert again.json()["type"] == "/problems/review-exists"


@pytest.mark.parametrize("body", [
    {"stars": 0}, {"stars": 6}, {"stars": 4.5}, {"stars": 5, "tags": ["bribed_me"]},
    {"stars": 5, "comment": "x" * 1001}, {"stars": 5, "extra": 1}, {},
])
async def test_bad_review_input_is_422(client: AsyncClient, session: AsyncSession, body: dict) -> None:
    c, t = await make_customer(session), await make_technician(session)
    order = await completed_order(session, c, t)
    response = await client.post(f"/v1/orders/{order.id}/review", headers=c.headers, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "/problems/validation-error"


async def test_technician_and_staff_cannot_submit_a_review(client: AsyncClient, session: AsyncSession) -> None:
    c, t = await make_customer(session), await make_technician(session)
    _, admin = await make_staff(session, "admin")
    order = await completed_order(session, c, t)
    for headers in (t.headers, admin):
        assert (await client.post(f"/v1/orders/{order.id}/review", headers=headers, json={"stars": 5})).status_code == 403


async def test_comment_is_stored_as_given_and_escaped_for_html(client: AsyncClient, session: AsyncSession) -> None:
    c, t = await make_customer(session), await make_technician(session)
    order = await completed_order(session, c, t)
    comment = '<script>alert("x")</script> & 谢谢'
    review = (await client.post(f"/v1/orders/{order.id}/review", headers=c.headers,
                                json={"stars": 5, "comment": comment})).json()
    assert review["comment"] == comment
    assert review["comment_html"] == "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; 谢谢"
    assert "<script>" not in review["comment_html"]


async def test_review_is_editable_within_the_window_then_frozen(client: AsyncClient, session: AsyncSession) -> None:
    c, t = await make_customer(session), await make_technician(session)
    order = await completed_order(session, c, t, completed_at=T0)
    review = await service.submit_review(session, order_id=order.id, customer_id=c.customer.id, stars=2,
                                         now=T0 + timedelta(hours=1))
    edited = await service.update_review(session, order_id=order.id, customer_id=c.customer.id,
                                         changes={"stars": 3, "tags": ["late"]}, now=T0 + timedelta(hours=24, minutes=59))
    assert (edited.stars, edited.tags) == (3, ["late"])
    with pytest.raises(service.ReviewFrozen):
        await service.update_review(session, order_id=order.id, customer_id=c.customer.id,
                                    changes={"stars": 5}, now=T0 + timedelta(hours=25))
    assert (await session.get(type(review), review.id, populate_existing=True)).stars == 3


async def test_patch_edits_the_review_and_refuses_another_customer(client: AsyncClient, session: AsyncSession) -> None:
    c, stranger, t = await make_customer(session), await make_customer(session), await make_technician(session)
    order = await completed_order(session, c, t)
    await client.post(f"/v1/orders/{order.id}/review", headers=c.headers, json={"stars": 2})
    patched = await client.patch(f"/v1/orders/{order.id}/review", headers=c.headers, json={"stars": 4, "tags": ["polite"]})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["stars"], patched.json()["tags"]) == (4, ["polite"])
    assert (await client.patch(f"/v1/orders/{order.id}/review", headers=c.headers, json={})).status_code == 422
    assert (await client.patch(f"/v1/orders/{order.id}/review", headers=c.headers, json={"stars": None})).status_code == 422
    assert (await client.patch(f"/v1/orders/{order.id}/review", headers=stranger.headers, json={"stars": 1})).status_code == 404


async def test_patch_after_the_edit_window_is_409(client: AsyncClient, session: AsyncSession) -> None:
    c, t = await make_customer(session), await make_technician(session)
    order = await completed_order(session, c, t)
    now = datetime.now(timezone.utc)
    await service.submit_review(session, order_id=order.id, customer_id=c.customer.id, stars=2,
                                now=now - timedelta(hours=30))
    response = await client.patch(f"/v1/orders/{order.id}/review", headers=c.headers, json={"stars": 5})
    assert response.status_code == 409
    assert response.json()["type"] == "/problems/review-frozen"


async def test_review_is_visible_to_its_customer_technician_and_staff_only(client: AsyncClient, session: AsyncSession) -> None:
    c, t = await make_customer(session), await make_technician(session)
    stranger, other_tech = await make_customer(session), await make_technician(session)
    _, admin = await make_staff(session, "admin")
    _, auditor = await make_staff(session, "auditor")
    order = await completed_order(session, c, t)
    await client.post(f"/v1/orders/{order.id}/review", headers=c.headers, json={"stars": 5})
    for headers in (c.headers, t.headers, admin, auditor):
        response = await client.get(f"/v1/orders/{order.id}/review", headers=headers)
        assert response.status_code == 200 and response.json()["stars"] == 5
    for headers in (stranger.headers, other_tech.headers):
        assert (await client.get(f"/v1/orders/{order.id}/review", headers=headers)).status_code == 404


async def test_review_is_finalized_after_the_edit_window_exactly_once(session: AsyncSession) -> None:
    c, t = await make_customer(session), await make_technician(session)
    order = await completed_order(session, c, t, completed_at=T0)
    review = await service.submit_review(session, order_id=order.id, customer_id=c.customer.id, stars=5,
                                         now=T0 + timedelta(hours=2))
    assert await jobs.finalize_due(session, T0 + timedelta(hours=25)) == 0  # still editable
    done_at = T0 + timedelta(hours=26, minutes=1)
    assert await jobs.finalize_due(session, done_at) == 1
    assert await jobs.finalize_due(session, done_at + timedelta(hours=1)) == 0
    assert await service.finalize_review(session, review.id, done_at + timedelta(hours=2)) is False
    assert await jobs.finalize_due(session, T0 + timedelta(days=10)) == 0  # no automatic review on top
    finalized = await _outbox(session, events.ReviewFinalized.topic, order)
    assert finalized == [{
        "order_id": str(order.id), "review_id": str(review.id), "technician_id": str(t.technician.id),
        "customer_id": str(c.customer.id), "stars": 5, "automatic": False, "finalized_at": done_at.isoformat(),
    }]
    assert (await get_order(session, order.id)).status == "reviewed"


async def test_automatic_neutral_review_closes_an_unreviewed_order_after_the_window(session: AsyncSession) -> None:
    c, t = await make_customer(session), await make_technician(session)
    order = await completed_order(session, c, t, completed_at=T0)
    assert await jobs.count_due(session, T0 + timedelta(hours=71)) == 0
    assert await jobs.finalize_due(session, T0 + timedelta(hours=71, minutes=59)) == 0
    assert await jobs.count_due(session, T0 + timedelta(hours=72)) == 1
    assert await jobs.finalize_due(session, T0 + timedelta(hours=72, minutes=5)) == 1
    assert await jobs.finalize_due(session, T0 + timedelta(hours=80)) == 0
    review = await service.review_for(session, order.id, role="admin")
    assert (review.automatic, review.stars, review.comment) == (True, 4, None)
    assert review.created_at == T0 + timedelta(hours=72)
    finalized = await _outbox(session, events.ReviewFinalized.topic, order)
    assert len(finalized) == 1 and finalized[0]["automatic"] is True
    assert (await get_order(session, order.id)).status == "reviewed"


async def test_customer_cannot_review_after_the_review_window(session: AsyncSession) -> None:
    c, t = await make_customer(session), await make_technician(session)
    order = await completed_order(session, c, t, completed_at=T0)
    with pytest.raises(service.ReviewWindowClosed):
        await service.submit_review(session, order_id=order.id, customer_id=c.customer.id, stars=5,
                                    now=T0 + timedelta(hours=72))


async def test_finalized_order_cannot_be_reviewed_again(client: AsyncClient, session: AsyncSession) -> None:
    c, t = await make_customer(session), await make_technician(session)
    order = await completed_order(session, c, t, completed_at=datetime.now(timezone.utc) - timedelta(days=4))
    assert await jobs.finalize_due(session) == 1
    response = await client.post(f"/v1/orders/{order.id}/review", headers=c.headers, json={"stars": 5})
    assert response.status_code == 409
    assert response.json()["type"] == "/problems/review-exists"


def test_ratings_cli_offers_finalize_due() -> None:
    from typer.testing import CliRunner

    from app.cli import app

    result = CliRunner().invoke(app, ["ratings", "finalize-due", "--help"])
    assert result.exit_code == 0
    assert "review window" in result.output
