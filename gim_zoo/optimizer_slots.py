"""Resetting an optimizer's per-variable state (slots): the one helper behind the lottery
rewind (a fresh optimizer), teleportation and RIFLE (the slots of the variables they moved).

Why: momentum and Adam / AdaGrad accumulators were gathered for weights that have just been
replaced (rewound, teleported, re-initialised); carried over, they would push the new
weights with the old ones' history.
"""

from keras import ops


def reset_slots(optimizer, variables=None, restart_step_count=False):
    """Put the optimizer's slots back to their initial values (0; AdaGrad accumulators to
    its initial_accumulator_value).

    variables: the model variables whose slots are reset; None: every slot. Keras names
      a slot "<variable path, / as _>_<slot name>" (BaseOptimizer.add_variable_from_reference).
    restart_step_count: also set the step counter to 0, which restarts a learning-rate
      schedule; with variables=None the optimizer is then as if freshly built, without
      being rebuilt (what a lottery-ticket rewind wants). By default the count is kept, so
      a schedule is not restarted.
    The learning rate (a variable, but a setting, not state) is never touched.
    """
    if optimizer is None or not getattr(optimizer, "built", False):
        return
    step_counter = optimizer.iterations
    prefixes = None if variables is None else \
        tuple(v.path.replace("/", "_") + "_" for v in variables)
    initial = float(getattr(optimizer, "initial_accumulator_value", 0.0))
    for slot in optimizer.variables:
        if slot is step_counter:
            if restart_step_count:
                slot.assign(ops.zeros(slot.shape, dtype=slot.dtype))
        elif "learning_rate" in slot.path:
            continue
        elif prefixes is None or slot.name.startswith(prefixes):
            fill = initial if slot.name.endswith("_accumulator") else 0.0
            slot.assign(ops.full(slot.shape, fill, dtype=slot.dtype))
