#!/bin/sh
# Regenerates the sample world's only audio: episode 6 (audio-only, no transcript), a short
# synthetic reading of the episode's subject by espeak-ng (Debian package espeak-ng), encoded as
# MP3 with PyAV, served by the sample server at /audio/ep6.mp3 for `briefcast transcribe`.
# Run from the repository root: sh samples/audio/make_ep6.sh
set -eu
py=${PYTHON:-.venv/bin/python}
tmp=$(mktemp -d)
espeak-ng -v en-us -s 155 -f samples/audio/ep6.txt -w "$tmp/ep6.wav"
"$py" -m tests.asr_audio encode "$tmp/ep6.wav" samples/site/audio/ep6.mp3 32000
rm -r "$tmp"
ls -l samples/site/audio/ep6.mp3
