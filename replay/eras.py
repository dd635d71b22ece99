"""Accounting-era profiles: how the recorded kernel moves and frees charges.

Two behaviours changed over the years and decide what a balanced trace looks
like:

* ``migrate``: ``mem_cgroup_migrate(old, new)`` force-charges ``new`` and leaves
  ``old`` charged until it is freed (4.14-6.6, "Force-charge the new page. The
  old one will be freed soon.", mm/memcontrol.c), or moves the charge and clears
  ``old`` (6.7+, 85ce2c517ade "memcontrol: only transfer the memcg data for
  migration").
* ``device_free_refcount``: a device-private page is freed when its refcount
  drops to 1 (<= 5.17) or to 0 (5.18+, 27674ef6c73f "mm: remove the extra
  ZONE_DEVICE struct page refcount").

The profile comes from the trace's metadata (the recorder feature-detects the
kernel) and can be overridden by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from chargetrace.traces import ChargetraceError, TraceMeta

__all__ = ["EraProfile", "PROFILES", "select_era"]

FORCE = "force"
TRANSFER = "transfer"


@dataclass(frozen=True)
class EraProfile:
    name: str
    migrate: str  # FORCE or TRANSFER
    device_free_refcount: int
    source: str = "profile"  # where the choice came from (metadata / --era / default)


PROFILES: dict[str, EraProfile] = {
    "4.14-5.17": EraProfile("4.14-5.17", FORCE, 1),
    "5.18-6.6": EraProfile("5.18-6.6", FORCE, 0),
    "6.7+": EraProfile("6.7+", TRANSFER, 0),
}
_DEFAULT = PROFILES["6.7+"]


def _named(migrate: str, refcount: int) -> str:
    for profile in PROFILES.values():
        if profile.migrate == migrate and profile.device_free_refcount == refcount:
            return profile.name
    return f"{migrate}/refcount-{refcount}"


def select_era(meta: TraceMeta, override: str | None = None) -> EraProfile:
    """The profile named by ``override``, else the one the metadata describes.

    Parts the metadata leaves unknown fall back to the newest era's; the
    returned ``source`` says so, and the report prints it.
    """
    if override:
        try:
            profile = PROFILES[override]
        except KeyError:
            raise ChargetraceError(
                f"unknown era {override!r}; choose one of {', '.join(PROFILES)}"
            ) from None
        return EraProfile(profile.name, profile.migrate, profile.device_free_refcount, "--era")
    migrate = meta.era.migrate
    refcount = meta.era.device_free_refcount
    if migrate not in (FORCE, TRANSFER) and refcount not in (0, 1):
        return EraProfile(_DEFAULT.name, _DEFAULT.migrate, _DEFAULT.device_free_refcount, "default (metadata names no era)")
    migrate = migrate if migrate in (FORCE, TRANSFER) else _DEFAULT.migrate
    refcount = refcount if refcount in (0, 1) else _DEFAULT.device_free_refcount
    detected = f" ({meta.era.detected_by})" if meta.era.detected_by else ""
    return EraProfile(_named(migrate, refcount), migrate, refcount, "metadata" + detected)
