"""espeak-ng through its C library (ctypes): one speaker's utterances, with phoneme starts.

Run as a script in a fresh process by gim_zoo.data.speech_corpus (it imports nothing from
the package, so no TensorFlow start-up):
    python espeak_worker.py OUT.npz  < {"voice", "pitch", "rate", "texts"} as JSON
writes OUT.npz: audio0, audio1, ... (int16 at espeak-ng's rate) and `info` (JSON: sample
rate, version, per utterance [(start sample, phoneme mnemonic)] from PHONEME events).
Exit status 3: the library is not installed.
"""

import ctypes
import ctypes.util
import json
import sys

import numpy as np


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p),
                ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):  # espeak_EVENT in speak_lib.h
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))
_EVENT_END_OF_LIST, _EVENT_PHONEME = 0, 7
_OUTPUT_SYNCHRONOUS, _INIT_PHONEME_EVENTS, _POS_CHARACTER, _CHARS_UTF8 = 2, 1, 1, 1
_RATE, _PITCH = 1, 3


def open_espeak():
    name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        sys.stderr.write(f"the espeak-ng library ({name}) is not installed.")
        sys.exit(3)
    rate = lib.espeak_Initialize(_OUTPUT_SYNCHRONOUS, 0, None, _INIT_PHONEME_EVENTS)
    if rate <= 0:
        sys.exit("espeak-ng failed to initialise (espeak-ng-data missing?)")
    lib.espeak_Info.restype = ctypes.c_char_p
    return lib, rate, lib.espeak_Info(None).decode()


def main(out_path, job):
    lib, sample_rate, version = open_espeak()
    chunks, events = [], []

    def collect(wav, count, event):
        if wav and count > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        i = 0
        while event[i].type != _EVENT_END_OF_LIST:
            if event[i].type == _EVENT_PHONEME:
                events.append((int(event[i].sample),
                               event[i].id.string.decode("utf-8", errors="replace")))
            i += 1
        return 0

    callback = _CALLBACK(collect)  # kept referenced while C holds the pointer
    lib.espeak_SetSynthCallback(callback)
    if lib.espeak_SetVoiceByName(job["voice"].encode()) != 0:
        sys.exit(f"espeak-ng has no voice {job['voice']!r}")
    lib.espeak_SetParameter(_RATE, int(job["rate"]), 0)
    lib.espeak_SetParameter(_PITCH, int(job["pitch"]), 0)
    arrays, all_events = {}, []
    for i, text in enumerate(job["texts"]):
        chunks.clear()
        events.clear()
        data = text.encode("utf-8")
        lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        arrays[f"audio{i}"] = (np.concatenate(chunks) if chunks else np.zeros(0)).astype(np.int16)
        all_events.append(list(events))
    info = {"sample_rate": sample_rate, "version": version, "events": all_events}
    np.savez(out_path, info=json.dumps(info), **arrays)


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.stdin.read()))
