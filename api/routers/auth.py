from fastapi import APIRouter, Request, status

from api.deps import RedisDep, SessionDep, client_address
from dispatch import accounts
from dispatch.schemas import CustomerRegister, Login, TechnicianRegister, Token

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post("/register/customer", status_code=status.HTTP_201_CREATED)
async def register_customer(body: CustomerRegister, session: SessionDep) -> dict[str, str]:
    customer = await accounts.register_customer(
        session, email=body.email, password=body.password, name=body.name, phone=body.phone)
    return {"id": str(customer.id), "role": "customer"}


@router.post("/register/technician", status_code=status.HTTP_201_CREATED)
async def register_technician(body: TechnicianRegister, session: SessionDep) -> dict[str, str]:
    technician = await accounts.register_technician(
        session, email=body.email, password=body.password, name=body.name, phone=body.phone,
        station_id=body.station_id)
    return {"id": str(technician.id), "role": "technician"}


@router.post("/login")
async def login(body: Login, request: Request, session: SessionDep, redis: RedisDep) -> Token:
    account, token, expires = await accounts.login(
        session, redis, email=body.email, password=body.password, client=client_address(request))
    return Token(access_token=token, expires_at=expires, role=account.role)
