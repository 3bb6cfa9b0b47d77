"""Room occupancy for one week, per room and per day, drawn as small server-side SVG bar charts
(no JavaScript library): approved hours solid, pending hours hatched."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from node.spaces import services as spaces
from node.spaces.models import BLOCKING_STATUSES
from node.web.helpers import local_midnight, node_zone

#: The reference day for the percentage: the hours a room can reasonably be used (9:00-21:00).
REFERENCE_HOURS_PER_DAY = 12
CHART_WIDTH = 280
CHART_HEIGHT = 150
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 28, 6, 10, 22


@dataclass
class DayUse:
    day: date
    approved: float = 0.0
    pending: float = 0.0

    @property
    def total(self) -> float:
        return self.approved + self.pending


@dataclass
class RoomWeek:
    room: Any
    days: list[DayUse] = field(default_factory=list)

    @property
    def approved(self) -> float:
        return sum(d.approved for d in self.days)

    @property
    def pending(self) -> float:
        return sum(d.pending for d in self.days)

    @property
    def rate(self) -> int:
        """Approved and pending hours as a share of the reference week, in percent."""
        return round(100 * (self.approved + self.pending) / (REFERENCE_HOURS_PER_DAY * len(self.days or [1])))

    def bars(self) -> dict[str, Any]:
        """Geometry of the chart: one bar per day, pending stacked on approved; the scale is at least
        the reference day, more when a day is fuller."""
        top = max([REFERENCE_HOURS_PER_DAY] + [d.total for d in self.days])
        scale_max = int(-(-top // 4) * 4)  # rounded up to a multiple of 4 hours
        inner_w = CHART_WIDTH - PAD_LEFT - PAD_RIGHT
        inner_h = CHART_HEIGHT - PAD_TOP - PAD_BOTTOM
        slot = inner_w / max(1, len(self.days))
        bar_w = slot * 0.6
        bars = []
        for index, use in enumerate(self.days):
            x = PAD_LEFT + index * slot + (slot - bar_w) / 2
            approved_h = inner_h * use.approved / scale_max
            pending_h = inner_h * use.pending / scale_max
            base = PAD_TOP + inner_h
            bars.append({
                "x": round(x, 1), "w": round(bar_w, 1), "label_x": round(x + bar_w / 2, 1),
                "approved_y": round(base - approved_h, 1), "approved_h": round(approved_h, 1),
                "pending_y": round(base - approved_h - pending_h, 1), "pending_h": round(pending_h, 1),
                "use": use,
            })
        ticks = [{"y": round(PAD_TOP + inner_h - inner_h * hours / scale_max, 1), "hours": hours}
                 for hours in range(0, scale_max + 1, 4)]
        return {"bars": bars, "ticks": ticks, "width": CHART_WIDTH, "height": CHART_HEIGHT,
                "left": PAD_LEFT, "right": CHART_WIDTH - PAD_RIGHT, "base": PAD_TOP + inner_h,
                "label_y": CHART_HEIGHT - 6}


def _hours_overlap(start: datetime, end: datetime, lo: datetime, hi: datetime) -> float:
    seconds = (min(end, hi) - max(start, lo)).total_seconds()
    return max(0.0, seconds / 3600)


def week_occupancy(actor: Any, monday: date) -> list[RoomWeek]:
    """Every active room's booked hours on each day of the week starting ``monday`` (node's zone)."""
    tz = node_zone()
    days = [monday + timedelta(days=i) for i in range(7)]
    bounds = [(local_midnight(d, tz), local_midnight(d + timedelta(days=1), tz)) for d in days]
    start, end = bounds[0][0], bounds[-1][1]
    bookings = []
    cursor = None
    while True:
        page, cursor = spaces.list_bookings(actor, start=start, end=end, limit=100, cursor=cursor)
        bookings.extend(b for b in page if b.status in BLOCKING_STATUSES)
        if cursor is None:
            break
    weeks = {room.id: RoomWeek(room, [DayUse(d) for d in days]) for room in spaces.list_rooms(actor)}
    for booking in bookings:
        week = weeks.get(booking.room_id)
        if week is None:
            continue
        for use, (lo, hi) in zip(week.days, bounds, strict=True):
            hours = _hours_overlap(booking.starts_at, booking.ends_at, lo, hi)
            if booking.status == "approved":
                use.approved += hours
            else:
                use.pending += hours
    return list(weeks.values())
