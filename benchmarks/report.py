"""The performance budgets (DESIGN.md) and how the tables mark them."""

from __future__ import annotations

#: (workload, contender) → the largest allowed time ratio to the raw loop.
TIME_BUDGETS = {
    ("W1", "fengine Runner"): 1.10,
    ("W2", "fengine Runner"): 1.03,
    ("W3", "fengine Runner"): 1.03,
    ("W1", "functional, pure"): 1.05,
    ("W1", "functional, donated"): 0.95,
    ("W2", "functional, pure"): 1.02,
    ("W2", "functional, donated"): 1.02,
}
#: Peak RSS of every fengine contender: at most this ratio to the raw loop's.
RSS_BUDGET = 1.10


def ratio_cell(workload: str, contender: str, kind: str, ratio: float) -> str:
    """``ratio`` formatted, with ✓/✗ where a budget applies (``kind``: ``time`` or ``rss``)."""
    if kind == "rss":
        fengine = "fengine" in contender or "functional" in contender
        # Compiled contenders load the compiler stack; compare them with the compiled raw loop.
        budget = RSS_BUDGET if fengine and "compiled" not in contender else None
    else:
        budget = TIME_BUDGETS.get((workload, contender))
    mark = "" if budget is None else (" ✓" if ratio <= budget else f" ✗ (≤ {budget:.2f})")
    return f"{ratio:.2f}x{mark}"


def budget_notes() -> list[str]:
    """The budgets in words, for the notes under the tables."""
    listed = ", ".join(f"{c} on {w} ≤ {b:.2f}x" for (w, c), b in TIME_BUDGETS.items())
    return [
        f"Budgets (✓ met, ✗ missed; time ratios to the raw loop): {listed}; peak RSS of eager "
        f"fengine contenders ≤ {RSS_BUDGET:.2f}x.",
        "Runner contenders: six default hooks, EMAHook and one user class hook (it stamps the "
        "epoch clocks and counts iterations in `after_train_iter`); the checkpoint each epoch "
        "ends with is saved after the stamp, outside the timed window (see the checkpoint rows).",
    ]
