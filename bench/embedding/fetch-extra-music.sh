#!/usr/bin/env bash
# Extra recorded music for training the sounds-like CNN only (never the bench catalog or its held-out
# queries): eight more Debian game soundtracks, one style group each (licences: Debian main, DFSG-free;
# each package's copyright file). Used with `mixwith train embedder --extra-manifest DIR/manifest.tsv`.
# Usage: fetch-extra-music.sh [DIR]   (default: ~/.cache/mixwith/extra-music)
# Writes DIR/manifest.tsv: id <TAB> path <TAB> source package <TAB> seconds, ids xNNN (the dev set's are dNNN).
# Needs apt-get (download only, nothing is installed), dpkg-deb and ffprobe. ~0.9 GB of .debs.
set -euo pipefail
DIR=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/mixwith/extra-music}
# package -> directory holding its music (the data packages also carry sound effects and speech)
declare -A MUSIC=(
  [wesnoth-1.16-music]=/usr/share/games/wesnoth/1.16/data/core/music
  [supertux-data]=/usr/share/games/supertux2/music
  [hedgewars-data]=/usr/share/games/hedgewars/Data/Music
  [drascula-music]=/usr/share/scummvm/drascula/audio
  [freedroidrpg-data]=/usr/share/freedroidrpg/data/sound/music
  [planetblupi-music-ogg]=/usr/share/planetblupi/music
  [extremetuxracer-data]=/usr/share/games/etr/music
  [megaglest-data]=/usr/share/games/megaglest
)
MIN_SECONDS=20  # jingles and stingers say little about a soundtrack's style
# (four planetblupi pieces run past the decoder's 20 min limit: listed, and skipped by training with a log line)
mkdir -p "$DIR/debs" "$DIR/x"
cd "$DIR/debs"
if [ "$(ls ./*.deb 2>/dev/null | wc -l)" -lt "${#MUSIC[@]}" ]; then
  apt-get download "${!MUSIC[@]}" >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1; apt-get download "${!MUSIC[@]}" >/dev/null; }
fi
for d in ./*.deb; do n=$(basename "${d%%_*}"); [ -d "$DIR/x/$n" ] || dpkg-deb -x "$d" "$DIR/x/$n"; done
out="$DIR/manifest.tsv"; : > "$out"; i=0
for pkg in $(printf '%s\n' "${!MUSIC[@]}" | sort); do
  while IFS= read -r f; do
    secs=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$f" 2>/dev/null | cut -d. -f1 || true)
    [ -n "$secs" ] && [ "$secs" -ge "$MIN_SECONDS" ] || continue
    i=$((i+1)); printf 'x%03d\t%s\t%s\t%s\n' "$i" "$f" "$pkg" "$secs" >> "$out"
  done < <(find "$DIR/x/$pkg${MUSIC[$pkg]}" -type f \( -iname '*.ogg' -o -iname '*.opus' -o -iname '*.flac' -o -iname '*.mp3' \) \
             | grep -E "/(music|Music|audio)/" | sort)
done
echo "$(wc -l < "$out") files, $(awk -F'\t' '{s+=$4} END {printf "%.1f", s/3600}' "$out") h -> $out"
