# Sourced by the benchmarks that need Postfix's smtp-sink and smtp-source (Debian's postfix
# package, fetched with `apt-get download` and unpacked with `dpkg -x`: postfix itself is not
# installed). Sets `sink` and `source_` to the two programs.
tools="${IRIA_BENCH_POSTFIX_DIR:-$HOME/.cache/iria-news-bench/postfix}"
if [ ! -x "$tools/usr/sbin/smtp-sink" ]; then
  mkdir -p "$tools"
  (cd "$tools" && apt-get download postfix >/dev/null 2>&1 && dpkg -x postfix_*.deb . && rm -f postfix_*.deb) || true
fi
[ -x "$tools/usr/sbin/smtp-sink" ] || { echo "bench: could not fetch postfix's smtp-sink (apt-get update first?)" >&2; exit 2; }
export LD_LIBRARY_PATH="$tools/usr/lib/postfix${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
sink="$tools/usr/sbin/smtp-sink"
source_="$tools/usr/sbin/smtp-source"
