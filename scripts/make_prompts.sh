#!/bin/bash
# Regenerate the system prompts from engine/media/prompts/prompts.txt (key|English|German), offline:
# espeak-ng (en-us, de) -> sox: telephone band (highpass 300 Hz, lowpass 3400 Hz), leading/trailing silence
# trimmed to a short pad (prompts are concatenated: "you have" "two" "new messages"), normalised to -3 dBFS,
# 8 kHz 16-bit mono WAV in engine/media/prompts/en/ and engine/media/prompts/de/. No dither (-D), so the
# output is the same on every run and only changed prompts show up in a diff.
#
# usage: scripts/make_prompts.sh [KEY...]     (no KEY: every prompt; WAVs of keys no longer listed are removed)
# needs: espeak-ng, sox (Debian: apt-get install espeak-ng sox)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR="$ROOT/engine/media/prompts"
LIST="$DIR/prompts.txt"
for tool in espeak-ng sox; do
  command -v "$tool" >/dev/null || { echo "make_prompts: $tool is not installed (apt-get install espeak-ng sox)" >&2; exit 1; }
done
export LC_ALL=C.UTF-8
mkdir -p "$DIR/en" "$DIR/de"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

voice() { case "$1" in en) echo en-us ;; de) echo de ;; esac; }

render() {  # render LANG KEY TEXT
  local lang=$1 key=$2 text=$3
  espeak-ng -b 1 -v "$(voice "$lang")" -s 150 -w "$TMP/$lang-$key.wav" "$text"
  sox -D -V1 "$TMP/$lang-$key.wav" -r 8000 -c 1 -b 16 "$TMP/$lang-$key.8k.wav" \
    highpass 300 lowpass 3400 \
    silence 1 0.01 -50d reverse silence 1 0.01 -50d reverse \
    pad 0.03 0.06 norm -3
  mv "$TMP/$lang-$key.8k.wav" "$DIR/$lang/$key.wav"
  rm -f "$TMP/$lang-$key.wav"
}

declare -A wanted=()
for key in "$@"; do wanted[$key]=1; done
declare -A listed=()
while IFS='|' read -r key en de; do
  [[ -z "$key" || "$key" == \#* ]] && continue
  if [[ -z "${en:-}" || -z "${de:-}" ]]; then
    echo "make_prompts: $key: needs key|English|German" >&2; exit 1
  fi
  listed[$key]=1
  if (($# == 0)) || [[ -n "${wanted[$key]:-}" ]]; then
    render en "$key" "$en" &
    render de "$key" "$de" &
    wait
  fi
done < "$LIST"
if (($# == 0)); then
  for wav in "$DIR"/en/*.wav "$DIR"/de/*.wav; do
    [[ -e "$wav" ]] || continue
    key=$(basename "$wav" .wav)
    [[ -n "${listed[$key]:-}" ]] || { echo "removing $wav (not in prompts.txt)"; rm -f "$wav"; }
  done
fi
echo "prompts: ${#listed[@]} keys in $DIR/{en,de}"
