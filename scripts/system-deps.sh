#!/bin/sh
# Installs the Debian packages the tests prefer: Mosquitto (the broker), and for the field test
# (tests/field/) sudo (the guides' commands run as written) and systemd (systemd-analyze checks the unit).
# Never fails the build: without root or apt-get the suite uses the embedded amqtt broker and the tests
# that need the others skip, each saying why.
missing=""
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then missing="$missing mosquitto"; fi
command -v sudo >/dev/null 2>&1 || missing="$missing sudo"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: installing$missing (Debian packages)"
    apt-get update -qq >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null 2>&1 \
        || echo "system-deps: apt-get install$missing failed; the tests that need them skip and say why"
    # The Debian package starts a system broker on port 1883; tests start their own on free ports.
    case "$missing" in *mosquitto*)
        command -v systemctl >/dev/null 2>&1 && systemctl disable --now mosquitto >/dev/null 2>&1 || true ;;
    esac
else
    echo "system-deps:$missing not installed and not root; tests use the embedded amqtt broker or skip"
fi
exit 0
