"""Webhook subscriptions (CRUD, secrets shown once), their deliveries, dead letters and replay."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from gateway.deps import Context, WebhookReader, WebhookWriter
from gateway.problems import PROBLEM_MEDIA_TYPE, PROBLEM_RESPONSES, Problem, ProblemError, not_found
from gateway.webhooks.models import (
    Delivery,
    DeliveryPage,
    Subscription,
    SubscriptionCreated,
    SubscriptionIn,
    SubscriptionPatch,
)
from gateway.webhooks.ssrf import UnsafeTarget, check_target

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses={
    **PROBLEM_RESPONSES, 404: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}}})

SubId = Annotated[str, Path(pattern=r"^wh_[0-9a-f]{20}$")]
DeliveryId = Annotated[str, Path(pattern=r"^dlv_[0-9a-f]{24}$")]
Limit = Annotated[int, Query(ge=1, le=200)]


async def _safe(ctx: Context, url: str) -> None:
    try:
        await check_target(url, ctx.settings.webhooks.allow_private_targets)
    except UnsafeTarget as exc:
        raise ProblemError(422, "unsafe-webhook-target", "Webhook target refused", str(exc)) from None


@router.post("", status_code=201, summary="Subscribe (the signing secret is shown only here)")
async def create_subscription(body: SubscriptionIn, caller: WebhookWriter, ctx: Context) -> SubscriptionCreated:
    await _safe(ctx, str(body.url))
    created = await ctx.webhooks.create(caller.tenant_id, str(body.url), list(dict.fromkeys(body.event_types)),
                                        body.description, limit=ctx.settings.webhooks.max_subscriptions_per_tenant)
    if created is None:
        raise ProblemError(409, "too-many-subscriptions", "Conflict", "subscription limit reached")
    return created


@router.get("", summary="The caller's subscriptions")
async def list_subscriptions(caller: WebhookReader, ctx: Context) -> list[Subscription]:
    return await ctx.webhooks.subscriptions(caller.tenant_id)


@router.get("/dead-letters", summary="Deliveries that gave up, newest first")
async def dead_letters(caller: WebhookReader, ctx: Context, limit: Limit = 50) -> DeliveryPage:
    return DeliveryPage(items=await ctx.webhooks.dead_letters(caller.tenant_id, limit))


@router.get("/deliveries/{delivery_id}", summary="One delivery with its attempts")
async def get_delivery(delivery_id: DeliveryId, caller: WebhookReader, ctx: Context) -> Delivery:
    found = await ctx.webhooks.delivery(caller.tenant_id, delivery_id)
    if found is None:
        raise not_found("delivery")
    return found


@router.post("/deliveries/{delivery_id}/replay", status_code=202, summary="Deliver again (same idempotency key)")
async def replay_delivery(delivery_id: DeliveryId, caller: WebhookWriter, ctx: Context) -> Delivery:
    replayed = await ctx.webhooks.replay(caller.tenant_id, delivery_id)
    if replayed is None:
        raise not_found("delivery")
    return replayed


@router.get("/{subscription_id}", summary="One subscription")
async def get_subscription(subscription_id: SubId, caller: WebhookReader, ctx: Context) -> Subscription:
    found = await ctx.webhooks.get(caller.tenant_id, subscription_id)
    if found is None:
        raise not_found("subscription")
    return found


@router.patch("/{subscription_id}", summary="Change a subscription")
async def update_subscription(subscription_id: SubId, body: SubscriptionPatch, caller: WebhookWriter,
                              ctx: Context) -> Subscription:
    if body.url is not None:
        await _safe(ctx, str(body.url))
    updated = await ctx.webhooks.update(caller.tenant_id, subscription_id, body)
    if updated is None:
        raise not_found("subscription")
    return updated


@router.delete("/{subscription_id}", status_code=204, summary="Unsubscribe")
async def delete_subscription(subscription_id: SubId, caller: WebhookWriter, ctx: Context) -> Response:
    if not await ctx.webhooks.delete(caller.tenant_id, subscription_id):
        raise not_found("subscription")
    return Response(status_code=204)


@router.get("/{subscription_id}/deliveries", summary="Recent deliveries of a subscription")
async def list_deliveries(subscription_id: SubId, caller: WebhookReader, ctx: Context,
                          limit: Limit = 50) -> DeliveryPage:
    if await ctx.webhooks.get(caller.tenant_id, subscription_id) is None:
        raise not_found("subscription")
    return DeliveryPage(items=await ctx.webhooks.deliveries(caller.tenant_id, subscription_id, limit))
