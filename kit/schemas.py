"""Shapes every package's API shares: strict inputs, pages, GeoJSON, money."""

from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from kit.geo import is_valid_polygon

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
T = TypeVar("T")


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = None


class GeoPoint(Input):
    type: Literal["Point"]
    coordinates: tuple[float, float]

    @field_validator("coordinates")
    @classmethod
    def _in_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        lon, lat = value
        if not -180.0 <= lon <= 180.0:
            raise ValueError("longitude must be within [-180, 180]")
        if not -90.0 <= lat <= 90.0:
            raise ValueError("latitude must be within [-90, 90]")
        return value

    @property
    def lon(self) -> float:
        return self.coordinates[0]

    @property
    def lat(self) -> float:
        return self.coordinates[1]


class GeoPolygon(Input):
    type: Literal["Polygon"]
    coordinates: list[list[tuple[float, float]]] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _valid(self) -> "GeoPolygon":
        for ring in self.coordinates:
            if len(ring) < 4 or len(ring) > 5000:
                raise ValueError("each ring needs 4 to 5000 positions")
            for lon, lat in ring:
                if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                    raise ValueError("coordinates out of range")
        if not is_valid_polygon(self.model_dump()):
            raise ValueError("polygon is not valid (closed, non-self-intersecting ring)")
        return self


class Money(BaseModel):
    amount_minor: int
    currency: str
