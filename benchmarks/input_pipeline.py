"""A folder source's input pipeline against GIM training, side by side, and its memory
against the number of files.

Throughput (one child process, interleaved rounds, a cell is the median over rounds):
- "input pipeline alone": batches of a folder of Fashion-MNIST PNG files through
  gim_zoo's training pipeline (list, parallel decode, pad + random crop + flip, batch,
  prefetch), consumed and thrown away;
- "GIM training, in-memory batches": gim-fmnist-resnet's training steps on one fixed
  batch already in memory (what benchmarks/throughput.py measures), the compute alone;
- "GIM training, fed by the folder": the same steps reading the folder pipeline.
The pipeline must deliver several times what training consumes, or the model waits.

Memory (one child per folder size): resident memory of a process that lists the folder,
checks every file's header and streams one epoch through the pipeline, sampled after
every batch; a folder source never loads the images whole, so the peak must not grow
with the files.

    python benchmarks/input_pipeline.py                  # 2,000 vs 20,000 files
    python benchmarks/input_pipeline.py --files=2000 --rounds=2 --batch_sizes=32   # quick

The folders are written once (PNG files of Fashion-MNIST's training images, repeated
when more files than images are asked) under --work_dir and reused.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODEL = "gim-fmnist-resnet"


def write_folder(folder, count):
    """`count` PNG files of Fashion-MNIST training images, flat (unlabelled)."""
    done = folder / ".complete"
    if done.exists() and int(done.read_text()) == count:
        return
    import tensorflow as tf

    from gim_zoo.data import load_fashion_mnist

    images, _ = load_fashion_mnist("train")
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = folder / f"{i:06d}.png"
        if not path.exists():
            tf.io.write_file(str(path), tf.io.encode_png(images[i % len(images)]))
    done.write_text(str(count))


def _source(folder):
    from gim_zoo import registry
    from gim_zoo.data.sources import image_source

    spec = registry.get(MODEL)
    return image_source(f"folder/{folder}").fitted(spec.encoder["image_size"],
                                                  spec.encoder["channels"], like=spec.dataset)


def throughput(folder, batch_sizes, rounds, images_per_round):
    """Child: {batch: {configuration: [images/s per round], ... "cpu": ...}}."""
    from gim_zoo.allocator import reuse_freed_memory

    reuse_freed_memory()  # as the training scripts do
    import keras
    import numpy as np
    import tensorflow as tf

    from gim_zoo import registry
    from gim_zoo.data.pipelines import images_only, train_pipeline

    source = _source(folder)
    split = source.load("pretrain")
    cells = {}
    for batch in batch_sizes:
        keras.utils.set_random_seed(0)
        model = registry.get(MODEL).build_model(seed=0)
        model.compile(keras.optimizers.Adam(2e-4))
        images = np.random.default_rng(0).integers(0, 256, (batch, 28, 28, 1)).astype("f4")
        memory = tf.data.Dataset.from_tensors(images).repeat()
        steps = max(2, images_per_round // batch)
        model.fit(memory, steps_per_epoch=3, epochs=1, verbose=0)  # warm up (tracing)
        cells[batch] = model, memory, steps

    def pipeline(batch, epoch):
        return images_only(train_pipeline(split, source, batch_size=batch, seed=0,
                                          epochs=epoch + 100, start_epoch=epoch))

    def pull(batch, epoch, steps):
        """`steps` batches of a fresh pipeline, after the two its start-up takes."""
        iterator = iter(pipeline(batch, epoch))
        next(iterator), next(iterator)
        for _ in range(steps):
            next(iterator)

    def timed(run, images):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        return images / (time.perf_counter() - wall), images / (time.process_time() - cpu)

    results = {b: {} for b in batch_sizes}
    for r in range(rounds):
        for batch, (model, memory, steps) in cells.items():
            fed = pipeline(batch, r + 1)
            model.fit(fed, steps_per_epoch=2, epochs=1, verbose=0)  # its start-up
            for name, run, images in (
                    ("gim_memory", lambda: model.fit(memory, steps_per_epoch=steps, epochs=1,
                                                     verbose=0), batch * steps),
                    ("gim_folder", lambda: model.fit(fed, steps_per_epoch=steps, epochs=1,
                                                     verbose=0), batch * steps),
                    ("pipeline", lambda: pull(batch, r, 4 * steps), 4 * batch * steps)):
                wall, cpu = timed(run, images)
                results[batch].setdefault(name, []).append(wall)
                results[batch].setdefault(name + "_cpu", []).append(cpu)
    return results


def resident_mib():
    """The process's resident memory now (VmRSS), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise OSError("no VmRSS in /proc/self/status (Linux only)")


def memory(folder, batch):
    """Child: resident memory (MiB) after importing TensorFlow, its peak while the folder
    is listed and one whole epoch streams through the pipeline (sampled every batch) and
    the process's lifetime peak; seconds to list and check the folder."""
    from gim_zoo.allocator import reuse_freed_memory

    reuse_freed_memory()
    import tensorflow as tf  # noqa: F401

    from gim_zoo.data.pipelines import train_pipeline

    before = resident_mib()
    start = time.perf_counter()
    source = _source(folder)
    split = source.load("pretrain")
    listed = time.perf_counter() - start
    peak, seen = resident_mib(), 0
    start = time.perf_counter()
    for images, _ in train_pipeline(split, source, batch_size=batch):
        seen += int(images.shape[0])
        peak = max(peak, resident_mib())
    epoch = time.perf_counter() - start
    return {"files": split.count, "images": seen, "rss_after_import_mib": before,
            "peak_rss_mib": peak, "list_and_check_s": listed, "epoch_s": epoch,
            "lifetime_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child(args):
    cmd = [sys.executable, __file__, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, env={
        **os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""})
    if out.returncode:
        sys.exit(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", default="2000,20000",
                        help="folder sizes compared for memory; the first is also timed")
    parser.add_argument("--batch_sizes", default="32,128")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images_per_round", type=int, default=1024)
    parser.add_argument("--work_dir", default="/tmp/gim_zoo_input_pipeline_bench")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.child == "throughput":
        print(json.dumps(throughput(args.folder, batch_sizes, args.rounds,
                                    args.images_per_round)))
        return
    if args.child == "memory":
        print(json.dumps(memory(args.folder, batch_sizes[-1])))
        return

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    counts = [int(n) for n in args.files.split(",")]
    folders = {n: Path(args.work_dir) / f"png{n}" for n in counts}
    for n, folder in folders.items():
        print(f"writing {n:,} PNG files to {folder} (once) ...", file=sys.stderr, flush=True)
        write_folder(folder, n)
    common = [f"--batch_sizes={args.batch_sizes}", f"--rounds={args.rounds}",
              f"--images_per_round={args.images_per_round}"]
    print("timing ...", file=sys.stderr, flush=True)
    timed = child(["--child=throughput", f"--folder={folders[counts[0]]}", *common])
    print(f"\n{MODEL}, batches of a folder of {counts[0]:,} Fashion-MNIST PNG files: images/s "
          f"(wall clock; images per CPU-second in brackets), median of {args.rounds} "
          f"interleaved rounds, {os.cpu_count()} CPU cores\n")
    print("| batch | input pipeline alone | GIM training, in-memory batches | GIM training, "
          "fed by the folder | pipeline / training |")
    print("|---:|---:|---:|---:|---:|")
    for batch in batch_sizes:
        cell = timed[str(batch)]
        med = {k: statistics.median(v) for k, v in cell.items()}
        print(f"| {batch} | {med['pipeline']:.0f} ({med['pipeline_cpu']:.0f}) | "
              f"{med['gim_memory']:.0f} ({med['gim_memory_cpu']:.0f}) | "
              f"{med['gim_folder']:.0f} ({med['gim_folder_cpu']:.0f}) | "
              f"{med['pipeline'] / med['gim_memory']:.1f}x |")
    print(f"\nPeak resident memory of one epoch through the pipeline (batch "
          f"{batch_sizes[-1]}), by folder size\n")
    print("| files | resident after importing TensorFlow | peak while listing and streaming "
          "one epoch | listing and header checks | epoch |")
    print("|---:|---:|---:|---:|---:|")
    for n in counts:
        m = child(["--child=memory", f"--folder={folders[n]}", *common])
        print(f"| {m['files']:,} | {m['rss_after_import_mib']:.0f} MiB | "
              f"{m['peak_rss_mib']:.0f} MiB | {m['list_and_check_s']:.1f} s | "
              f"{m['epoch_s']:.1f} s |", flush=True)


if __name__ == "__main__":
    main()
