"""Synthesise the offline speech corpus (espeak-ng; synthetic speech, phone-aligned).

    sudo apt-get install espeak-ng
    python training/make_speech_corpus.py                      # 10 speakers x 40 sentences
    python training/make_speech_corpus.py --speakers=4 --utterances_per_speaker=10 --out_dir=/tmp/c
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

# experiments.flags first: it imports TensorFlow with its CUDA probing hushed
from experiments.flags import USER_ERRORS, run_main  # noqa: E402
from gim_zoo.data.speech_corpus import DEFAULT_DIR, SPEAKERS, make_corpus  # noqa: E402

flags.DEFINE_string("out_dir", DEFAULT_DIR, "corpus folder (replaced atomically)")
flags.DEFINE_integer("speakers", len(SPEAKERS), f"how many of the {len(SPEAKERS)} voices")
flags.DEFINE_integer("utterances_per_speaker", 40, "sentences each speaker says")
flags.DEFINE_integer("seed", 0, "seed of the sentence grammar")


def main(argv):
    f = flags.FLAGS
    try:
        manifest = make_corpus(f.out_dir, f.speakers, f.utterances_per_speaker, f.seed)
    except USER_ERRORS as e:
        raise SystemExit(f"error: {e}")
    seconds = sum(u["num_samples"] for u in manifest["utterances"]) / manifest["sample_rate"]
    print(f"{f.out_dir}: {len(manifest['utterances'])} utterances, {seconds / 60:.1f} min of "
          f"synthetic speech, {len(manifest['speakers'])} speakers, "
          f"{len(manifest['phones'])} phones (espeak-ng {manifest['espeak_ng']})")


if __name__ == "__main__":
    run_main(main)
