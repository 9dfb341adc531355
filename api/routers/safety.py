"""Public safety information: what to do when you smell gas and whom to call. No sign-in, since
a household in danger may have no account or no time; the answer depends only on the city."""

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from api.deps import SessionDep
from dispatch import safety
from kit.config import get_settings

router = APIRouter(tags=["safety"])


class Hotline(BaseModel):
    city: str | None = None  # absent for the nationwide fire service
    number: str


class GasLeakAdvice(BaseModel):
    steps: list[str]
    hotlines: list[Hotline]


@router.get("/v1/safety/gas-leak", response_model=GasLeakAdvice, response_model_exclude_none=True)
async def gas_leak_advice(
    response: Response, session: SessionDep,
    city: Annotated[str | None, Query(pattern="^[a-z0-9_-]{1,60}$")] = None,
) -> GasLeakAdvice:
    """The safety steps as slugs in the order to follow them (the apps translate them), then the
    gas emergency hotline of `?city=` (a city id; the install's city when absent) when it has
    one, and 119 always. An unknown city is a 404. Public, and the same for everyone."""
    lines = await safety.hotlines(session, get_settings(), city)
    response.headers["Cache-Control"] = "public, max-age=300"
    return GasLeakAdvice(steps=list(safety.GAS_LEAK_STEPS), hotlines=[Hotline(**line) for line in lines])
