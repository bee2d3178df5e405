"""Webhook values: subscriptions and deliveries (also the API's response models)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, HttpUrl

EventType = Literal[
    "assignment_prediction", "timeline_prediction", "nlp_prediction", "anomaly_prediction",
    "personalization_prediction", "automation_prediction", "alert", "suggestion",
]
DeliveryStatus = Literal["pending", "retrying", "delivered", "dead"]


class SubscriptionIn(BaseModel):
    """A new subscription. The tenant is the caller's; it cannot be chosen."""

    url: HttpUrl = Field(description="https URL receiving POSTs; must resolve to a public address")
    event_types: list[EventType] = Field(min_length=1, max_length=8, description="events to deliver")
    description: str = Field(default="", max_length=200)


class SubscriptionPatch(BaseModel):
    url: HttpUrl | None = None
    event_types: list[EventType] | None = Field(default=None, min_length=1, max_length=8)
    description: str | None = Field(default=None, max_length=200)
    active: bool | None = None


class Subscription(BaseModel):
    id: str
    url: str
    event_types: list[EventType]
    description: str
    active: bool
    created_at: int = Field(description="unix seconds")


class SubscriptionCreated(Subscription):
    secret: str = Field(description="signing secret; shown only in this response")


class Attempt(BaseModel):
    attempt: int
    at: float = Field(description="unix seconds")
    status_code: int | None = None
    error: str | None = None
    backoff_s: float | None = Field(default=None, description="wait scheduled after this attempt (None: no retry)")


class Delivery(BaseModel):
    id: str = Field(description="also the Idempotency-Key header of every attempt")
    subscription_id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    created_at: float
    next_attempt_at: float | None = None
    delivered_at: float | None = None
    log: list[Attempt] = Field(default_factory=list)


class DeliveryPage(BaseModel):
    items: list[Delivery]
