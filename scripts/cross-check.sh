#!/usr/bin/env bash
# Runs the foreign executables on this Linux x64 machine and has real clients talk to them:
#   dist/midge-windows-x64.exe under Debian's wine, dist/midge-linux-arm64 under qemu-user.
# Each one serves MQTT; mosquitto_sub/mosquitto_pub pass a message through it, and the
# executable's own `pub`/`sub` subcommands run under the emulator too.
#
# Wine 8 has no bcryptprimitives.dll, which Bun's Windows executable imports for ProcessPrng;
# a stub DLL built here with mingw-w64 (filling the buffer with BCryptGenRandom) goes into the
# wine prefix's system32 and makes it run.
#
# Needs: wine (wine64), qemu-user, libc6-arm64-cross, gcc-mingw-w64-x86-64, mosquitto-clients (installed with
# apt-get when missing and we are root). Not part of CI.
# Usage: scripts/cross-check.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

need=()
command -v wine >/dev/null 2>&1 || need+=(wine wine64)
command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
# The arm64 executable is dynamically linked against glibc: qemu-user needs arm64 glibc (-L).
[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || need+=(libc6-arm64-cross)
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || need+=(gcc-mingw-w64-x86-64-win32)
command -v mosquitto_sub >/dev/null 2>&1 || need+=(mosquitto-clients)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Build from the current source unless told not to (--no-build uses what is in dist/).
if [ "${1:-}" != "--no-build" ]; then
  node scripts/compile.mjs windows-x64 linux-arm64 | grep -v '^\s*\[' || true
fi

work=$(mktemp -d /tmp/midge-cross.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${WINEPREFIX:-}" ] && wineserver -k 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# Starts "$@" serve -p PORT in $2's directory, waits for "listening"; sets $server_pid.
start_server() {
  local name=$1 dir=$2 port=$3
  shift 3
  (cd "$dir" && exec "$@" serve -p "$port") >"$work/$name.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  for _ in $(seq 1 600); do
    grep -q "listening" "$work/$name.log" 2>/dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "$name: the broker did not start:"
  cat "$work/$name.log"
  return 1
}

# Passes messages through the broker on $port: mosquitto_pub -> mosquitto_sub, and the
# emulated executable's own pub -> mosquitto_sub and mosquitto_pub -> its own sub.
exercise() {
  local name=$1 port=$2
  shift 2
  local ok=1 out
  out=$(timeout 30 mosquitto_sub -p "$port" -t cross/mosq -C 1 -W 25 & sleep 0.5
    mosquitto_pub -p "$port" -t cross/mosq -m "mosquitto via $name" -q 1; wait) || true
  if [ "$out" = "mosquitto via $name" ]; then echo "  ok  mosquitto_pub -> $name broker -> mosquitto_sub"
  else echo "  FAIL mosquitto_pub -> mosquitto_sub: got '$out'"; ok=0; fi

  out=$(timeout 60 mosquitto_sub -p "$port" -t cross/own -C 1 -W 55 & sleep 0.5
    (cd "$work" && timeout 50 "$@" pub -p "$port" -t cross/own -m "$name pub" -q 2); wait) || true
  if [ "$out" = "$name pub" ]; then echo "  ok  $name pub -> $name broker -> mosquitto_sub"
  else echo "  FAIL $name pub -> mosquitto_sub: got '$out'"; ok=0; fi

  mosquitto_pub -p "$port" -t cross/ret -m "retained for $name sub" -r -q 1
  out=$(cd "$work" && timeout 60 "$@" sub -p "$port" -t cross/ret -C 1 -v) || true
  if [ "$out" = "cross/ret retained for $name sub" ]; then echo "  ok  mosquitto_pub -> $name broker -> $name sub"
  else echo "  FAIL mosquitto_pub -> $name sub: got '$out'"; ok=0; fi
  [ $ok = 1 ]
}

status=0

# --- windows-x64 under wine -------------------------------------------------------------------
echo "== windows-x64 under $(wine --version 2>/dev/null)"
export WINEPREFIX="$work/wine" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
wineboot -i >/dev/null 2>&1 || true
cat >"$work/bcryptprimitives.c" <<'EOF'
/* Stub for Wine 8, which lacks bcryptprimitives.dll: ProcessPrng fills the buffer from
   BCryptGenRandom (system-preferred RNG). Always returns TRUE, as the real one does. */
#include <windows.h>
#include <bcrypt.h>
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
  while (len > 0) {
    ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
    BCryptGenRandom(NULL, data, n, BCRYPT_USE_SYSTEM_PREFERRED_RNG);
    data += n;
    len -= n;
  }
  return TRUE;
}
EOF
printf 'LIBRARY bcryptprimitives.dll\nEXPORTS\n  ProcessPrng\n' >"$work/bcryptprimitives.def"
x86_64-w64-mingw32-gcc -shared -O2 -o "$work/bcryptprimitives.dll" \
  "$work/bcryptprimitives.c" "$work/bcryptprimitives.def" -lbcrypt
cp "$work/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/"
winexe="$work/win/midge.exe"
mkdir -p "$work/win"
cp dist/midge-windows-x64.exe "$winexe"
echo "  $(wine "$winexe" --version 2>/dev/null | tr -d '\r')"
port=$(free_port)
if start_server wine "$work/win" "$port" wine "$winexe"; then
  echo "  $(tr -d '\r' <"$work/wine.log" | grep listening)"
  exercise windows "$port" wine "$winexe" || status=1
  kill "$server_pid" 2>/dev/null || true
else status=1; fi

# --- linux-arm64 under qemu-user --------------------------------------------------------------
echo "== linux-arm64 under $(qemu-aarch64 --version | head -1)"
armexe="$work/arm/midge"
mkdir -p "$work/arm"
cp dist/midge-linux-arm64 "$armexe"
qemu=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
echo "  $("${qemu[@]}" "$armexe" --version)"
port=$(free_port)
if start_server qemu "$work/arm" "$port" "${qemu[@]}" "$armexe"; then
  echo "  $(grep listening "$work/qemu.log")"
  exercise linux-arm64 "$port" "${qemu[@]}" "$armexe" || status=1
  kill "$server_pid" 2>/dev/null || true
else status=1; fi

[ $status = 0 ] && echo "cross-check: all passed" || echo "cross-check: FAILED"
exit $status
