"""ORM rows -> public API shapes."""

from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import addresses, cities
from kit.geo import to_geojson
from dispatch.models import Address, Certification, Order, OrderEvent, ServiceKind, ServiceStation, Technician
from dispatch.schemas import (
    AddressPublic,
    CertificationPublic,
    OrderEventPublic,
    OrderPublic,
    ServiceKindPublic,
    StationPublic,
    StructuredAddress,
    TechnicianPublic,
)
from kit.schemas import Money
from dispatch.technicians import certification_usable, renewal_due


def address(a: Address, city: str) -> AddressPublic:
    parts = addresses.structured(a)
    return AddressPublic(id=a.id, label=a.label, line=a.line, location=to_geojson(a.location) or {},
                         structured=StructuredAddress(**parts) if parts else None, created_at=a.created_at, city=city)


def station(s: ServiceStation) -> StationPublic:
    return StationPublic(id=s.id, name=s.name, city=s.city_id, location=to_geojson(s.location) or {},
                         service_area=to_geojson(s.service_area) or {}, daily_capacity=s.daily_capacity)


def certification(c: Certification) -> CertificationPublic:
    return CertificationPublic(
        id=c.id, technician_id=c.technician_id, kind=c.kind, number=c.number, issuer=c.issuer,
        valid_from=c.valid_from, valid_until=c.valid_until, status=c.status,
        usable=certification_usable(c), renewal_due=renewal_due(c), decision_reason=c.decision_reason,
    )


def technician(t: Technician, certs: list[Certification]) -> TechnicianPublic:
    return TechnicianPublic(
        id=t.id, name=t.name, phone=t.phone, photo_ref=t.photo_ref, station_id=t.station_id, status=t.status,
        onboarding=t.onboarding, max_jobs=t.max_jobs, certifications=[certification(c) for c in certs],
    )


def service_kind(k: ServiceKind) -> ServiceKindPublic:
    return ServiceKindPublic(
        code=k.code, name=k.name, name_zh=k.name_zh, required_certification=k.required_certification,
        default_priority=k.default_priority, base_price=Money(amount_minor=k.base_price_minor, currency=k.currency),
        typical_duration_min=k.typical_duration_min, sla_minutes=k.sla_minutes, active=k.active,
    )


async def order(session: AsyncSession, o: Order) -> OrderPublic:
    """Its times read on the clock of its city (`timezone`)."""
    return OrderPublic(
        id=o.id, customer_id=o.customer_id, address_id=o.address_id, location=to_geojson(o.location) or {},
        kind=o.kind, required_certification=o.required_certification, priority=o.priority, source=o.source,
        status=o.status, status_reason=o.status_reason, description=o.description, sla_deadline=o.sla_deadline,
        preferred_technician_id=o.preferred_technician_id, technician_id=o.technician_id,
        price_estimate=Money(amount_minor=o.price_estimate_minor, currency=o.currency),
        created_at=o.created_at, updated_at=o.updated_at, timezone=await cities.timezone_of(session, o.city_id), window_start=o.window_start,
        window_end=o.window_end,
    )


def order_event(e: OrderEvent) -> OrderEventPublic:
    return OrderEventPublic(id=e.id or 0, action=e.action, from_status=e.from_status, to_status=e.to_status,
                            actor_role=e.actor_role, reason=e.reason, payload=e.payload, created_at=e.created_at)
