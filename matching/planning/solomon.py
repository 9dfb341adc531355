"""Read a Solomon / Gehring–Homberger VRPTW text file into a planning problem.

    C101                                   <- the name
    VEHICLE
    NUMBER     CAPACITY
      25         200
    CUSTOMER
    CUST NO.  XCOORD.   YCOORD.    DEMAND   READY TIME  DUE DATE   SERVICE   TIME
        0      40         50          0          0       1236          0      <- the depot
        1      45         68         10        912        967         90

Travel time is the Euclidean distance in double precision, unrounded; service must start inside
[READY TIME, DUE DATE]; every vehicle leaves the depot no earlier than its ready time and is back
by its due date. Every complaint names the line (1-based) it is about.
"""

from __future__ import annotations

import math
from pathlib import Path

from matching.planning.problem import Job, Problem, Vehicle

FLEET_HEADER = "NUMBER CAPACITY"
CUSTOMER_HEADER = "CUST NO. XCOORD. YCOORD. DEMAND READY TIME DUE DATE SERVICE TIME"
COLUMNS = ("CUST NO.", "XCOORD.", "YCOORD.", "DEMAND", "READY TIME", "DUE DATE", "SERVICE TIME")


class SolomonFormatError(ValueError):
    def __init__(self, line: int | None, reason: str):
        self.line = line
        super().__init__(f"line {line}: {reason}" if line is not None else reason)


def _number(text: str, column: str, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SolomonFormatError(line, f"{column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise SolomonFormatError(line, f"{column} {text!r} is not a finite number")
    return value


def _whole(text: str, column: str, line: int) -> int:
    value = _number(text, column, line)
    if value != int(value) or value < 0:
        raise SolomonFormatError(line, f"{column} {text!r} is not a whole number >= 0")
    return int(value)


def parse(text: str, vehicles: int | None = None) -> Problem:
    """The instance in `text`, with `vehicles` vehicles (default: the file's VEHICLE NUMBER)."""
    lines = [(number, raw.strip()) for number, raw in enumerate(text.splitlines(), start=1)]
    content = iter([(number, line) for number, line in lines if line])
    last = lines[-1][0] if lines else 1

    def expect(what: str) -> tuple[int, str]:
        try:
            return next(content)
        except StopIteration:
            raise SolomonFormatError(last, f"the file ends where {what} should be") from None

    _, name = expect("the instance name")
    number, line = expect("VEHICLE")
    if line.upper() != "VEHICLE":
        raise SolomonFormatError(number, f"expected VEHICLE, found {line!r}")
    number, line = expect(FLEET_HEADER)
    if " ".join(line.upper().split()) != FLEET_HEADER:
        raise SolomonFormatError(number, f"expected the header {FLEET_HEADER!r}, found {line!r}")
    number, line = expect("the vehicle number and capacity")
    fields = line.split()
    if len(fields) != 2:
        raise SolomonFormatError(number, f"expected 2 fields (NUMBER CAPACITY), found {len(fields)}")
    fleet = _whole(fields[0], "NUMBER", number)
    capacity = _whole(fields[1], "CAPACITY", number)
    if fleet < 1:
        raise SolomonFormatError(number, "the vehicle NUMBER must be at least 1")
    number, line = expect("CUSTOMER")
    if line.upper() != "CUSTOMER":
        raise SolomonFormatError(number, f"expected CUSTOMER, found {line!r}")
    number, line = expect("the customer table header")
    if " ".join(line.upper().split()) != CUSTOMER_HEADER:
        raise SolomonFormatError(number, f"expected the header {CUSTOMER_HEADER!r}, found {line!r}")

    points: list[tuple[float, float]] = []
    rows: list[tuple[int, int, float, float, float, int]] = []  # line, customer, ready, due, service, demand
    seen: dict[int, int] = {}
    for number, line in content:
        fields = line.split()
        if len(fields) != len(COLUMNS):
            raise SolomonFormatError(number, f"expected {len(COLUMNS)} fields, found {len(fields)}")
        customer = _whole(fields[0], COLUMNS[0], number)
        x, y = (_number(fields[i], COLUMNS[i], number) for i in (1, 2))
        demand = _whole(fields[3], COLUMNS[3], number)
        ready, due, service = (_number(fields[i], COLUMNS[i], number) for i in (4, 5, 6))
        if not rows and customer != 0:
            raise SolomonFormatError(number, f"the first customer must be 0, the depot; found {customer}")
        if customer in seen:
            raise SolomonFormatError(number, f"customer {customer} already appears on line {seen[customer]}")
        if ready < 0 or due < 0 or service < 0:
            raise SolomonFormatError(number, f"customer {customer}: negative time")
        if due < ready:
            raise SolomonFormatError(
                number, f"customer {customer}: DUE DATE {due:g} is before READY TIME {ready:g}"
            )
        seen[customer] = number
        points.append((x, y))
        rows.append((number, customer, ready, due, service, demand))
    if not rows:
        raise SolomonFormatError(last, "the customer table has no rows; customer 0, the depot, is missing")

    _, _, depot_ready, depot_due, _, _ = rows[0]
    jobs = tuple(
        Job(id=customer, location=index, service=service, earliest=ready, latest=due, demand=demand)
        for index, (_, customer, ready, due, service, demand) in enumerate(rows)
        if index > 0
    )
    fleet = tuple(
        Vehicle(id=k, start=0, end=0, earliest=depot_ready, latest=depot_due, capacity=capacity)
        for k in range(fleet if vehicles is None else vehicles)
    )
    return Problem(name=name, travel=Problem.euclidean(points), jobs=jobs, vehicles=fleet)


def read(path: Path, vehicles: int | None = None) -> Problem:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SolomonFormatError(None, f"cannot read {path}: {exc}") from exc
    return parse(text, vehicles)
