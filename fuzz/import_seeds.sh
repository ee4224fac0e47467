#!/bin/sh
# import_seeds.sh DIR — writes the seeds of the import targets that hold a
# private key into DIR, made fresh by openssl at build time so that no key
# is kept in the source tree (corpus/import holds the ones without a key).
# Encrypted files use the password fuzz_import_password decodes with and
# one iteration, so the fuzzer spends its time in the parsers.
set -eu
umask 077
out=$1
pass=fuzz-pass
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ssl() { openssl "$@" 2>/dev/null; }

ssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/ca.key" \
	-out "$tmp/ca.pem" -days 36500 -subj /CN=fuzz-ca -addext basicConstraints=critical,CA:TRUE
ssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/leaf.key" \
	-out "$tmp/leaf.csr" -subj /CN=leaf.example.test
ssl x509 -req -in "$tmp/leaf.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -days 36500 \
	-extfile /dev/stdin -out "$tmp/leaf.pem" <<EXT
subjectAltName=DNS:leaf.example.test,DNS:www.example.test
EXT

ssl pkcs8 -topk8 -nocrypt -in "$tmp/leaf.key" -outform DER -out "$out/key-pkcs8.der"
ssl pkey -in "$tmp/leaf.key" -out "$out/key-pkcs8.pem"
ssl pkcs8 -topk8 -in "$tmp/leaf.key" -v2 aes-256-cbc -iter 1 -passout "pass:$pass" \
	-outform DER -out "$out/key-pkcs8-encrypted.der"
ssl pkcs8 -topk8 -in "$tmp/leaf.key" -v2 aes-256-cbc -iter 1 -passout "pass:$pass" \
	-out "$out/key-pkcs8-encrypted.pem"
ssl ec -in "$tmp/leaf.key" -outform DER -out "$out/key-ec-legacy.der"
ssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out "$tmp/rsa.key"
ssl rsa -in "$tmp/rsa.key" -traditional -out "$out/key-rsa-traditional.pem"
cat "$tmp/leaf.pem" "$tmp/leaf.key" >"$out/leaf-and-ec-key.pem"

p12() {
	name=$1
	shift
	ssl pkcs12 -export -in "$tmp/leaf.pem" -inkey "$tmp/leaf.key" -out "$out/$name" "$@"
}
p12 leaf-chain.p12 -certfile "$tmp/ca.pem" -iter 1 -passout "pass:$pass"
p12 leaf-empty-pass.p12 -iter 1 -passout pass:
p12 leaf-legacy.p12 -legacy -iter 1 -passout "pass:$pass"
p12 leaf-nomac.p12 -nomac -iter 1 -passout "pass:$pass"
