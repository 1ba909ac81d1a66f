"""The scenario's time specs: the session clock a run replays, and news events on a path."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Model(BaseModel):
    """Every scenario spec: unknown keys are errors, values never change once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class JumpSpec(Model):
    """The clock leaps forward: once sim time reaches ``at`` it reads ``to`` (a weekend in a
    moment, for a test that stops a bot on Friday and starts it again on Monday)."""

    at: datetime
    to: datetime

    @field_validator("at", "to")
    @classmethod
    def _aware(cls, ts: datetime) -> datetime:
        if ts.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2026-12-07T09:25:00-05:00")
        return ts


class ClockSpec(Model):
    """The session the sim replays: sim time = start + elapsed x rate (see simclock.py),
    leaping forward at each of ``jumps``."""

    start: datetime | None = None  # with a UTC offset; None: follow the wall clock
    rate: float = Field(1.0, gt=0, le=100_000)  # sim seconds per real second
    # > 0: prices move in whole steps of this many sim seconds (60: once a minute, a bar
    # replay) while time itself flows; every request inside one step sees the same market
    market_step_s: float = Field(0.0, ge=0, le=86_400)
    jumps: tuple[JumpSpec, ...] = ()  # in time order, each after the one before has landed
    # reqCurrentTime answers this far off the session clock: a gateway host whose clock is
    # wrong, for the doctor's clock check (the market itself keeps the session clock)
    current_time_skew_s: float = Field(0.0, ge=-86_400, le=86_400)

    @field_validator("start")
    @classmethod
    def _aware(cls, start: datetime | None) -> datetime | None:
        if start is not None and start.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2026-12-01T10:30:00-05:00")
        return start

    @model_validator(mode="after")
    def _rate_needs_start(self) -> ClockSpec:
        if self.start is None and self.rate != 1.0:
            raise ValueError("rate needs a pinned start (the wall clock runs at 1x)")
        if self.jumps and self.start is None:
            raise ValueError("jumps need a pinned start (the wall clock does not leap)")
        after = self.start
        for jump in self.jumps:
            if jump.to <= jump.at or (after is not None and jump.at <= after):
                raise ValueError(
                    f"jump {jump.at.isoformat()} -> {jump.to.isoformat()}: each "
                    "leaps forward, after the start and the jump before it"
                )
            after = jump.to
        return self

    def jump_times(self) -> tuple[tuple[float, float], ...]:
        """(at, to) of each jump in epoch seconds."""
        return tuple((j.at.timestamp(), j.to.timestamp()) for j in self.jumps)


class EventSpec(Model):
    """News: from ``at`` the price is ``move_pct`` away from its path (for good), and the
    volume runs ``volume_x`` times its usual for ``duration_min`` minutes."""

    at: datetime
    move_pct: float = Field(ge=-50, le=100)
    volume_x: float = Field(1.0, ge=0, le=100)
    duration_min: int = Field(60, ge=1, le=1440)

    @field_validator("at")
    @classmethod
    def _aware(cls, at: datetime) -> datetime:
        if at.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2026-12-07T10:05:00-05:00")
        return at
