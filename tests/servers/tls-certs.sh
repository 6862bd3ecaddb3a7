# shellcheck shell=bash
# tls-certs.sh: sourced by the tests/servers/with-redis*.sh scripts.
#
# tls_certs DIR WHO
#   Make throwaway certificates in DIR with openssl (EC P-256, valid for 2
#   days): a CA (ca.crt, ca.key), a server certificate signed by it for
#   127.0.0.1 and localhost (server.crt, server.key), and an unrelated CA
#   (badca.crt) for tests that expect verification to fail. openssl's output
#   goes to DIR/openssl.log. Returns 0; on failure prints that log after
#   "WHO: ..." on stderr and returns 1; without openssl returns 77 (skipped),
#   or 1 when CI=true. Callers: `tls_certs "$dir" NAME || exit $?`.
tls_certs() {
  local dir=$1 who=$2
  if ! command -v openssl >/dev/null; then
    echo "$who: openssl not found" >&2
    [ "${CI:-}" = true ] && return 1
    return 77
  fi
  (
    cd "$dir" || exit 1
    ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    # shellcheck disable=SC2086
    openssl req -x509 $ec -keyout ca.key -out ca.crt -days 2 \
      -subj "/CN=kvio test CA" &&
      openssl req -x509 $ec -keyout badca.key -out badca.crt -days 2 \
        -subj "/CN=kvio other CA" &&
      openssl req $ec -keyout server.key -out server.csr \
        -subj "/CN=localhost" &&
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >ext.cnf &&
      openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key \
        -CAcreateserial -out server.crt -days 2 -extfile ext.cnf
  ) >"$dir/openssl.log" 2>&1 || {
    echo "$who: generating certificates failed:" >&2
    cat "$dir/openssl.log" >&2
    return 1
  }
}
