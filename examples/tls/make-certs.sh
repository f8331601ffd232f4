#!/usr/bin/env bash
# Makes a throwaway CA, a server certificate for localhost / 127.0.0.1 and a client certificate
# (for mutual TLS) in examples/tls/certs/ (git-ignored), with the openssl command-line tool.
# For trying README "TLS to backends" only: the keys are unencrypted and valid for 30 days.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p certs
cd certs
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=Switchyard example CA" \
  -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
  -extfile server.ext -out server.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=switchyard" -keyout client.key -out client.csr 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' > client.ext
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
  -extfile client.ext -out client.pem 2>/dev/null
rm -f server.csr client.csr server.ext client.ext ca.srl
echo "wrote $(pwd)/{ca,server,client}.{pem,key}"
