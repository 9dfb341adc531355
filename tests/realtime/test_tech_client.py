"""The reference technician client and the customer robot against a real uvicorn worker."""

import asyncio
import uuid

from rich.console import Console
from sqlmodel import select

from dispatch.field.models import Visit
from dispatch.models import Order
from app.tech_client import CustomerOptions, TechOptions, run_demo
from ratings.models import Review
from tests.factories import make_customer, make_technician

ADDRESS = (120.155, 30.274)


async def test_an_order_flows_from_placed_to_completed_and_reviewed_with_nobody_at_the_keyboard(api_worker, committed_sessions) -> None:  # noqa: ANN001
    async with committed_sessions() as session:
        customer = await make_customer(session, *ADDRESS)
        technician = await make_technician(session)
        await session.commit()
    worker = api_worker(GASDISPATCH_EMBEDDED_WORKER="true", GASDISPATCH_BATCH_WINDOW_S="0.2")
    token = technician.headers["Authorization"].removeprefix("Bearer ")
    tech = TechOptions(base_url=worker, lon=ADDRESS[0] + 0.003, lat=ADDRESS[1], token=token,  # ~290 m away
                       auto_accept=True, speed_kmh=120, interval_s=0.5, max_jobs=1, duration_s=60)
    robot = CustomerOptions(base_url=worker, token=customer.headers["Authorization"].removeprefix("Bearer "),
                            order_every_s=60)
    tally, (customer_robot,) = await asyncio.wait_for(run_demo(tech, [robot], Console(quiet=True)), 90)

    assert tally.completed == 1 and tally.errors == []
    assert len(customer_robot.placed) == 1 and customer_robot.reviewed == customer_robot.placed
    order_id = uuid.UUID(customer_robot.placed[0])
    async with committed_sessions() as session:
        order = await session.get(Order, order_id)
        visit = (await session.exec(select(Visit).where(Visit.order_id == order_id))).one()
        review = (await session.exec(select(Review).where(Review.order_id == order_id))).one()
    # The order moves on to `reviewed` when the review's edit window closes, not here.
    assert order.status == "completed" and order.technician_id == technician.technician.id
    assert review.stars == 5
    assert visit.verification == "code" and visit.arrival_distance_m <= 150


async def test_nobody_at_the_door_the_client_reports_no_access_and_leaves(api_worker, committed_sessions) -> None:  # noqa: ANN001
    import httpx

    from app.tech_client import TechnicianClient

    async with committed_sessions() as session:
        customer = await make_customer(session, *ADDRESS)
        technician = await make_technician(session)
        await session.commit()
    worker = api_worker(GASDISPATCH_EMBEDDED_WORKER="true", GASDISPATCH_BATCH_WINDOW_S="0.2")
    token = technician.headers["Authorization"].removeprefix("Bearer ")
    tech = TechOptions(base_url=worker, lon=ADDRESS[0] + 0.003, lat=ADDRESS[1], token=token, auto_accept=True,
                       speed_kmh=120, interval_s=0.5, max_jobs=1, duration_s=60, door_wait_s=3)
    client = TechnicianClient(tech, Console(quiet=True))  # a doorstep where nobody lives
    running = asyncio.create_task(client.run())
    async with httpx.AsyncClient(base_url=worker, headers=customer.headers, timeout=30) as http:
        order_id = (await http.post("/v1/orders", json={"kind": "repair", "address_id": str(customer.address.id)})
                    ).json()["id"]
        for _ in range(120):
            status = (await http.get(f"/v1/orders/{order_id}")).json()["status"]
            if status == "cancelled":
                break
            await asyncio.sleep(0.5)
    client.stop.set()
    await asyncio.wait_for(running, 30)
    assert status == "cancelled"
    async with committed_sessions() as session:
        order = await session.get(Order, uuid.UUID(order_id))
        visit = (await session.exec(select(Visit).where(Visit.order_id == order.id))).one()
    assert order.status == "cancelled" and visit.no_access_photo_ref == f"tech-client:door:{order_id}"
