"""Per-user hourly activity vectors (the window feature vectors the models score), computed causally.

One vector per (tenant, user, UTC hour) in which the user did something: counts and log items per action,
whether an IP or device never seen for the user appeared, and how unusual the hour of day is for the user
(from the user's own past hours only). Vectors come out in time order, each with the user's previous
`seq_len - 1` vectors for the sequence model.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from mesh.events import Envelope, occurred_at
from services.anomaly.windows import ACTIVITY_ACTIONS

FloatArray = npt.NDArray[np.float64]
ACTIONS = (*ACTIVITY_ACTIONS, "other")
FEATURES: tuple[str, ...] = (
    *(f"n_{a}" for a in ACTIONS), *(f"items_{a}" for a in ACTIONS), "new_ip", "new_device", "hour_rarity",
)


@dataclass(frozen=True)
class UserHour:
    tenant_id: str
    user_id: str
    hour: datetime
    vector: FloatArray
    event_ids: tuple[str, ...]


@dataclass
class UserHistory:
    ips: set[str] = field(default_factory=set)
    devices: set[str] = field(default_factory=set)
    hours_of_day: FloatArray = field(default_factory=lambda: np.zeros(24))


@dataclass
class OpenHour:
    hour: datetime
    counts: FloatArray = field(default_factory=lambda: np.zeros(len(ACTIONS)))
    items: FloatArray = field(default_factory=lambda: np.zeros(len(ACTIONS)))
    ips: set[str] = field(default_factory=set)
    devices: set[str] = field(default_factory=set)
    ids: list[str] = field(default_factory=list)


def close_hour(tenant: str, user: str, w: OpenHour, hist: UserHistory) -> UserHour:
    seen = float(hist.hours_of_day.sum())
    share = float(hist.hours_of_day[w.hour.hour]) / seen if seen else 1.0 / 24
    vec = np.concatenate([
        np.log1p(w.counts), np.log1p(w.items),
        [float(bool(w.ips - hist.ips)) if hist.ips else 0.0,
         float(bool(w.devices - hist.devices)) if hist.devices else 0.0,
         -math.log(share + 1.0 / (seen + 24))],
    ])
    hist.ips |= w.ips
    hist.devices |= w.devices
    hist.hours_of_day[w.hour.hour] += 1
    return UserHour(tenant, user, w.hour, vec.astype(np.float64), tuple(w.ids))


def user_hours(events: Iterable[Envelope]) -> list[UserHour]:
    """Hourly vectors of every user, in time order of their hour's end (events must come in time order)."""
    history: dict[tuple[str, str], UserHistory] = defaultdict(UserHistory)
    open_: dict[tuple[str, str], OpenHour] = {}
    out: list[UserHour] = []
    for env in events:
        if env.WhichOneof("payload") != "user_activity":
            continue
        act = env.user_activity
        key = (env.tenant_id, act.user_id)
        hour = occurred_at(env).replace(minute=0, second=0, microsecond=0)
        cur = open_.get(key)
        if cur is not None and cur.hour != hour:
            out.append(close_hour(*key, cur, history[key]))
            cur = None
        if cur is None:
            cur = open_[key] = OpenHour(hour)
        i = ACTIONS.index(act.action) if act.action in ACTIONS else len(ACTIONS) - 1
        cur.counts[i] += 1
        cur.items[i] += max(act.count, 1)
        cur.ips.add(act.ip)
        cur.devices.add(act.device)
        cur.ids.append(env.event_id)
    out += [close_hour(*key, w, history[key]) for key, w in open_.items()]
    out.sort(key=lambda u: u.hour)
    return out


def sequences(rows: list[UserHour], seq_len: int) -> FloatArray:
    """(len(rows), seq_len, features): each row's vector preceded by its user's previous ones (zero-padded)."""
    by_user: dict[tuple[str, str], list[FloatArray]] = defaultdict(list)
    out = np.zeros((len(rows), seq_len, len(FEATURES)), dtype=np.float64)
    for i, r in enumerate(rows):
        past = by_user[(r.tenant_id, r.user_id)]
        past.append(r.vector)
        window = past[-seq_len:]
        out[i, seq_len - len(window):] = np.stack(window)
    return out
