"""Mixed precision for one training run, without leaking into the rest of the process.

Keras reads its global dtype policy when a layer is built, so the policy must be set
before the model is built; and it is process-wide, so a run that sets it must put the
previous one back (a test, a notebook or a second run in the same process would otherwise
build float16 models without asking). `policy_scope` does both.

What the zoo's models do under a mixed policy: the encoder computes in float16 / bfloat16
with float32 variables; the InfoNCE heads (`gim_zoo.models.infonce`) and the classifiers'
softmax heads are float32 layers, so scores, log-softmax and losses are float32 (unscaled
InfoNCE scores of wide modules overflow float16's 65,504). Under "mixed_float16" Keras's
`compile` wraps the optimizer in a `LossScaleOptimizer` and `GreedyInfoMax`'s own train
step scales its loss with it, as Keras's built-in step does.
"""

import contextlib

# "" is Keras's default ("float32"): no mixed precision.
POLICIES = ("", "mixed_float16", "mixed_bfloat16")


def check_policy(name, argument="mixed_precision"):
    """`name` if it is one of POLICIES, else a ValueError naming `argument`."""
    if name not in POLICIES:
        raise ValueError(f"--{argument} must be one of {POLICIES} ('' is float32), got "
                         f"{name!r}")
    return name


@contextlib.contextmanager
def policy_scope(name):
    """Set Keras's global dtype policy to `name` ("" or "float32": float32) for the
    block, then restore the one before; build the model inside the block."""
    import keras

    name = "float32" if name in ("", "float32") else check_policy(name)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
