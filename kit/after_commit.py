"""Side effects that must wait for the commit (websocket pushes, external notifications).

Code running inside a transaction registers them on its session; the unit-of-work boundary
(`kit.db.session_scope`, the API's session dependency) runs them once the commit has
succeeded and drops them on rollback. Each action remembers the savepoint it was registered
in: when that savepoint (or one around it) rolls back, the action is dropped with the rows it
described, so a push never announces a change that was undone.
"""

from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel.ext.asyncio.session import AsyncSession

log = structlog.get_logger(__name__)
_KEY = "after_commit"
Action = Callable[[], Awaitable[None]]


def defer(session: AsyncSession, action: Action) -> None:
    sync = session.sync_session
    scope = sync.get_nested_transaction() or sync.get_transaction()
    sync.info.setdefault(_KEY, []).append((scope, action))


def discard(session: AsyncSession) -> None:
    session.info.pop(_KEY, None)


def pending(session: AsyncSession) -> int:
    return len(session.info.get(_KEY, ()))


async def run(session: AsyncSession) -> None:
    for _, action in session.info.pop(_KEY, []):
        try:
            await action()
        except Exception:  # the commit stands; a lost push is recovered on reconnect
            log.exception("after_commit.failed")


def _inside(scope: SessionTransaction | None, rolled_back: SessionTransaction) -> bool:
    while scope is not None:
        if scope is rolled_back:
            return True
        scope = scope.parent
    return False


@event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    """A savepoint rolled back: the actions registered inside it (or inside savepoints within
    it) go with it. The outer transaction's rollback is handled by `discard` at the boundary."""
    actions = session.info.get(_KEY)
    if not actions or not previous_transaction.nested:
        return
    session.info[_KEY] = [(scope, action) for scope, action in actions
                          if not _inside(scope, previous_transaction)]
