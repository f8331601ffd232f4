internal import CLibevent
internal import COpenSSL

// TLS to backends (SPEC §11): OpenSSL 3 over the connection's own non-blocking socket, driven by
// the same loop events as a plain connection. OpenSSL's error queue is per thread: every SSL_*
// call below starts with ERR_clear_error() and reads the queue right after, so an error left by
// one connection never shows up as another's.

/// A version's TLS settings as EventHTTP needs them (paths already resolved).
public struct TLSClientOptions: Sendable, Hashable {
    /// PEM bundle of the only CAs trusted; nil: the system's trust store.
    public var caFile: String?
    /// PEM client certificate (chain) for mutual TLS.
    public var certFile: String?
    /// PEM private key of `certFile`; nil: the key is read from `certFile`.
    public var keyFile: String?
    /// SNI and the name verified, when it differs from the host connected to.
    public var serverName: String?
    /// No certificate verification at all.
    public var insecureSkipVerify: Bool

    public init(
        caFile: String? = nil,
        certFile: String? = nil,
        keyFile: String? = nil,
        serverName: String? = nil,
        insecureSkipVerify: Bool = false
    ) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.serverName = serverName
        self.insecureSkipVerify = insecureSkipVerify
    }
}

/// Why a TLS context could not be made: which file, and why ("cannot read ca_file '/x': no
/// certificates in it", "cert_file and key_file do not match", ...).
public struct TLSConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// An SSL_CTX for one set of options, shared by every connection (and worker thread) to that
/// backend: TLS 1.2 minimum, verification against the system trust store or only `caFile` (unless
/// `insecureSkipVerify`), ALPN `http/1.1` (or the protocols asked for: `h2` for `grpcs://`), the
/// client certificate when given, and a small cache of sessions for resumption keyed by "name:port".
public final class TLSClientContext: @unchecked Sendable {
    public let options: TLSClientOptions
    /// The ALPN protocols offered, in order of preference.
    public let alpnProtocols: [String]
    let context: OpaquePointer
    /// Sessions at most kept (one per backend name and port).
    static let maxCachedSessions = 64
    private let cacheLock = Lock()
    // Guarded by `cacheLock`: one resumable session per "name:port", owned (SSL_SESSION_free).
    private var sessions: [String: OpaquePointer] = [:]

    /// `alpnProtocols`: `["http/1.1"]` for HTTP/1.1 backends, `["h2"]` for HTTP/2 ones (SPEC §13).
    public init(options: TLSClientOptions, alpnProtocols: [String] = ["http/1.1"]) throws(TLSConfigurationError) {
        self.options = options
        self.alpnProtocols = alpnProtocols
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_client_method()) else {
            throw TLSConfigurationError("cannot create a TLS context: \(TLSErrors.takeReason() ?? "out of memory")")
        }
        self.context = context
        try configure()  // on a throw, deinit frees the context (every property is set by then)
    }

    deinit {
        SSL_CTX_free(context)
        for session in sessions.values { SSL_SESSION_free(session) }
    }

    /// Checks the files of `options` without keeping a context (for `validate`): nil when fine,
    /// else the problem.
    public static func check(_ options: TLSClientOptions) -> TLSConfigurationError? {
        do {
            _ = try TLSClientContext(options: options)
            return nil
        } catch {
            return error
        }
    }

    private func configure() throws(TLSConfigurationError) {
        guard switchyard_ssl_ctx_set_min_version(context, TLS1_2_VERSION) == 1 else {
            throw TLSConfigurationError("cannot set TLS 1.2 as the minimum: \(TLSErrors.takeReason() ?? "unknown")")
        }
        SSL_CTX_set_options(context, switchyard_ssl_op_ignore_unexpected_eof())
        // One recv per record rather than two; bytes read ahead show in `SSL_has_pending`, which
        // `read` and `hasBufferedInput` consult, so none waits for a wake-up that never comes.
        switchyard_ssl_ctx_set_read_ahead(context)
        // ALPN protocol list: length-prefixed names. SSL_CTX_set_alpn_protos returns 0 on success.
        let alpn: [UInt8] = alpnProtocols.flatMap { [UInt8(truncatingIfNeeded: $0.utf8.count)] + Array($0.utf8) }
        guard SSL_CTX_set_alpn_protos(context, alpn, UInt32(alpn.count)) == 0 else {
            throw TLSConfigurationError("cannot set ALPN: \(TLSErrors.takeReason() ?? "unknown")")
        }
        if options.insecureSkipVerify {
            SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
        } else {
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
            if let caFile = options.caFile {
                try loadTrustedCertificates(caFile)
            } else {
                ERR_clear_error()
                guard SSL_CTX_set_default_verify_paths(context) == 1 else {
                    throw TLSConfigurationError(
                        "cannot load the system trust store: \(TLSErrors.takeReason() ?? "unknown")"
                    )
                }
            }
        }
        try loadClientCertificate()
        switchyard_ssl_ctx_set_session_cache_mode(context, switchyard_client_session_cache_mode())
        SSL_CTX_sess_set_new_cb(context) { ssl, session in
            // Runs inside SSL_connect / SSL_read on the loop thread of the session's connection:
            // at the end of a TLS 1.2 handshake, and for each TLS 1.3 ticket after it.
            guard let ssl, let session, let raw = SSL_get_ex_data(ssl, 0) else { return 0 }
            let owner = Unmanaged<TLSSession>.fromOpaque(raw).takeUnretainedValue()
            return owner.context.store(session, for: owner.cacheKey) ? 1 : 0
        }
    }

    /// Trusts exactly the certificates in `path` (a PEM bundle).
    private func loadTrustedCertificates(_ path: String) throws(TLSConfigurationError) {
        let certificates = try Self.readCertificates(path, field: "ca_file")
        defer { for certificate in certificates { X509_free(certificate) } }
        guard let store = X509_STORE_new() else {
            throw TLSConfigurationError("cannot create a certificate store (out of memory)")
        }
        for certificate in certificates {
            ERR_clear_error()
            guard X509_STORE_add_cert(store, certificate) == 1 else {
                X509_STORE_free(store)
                throw TLSConfigurationError(
                    "cannot use ca_file '\(path)': \(TLSErrors.takeReason() ?? "a certificate was refused")"
                )
            }
        }
        SSL_CTX_set_cert_store(context, store)  // the context owns it from here
    }

    private func loadClientCertificate() throws(TLSConfigurationError) {
        guard let certFile = options.certFile else {
            if options.keyFile != nil { throw TLSConfigurationError("key_file is set without a cert_file") }
            return
        }
        let certificates = try Self.readCertificates(certFile, field: "cert_file")
        for certificate in certificates { X509_free(certificate) }
        ERR_clear_error()
        guard SSL_CTX_use_certificate_chain_file(context, certFile) == 1 else {
            throw TLSConfigurationError("cannot use cert_file '\(certFile)': \(TLSErrors.takeReason() ?? "unknown")")
        }
        // No passphrase: OpenSSL's default callback would prompt on the terminal for an encrypted key.
        SSL_CTX_set_default_passwd_cb(context) { _, _, _, _ in 0 }
        let keyFile = options.keyFile ?? certFile
        let field = options.keyFile == nil ? "cert_file" : "key_file"
        try Self.checkPrivateKey(keyFile, field: field)
        ERR_clear_error()
        guard SSL_CTX_use_PrivateKey_file(context, keyFile, SSL_FILETYPE_PEM) == 1 else {
            // OpenSSL compares the key with the certificate here already ("key values mismatch").
            let reason = TLSErrors.takeReason() ?? "unknown"
            if reason.contains("mismatch") { throw TLSConfigurationError("cert_file and key_file do not match") }
            throw TLSConfigurationError("cannot use \(field) '\(keyFile)': \(reason)")
        }
        ERR_clear_error()
        guard SSL_CTX_check_private_key(context) == 1 else {
            ERR_clear_error()
            throw TLSConfigurationError("cert_file and key_file do not match")
        }
    }

    /// The certificates of a PEM file (owned by the caller), or why there are none.
    private static func readCertificates(_ path: String, field: String) throws(TLSConfigurationError) -> [OpaquePointer]
    {
        let bio = try openFile(path, field: field)
        defer { BIO_free(bio) }
        var certificates: [OpaquePointer] = []
        while true {
            ERR_clear_error()
            guard let certificate = PEM_read_bio_X509(bio, nil, nil, nil) else { break }
            certificates.append(certificate)
        }
        // The loop ends on "no start line" at the end of the file; anything else is a broken block,
        // whose first error is the telling one ("nested asn1 error", "bad base64 decode").
        let last = ERR_peek_last_error()
        let first = ERR_peek_error()
        ERR_clear_error()
        if last != 0 && switchyard_err_reason(last) != PEM_R_NO_START_LINE {
            for certificate in certificates { X509_free(certificate) }
            throw TLSConfigurationError("cannot read \(field) '\(path)': malformed certificate (\(reasonText(first)))")
        }
        if certificates.isEmpty {
            throw TLSConfigurationError("cannot read \(field) '\(path)': no certificates in it")
        }
        return certificates
    }

    private static func checkPrivateKey(_ path: String, field: String) throws(TLSConfigurationError) {
        let bio = try openFile(path, field: field)
        defer { BIO_free(bio) }
        ERR_clear_error()
        guard let key = PEM_read_bio_PrivateKey(bio, nil, { _, _, _, _ in 0 }, nil) else {
            let first = ERR_peek_error()
            ERR_clear_error()
            // OpenSSL 3's decoders say "unsupported" for a file without a key: look at the text.
            let text = String(decoding: (try? readFile(path, field: field)) ?? [], as: UTF8.self)
            if text.contains("ENCRYPTED") {
                throw TLSConfigurationError("cannot read \(field) '\(path)': the key is encrypted (not supported)")
            }
            if !text.contains("PRIVATE KEY-----") {
                throw TLSConfigurationError("cannot read \(field) '\(path)': no private key in it")
            }
            throw TLSConfigurationError("cannot read \(field) '\(path)': malformed private key (\(reasonText(first)))")
        }
        EVP_PKEY_free(key)
    }

    /// The first MiB of a file.
    private static func readFile(_ path: String, field: String) throws(TLSConfigurationError) -> [UInt8] {
        let bio = try openFile(path, field: field)
        defer { BIO_free(bio) }
        var bytes = [UInt8](repeating: 0, count: 1 << 20)
        var total = 0
        while total < bytes.count {
            let got = bytes[total...].withUnsafeMutableBytes { BIO_read(bio, $0.baseAddress, Int32($0.count)) }
            if got <= 0 { break }
            total += Int(got)
        }
        return Array(bytes[0..<total])
    }

    private static func reasonText(_ code: UInt) -> String {
        ERR_reason_error_string(code).map { String(cString: $0) } ?? "OpenSSL error \(code)"
    }

    private static func openFile(_ path: String, field: String) throws(TLSConfigurationError) -> OpaquePointer {
        ERR_clear_error()
        guard let bio = switchyard_bio_new_file(path) else {
            let reason = TLSErrors.takeReason() ?? "cannot open"
            throw TLSConfigurationError("cannot read \(field) '\(path)': \(reason)")
        }
        return bio
    }

    // MARK: Session cache

    /// Keeps `session` (taking ownership) when it can be resumed; returns whether it was kept.
    fileprivate func store(_ session: OpaquePointer, for key: String) -> Bool {
        guard SSL_SESSION_is_resumable(session) == 1 else { return false }
        let replaced: OpaquePointer? = cacheLock.withLock {
            if sessions[key] == nil, sessions.count >= Self.maxCachedSessions, let victim = sessions.keys.first {
                let old = sessions.removeValue(forKey: victim)
                sessions[key] = session
                return old
            }
            let old = sessions[key]
            sessions[key] = session
            return old
        }
        if let replaced { SSL_SESSION_free(replaced) }
        return true
    }

    /// The cached session for `key`, up-referenced (the caller frees it), or nil.
    fileprivate func cachedSession(for key: String) -> OpaquePointer? {
        cacheLock.withLock {
            guard let session = sessions[key] else { return nil }
            SSL_SESSION_up_ref(session)
            return session
        }
    }

    /// Forgets the session for `key` (after a failed handshake).
    fileprivate func forgetSession(for key: String) {
        let removed = cacheLock.withLock { sessions.removeValue(forKey: key) }
        if let removed { SSL_SESSION_free(removed) }
    }

    /// Sessions cached now (for tests).
    var cachedSessionCount: Int { cacheLock.withLock { sessions.count } }
}

/// The one BIO method of the process, made once and never freed (it is immutable once made).
nonisolated(unsafe) private let socketBIOMethod: OpaquePointer? = switchyard_socket_bio_method()

/// One TLS client connection over a connected non-blocking socket (which it does not own or
/// close). Loop thread only.
final class TLSSession {
    enum HandshakeStep: Equatable {
        case done
        /// Call `handshake()` again once the socket is readable.
        case wantRead
        /// Call `handshake()` again once the socket is writable.
        case wantWrite
        /// Why, in a user's words (`certificate verify failed: ...`, `hostname mismatch: ...`).
        case failed(String)
    }

    let context: TLSClientContext
    /// "name:port": the session cache key.
    let cacheKey: String
    /// The name sent as SNI and verified (`serverName ?? host`).
    let verifiedName: String
    private let ssl: OpaquePointer
    private var isBroken = false
    private var isShutDown = false

    /// OpenSSL needs the socket writable to go on reading (wait for EV_WRITE, then read again).
    private(set) var needsWritableToRead = false
    /// OpenSSL needs the socket readable to go on writing (wait for EV_READ, then flush again).
    private(set) var needsReadableToWrite = false
    /// Why the last `.failed` from `read` or `flush` happened, in a user's words.
    private(set) var failureDetail: String?

    init(context: TLSClientContext, fd: Int32, host: String, port: Int) {
        self.context = context
        let name = context.options.serverName ?? host
        verifiedName = name
        cacheKey = "\(name):\(port)"
        ERR_clear_error()
        guard let ssl = SSL_new(context.context), let method = socketBIOMethod,
            let bio = switchyard_socket_bio(method, fd)
        else {
            fatalError("OpenSSL could not allocate a TLS session (out of memory).")
        }
        self.ssl = ssl
        SSL_set_bio(ssl, bio, bio)  // the SSL owns the BIO (one reference for both directions)
        SSL_set_connect_state(ssl)
        _ = switchyard_ssl_set_mode(ssl, switchyard_ssl_client_mode())
        let isIP = switchyard_is_ip_literal(name) == 1
        if !isIP { _ = switchyard_ssl_set_sni(ssl, name) }  // RFC 6066: no IP literals in SNI
        if !context.options.insecureSkipVerify, let parameters = SSL_get0_param(ssl) {
            if isIP {
                X509_VERIFY_PARAM_set1_ip_asc(parameters, name)
            } else {
                X509_VERIFY_PARAM_set_hostflags(parameters, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
                X509_VERIFY_PARAM_set1_host(parameters, name, 0)
            }
        }
        SSL_set_ex_data(ssl, 0, Unmanaged.passUnretained(self).toOpaque())
        if let session = context.cachedSession(for: cacheKey) {
            SSL_set_session(ssl, session)
            SSL_SESSION_free(session)  // SSL_set_session took its own reference
        }
        ERR_clear_error()
    }

    deinit {
        SSL_free(ssl)
    }

    /// Whether the handshake resumed a cached session.
    var wasResumed: Bool { SSL_session_reused(ssl) == 1 }

    /// The TLS version agreed on, e.g. "TLSv1.3".
    var protocolVersion: String { String(cString: SSL_get_version(ssl)) }

    /// The ALPN protocol the server chose, nil when it chose none.
    var negotiatedProtocol: String? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    /// Decrypted bytes OpenSSL holds that the socket will not signal again: after a `read` that
    /// stopped at `maxBytes`, read again without waiting for the socket when this is true.
    var hasBufferedInput: Bool { SSL_has_pending(ssl) == 1 }

    /// Runs the handshake as far as the socket allows: call until `.done`; after `.wantRead` /
    /// `.wantWrite`, call again when the socket is readable / writable.
    func handshake() -> HandshakeStep {
        guard !isBroken else { return .failed(failureDetail ?? "handshake failed") }
        ERR_clear_error()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 { return .done }
        let error = SSL_get_error(ssl, rc)
        switch error {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        default:
            isBroken = true
            let detail = describe(error, during: "handshake failed")
            failureDetail = detail
            context.forgetSession(for: cacheKey)
            return .failed(detail)
        }
    }

    /// Reads decrypted bytes into the end of `buffer` (an evbuffer), at most `maxBytes`. Reads
    /// until OpenSSL wants the socket again, since records OpenSSL has buffered would never wake
    /// the loop; stops early only at `maxBytes` (see `hasBufferedInput`) or, with nothing buffered,
    /// after a few chunks (the socket then signals again).
    func read(into buffer: OpaquePointer, maxBytes: Int = .max) -> ReadOutcome {
        needsWritableToRead = false
        guard !isBroken else { return .failed(switchyard_eproto()) }
        let budget = SocketIO.readChunkBytes * SocketIO.maxReadsPerWakeup
        var total = 0
        var vector = iovec()  // libevent's evbuffer_iovec is a #define for struct iovec
        while total < maxBytes {
            if total >= budget && SSL_has_pending(ssl) == 0 { break }
            let want = min(SocketIO.readChunkBytes, maxBytes - total)
            guard evbuffer_reserve_space(buffer, want, &vector, 1) == 1, let base = vector.iov_base else {
                return total > 0 ? .bytes(total) : fail(errno: 12, "out of memory")  // ENOMEM
            }
            var got = 0
            ERR_clear_error()
            let rc = SSL_read_ex(ssl, base, min(want, vector.iov_len), &got)
            if rc == 1 {
                vector.iov_len = got
                evbuffer_commit_space(buffer, &vector, 1)
                total += got
                // A short read with no decrypted bytes left in OpenSSL: the socket is most likely
                // drained, and if it is not, level-triggered epoll says so again. Asking once more
                // would cost a `recv` that answers EAGAIN on nearly every response.
                if got < want && SSL_has_pending(ssl) == 0 { break }
                continue
            }
            evbuffer_commit_space(buffer, &vector, 0)
            let error = SSL_get_error(ssl, rc)
            switch error {
            case SSL_ERROR_WANT_READ:
                return total > 0 ? .bytes(total) : .wouldBlock
            case SSL_ERROR_WANT_WRITE:
                needsWritableToRead = true
                return total > 0 ? .bytes(total) : .wouldBlock
            case SSL_ERROR_ZERO_RETURN:
                // close_notify (or EOF): reported on the next call, which sees it again.
                return total > 0 ? .bytes(total) : .endOfStream
            default:
                if total > 0 {
                    // Report the bytes; the error is kept for the next call.
                    return .bytes(total)
                }
                return failFromQueue(error, during: "TLS failed")
            }
        }
        return .bytes(total)
    }

    /// Encrypts and sends from the front of `buffer`, draining what OpenSSL accepted. `.pending`
    /// when the socket is full (or, with `needsReadableToWrite`, when OpenSSL must read first).
    func flush(from buffer: OpaquePointer) -> FlushOutcome {
        needsReadableToWrite = false
        guard !isBroken else { return .failed(switchyard_eproto()) }
        while true {
            let length = evbuffer_get_length(buffer)
            if length == 0 { return .drained }
            // One record per 16 KiB: the front of the buffer made contiguous (a retry after
            // WANT_WRITE passes the same bytes again, possibly moved, which the mode allows).
            let chunk = min(length, 16 * 1024)
            guard let front = evbuffer_pullup(buffer, chunk) else {
                _ = fail(errno: 12, "out of memory")  // ENOMEM
                return .failed(12)
            }
            var written = 0
            ERR_clear_error()
            let rc = SSL_write_ex(ssl, front, chunk, &written)
            if rc == 1 {
                evbuffer_drain(buffer, written)
                continue
            }
            let error = SSL_get_error(ssl, rc)
            switch error {
            case SSL_ERROR_WANT_WRITE:
                return .pending
            case SSL_ERROR_WANT_READ:
                needsReadableToWrite = true
                return .pending
            default:
                let code = TLSErrors.systemErrno() ?? switchyard_eproto()
                var detail = describe(error, during: "TLS failed")
                // A server that refuses us after the handshake (TLS 1.3: no client certificate)
                // sends an alert and closes, and our write then fails with a reset or EPIPE: the
                // alert, when it is still readable, says why.
                if let alert = pendingAlert() { detail = alert }
                isBroken = true
                failureDetail = detail
                return .failed(code)
            }
        }
    }

    /// Sends close_notify when the connection is healthy; never waits for the peer's.
    func shutdown() {
        guard !isBroken, !isShutDown, SSL_is_init_finished(ssl) == 1 else { return }
        isShutDown = true
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    // MARK: Failures

    /// The reason of an alert already received, read with one non-blocking SSL_read (after a failed
    /// write), or nil.
    private func pendingAlert() -> String? {
        var byte: UInt8 = 0
        var got = 0
        ERR_clear_error()
        let rc = SSL_read_ex(ssl, &byte, 1, &got)
        defer { ERR_clear_error() }
        guard rc != 1, SSL_get_error(ssl, rc) == SSL_ERROR_SSL, TLSErrors.systemErrno() == nil else { return nil }
        return TLSErrors.takeReason().map { "TLS failed: \($0)" }
    }

    private func fail(errno code: Int32, _ detail: String) -> ReadOutcome {
        isBroken = true
        failureDetail = detail
        return .failed(code)
    }

    private func failFromQueue(_ error: Int32, during operation: String) -> ReadOutcome {
        let code = TLSErrors.systemErrno() ?? switchyard_eproto()
        return fail(errno: code, describe(error, during: operation))
    }

    /// Words a failed SSL_* call from SSL_get_error's `error`, the verify result and the error queue
    /// (which it empties).
    private func describe(_ error: Int32, during operation: String) -> String {
        defer { ERR_clear_error() }
        let verify = Int32(SSL_get_verify_result(ssl))
        if verify != X509_V_OK && !context.options.insecureSkipVerify {
            if verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH {
                return "hostname mismatch: the certificate is not valid for '\(verifiedName)'"
            }
            let text = X509_verify_cert_error_string(Int(verify)).map { String(cString: $0) } ?? "error \(verify)"
            return "certificate verify failed: \(text)"
        }
        if let systemErrno = TLSErrors.systemErrno() {
            return "\(operation): \(System.errorText(systemErrno))"
        }
        if let reason = TLSErrors.takeReason() {
            return "\(operation): \(reason)"
        }
        if error == SSL_ERROR_SYSCALL || error == SSL_ERROR_ZERO_RETURN {
            return "\(operation): the backend closed the connection"
        }
        return "\(operation): SSL error \(error)"
    }
}

/// Reading OpenSSL's per-thread error queue.
enum TLSErrors {
    /// The reason of the earliest error on the queue, which is emptied; nil when it was empty.
    static func takeReason() -> String? {
        let code = ERR_peek_error()
        defer { ERR_clear_error() }
        guard code != 0 else { return nil }
        if switchyard_err_is_system(code) == 1 {
            return System.errorText(Int32(switchyard_err_reason(code)))
        }
        return ERR_reason_error_string(code).map { String(cString: $0) } ?? "OpenSSL error \(code)"
    }

    /// The errno of a socket error on the queue (put there by the socket BIO), if any.
    static func systemErrno() -> Int32? {
        let code = ERR_peek_error()
        guard code != 0, switchyard_err_is_system(code) == 1 else { return nil }
        return Int32(switchyard_err_reason(code))
    }
}
