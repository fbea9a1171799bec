"""Resetting an optimizer's per-variable state (slots), shared by RIFLE and teleportation."""

from keras import ops


def reset_slots(optimizer, variables):
    """Put the optimizer's slots for `variables` (momentum, Adam moments, AdaGrad
    accumulators) back to their initial values; the step counter is left alone, so a
    learning-rate schedule is not restarted. Keras names a slot
    "<variable path with / as _>_<slot name>" (BaseOptimizer.add_variable_from_reference)."""
    if not getattr(optimizer, "built", False):
        return
    prefixes = tuple(v.path.replace("/", "_") + "_" for v in variables)
    initial = float(getattr(optimizer, "initial_accumulator_value", 0.0))
    for slot in optimizer.variables:
        if slot.name.startswith(prefixes):
            fill = initial if slot.name.endswith("_accumulator") else 0.0
            slot.assign(ops.full(slot.shape, fill, dtype=slot.dtype))
