"""Row-causal context network for the end-to-end CPC baseline.

CPC (van den Oord et al. 2018; Henaff et al. 2019) predicts patches below from a context
that summarises every row above, computed by a PixelCNN-style autoregressor. Here: a small
stack of residual convolutions whose kernels only look at the current and earlier rows
(zero padding on top only), so the context at row i never sees a row it must predict.
Greedy InfoMax drops it: each module's own output is its context.
"""

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="gim_zoo")
class RowCausalContext(layers.Layer):
    """(B, G, G, C) -> (B, G, G, C); output row i depends only on input rows <= i."""

    def __init__(self, depth=2, kernel_rows=3, **kwargs):
        super().__init__(**kwargs)
        self.depth, self.kernel_rows = int(depth), int(kernel_rows)
        pad = ((self.kernel_rows - 1, 0), (1, 1))  # top only; columns symmetric
        self.pads = [layers.ZeroPadding2D(pad) for _ in range(self.depth)]
        self.convs = []

    def build(self, input_shape):
        channels = input_shape[-1]
        for i, pad in enumerate(self.pads):
            conv = layers.Conv2D(channels, (self.kernel_rows, 3), name=f"causal{i + 1}")
            conv.build(pad.compute_output_shape(input_shape))
            self.convs.append(conv)

    def call(self, z):
        h = z
        for pad, conv in zip(self.pads, self.convs):
            h = h + conv(pad(ops.relu(h)))
        return h

    def get_config(self):
        return {**super().get_config(), "depth": self.depth, "kernel_rows": self.kernel_rows}
