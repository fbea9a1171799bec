"""Encoders as stacks of gradient-isolated modules."""


def build_module_stack(modules, input_shape):
    """Build each module on its predecessor's output shape, so an encoder's variables
    exist before it is first called (loading weights needs them)."""
    shape = input_shape
    for module in modules:
        module.build(shape)
        shape = module.compute_output_shape(shape)
    return shape
