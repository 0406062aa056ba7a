#!/bin/sh
# Regenerates the committed ASR test clips: synthetic speech from espeak-ng (Debian package
# espeak-ng), encoded with PyAV. Run from the repository root: sh tests/data/asr/make_clips.sh
set -eu
dir=tests/data/asr
py=${PYTHON:-.venv/bin/python}
espeak-ng -v en-us -s 150 -f "$dir/short.txt" -w "$dir/short.wav"   # 22,050 Hz: decoding resamples it
"$py" -m tests.asr_audio encode "$dir/short.wav" "$dir/short.mp3" 64000
"$py" -m tests.asr_audio encode "$dir/short.wav" "$dir/short.m4a" 64000
tmp=$(mktemp -d)
espeak-ng -v en-us -s 150 -f "$dir/passage.txt" -w "$tmp/passage.wav"
"$py" -m tests.asr_audio encode "$tmp/passage.wav" "$dir/passage.mp3" 32000
rm -r "$tmp"
