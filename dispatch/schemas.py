"""API shapes: validated inputs (…Create/…Update) and outputs (…Public)."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, EmailStr, Field, StringConstraints, field_validator, model_validator

from kit.schemas import GeoPoint, GeoPolygon, Input, Money

CertificationKind = Literal["repair", "inspection", "installation", "emergency"]
Priority = Literal["emergency", "urgent", "routine"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
# People's and stations' names are shown on maps and cards to other users: letters of any script, digits,
# spaces and the few marks real names use (. - · ' and parentheses); never markup or control characters.
DisplayName = Annotated[str, StringConstraints(
    strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[\p{L}\p{N}][\p{L}\p{M}\p{N} .·'()（）-]*$")]
Phone = Annotated[str, StringConstraints(pattern=r"^\+?[0-9][0-9 -]{4,30}$")]
Password = Annotated[str, StringConstraints(min_length=10, max_length=128)]


# Accounts
class CustomerRegister(Input):
    email: EmailStr
    password: Password
    name: DisplayName
    phone: Phone


class TechnicianRegister(CustomerRegister):
    station_id: uuid.UUID | None = None


class Login(Input):
    email: Annotated[str, StringConstraints(max_length=254)]
    password: Annotated[str, StringConstraints(max_length=128)]


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime
    expires_in: int  # seconds: clients time their refresh by it, whatever their clock says
    refresh_token: str
    refresh_expires_at: datetime
    role: str


class CustomerPublic(BaseModel):
    id: uuid.UUID
    name: str
    phone: str
    email: str


# Addresses
# A part of an address as people write it (Chinese, Latin letters, digits, -#/·() and spaces), never
# markup or control characters: the technician's page shows it. Sizes are the columns'.
_ADDRESS_PART = r"^[\p{L}\p{N}][\p{L}\p{M}\p{N} .·'()（）#＃/-]*$"
Region = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=30, pattern=_ADDRESS_PART)]
Street = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=_ADDRESS_PART)]
Community = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60, pattern=_ADDRESS_PART)]
Door = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20, pattern=_ADDRESS_PART)]


class StructuredAddress(Input):
    """A Chinese address, largest first: 浙江省 杭州市 西湖区, 文三路 90 号, 翠苑一区 (小区), 3 幢, 2 单元, 501 室.
    Province, city, district and street are needed; a household outside a 小区 or in a house has no
    community, building, unit or room."""

    province: Region
    city: Region
    district: Region
    street: Street
    community: Community | None = None
    building: Door | None = None
    unit: Door | None = None
    room: Door | None = None


class AddressCreate(Input):
    """With `structured`, the line is composed from it (a `line` sent beside it is refused); a line
    alone is still taken (records imported from the utility's billing system)."""

    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]  # the column's size
    line: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None
    structured: StructuredAddress | None = None
    location: GeoPoint  # WGS-84: where the customer dropped the pin


class AddressUpdate(Input):
    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)] | None = None
    line: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None
    structured: StructuredAddress | None = None
    location: GeoPoint | None = None


class AddressPublic(BaseModel):
    id: uuid.UUID
    label: str
    line: str
    structured: StructuredAddress | None = None  # null for an address saved as a line only
    location: dict[str, Any]
    created_at: datetime
    city: str  # the city id it belongs to (its nearest station's): whose hotline to call, say


class NavigationLinks(BaseModel):
    """Routes to the address in each map app (https links that open the app where installed)."""

    amap: str
    baidu: str
    apple: str
    google: str


class JobAddressPublic(BaseModel):
    """What a technician sees of a job's address: on an offer only `district` and `street`; once the
    job is his, the whole address, the customer's name and navigation (never a phone number)."""

    full: bool
    district: str | None
    street: str | None
    line: str | None = None
    structured: StructuredAddress | None = None
    customer_name: str | None = None
    location: dict[str, Any] | None = None
    navigation: NavigationLinks | None = None


class ContactRequested(BaseModel):
    """The relay was asked to ring both phones and bridge them; no number is given to either side."""

    status: Literal["requested"] = "requested"
    relay: str


# Stations
class StationCreate(Input):
    name: DisplayName
    city: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]
    location: GeoPoint
    service_area: GeoPolygon
    daily_capacity: int = Field(default=40, ge=0, le=10_000)


class StationUpdate(Input):
    name: DisplayName | None = None
    service_area: GeoPolygon | None = None
    daily_capacity: int | None = Field(default=None, ge=0, le=10_000)


class StationPublic(BaseModel):
    id: uuid.UUID
    name: str
    city: str
    location: dict[str, Any]
    service_area: dict[str, Any]
    daily_capacity: int


# Technicians and certifications
class TechnicianUpdate(Input):
    """Omitted fields stay as they are; only the photo may be cleared with null."""

    name: DisplayName | None = None
    phone: Phone | None = None
    photo_ref: Annotated[str, StringConstraints(max_length=300)] | None = None

    @field_validator("name", "phone")
    @classmethod
    def _not_null(cls, value: str | None) -> str:
        if value is None:
            raise ValueError("may be omitted but not null")
        return value


class CertificationCreate(Input):
    kind: CertificationKind
    number: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    issuer: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    valid_from: datetime
    valid_until: datetime

    @model_validator(mode="after")
    def _period(self) -> "CertificationCreate":
        if self.valid_from.tzinfo is None or self.valid_until.tzinfo is None:
            raise ValueError("times need a timezone (RFC 3339)")
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class CertificationPublic(BaseModel):
    id: uuid.UUID
    technician_id: uuid.UUID
    kind: str
    number: str
    issuer: str
    valid_from: datetime
    valid_until: datetime
    status: str
    usable: bool
    renewal_due: bool
    decision_reason: str | None


class Decision(Input):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None


class TrainingRecordCreate(Input):
    record_type: Literal["training", "exam"]
    kind: CertificationKind
    held_at: datetime
    score: int | None = Field(default=None, ge=0, le=100)
    passed: bool | None = None
    # For a passed exam: the number and validity of the certification it issues.
    certificate_number: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    valid_years: int = Field(default=3, ge=1, le=10)

    @model_validator(mode="after")
    def _exam_has_result(self) -> "TrainingRecordCreate":
        if self.record_type == "exam" and self.passed is None:
            raise ValueError("an exam record needs passed")
        if self.record_type == "exam" and self.passed and not self.certificate_number:
            raise ValueError("a passed exam needs certificate_number")
        return self


class TrainingRecordPublic(BaseModel):
    id: uuid.UUID
    technician_id: uuid.UUID
    record_type: str
    kind: str
    held_at: datetime
    score: int | None
    passed: bool | None
    certification_id: uuid.UUID | None


class TechnicianPublic(BaseModel):
    id: uuid.UUID
    name: str
    phone: str
    photo_ref: str | None
    station_id: uuid.UUID | None
    status: str
    onboarding: str
    max_jobs: int
    certifications: list[CertificationPublic]


# Service catalogue
# At most 30 days; the price fits the catalogue's integer column.
SERVICE_KIND_CODE = r"^[a-z][a-z0-9_]{1,39}$"
SlaMinutes = dict[Priority, Annotated[int, Field(ge=1, le=30 * 24 * 60)]]
MAX_PRICE_MINOR = 2**31 - 1


def _catalogue_price(value: Money) -> Money:
    if not 0 <= value.amount_minor <= MAX_PRICE_MINOR or len(value.currency) != 3 or not value.currency.isupper():
        raise ValueError(f"amount_minor must be 0 to {MAX_PRICE_MINOR} and currency ISO 4217")
    return value


class ServiceKindCreate(Input):
    code: Annotated[str, StringConstraints(pattern=SERVICE_KIND_CODE)]
    name: Name
    name_zh: Name
    required_certification: CertificationKind
    default_priority: Priority = "routine"
    base_price: Money
    typical_duration_min: int = Field(ge=1, le=24 * 60)
    sla_minutes: SlaMinutes = Field(default_factory=dict)

    _price = field_validator("base_price")(_catalogue_price)


class ServiceKindUpdate(Input):
    """Omitted fields stay as they are; none may be set to null."""

    name: Name | None = None
    name_zh: Name | None = None
    base_price: Money | None = None
    typical_duration_min: int | None = Field(default=None, ge=1, le=24 * 60)
    sla_minutes: SlaMinutes | None = None
    active: bool | None = None

    @field_validator("name", "name_zh", "base_price", "typical_duration_min", "sla_minutes", "active")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be omitted but not null")
        return value

    _price = field_validator("base_price")(_catalogue_price)


class ServiceKindPublic(BaseModel):
    code: str
    name: str
    name_zh: str
    required_certification: str
    default_priority: str
    base_price: Money
    typical_duration_min: int
    sla_minutes: dict[str, int]
    active: bool


# Orders
class OrderCreate(Input):
    """No priority: it comes from the kind (a smell of gas is the gas-leak kind), staff or meters."""

    kind: Annotated[str, StringConstraints(max_length=40)]
    address_id: uuid.UUID
    description: Annotated[str, StringConstraints(max_length=2000)] = ""
    preferred_technician_id: uuid.UUID | None = None


# Why a customer cancels or reschedules: slugs the apps translate, shown to the technician too.
CancelReasonCode = Literal["changed_mind", "too_slow", "fixed_myself", "not_home", "wrong_service", "other"]


class OrderCancel(Input):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    reason_code: CancelReasonCode | None = None
    # The cancellation fee the customer was shown (GET .../cancellation-quote); another fee now is 409.
    accepted_fee_minor: int | None = Field(default=None, ge=0, le=10**12)


class OrderReschedule(Input):
    reason_code: CancelReasonCode
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = ""


class CancellationQuotePublic(BaseModel):
    order_id: uuid.UUID
    status: str
    fee: Money
    technician_share: Money
    rule_version: int
    free_until: datetime | None
    can_cancel: bool
    can_reschedule: bool


class EtaPublic(BaseModel):
    """When the technician should reach the door (from acceptance until he checks in)."""

    earliest: datetime
    latest: datetime
    model: Literal["learned", "distance"]


class OrderPublic(BaseModel):
    id: uuid.UUID
    customer_id: uuid.UUID
    address_id: uuid.UUID
    location: dict[str, Any]
    kind: str
    required_certification: str
    priority: str
    source: str
    status: str
    status_reason: str | None
    description: str
    sla_deadline: datetime
    preferred_technician_id: uuid.UUID | None
    technician_id: uuid.UUID | None
    price_estimate: Money
    created_at: datetime
    updated_at: datetime
    # The IANA zone of the order's city: its window and times read on the city's clock, not the phone's.
    timezone: str
    # A booked appointment's arrival window; null for on-demand orders.
    window_start: datetime | None = None
    window_end: datetime | None = None
    eta: EtaPublic | None = None
    # The price of the work report once the job is done (the estimate is only what was held first).
    final_price: Money | None = None


class OrderEventPublic(BaseModel):
    id: int
    action: str
    from_status: str | None
    to_status: str
    actor_role: str
    reason: str | None
    payload: dict[str, Any]
    created_at: datetime


class OrderMessagePublic(BaseModel):
    """A message from operations about the order, in the words its sender wrote."""

    id: uuid.UUID
    text: str
    created_at: datetime
