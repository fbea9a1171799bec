"""Phone (per frame) and speaker (per utterance) linear probes on the speech corpus
(or on LibriSpeech with --dataset=librispeech --alignment_file=...).

    python training/probe_audio.py --run_dir=runs/gim-espeak-audio-seed0        # GIM, GRU module
    python training/probe_audio.py --run_dir=runs/gim-espeak-audio-seed0 --module=3
    python training/probe_audio.py --features=mfcc                              # MFCC baseline
    python training/probe_audio.py --model=gim-espeak-audio                     # random init
The corpus is synthetic speech (espeak-ng): its numbers are not LibriSpeech numbers.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from gim_zoo.allocator import reuse_freed_memory  # noqa: E402

reuse_freed_memory()  # before TensorFlow starts its threads (docs/training.md)

# experiments.flags first: it imports TensorFlow with its CUDA probing hushed
from experiments.flags import run_script  # noqa: E402
from experiments.speech_probes import AudioProbeConfig, probe_audio  # noqa: E402


def show(r):
    where = f", module {r['module']}" if r["module"] else ""
    data = "synthetic speech" if r["synthetic_speech"] else r["dataset"]
    print(f"{r['source']}{where} ({data}): phone top-1 {r['phone_accuracy']:.4f} on "
          f"{r['phone_frames_test']} frames, speaker top-1 {r['speaker_accuracy']:.4f} on "
          f"{r['utterances_test']} utterances  [{r['path']}]")


if __name__ == "__main__":
    run_script(AudioProbeConfig, probe_audio, show)
