"""The networks lottery tickets are drawn from: Frankle & Carbin's LeNet-300-100 and Conv-2
(for 28x28 grayscale images), and any registered zoo model, by name.

    model = build_network("lenet300")            # or "conv2", or "gim-fmnist-resnet"

In the library (not only in the IMP driver) because a ticket run's masks and weights are
only usable on the network they were found in: `load_ticket` rebuilds it from its name.
"""

import keras

from gim_zoo import registry


def lenet_300_100(num_classes=10):
    """LeNet-300-100 (Frankle & Carbin's MNIST network) for 28x28 grayscale images."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Rescaling(1 / 255.0),
        keras.layers.Flatten(),
        keras.layers.Dense(300, activation="relu"),
        keras.layers.Dense(100, activation="relu"),
        keras.layers.Dense(num_classes, activation="softmax"),
    ], name="lenet_300_100")


def conv2(num_classes=10, filters=32):
    """Conv-2 of Frankle & Carbin (two 3x3 convs, max-pool, 256-256 dense) for 28x28
    images, with 32 filters instead of their 64 so that IMP's many rounds fit 2 CPU cores."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Rescaling(1 / 255.0),
        keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(num_classes, activation="softmax"),
    ], name="conv2")


NETWORKS = {"lenet300": lenet_300_100, "conv2": conv2}


def build_network(network, seed=0):
    """The (uncompiled) model of a network name: a supervised net or a GreedyInfoMax."""
    if network in NETWORKS:
        return NETWORKS[network]()
    return registry.get(network).build_model(seed=seed)
