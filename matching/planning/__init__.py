"""Route planning: which vehicle serves which jobs, in what order, at what times.

A pure core: plain data in (`Problem`), routes with arrival times out (`Plan`); no Redis, no
database. `gasdispatch plan` feeds it Solomon files; the day planner feeds it booked orders and
technicians' shifts through the same `plan_routes`.
"""

from matching.planning.problem import Job, Plan, PlanningError, Problem, Route, Stop, Vehicle, evaluate
from matching.planning.solver import plan_routes

__all__ = ["Job", "Plan", "PlanningError", "Problem", "Route", "Stop", "Vehicle", "evaluate", "plan_routes"]
