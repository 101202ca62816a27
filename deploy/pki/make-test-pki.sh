#!/bin/sh
# A test PKI for a wardwatch ward network: a CA, the broker's certificate, and client
# certificates whose CN is the broker user the ACL knows (deploy/mosquitto/wardwatch.acl):
#   wardwatch, station-4A, and the bedside devices 4A/12 and 4A/13.
# For tests and trials only: a hospital issues these from its own CA, keys on the device.
#
#   deploy/pki/make-test-pki.sh DIR [BROKER-HOSTNAME ...]
#
# DIR gets ca.crt, broker.crt/.key, and <name>.crt/.key per client ("/" in a CN becomes
# "-" in its file name: 4A-12.crt). Keys are ECDSA P-256, mode 600.
set -eu
dir=${1:?usage: make-test-pki.sh DIR [BROKER-HOSTNAME ...]}
shift
mkdir -p "$dir"
cd "$dir"
umask 077
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=wardwatch test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca.crt

sign() {  # sign NAME CN EXTENSIONS
    key "$1.key"
    openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
    printf '%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
        -days 825 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

san="DNS:localhost,IP:127.0.0.1"
for host in "$@"; do san="$san,DNS:$host"; done
sign broker "${1:-localhost}" "subjectAltName=$san
extendedKeyUsage=serverAuth"
for cn in wardwatch station-4A 4A/12 4A/13; do
    # "/" separates RDNs in -subj: escape it inside the CN
    sign "$(printf %s "$cn" | tr / -)" "$(printf %s "$cn" | sed 's#/#\\/#g')" \
        "extendedKeyUsage=clientAuth"
done
chmod 644 ca.crt ./*.crt
echo "test PKI in $dir: ca.crt, broker.crt, wardwatch, station-4A, 4A-12, 4A-13"
