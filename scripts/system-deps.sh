#!/bin/sh
# Installs the Debian packages the tests prefer (Mosquitto). Never fails the build: without root or
# apt-get the suite uses the embedded amqtt broker and says so.
if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: installing mosquitto (Debian package)"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null 2>&1 \
        || echo "system-deps: apt-get install mosquitto failed; tests use the embedded amqtt broker"
    # The Debian package starts a system broker on port 1883; tests start their own on free ports.
    command -v systemctl >/dev/null 2>&1 && systemctl disable --now mosquitto >/dev/null 2>&1 || true
else
    echo "system-deps: mosquitto not installed and not root; tests use the embedded amqtt broker"
fi
exit 0
