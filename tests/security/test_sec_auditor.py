"""Issue #13 item 13: an auditor reads what an audit needs: an order's money trail, not the
household's exact location or what the customer wrote."""

from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.factories import make_customer, make_staff


async def test_auditors_see_orders_without_the_exact_home_or_the_customers_words(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    customer = await make_customer(session, lon=120.15537, lat=30.27419)
    placed = await client.post("/v1/orders", headers=customer.headers, json={
        "kind": "repair", "address_id": str(customer.address.id), "description": "门铃坏了，敲三下门"})
    assert placed.status_code == 201, placed.text
    _, auditor = await make_staff(session, "auditor")
    _, admin = await make_staff(session, "admin")
    order_id = placed.json()["id"]
    audited = (await client.get(f"/v1/orders/{order_id}", headers=auditor)).json()
    assert audited["location"]["coordinates"] == [120.16, 30.27]
    assert audited["description"] == ""
    assert audited["price_estimate"] == placed.json()["price_estimate"]
    listed = (await client.get("/v1/orders", headers=auditor)).json()["data"]
    assert all(o["description"] == "" for o in listed)
    operations = (await client.get(f"/v1/orders/{order_id}", headers=admin)).json()
    assert operations["description"] == "门铃坏了，敲三下门"  # operations still dispatch to the door


async def test_auditors_get_no_technician_phone_numbers_and_no_live_positions(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    from tests.factories import make_technician

    technician = await make_technician(session)
    _, auditor = await make_staff(session, "auditor")
    audited = (await client.get(f"/v1/technicians/{technician.technician.id}", headers=auditor)).json()
    assert audited["phone"] == "" and audited["name"] == technician.technician.name
    assert (await client.get("/v1/operations/technicians", headers=auditor)).status_code == 403
