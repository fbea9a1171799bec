"""A deterministic synthetic speech corpus from espeak-ng, with per-frame phone labels.

Why: these machines have no internet and no LibriSpeech, but audio GIM needs speech with
speakers and phone alignments. Debian's espeak-ng synthesises it: each speaker is a
dialect, a voice variant, a pitch and a speaking rate; sentences come from a seeded
grammar over a fixed word list; espeak-ng's library reports a PHONEME event with the
sample position where each phoneme starts, which gives exact alignments. It is
**synthetic speech**: numbers measured on it say nothing directly about human speech.

Layout of a corpus folder (written to a temporary folder, then renamed):
  manifest.json  sample rate, speakers, phone inventory, and per utterance: speaker, text,
                 wav path, sample count, phone segments [start, end, phone index]
  wav/*.wav      16 kHz mono 16-bit PCM

Same espeak-ng version + same settings -> byte-identical corpus (the tests check it).
"""

import json
import tempfile
import wave
from pathlib import Path

import numpy as np

from gim_zoo.data.fashion_mnist import DatasetNotFoundError
from gim_zoo.files import atomic_dir
from gim_zoo.modality import FRAME_HOP, SAMPLE_RATE

DEFAULT_DIR = "data/speech-corpus"
MAKE_COMMAND = "python training/make_speech_corpus.py --out_dir={dir}"
INSTALL_HINT = "Install espeak-ng with `sudo apt-get install espeak-ng` (Debian/Ubuntu)."

# (espeak-ng voice, pitch 0-100, words per minute): dialects x voice variants ("en" is
# British English).
SPEAKERS = (
    ("en-us+m1", 40, 165), ("en-us+f2", 70, 175), ("en+m3", 35, 150),
    ("en+f4", 75, 160), ("en-gb-scotland+m5", 45, 170), ("en-029+f1", 65, 155),
    ("en-gb-x-rp+m7", 30, 180), ("en-us+f5", 80, 145), ("en-gb-x-gbclan+m2", 50, 160),
    ("en-us+m4", 55, 185),
)

_WORDS = {
    "det": "the a this that every one some my your our".split(),
    "adj": ("quick lazy small large quiet bright green heavy gentle early calm cold "
            "silver hollow narrow").split(),
    "noun": ("fox dog river window teacher garden engine letter morning island farmer "
             "ladder candle market pilot basket mountain signal".split()),
    "verb": ("jumps over|watches|follows|paints|carries|finds|opens|builds near|leaves|"
             "reaches|passes|measures").split("|"),
    "adv": "slowly|today|again|quickly|before noon|at night|twice".split("|"),
}


def sentence(rng):
    """One sentence of the grammar: det adj noun verb det adj noun [adverb]."""
    pick = lambda kind: _WORDS[kind][rng.integers(len(_WORDS[kind]))]  # noqa: E731
    words = [pick("det"), pick("adj"), pick("noun"), pick("verb"), pick("det"), pick("adj"),
             pick("noun")]
    if rng.random() < 0.5:
        words.append(pick("adv"))
    return " ".join(words)


# --- espeak-ng, one fresh process per speaker ----------------------------------------
WORKER = Path(__file__).with_name("espeak_worker.py")


def synthesise_speaker(voice, pitch, rate, texts):
    """(native sample rate, espeak-ng version, [(int16 audio, [(start sample, phoneme)])])
    for `texts` said by one voice.

    espeak-ng keeps state between utterances in a process (the same text twice gives
    slightly different timing), so each speaker's utterances are synthesised in order in
    a fresh process: the corpus is then a function of its settings alone."""
    import subprocess
    import sys

    job = json.dumps({"voice": voice, "pitch": pitch, "rate": rate, "texts": list(texts)})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speaker.npz"
        done = subprocess.run([sys.executable, str(WORKER), str(out)], input=job, text=True,
                              capture_output=True)
        if done.returncode == 3:
            raise DatasetNotFoundError(f"{done.stderr.strip()} {INSTALL_HINT}")
        if done.returncode != 0:
            raise RuntimeError(f"espeak-ng worker failed: {done.stderr.strip()[-2000:]}")
        data = np.load(out)
        info = json.loads(str(data["info"]))
        results = [(data[f"audio{i}"], [(int(s), p) for s, p in info["events"][i]])
                   for i in range(len(texts))]
    return info["sample_rate"], info["version"], results


def _phone_name(espeak_name):
    name = espeak_name.strip()
    return "sil" if not name or name.startswith("_") else name


def to_segments(events, native_samples, samples):
    """Phoneme start events at the native rate -> contiguous [start, end, phone] segments
    covering exactly [0, samples) at 16 kHz (silence before the first phoneme)."""
    scale = samples / native_samples if native_samples else 0.0
    starts = [(0, "sil")] + [(min(samples, int(round(s * scale))), _phone_name(p))
                             for s, p in events]
    segments = []
    for (start, phone), (end, _) in zip(starts, starts[1:] + [(samples, None)]):
        if end > start:
            if segments and segments[-1][2] == phone and segments[-1][1] == start:
                segments[-1][1] = end  # merge repeated silence
            else:
                segments.append([start, end, phone])
    return segments


def _write_wav(path, samples):
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SAMPLE_RATE)
        f.writeframes(np.asarray(samples, "<i2").tobytes())


def speaker_texts(s, texts, seed):
    """The sentences speaker `s` says, in order: every speaker says them all, each in its
    own seeded order, so each speaker's test split holds different sentences."""
    return [texts[i] for i in np.random.default_rng([seed, s]).permutation(len(texts))]


def make_corpus(out_dir, speakers=len(SPEAKERS), utterances_per_speaker=40, seed=0,
                progress=True):
    """Synthesise the corpus into `out_dir` (atomically); returns the manifest."""
    from scipy.signal import resample_poly

    if not 1 <= speakers <= len(SPEAKERS):
        raise ValueError(f"speakers must be in 1..{len(SPEAKERS)}, got {speakers}")
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    texts = [sentence(rng) for _ in range(utterances_per_speaker)]
    with atomic_dir(out_dir) as tmp:
        (tmp / "wav").mkdir(parents=True)
        utterances, inventory, version = [], set(), None
        order = range(speakers)
        if progress:
            from tqdm.auto import tqdm
            order = tqdm(order, desc="synthesising speakers", unit="speaker")
        for s in order:
            said = speaker_texts(s, texts, seed)
            native_rate, version, results = synthesise_speaker(*SPEAKERS[s], said)
            gcd = np.gcd(SAMPLE_RATE, native_rate)
            for u, (text, (native, events)) in enumerate(zip(said, results)):
                audio = resample_poly(native.astype(np.float64), SAMPLE_RATE // gcd,
                                      native_rate // gcd)
                audio = np.clip(np.round(audio), -32768, 32767).astype(np.int16)
                segments = to_segments(events, len(native), len(audio))
                inventory.update(p for _, _, p in segments)
                uid = f"s{s:02d}-u{u:03d}"
                _write_wav(tmp / "wav" / f"{uid}.wav", audio)
                utterances.append({"id": uid, "speaker": s, "text": text,
                                   "wav": f"wav/{uid}.wav", "num_samples": len(audio),
                                   "segments": segments})
        phones = sorted(inventory)
        index = {p: i for i, p in enumerate(phones)}
        for utt in utterances:
            utt["segments"] = [[a, b, index[p]] for a, b, p in utt["segments"]]
        manifest = {
            "sample_rate": SAMPLE_RATE, "synthetic": True, "espeak_ng": version,
            "seed": seed, "speakers": [list(SPEAKERS[s]) for s in range(speakers)],
            "phones": phones, "utterances": utterances,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def read_corpus_manifest(corpus_dir=DEFAULT_DIR):
    path = Path(corpus_dir) / "manifest.json"
    if not path.exists():
        raise DatasetNotFoundError(
            f"no speech corpus at {corpus_dir} (no manifest.json). Generate it with "
            f"`{MAKE_COMMAND.format(dir=corpus_dir)}` (needs espeak-ng: {INSTALL_HINT})")
    return json.loads(path.read_text())


def frame_labels(utterance, hop=FRAME_HOP):
    """Phone index of each hop-sample frame (the phone at the frame's centre sample)."""
    frames = utterance["num_samples"] // hop
    centres = np.arange(frames) * hop + hop // 2
    labels = np.zeros(frames, np.int32)
    for start, end, phone in utterance["segments"]:
        labels[(centres >= start) & (centres < end)] = phone
    return labels


def split_utterances(manifest, split, test_fraction=0.2):
    """Per speaker, the last `test_fraction` of its utterances are the test split."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    chosen = []
    for s in range(len(manifest["speakers"])):
        own = [u for u in manifest["utterances"] if u["speaker"] == s]
        cut = len(own) - max(1, int(round(len(own) * test_fraction)))
        chosen += own[:cut] if split == "train" else own[cut:]
    return chosen


def read_split(corpus_dir, split, hop=FRAME_HOP):
    """(list of float32 waveforms in [-1, 1], speaker ids, per-frame phone labels) of a
    split, decoded with tf.audio.decode_wav."""
    import tensorflow as tf

    manifest = read_corpus_manifest(corpus_dir)
    audio, speakers, labels = [], [], []
    for utt in split_utterances(manifest, split):
        wav, rate = tf.audio.decode_wav(tf.io.read_file(str(Path(corpus_dir) / utt["wav"])))
        if int(rate) != manifest["sample_rate"] or wav.shape[0] != utt["num_samples"]:
            raise ValueError(f"{utt['wav']} does not match the manifest (rate {int(rate)}, "
                             f"{wav.shape[0]} samples): regenerate the corpus")
        audio.append(wav.numpy()[:, 0])
        speakers.append(utt["speaker"])
        labels.append(frame_labels(utt, hop))
    return audio, np.array(speakers, np.int32), labels


def load_corpus(split, data_dir=None, alignment_file=None, max_utterances=None):
    """read_split of the corpus at data_dir (default DEFAULT_DIR), its first max_utterances
    only if given: the loader of the espeak_speech source (alignment_file: LibriSpeech's
    argument, unused: the corpus carries its own phone labels)."""
    audio, speakers, labels = read_split(data_dir or DEFAULT_DIR, split)
    if max_utterances:
        audio, speakers, labels = (audio[:max_utterances], speakers[:max_utterances],
                                   labels[:max_utterances])
    return audio, speakers, labels


def crops_dataset(audio, speakers, labels, crop_samples, hop=FRAME_HOP, batch_size=8,
                  training=True, seed=0):
    """tf.data of (waveform (crop,), speaker, phone labels (crop // hop,)) batches.

    Training draws a random hop-aligned crop of every utterance each epoch (shorter
    utterances are zero-padded; padded frames are labelled -1, for probes to ignore);
    evaluation takes the first crop_samples of each utterance."""
    import tensorflow as tf

    if crop_samples % hop:
        raise ValueError(f"crop_samples ({crop_samples}) must be a multiple of hop ({hop})")
    frames = crop_samples // hop
    longest = max(len(a) for a in audio)
    padded_audio = np.zeros((len(audio), max(longest, crop_samples)), np.float32)
    padded_labels = np.full((len(audio), padded_audio.shape[1] // hop), -1, np.int32)
    lengths = np.array([len(a) for a in audio], np.int32)
    for i, (a, lab) in enumerate(zip(audio, labels)):
        padded_audio[i, : len(a)] = a
        padded_labels[i, : len(lab)] = lab
    ds = tf.data.Dataset.from_tensor_slices((padded_audio, speakers, padded_labels, lengths))

    def crop(wave, speaker, phones, length, start_frame):
        start = start_frame * hop  # static shapes: the encoder needs a known crop length
        return (tf.reshape(wave[start: start + crop_samples], (crop_samples,)), speaker,
                tf.reshape(phones[start_frame: start_frame + frames], (frames,)))

    if training:
        ds = ds.shuffle(len(audio), seed=seed, reshuffle_each_iteration=True)

        def random_crop(wave, speaker, phones, length):
            room = tf.maximum(length // hop - frames, 0) + 1
            start = tf.random.uniform((), 0, room, dtype=tf.int32)
            return crop(wave, speaker, phones, length, start)

        ds = ds.map(random_crop, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda w, s, p, n: crop(w, s, p, n, 0))
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def phone_targets(wave, speaker, phones):
    """A crops_dataset element as (wave, phone labels, sample weights) for a supervised
    fit: padded frames (label -1) get label 0 and weight 0, so they count nowhere."""
    import tensorflow as tf

    known = phones >= 0
    return wave, tf.where(known, phones, 0), tf.cast(known, tf.float32)


def first_crops(corpus_dir, split, crop_samples, count=None):
    """(count, crop_samples) float32: the first crop of each utterance, zero-padded; the
    representative waveforms of int8 export."""
    audio, _, _ = read_split(corpus_dir, split)
    crops = np.zeros((len(audio[:count]), crop_samples), np.float32)
    for row, waveform in zip(crops, audio):
        row[: min(len(waveform), crop_samples)] = waveform[:crop_samples]
    return crops
