#!/usr/bin/env bash
# Generate the demo lesson video once (committed as demo.webm): 8 seconds, 320x180,
# VP9 video + Opus audio in WebM, a visible counter so a viewer sees it really plays.
# Needs ffmpeg (Debian: apt-get install ffmpeg). Not run by make: the file is committed.
set -euo pipefail
cd "$(dirname "$0")"
ffmpeg -y -hide_banner -loglevel error \
  -f lavfi -i "testsrc2=size=320x180:rate=15:duration=8" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=8" \
  -c:v libvpx-vp9 -b:v 120k -deadline good -cpu-used 4 -row-mt 1 \
  -c:a libopus -b:a 32k \
  -metadata title="合规学堂演示视频" \
  demo.webm
ls -l demo.webm
