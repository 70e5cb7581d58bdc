"""Suite-wide settings: hypothesis runs without wall-clock deadlines (CI machines are small and busy)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "fengine",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
    print_blob=True,
)
settings.load_profile("fengine")
