"""Audio encoder export: Keras vs TFLite fp32 and int8, size and latency per second of audio.

    python benchmarks/audio_export.py                                   # random-init weights
    python benchmarks/audio_export.py --weights=runs/gim-espeak-audio-seed0/encoder.weights.h5
    python benchmarks/audio_export.py --weights=pretrained            # the bundled encoder

Measured side by side in one process on the same 1.28 s waveforms (20,480 samples, the
training crop): median single-clip latency, reported per second of audio (the real-time
factor's inverse: 10 ms means 100x faster than real time), the largest difference
between the fp32 TFLite and Keras features, and the int8 file's median cosine to Keras.
int8 is calibrated on the speech corpus's training crops where the corpus exists (else on
the benchmark's noise clips). Latency does not depend on the weights' values.
"""

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gim-espeak-audio")
    parser.add_argument("--weights", default="",
                        help="encoder weights as gim_zoo.load takes them: a run's "
                             "encoder.weights.h5, a model folder or 'pretrained'; '': random")
    parser.add_argument("--clips", type=int, default=20)
    args = parser.parse_args()

    import keras

    import gim_zoo
    from gim_zoo.demo import per_image_ms
    from gim_zoo.exporting import TFLiteModel, export_tflite

    from gim_zoo import registry

    spec = registry.get(args.model)
    keras.utils.set_random_seed(0)
    encoder = gim_zoo.load(args.model, weights=args.weights or None)
    samples = encoder.crop_samples
    seconds = samples / 16000
    clips = np.random.default_rng(0).normal(0, 0.1, (args.clips, samples)).astype("float32")
    keras_model = encoder.feature_model()
    try:

        calibration = spec.modality.calibration_inputs(spec, count=100)
    except FileNotFoundError:  # no corpus here: calibrate on the noise clips
        calibration = clips
    with tempfile.TemporaryDirectory() as tmp:
        path = export_tflite(encoder.export_model(), Path(tmp) / "audio_encoder.tflite")
        int8_path = export_tflite(encoder.export_model(), Path(tmp) / "audio_int8.tflite",
                                  quantize="int8", representative_images=calibration,
                                  samples=100)
        lite, int8 = TFLiteModel(path), TFLiteModel(int8_path)
        keras_model.predict_on_batch(clips[:1])  # trace the compiled predict function once
        keras_ms = per_image_ms(keras_model.predict_on_batch, clips)
        lite_ms = per_image_ms(lite, clips)
        int8_ms = per_image_ms(int8, clips)
        want = keras.ops.convert_to_numpy(keras_model(clips))
        gap = float(np.max(np.abs(lite(clips) - want)))
        got = int8(clips)
        cosine = np.sum(got * want, -1) / (np.linalg.norm(got, axis=-1) *
                                            np.linalg.norm(want, axis=-1) + 1e-12)
        rows = [("Keras predict_on_batch (TF graph)", "-", keras_ms),
                ("TFLite fp32 (LiteRT)", path.stat().st_size, lite_ms),
                ("TFLite int8 (LiteRT)", int8_path.stat().st_size, int8_ms)]
    print(f"{spec.name}: {encoder.count_params():,} parameters, {samples} samples per clip "
          f"({seconds:.2f} s), median of {args.clips} clips; max |TFLite fp32 - Keras| = "
          f"{gap:.2e}; int8 median cosine to Keras {np.median(cosine):.4f}")
    print("| runtime | file | latency per clip | latency per second of audio | vs Keras |")
    print("|---|---:|---:|---:|---:|")
    for name, file_size, ms in rows:
        shown = f"{file_size / 1024:.0f} KiB" if file_size != "-" else "-"
        print(f"| {name} | {shown} | {ms:.1f} ms | {ms / seconds:.1f} ms | "
              f"{ms / keras_ms:.2f}x |")


if __name__ == "__main__":
    main()
