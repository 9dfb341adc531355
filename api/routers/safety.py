"""Public safety information: what to do when you smell gas and whom to call. No sign-in, since
a household in danger may have no account or no time; the answer is the same for everyone."""

from fastapi import APIRouter, Response
from pydantic import BaseModel

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
async def gas_leak_advice(response: Response) -> GasLeakAdvice:
    """The safety steps as slugs in the order to follow them (the apps translate them), then the
    city's gas emergency hotline when one is configured, and 119 always. Public and static."""
    response.headers["Cache-Control"] = "public, max-age=300"
    return GasLeakAdvice(steps=list(safety.GAS_LEAK_STEPS),
                         hotlines=[Hotline(**line) for line in safety.hotlines(get_settings())])
