"""Patch layers: the encoder sees images, the modules see a grid of patches.

Cutting patches inside the model (not in the data pipeline) means an exported encoder
takes plain images. Patches are taken with plain strided slices rather than
`ops.image.extract_patches`: slices have an unambiguous (row, column, channel) order on
every backend and convert to TFLite builtins (ExtractImagePatches is not one).
"""

import keras
from keras import ops


def grid_size(image_size, patch_size, stride):
    """Number of patches along one side of a (square) image."""
    if image_size < patch_size:
        raise ValueError(f"image side {image_size} is smaller than patch size {patch_size}")
    return (image_size - patch_size) // stride + 1


@keras.saving.register_keras_serializable(package="gim_zoo")
class ImagePatches(keras.layers.Layer):
    """(B, H, W, C) images -> (B * G * G, P, P, C) patches, row-major over the grid."""

    def __init__(self, patch_size, stride, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = int(patch_size)
        self.stride = int(stride)

    def grid(self, image_size):
        return grid_size(image_size, self.patch_size, self.stride)

    def call(self, images):
        height, width = images.shape[1], images.shape[2]
        if height != width:
            raise ValueError(f"ImagePatches expects square images, got {height}x{width}")
        g, p, s = self.grid(height), self.patch_size, self.stride
        rows = []
        for i in range(g):
            row = [images[:, i * s : i * s + p, j * s : j * s + p, :] for j in range(g)]
            rows.append(ops.stack(row, axis=1))  # (B, G, P, P, C)
        grid = ops.stack(rows, axis=1)  # (B, G, G, P, P, C)
        return ops.reshape(grid, (-1, p, p, images.shape[-1]))

    def compute_output_shape(self, input_shape):
        return (None, self.patch_size, self.patch_size, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "patch_size": self.patch_size, "stride": self.stride}


@keras.saving.register_keras_serializable(package="gim_zoo")
class PatchGridPool(keras.layers.Layer):
    """(B * G * G, h, w, C) patch feature maps -> (B, G, G, C): average-pool each patch."""

    def __init__(self, grid, **kwargs):
        super().__init__(**kwargs)
        self.grid = int(grid)

    def call(self, patch_maps):
        pooled = ops.mean(patch_maps, axis=(1, 2))
        return ops.reshape(pooled, (-1, self.grid, self.grid, patch_maps.shape[-1]))

    def compute_output_shape(self, input_shape):
        return (None, self.grid, self.grid, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "grid": self.grid}


@keras.saving.register_keras_serializable(package="gim_zoo")
class GridAveragePool(keras.layers.Layer):
    """(B, G, G, C) patch grid -> ReLU -> average-pool to a k x k grid -> (B, k*k*C).

    The ReLU first: module outputs are a pre-activation ResNet's residual stream, which
    such networks rectify before pooling (He et al. 2016, identity mappings). k = 1 is the
    paper's global average pool. k = 3 on the 7x7 grid (3x3 windows, stride 2) keeps where
    on the image a feature is: that layout is most of what tells a shirt from a pullover on
    28x28 Fashion-MNIST, and global pooling throws it away.
    """

    def __init__(self, pool_to=1, **kwargs):
        super().__init__(**kwargs)
        self.pool_to = int(pool_to)
        if self.pool_to < 1:
            raise ValueError(f"pool_to must be >= 1, got {pool_to}")

    def window(self, grid):
        """(pool size, stride) that cover a grid x grid map with pool_to x pool_to windows."""
        if self.pool_to > grid:
            raise ValueError(f"cannot pool a {grid}x{grid} grid to {self.pool_to}x{self.pool_to}")
        stride = grid // self.pool_to
        return grid - stride * (self.pool_to - 1), stride

    def call(self, grid_features):
        size, stride = self.window(grid_features.shape[1])
        pooled = ops.average_pool(ops.relu(grid_features), size, strides=stride,
                                  padding="valid")
        return ops.reshape(pooled, (-1, self.pool_to * self.pool_to * grid_features.shape[-1]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.pool_to * self.pool_to * input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "pool_to": self.pool_to}
