"""Numeric arguments checked where they enter: one-line ValueErrors naming the argument
and the allowed range, the same wording everywhere (command lines, script configs,
callbacks, public functions).

    check_int("steps", steps, low=1)              # steps must be an integer >= 1, got 0
    check_number("lr", lr, low=0, low_open=True)  # lr must be a finite number > 0, got nan
    check_rate("global_rate", rate)               # a fraction to remove: 0 <= rate < 1

A script's config dataclass lists its numeric fields' ranges once, as LIMITS
({field: rule}), and `check_config` checks them, naming each as its flag (--steps).
Standard library only: the command line checks before TensorFlow is imported.
"""

import math
import numbers


def _range_text(low, high, low_open=False, high_open=False):
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}" if isinstance(low, float)
                     else f"{'>' if low_open else '>='} {low}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}" if isinstance(high, float)
                     else f"{'<' if high_open else '<='} {high}")
    return " and ".join(parts)


def check_int(name, value, low=None, high=None, note=""):
    """`value` as an int if it is an integer within [low, high] (None: unbounded), else a
    ValueError naming `name` and the range. note: what special values mean ("0: all")."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer{_within(low, high)}{_note(note)}, "
                             f"got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer{_within(low, high)}{_note(note)}, "
                         f"got {value}")
    return int(value)


def check_number(name, value, low=None, high=None, low_open=False, high_open=False,
                 note=""):
    """`value` as a float if it is a finite number within the range (low_open / high_open:
    the bound itself is excluded), else a ValueError naming `name` and the range."""
    bounds = _range_text(low, high, low_open, high_open)
    wanted = f"a finite number{' ' + bounds if bounds else ''}{_note(note)}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    value = float(value)
    if (not math.isfinite(value)
            or (low is not None and (value <= low if low_open else value < low))
            or (high is not None and (value >= high if high_open else value > high))):
        raise ValueError(f"{name} must be {wanted}, got {value}")
    return value


def check_rate(name, value):
    """A pruning rate: the fraction of surviving weights to remove, 0 <= rate < 1 (at 1
    nothing would survive)."""
    return check_number(name, value, 0.0, 1.0, high_open=True,
                        note=" (the fraction of surviving weights removed)")


def _within(low, high):
    text = _range_text(low, high)
    return f" {text}" if text else ""


def _note(note):
    return f" ({note})" if note and not note.startswith(" ") else note


# --- rules for config dataclasses (LIMITS = {field: rule}) -------------------------------

def integer(low=None, high=None, note=""):
    """A LIMITS rule: an integer in [low, high]."""
    return lambda name, value: check_int(name, value, low, high, note)


def number(low=None, high=None, low_open=False, high_open=False, note=""):
    """A LIMITS rule: a finite number in the range."""
    return lambda name, value: check_number(name, value, low, high, low_open, high_open, note)


def rate():
    """A LIMITS rule: a pruning rate (see check_rate)."""
    return check_rate


def check_config(config, limits=None, prefix="--"):
    """Check every field that `limits` (default: the config's LIMITS) gives a rule for;
    errors name the field as a flag (--steps)."""
    limits = getattr(config, "LIMITS", {}) if limits is None else limits
    for field, rule in limits.items():
        rule(f"{prefix}{field}", getattr(config, field))
    return config
