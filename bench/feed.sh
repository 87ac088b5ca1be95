#!/usr/bin/env bash
# Writes an RSS 2.0 feed of 40 articles, all published in the last hours, the kind IRIA's site
# publishes in a busy week: a digest made from it is about as large as a real one (15 articles in
# full with image and summary, 25 listed by title).
#
#   bench/feed.sh > feed.xml
set -euo pipefail
topics=("Defence" "Terrorism" "Foreign affairs" "Security" "Middle East" "Europe" "Africa" "Asia")
places=("the Sahel" "the Red Sea" "the Baltic" "Iraq" "the Indo-Pacific" "the Western Balkans" "the Horn of Africa" "Ukraine")
now=$(date +%s)
cat <<'HEAD'
<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:media="http://search.yahoo.com/mrss/">
<channel>
<title>IRIA</title>
<link>https://www.ir-ia.com/</link>
<description>International Relations Insights &amp; Analysis</description>
HEAD
for i in $(seq 1 40); do
  topic="${topics[$((i % 8))]}"
  place="${places[$(((i * 3) % 8))]}"
  when=$(date -u -R -d "@$((now - i * 600))")
  cat <<ITEM
<item>
<title>Analysis $i: security cooperation in $place after the summit, and what it means for the coalition</title>
<link>https://www.ir-ia.com/analysis-$i-security-cooperation/</link>
<guid>https://www.ir-ia.com/?p=$((9000 + i))</guid>
<pubDate>$when</pubDate>
<dc:creator>IRIA Analyst $i</dc:creator>
<category>$topic</category>
<media:content url="https://www.ir-ia.com/wp-content/uploads/2026/11/analysis-$i-1024x576.jpg" medium="image"/>
<description>Defence chiefs met this week to discuss the future of security cooperation in $place. The dialogue aims at a transition to a sustainable bilateral security partnership, ten years after the coalition's military mission began; officials from both sides stressed counter-terrorism, border security, intelligence sharing and the training of local forces, while analysts warned that the withdrawal timetable leaves little room for the reforms both governments have promised their parliaments. Article $i of this week.</description>
</item>
ITEM
done
echo '</channel>'
echo '</rss>'
