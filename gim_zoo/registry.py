"""One table of zoo models: name -> what to build, how it was trained, what it measured.

A spec names its encoder configuration and its training objective; `build_model` turns
it into the Keras model that `training/train.py` fits. Unknown names fail with the
closest matches.
"""

import dataclasses
import difflib
import fnmatch
import math

from gim_zoo.data.sources import ESPEAK_SPEECH, FASHION_MNIST, LIBRISPEECH, STL10

FASHION_MNIST_ENCODER = dict(
    # Pad 28 -> 32 inside the model, 8x8 patches with stride 4 (50% overlap, as the paper's
    # 16/8 on 64x64): a 7x7 grid, the paper's grid, so K = 5 predictions still fit
    # (row 0 predicts row 6). Mean/std: measured on the 60k training images.
    image_size=28, channels=1, pad=2, patch_size=8, patch_stride=4,
    pixel_mean=72.94, pixel_std=90.02,
    # Small enough to train at ~250 images/s on 2 CPU cores.
    stem_width=32, stem_kernel=5, widths=(16, 32, 64), blocks=(1, 1, 1), strides=(1, 2, 2),
    expansion=4,
)
# The flagship's next encoder: the same geometry and widths, three pre-activation blocks
# per module (GIM's modules are whole ResNet stages; one block each left every module too
# shallow to learn much on its own). About 3x the compute of FASHION_MNIST_ENCODER, so
# it trains one module at a time, each module a resumable job of about 2 hours on 2
# cores (training/fmnist_results.sh).
FASHION_MNIST_DEEP_ENCODER = dict(FASHION_MNIST_ENCODER, blocks=(3, 3, 3))
STL10_ENCODER = dict(
    # The paper's: grayscale 64x64 crops, 16x16 patches, stride 8 (7x7 grid), first three
    # stages of a pre-activation ResNet-50 without BatchNorm. Mean/std are a fixed
    # 0.5/0.25 standardisation (not measured: STL-10 is not on these machines).
    image_size=64, channels=1, pad=0, patch_size=16, patch_stride=8,
    pixel_mean=127.5, pixel_std=63.75,
    stem_width=64, stem_kernel=5, widths=(64, 128, 256), blocks=(3, 4, 6), strides=(1, 2, 2),
    expansion=4,
)
SPEECH_ENCODER = dict(
    # The paper's strides and kernels (one frame per 160 samples = 10 ms at 16 kHz) and its
    # 20,480-sample crops; 128 channels and a 128-unit GRU instead of 512 / 256, to train
    # on 2 CPU cores.
    kernels=(10, 8, 4, 4, 4), strides=(5, 4, 2, 2, 2), channels=128, gru_units=128,
    crop_samples=20480,
)
PAPER_SPEECH_ENCODER = dict(
    # The paper's audio model: 512 channels, a 256-unit GRU.
    kernels=(10, 8, 4, 4, 4), strides=(5, 4, 2, 2, 2), channels=512, gru_units=256,
    crop_samples=20480,
)
GIM_OBJECTIVE = dict(prediction_steps=5, negatives=16, skip=1, isolate=True,
                     loss_modules="all", autoregressor=False)
# LoCo (Xiong, Ren, Urtasun, NeurIPS 2020): GIM whose module k loss is scored after the
# first block of module k+1, so it also trains that block (see GreedyInfoMax's overlap).
LOCO_OBJECTIVE = dict(GIM_OBJECTIVE, overlap=1)
# GIM whose modules also predict upward and sideways, as CPC v2 does (Henaff et al., ICML
# 2020): four InfoNCE tasks per module instead of one (see InfoNCE's directions).
GIM_4DIR_OBJECTIVE = dict(GIM_OBJECTIVE, directions=("down", "up", "right", "left"))
CPC_OBJECTIVE = dict(prediction_steps=5, negatives=16, skip=1, isolate=False,
                     loss_modules="last", autoregressor=True)
# Audio (the paper's): predict 1..12 frames ahead (no skip) against 10 negatives. The
# encoder's last module is the GRU, so CPC needs no extra autoregressor.
AUDIO_GIM_OBJECTIVE = dict(prediction_steps=12, negatives=10, skip=0, isolate=True,
                           loss_modules="all", autoregressor=False)
AUDIO_CPC_OBJECTIVE = dict(prediction_steps=12, negatives=10, skip=0, isolate=False,
                           loss_modules="last", autoregressor=False)


# The InfoNCE settings of each objective, per modality (supervised models have none).
INFONCE_SETTINGS = {
    "image": {"gim": GIM_OBJECTIVE, "loco": LOCO_OBJECTIVE, "gim4dir": GIM_4DIR_OBJECTIVE,
              "cpc": CPC_OBJECTIVE},
    "audio": {"gim": AUDIO_GIM_OBJECTIVE, "cpc": AUDIO_CPC_OBJECTIVE},
}


class UnknownModelError(KeyError):
    """A model name that is not in the registry; the message lists close matches."""

    def __str__(self):
        return str(self.args[0])


GIM_PAPER = "Loewe, O'Connor, Veeling. Putting An End to End-to-End. NeurIPS 2019."


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    objective: str  # "gim", "loco" (GIM with overlapping modules), "cpc" or "supervised"
    dataset: object  # the data source it was trained on (gim_zoo.data.sources)
    encoder: dict
    summary: str
    epochs: int
    batch_size: int = 32
    learning_rate: float = 2e-4
    num_classes: int = 10
    paper: str = GIM_PAPER
    license: str = "apache-2.0"
    # Linear probes read module features average-pooled to a probe_pool_to x probe_pool_to
    # grid: 1 is the paper's global pool (STL-10); 3 keeps the coarse layout that
    # Fashion-MNIST's 28x28 classes differ by (see GridAveragePool).
    probe_pool_to: int = 3
    # Lottery tickets: the registry model whose encoder was pruned (training/lottery.py
    # --network=ticket_of) and the lth_results.sh experiment that produces the run.
    ticket_of: str = None
    ticket_experiment: str = None
    # Trained one module at a time: module k is a job of its own (--train_module=k,
    # --init_from=module k-1's run) of `epochs` epochs, so each job fits a few hours.
    module_at_a_time: bool = False

    def training_command(self, seed=0, out_dir=None, **flags):
        """The command that trains this model: train.py with --model, --seed, --out_dir
        (default runs/NAME-seedSEED) and any other `flags` (a run's non-default settings,
        in order). The one builder: `info`, the not-published error and packaged
        metrics.json all use it. A module-at-a-time model without out_dir and flags gives
        its whole recipe, one command per module job; a run's own command is just that. A lottery ticket is made by lth_results.sh and
        package.py instead (out_dir and flags do not apply)."""
        if self.ticket_of:
            run = f"runs/lth/{self.ticket_experiment}-ticket-seed{seed}"
            return (f"SEED={seed} EXPERIMENTS={self.ticket_experiment} bash "
                    f"training/lth_results.sh && python training/package.py --model={self.name} "
                    f"--ticket_dir={run}")
        if self.module_at_a_time and out_dir is None and not flags:  # the whole recipe
            runs = [f"runs/{self.name}-m{k}-seed{seed}"
                    for k in range(1, len(self.encoder["blocks"]) + 1)]
            return " && ".join(
                self.training_command(seed, run, train_module=k, **(
                    {"init_from": runs[k - 2]} if k > 1 else {}), **flags)
                for k, run in enumerate(runs, 1))
        out_dir = f"runs/{self.name}-seed{seed}" if out_dir is None else out_dir
        return (f"python training/train.py --model={self.name} --seed={seed} "
                f"--out_dir={out_dir}" + "".join(f" --{k}={v}" for k, v in flags.items()))

    @property
    def modality(self):
        """IMAGE or AUDIO (gim_zoo.modality): what differs between the two, said once."""
        return self.dataset.modality

    def input_overrides(self, image_size=0, channels=0):
        """Encoder overrides for images of image_size x image_size x channels (0: the
        registered): the patch grid keeps its registered size (7x7), patches and stride
        scale with the image and padding fills the rest, so the InfoNCE predictions and
        the probe's pooling stay as registered. {} for the registered input."""
        encoder = self.encoder
        overrides = {}
        if channels and channels != encoder["channels"]:
            overrides["channels"] = channels
        if image_size and image_size != encoder["image_size"]:
            padded = encoder["image_size"] + 2 * encoder["pad"]
            grid = (padded - encoder["patch_size"]) // encoder["patch_stride"] + 1
            ratio = encoder["patch_size"] // encoder["patch_stride"]
            stride = max(1, math.ceil(image_size / (grid - 1 + ratio)))
            patch = ratio * stride
            pad = max(0, math.ceil((stride * (grid - 1) + patch - image_size) / 2))
            overrides.update(image_size=image_size, pad=pad, patch_size=patch,
                             patch_stride=stride)
        return overrides

    @property
    def infonce(self):
        return INFONCE_SETTINGS[self.modality.name].get(self.objective)

    def build_encoder(self, **overrides):
        encoder_class = self.modality.encoder_class()
        return encoder_class(**{**self.encoder, **overrides}, name="encoder")

    def build_model(self, encoder_overrides=None, train_module=None, seed=None,
                    num_classes=None):
        """The model train.py fits: GreedyInfoMax for gim/cpc; for supervised a Classifier
        (images) or a per-frame phone classifier (audio; num_classes: the corpus's phones)."""
        from gim_zoo.models.gim import GreedyInfoMax

        encoder = self.build_encoder(**(encoder_overrides or {}))
        if self.objective == "supervised":
            if train_module is not None:
                raise ValueError("train_module applies to gim/cpc objectives, not supervised")
            return self.modality.supervised_model(encoder, num_classes or self.num_classes)
        return GreedyInfoMax(encoder, train_module=train_module, seed=seed,
                             name=self.objective, **self.infonce)


_SPECS = [
    ModelSpec("gim-fmnist-resnet", "gim", FASHION_MNIST, FASHION_MNIST_ENCODER,
              "Greedy InfoMax, 3 gradient-isolated pre-activation ResNet modules, "
              "Fashion-MNIST.", epochs=16),
    ModelSpec("cpc-fmnist-resnet", "cpc", FASHION_MNIST, FASHION_MNIST_ENCODER,
              "End-to-end CPC baseline: same encoder, one InfoNCE loss on top with a "
              "row-causal autoregressor, Fashion-MNIST.", epochs=8),
    ModelSpec("supervised-fmnist-resnet", "supervised", FASHION_MNIST,
              FASHION_MNIST_ENCODER,
              "Supervised baseline: same encoder trained end-to-end with labels.",
              epochs=4, learning_rate=1e-3),
    ModelSpec("gim-fmnist-resnet-ticket", "gim", FASHION_MNIST, FASHION_MNIST_ENCODER,
              "Lottery ticket of the GIM encoder: iterative magnitude pruning under its own "
              "InfoNCE losses (no labels), survivors rewound to their initial values; the "
              "sparsest round whose linear probe stays within a point of the dense round.",
              epochs=1, ticket_of="gim-fmnist-resnet", ticket_experiment="gim60klamp"),
    ModelSpec("supervised-fmnist-resnet-ticket", "supervised", FASHION_MNIST,
              FASHION_MNIST_ENCODER,
              "Lottery ticket of the supervised encoder: iterative magnitude pruning under "
              "cross-entropy, survivors rewound to their initial values; the sparsest round "
              "whose test accuracy stays within a point of the dense round.",
              epochs=1, learning_rate=1e-3, ticket_of="supervised-fmnist-resnet",
              ticket_experiment="resnet"),
    ModelSpec("gim-fmnist-resnet-deep", "gim", FASHION_MNIST, FASHION_MNIST_DEEP_ENCODER,
              "Greedy InfoMax, 3 gradient-isolated modules of 3 pre-activation ResNet "
              "blocks each, trained one module at a time, Fashion-MNIST.", epochs=12,
              module_at_a_time=True),
    ModelSpec("loco-fmnist-resnet-deep", "loco", FASHION_MNIST, FASHION_MNIST_DEEP_ENCODER,
              "Greedy InfoMax with LoCo's overlapping modules: each module's InfoNCE loss "
              "also trains the first block of the next module; 3 modules of 3 blocks, "
              "Fashion-MNIST.", epochs=12, module_at_a_time=True,
              paper="Xiong, Ren, Urtasun. LoCo: Local Contrastive Representation Learning. "
                    "NeurIPS 2020. On " + GIM_PAPER),
    ModelSpec("gim4dir-fmnist-resnet-deep", "gim4dir", FASHION_MNIST,
              FASHION_MNIST_DEEP_ENCODER,
              "Greedy InfoMax whose modules predict in four directions (down, up, right, "
              "left; CPC v2's) instead of downward only; 3 modules of 3 blocks, "
              "Fashion-MNIST.", epochs=12, module_at_a_time=True,
              paper="Henaff et al. Data-Efficient Image Recognition with Contrastive "
                    "Predictive Coding. ICML 2020. On " + GIM_PAPER),
    ModelSpec("cpc-fmnist-resnet-deep", "cpc", FASHION_MNIST, FASHION_MNIST_DEEP_ENCODER,
              "End-to-end CPC baseline for the 3-block-module encoder: one InfoNCE loss on "
              "top with a row-causal autoregressor, Fashion-MNIST.", epochs=12),
    ModelSpec("supervised-fmnist-resnet-deep", "supervised", FASHION_MNIST,
              FASHION_MNIST_DEEP_ENCODER,
              "Supervised baseline for the 3-block-module encoder, trained end-to-end with "
              "labels.", epochs=12, learning_rate=1e-3),
    ModelSpec("gim-stl10-resnet", "gim", STL10, STL10_ENCODER,
              "Greedy InfoMax with the paper's configuration on STL-10 (ResNet-50 stages "
              "[3, 4, 6]); 300 epochs, Adam 2e-4, batch 32.", epochs=300, probe_pool_to=1),
    ModelSpec("cpc-stl10-resnet", "cpc", STL10, STL10_ENCODER,
              "End-to-end CPC baseline with the paper's configuration on STL-10.",
              epochs=300, probe_pool_to=1),
    ModelSpec("gim-espeak-audio", "gim", ESPEAK_SPEECH, SPEECH_ENCODER,
              "Greedy InfoMax on raw audio: 5 strided Conv1D modules and a GRU module, each "
              "with its own InfoNCE loss; trained on the synthetic espeak-ng corpus.",
              epochs=60, batch_size=8),
    ModelSpec("cpc-espeak-audio", "cpc", ESPEAK_SPEECH, SPEECH_ENCODER,
              "End-to-end CPC baseline on raw audio: the same conv + GRU encoder, one "
              "InfoNCE loss on the GRU output; synthetic espeak-ng corpus.",
              epochs=60, batch_size=8),
    ModelSpec("gim-librispeech-audio", "gim", LIBRISPEECH, PAPER_SPEECH_ENCODER,
              "Greedy InfoMax with the paper's audio configuration (512 channels, GRU 256) "
              "on LibriSpeech train-clean-100 through tensorflow-datasets.",
              epochs=1000, batch_size=8),
    ModelSpec("supervised-espeak-audio", "supervised", ESPEAK_SPEECH, SPEECH_ENCODER,
              "Supervised audio baseline: the same conv + GRU encoder trained end-to-end to "
              "classify the phone of every 10 ms frame; synthetic espeak-ng corpus.",
              epochs=60, batch_size=8, learning_rate=1e-3),
]
MODELS = {spec.name: spec for spec in _SPECS}


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern, e.g. 'gim-*' (sorted; [] if none).

    Raises nothing: a pattern that matches no name gives an empty list.
    """
    return sorted(n for n in MODELS if fnmatch.fnmatch(n, pattern))


def get(name: str) -> ModelSpec:
    """The spec of `name`.

    Raises:
        UnknownModelError: (a KeyError) `name` is not registered; the message lists the
            closest matches and every known name.
    """
    try:
        return MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), MODELS, n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}.{hint} Known models: {', '.join(list_models())}"
        ) from None
