#ifndef SWITCHYARD_COPENSSL_SHIM_H
#define SWITCHYARD_COPENSSL_SHIM_H
// EventHTTP imports this module next to CLibevent, whose event-config.h defines _GNU_SOURCE:
// define it here too, before any system header, so both clang modules see the same glibc
// declarations (fd_set and friends; see shared/NOTES-libevent-swift.md).
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/x509_vfy.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <errno.h>
#include <stdint.h>
#include <sys/socket.h>

// The following are macros over SSL_ctrl / SSL_CTX_ctrl / BIO_ctrl, which Swift does not import.

static inline int switchyard_ssl_set_sni(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

static inline int switchyard_ssl_ctx_set_min_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

static inline int switchyard_ssl_ctx_set_max_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_max_proto_version(ctx, version);
}

static inline long switchyard_ssl_set_mode(SSL *ssl, long mode) { return SSL_set_mode(ssl, mode); }

// SSL_CTX_set_read_ahead is a macro. Read-ahead lets one recv take a whole record (and what
// follows it) instead of a 5-byte header read and then the record.
static inline void switchyard_ssl_ctx_set_read_ahead(SSL_CTX *ctx) { SSL_CTX_set_read_ahead(ctx, 1); }

// SSL_MODE_* are `0x...U` macros whose types import unevenly; one helper names the mode we use.
static inline long switchyard_ssl_client_mode(void) {
    return SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
}

static inline long switchyard_ssl_ctx_set_session_cache_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_session_cache_mode(ctx, mode);
}

// SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE: sessions reach the new-session
// callback and are kept only in the caller's cache.
static inline long switchyard_client_session_cache_mode(void) {
    return SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE;
}

static inline BIO *switchyard_bio_new_mem(const void *bytes, int length) {
    return BIO_new_mem_buf(bytes, length);
}

static inline BIO *switchyard_bio_new_file(const char *path) { return BIO_new_file(path, "r"); }

// ERR_GET_LIB / ERR_GET_REASON are inline functions in OpenSSL 3 but build on macros; wrapped so
// the packed error code is split in one place.
static inline int switchyard_err_reason(unsigned long code) { return ERR_GET_REASON(code); }
static inline int switchyard_err_is_system(unsigned long code) { return ERR_SYSTEM_ERROR(code) ? 1 : 0; }

// SSL_OP_BIT(7) is a cast expression, which Swift does not import. An EOF without close_notify
// ends the stream like a close_notify would (many HTTP servers close that way); HTTP framing
// still catches a body cut short.
static inline uint64_t switchyard_ssl_op_ignore_unexpected_eof(void) { return SSL_OP_IGNORE_UNEXPECTED_EOF; }

static inline int switchyard_eproto(void) { return EPROTO; }

// Whether `text` is an IPv4 or IPv6 literal (verified as an IP, never sent as SNI).
static inline int switchyard_is_ip_literal(const char *text) {
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(text);
    if (ip == NULL) return 0;
    ASN1_OCTET_STRING_free(ip);
    return 1;
}

// A socket BIO that sends with MSG_NOSIGNAL: OpenSSL's own socket BIO uses write(), which raises
// SIGPIPE when the backend has closed (EventHTTP's plain sockets use MSG_NOSIGNAL for the same
// reason). A socket error is put on the error queue as ERR_LIB_SYS with its errno, so the errno
// reaches the caller even if something else clobbers errno first. The socket is not owned.

static inline int switchyard_socket_bio_write(BIO *bio, const char *data, size_t length, size_t *written) {
    int fd = (int)(intptr_t)BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    *written = 0;
    ssize_t sent = send(fd, data, length, MSG_NOSIGNAL);
    if (sent >= 0) {
        *written = (size_t)sent;
        return 1;
    }
    int saved = errno;
    if (saved == EAGAIN || saved == EWOULDBLOCK || saved == EINTR) BIO_set_retry_write(bio);
    else ERR_raise(ERR_LIB_SYS, saved);
    return 0;
}

static inline int switchyard_socket_bio_read(BIO *bio, char *data, size_t length, size_t *read_bytes) {
    int fd = (int)(intptr_t)BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    *read_bytes = 0;
    ssize_t got = recv(fd, data, length, 0);
    if (got > 0) {
        *read_bytes = (size_t)got;
        return 1;
    }
    if (got == 0) {
        BIO_set_flags(bio, BIO_FLAGS_IN_EOF);  // BIO_eof: OpenSSL's record layer asks it
        return 0;
    }
    int saved = errno;
    if (saved == EAGAIN || saved == EWOULDBLOCK || saved == EINTR) BIO_set_retry_read(bio);
    else ERR_raise(ERR_LIB_SYS, saved);
    return 0;
}

static inline long switchyard_socket_bio_ctrl(BIO *bio, int command, long number, void *pointer) {
    (void)number;
    switch (command) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_EOF:
        return BIO_test_flags(bio, BIO_FLAGS_IN_EOF) ? 1 : 0;
    case BIO_C_GET_FD:
        if (pointer != NULL) *(int *)pointer = (int)(intptr_t)BIO_get_data(bio);
        return (long)(intptr_t)BIO_get_data(bio);
    default:
        return 0;
    }
}

// The method for `switchyard_socket_bio`; make it once per process (EventHTTP keeps it in a global).
static inline BIO_METHOD *switchyard_socket_bio_method(void) {
    BIO_METHOD *method = BIO_meth_new(BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR | 0x70, "switchyard socket");
    if (method == NULL) return NULL;
    BIO_meth_set_write_ex(method, switchyard_socket_bio_write);
    BIO_meth_set_read_ex(method, switchyard_socket_bio_read);
    BIO_meth_set_ctrl(method, switchyard_socket_bio_ctrl);
    return method;
}

static inline BIO *switchyard_socket_bio(BIO_METHOD *method, int fd) {
    BIO *bio = BIO_new(method);
    if (bio == NULL) return NULL;
    BIO_set_data(bio, (void *)(intptr_t)fd);
    BIO_set_init(bio, 1);
    return bio;
}

#endif
