#!/usr/bin/env bash
# Installs the Debian packages Drover needs to build, run and test, and only
# those that are missing, so that a second run does nothing. apt-get only.
set -euo pipefail

pkgs=(
    build-essential cmake pkg-config clang
    libevent-dev libssl-dev libsqlite3-dev libjansson-dev libcurl4-openssl-dev
    libcmocka-dev libmosquitto-dev
    mosquitto mosquitto-clients python3-paho-mqtt curl
)

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
