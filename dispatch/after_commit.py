"""Side effects that must wait for the commit (websocket pushes, external notifications).

Code running inside a transaction registers them on its session; the unit-of-work boundary
(`dispatch.db.session_scope`, the API's session dependency) runs them once the commit has
succeeded and drops them on rollback.
"""

from collections.abc import Awaitable, Callable

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

log = structlog.get_logger(__name__)
_KEY = "after_commit"


def defer(session: AsyncSession, action: Callable[[], Awaitable[None]]) -> None:
    session.info.setdefault(_KEY, []).append(action)


def discard(session: AsyncSession) -> None:
    session.info.pop(_KEY, None)


async def run(session: AsyncSession) -> None:
    for action in session.info.pop(_KEY, []):
        try:
            await action()
        except Exception:  # the commit stands; a lost push is recovered on reconnect
            log.exception("after_commit.failed")
