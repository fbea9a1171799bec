"""Pre-activation bottleneck ResNet stages without BatchNorm, cut into GIM modules.

No BatchNorm because batch statistics would mix information across patches and images,
which InfoNCE's negatives can exploit; the GIM paper's encoder omits it for that reason.
"""

import keras
from keras import layers, ops

from gim_zoo.models.module_stack import build_module_stack
from gim_zoo.models.input_checks import (FeatureModel, InputCheck, check_images,
                                         empty_output, is_array, is_empty_batch)
from gim_zoo.models.patches import GridAveragePool, ImagePatches, PatchGridPool, grid_size


@keras.saving.register_keras_serializable(package="gim_zoo")
class PreActBottleneck(layers.Layer):
    """relu -> 1x1 -> relu -> 3x3 (stride) -> relu -> 1x1 (x expansion), plus shortcut."""

    def __init__(self, width, stride=1, expansion=4, **kwargs):
        super().__init__(**kwargs)
        self.width, self.stride, self.expansion = int(width), int(stride), int(expansion)
        out = self.width * self.expansion
        self.reduce = layers.Conv2D(self.width, 1, use_bias=False, name="reduce")
        self.spatial = layers.Conv2D(
            self.width, 3, strides=self.stride, padding="same", use_bias=False, name="spatial"
        )
        self.expand = layers.Conv2D(out, 1, use_bias=False, name="expand")
        self.projection = None
        self._out_channels = out

    def build(self, input_shape):
        in_channels = input_shape[-1]
        if self.stride != 1 or in_channels != self._out_channels:
            self.projection = layers.Conv2D(
                self._out_channels, 1, strides=self.stride, use_bias=False, name="projection"
            )
            self.projection.build(input_shape)
        self.reduce.build(input_shape)
        reduced = (*input_shape[:-1], self.width)
        self.spatial.build(reduced)
        self.expand.build(self.spatial.compute_output_shape(reduced))

    def call(self, x):
        pre = ops.relu(x)
        shortcut = x if self.projection is None else self.projection(pre)
        h = self.reduce(pre)
        h = self.spatial(ops.relu(h))
        h = self.expand(ops.relu(h))
        return h + shortcut

    def compute_output_shape(self, input_shape):
        spatial = self.spatial.compute_output_shape((*input_shape[:-1], self.width))
        return (*spatial[:-1], self._out_channels)

    def get_config(self):
        return {
            **super().get_config(),
            "width": self.width,
            "stride": self.stride,
            "expansion": self.expansion,
        }


@keras.saving.register_keras_serializable(package="gim_zoo")
class PatchResNetEncoder(keras.Model):
    """Images -> patch grid -> N gradient-isolatable modules (one per ResNet stage).

    `call` returns the last module's (B, G, G, C) grid of patch embeddings;
    `module_outputs` returns every module's; `feature_model(k)` gives a functional
    model (images -> module k's grid) for probes and export. Inputs are raw pixel values
    (0..255); normalisation and the padding that fixes the grid live inside the model.
    """

    def __init__(
        self,
        image_size=28,
        channels=1,
        pad=2,
        patch_size=8,
        patch_stride=4,
        pixel_mean=72.94,
        pixel_std=90.02,
        stem_width=64,
        stem_kernel=5,
        widths=(64, 128, 256),
        blocks=(3, 4, 6),
        strides=(1, 2, 2),
        expansion=4,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not (len(widths) == len(blocks) == len(strides)):
            raise ValueError("widths, blocks and strides need one entry per module")
        self.image_size, self.channels, self.pad = int(image_size), int(channels), int(pad)
        self.patch_size, self.patch_stride = int(patch_size), int(patch_stride)
        self.pixel_mean, self.pixel_std = float(pixel_mean), float(pixel_std)
        self.stem_width, self.stem_kernel = int(stem_width), int(stem_kernel)
        self.widths, self.blocks = [int(w) for w in widths], [int(b) for b in blocks]
        self.strides, self.expansion = [int(s) for s in strides], int(expansion)
        self.grid = grid_size(self.image_size + 2 * self.pad, self.patch_size, self.patch_stride)

        self.padding = layers.ZeroPadding2D(self.pad, name="pad") if self.pad else None
        self.to_patches = ImagePatches(self.patch_size, self.patch_stride, name="patches")
        self.gim_modules = []
        for m, (width, n_blocks, stride) in enumerate(zip(self.widths, self.blocks, self.strides)):
            stage = []
            if m == 0:
                stage.append(
                    layers.Conv2D(self.stem_width, self.stem_kernel, padding="same", name="stem")
                )
            for b in range(n_blocks):
                stage.append(
                    PreActBottleneck(
                        width, stride if b == 0 else 1, self.expansion, name=f"block{b + 1}"
                    )
                )
            self.gim_modules.append(keras.Sequential(stage, name=f"module{m + 1}"))
        self.grid_pool = PatchGridPool(self.grid, name="grid_pool")
        self.build((None, self.image_size, self.image_size, self.channels))

    @property
    def num_modules(self):
        return len(self.gim_modules)

    @property
    def output_channels(self):
        return [w * self.expansion for w in self.widths]

    def build(self, input_shape):
        build_module_stack(self.gim_modules,
                           (None, self.patch_size, self.patch_size, self.channels))
        self.built = True

    def check_images(self, images):
        """Refuse a wrong shape (always) and NaN/inf values, warn on images scaled to 0..1
        (concrete arrays only, never while tracing): see gim_zoo.models.input_checks."""
        return check_images(images, self)

    def predict(self, x, *args, **kwargs):
        """keras.Model.predict, after checking in-memory images (shape, NaN/inf, range);
        an empty batch gives an empty (0, G, G, C) array."""
        if is_array(x):
            self.check_images(x)
            if x.shape[0] == 0:
                return empty_output((None, self.grid, self.grid, self.output_channels[-1]))
        return super().predict(x, *args, **kwargs)

    def patches(self, images):
        """Raw images -> normalised (B*G*G, P, P, C) patches (the modules' input)."""
        self.check_images(images)
        x = (ops.cast(images, "float32") - self.pixel_mean) / self.pixel_std
        if self.padding is not None:
            x = self.padding(x)
        return self.to_patches(x)

    def module_input(self, images):
        """What module 1 reads (GreedyInfoMax's encoder interface): the patches."""
        return self.patches(images)

    def module_grid(self, h, module_index):
        """Module output -> the (B, G, G, C) grid its InfoNCE loss scores (any module)."""
        return self.grid_pool(h)

    def module_outputs(self, images, upto=None, training=False):
        """Pooled (B, G, G, C_k) output of modules 1..upto (default all)."""
        if is_empty_batch(images):  # (0, G, G, C_k), as for any batch size
            self.check_images(images)
            return [ops.zeros((0, self.grid, self.grid, c))
                    for c in self.output_channels[: upto or self.num_modules]]
        h = self.patches(images)
        outputs = []
        for module in self.gim_modules[: upto or self.num_modules]:
            h = module(h, training=training)
            outputs.append(self.grid_pool(h))
        return outputs

    def call(self, images, training=False):
        return self.module_outputs(images, training=training)[-1]

    def feature_model(self, module=None, pool_to=None):
        """Functional model: images -> module `module`'s (B, G, G, C) grid, or, with
        pool_to=k, its (B, k*k*C) average-pooled features (k=1: global pool, the paper's)."""
        module = module or self.num_modules
        if not 1 <= module <= self.num_modules:
            raise ValueError(f"module must be in 1..{self.num_modules}, got {module}")
        images = keras.Input((self.image_size, self.image_size, self.channels), name="images")
        # checks concrete inputs of eager calls; an identity while tracing or exporting
        checked = InputCheck("images", self.image_size, self.channels,
                             encoder_name=self.name, name="input_check")(images)
        features = self.module_outputs(checked, upto=module)[-1]
        if pool_to:
            features = GridAveragePool(pool_to, name=f"pool_to{pool_to}")(features)
        return FeatureModel(images, features, name=f"{self.name}_module{module}")

    def get_config(self):
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "channels": self.channels,
            "pad": self.pad,
            "patch_size": self.patch_size,
            "patch_stride": self.patch_stride,
            "pixel_mean": self.pixel_mean,
            "pixel_std": self.pixel_std,
            "stem_width": self.stem_width,
            "stem_kernel": self.stem_kernel,
            "widths": self.widths,
            "blocks": self.blocks,
            "strides": self.strides,
            "expansion": self.expansion,
        }
