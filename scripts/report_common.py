"""What the experiment reports share: a median with its range."""

import statistics


def median_range(values, fmt):
    """The median of `values` formatted with `fmt`, and their range in brackets if they differ."""
    if not values:
        return "–"
    m = statistics.median(values)
    if len(values) == 1 or min(values) == max(values):
        return fmt.format(m)
    return f"{fmt.format(m)} ({fmt.format(min(values))}–{fmt.format(max(values))})"
