import Dispatch
import EventHTTP
import Foundation
import HTTP1
import TestTLSSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// What a test looks at in an answer (read on the loop thread, then handed over).
private struct Answer {
    var httpStatus: Int
    var status: GRPCStatus
    var message: String?
    var headers: [String: String]
    var trailers: [String: String]
    var isTrailersOnly: Bool
    var body: [UInt8]
    var firstByteNanoseconds: UInt64

    init(_ response: GRPCResponse) {
        httpStatus = response.httpStatus
        status = response.status
        message = response.message
        headers = Dictionary(response.headers.fields.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        trailers = Dictionary(response.trailers.fields.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        isTrailersOnly = response.isTrailersOnly
        body = response.body.bytes
        firstByteNanoseconds = response.firstByteNanoseconds
    }
}

private func framed(_ payload: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    GRPCFraming.appendMessage(payload, to: &out)
    return out
}

private func request(_ method: String, metadata: [(String, String)] = [], payload: [UInt8] = [1, 2, 3]) -> GRPCRequest {
    GRPCRequest(
        path: "/test.Echo/\(method)",
        metadata: HTTPHeaders(metadata),
        body: EventBuffer(bytes: framed(payload))
    )
}

private func makePool(
    _ loop: LoopThread,
    port: Int,
    maxConnections: Int = 8,
    maxQueued: Int = 64,
    maxResponseBytes: Int = 1 << 20,
    idleTimeoutMilliseconds: Int = 60_000,
    tls: TLSClientContext? = nil
) throws -> Box<HTTP2Pool> {
    try loop.make {
        HTTP2Pool(
            loop: loop.loop,
            host: "127.0.0.1",
            port: port,
            maxConnections: maxConnections,
            maxQueued: maxQueued,
            maxResponseBytes: maxResponseBytes,
            idleTimeoutMilliseconds: idleTimeoutMilliseconds,
            tls: tls
        )
    }
}

/// Starts every call at once from the loop thread; waits for all completions.
private func call(
    _ pool: Box<HTTP2Pool>,
    on loop: LoopThread,
    _ requests: [GRPCRequest],
    timeoutMilliseconds: Int = 5000
) throws -> [Result<Answer, UpstreamError>] {
    let results = Box<[Int: Result<Answer, UpstreamError>]>([:])
    let done = DispatchSemaphore(value: 0)
    let work = Box(requests)
    loop.loop.execute {
        for (index, request) in work.value.enumerated() {
            pool.value.call(request, timeoutMilliseconds: timeoutMilliseconds) { result in
                results.value[index] = result.map(Answer.init)
                if results.value.count == work.value.count { done.signal() }
            }
        }
    }
    guard done.wait(timeout: .now() + 20) == .success else { throw TestFailure("completions missing") }
    return (0..<requests.count).map { results.value[$0]! }
}

private func one(
    _ pool: Box<HTTP2Pool>,
    on loop: LoopThread,
    _ request: GRPCRequest,
    timeoutMilliseconds: Int = 5000
)
    throws -> Result<Answer, UpstreamError>
{
    try call(pool, on: loop, [request], timeoutMilliseconds: timeoutMilliseconds)[0]
}

private func answer(_ result: Result<Answer, UpstreamError>) throws -> Answer {
    switch result {
    case .success(let answer): return answer
    case .failure(let error): throw TestFailure("the call failed: \(error)")
    }
}

private func failure(_ result: Result<Answer, UpstreamError>) -> UpstreamError? {
    if case .failure(let error) = result { return error }
    return nil
}

private func badResponseDetail(_ result: Result<Answer, UpstreamError>) -> String? {
    if case .failure(.badResponse(let detail)) = result { return detail }
    return nil
}

@Suite("HTTP/2 client pool for gRPC backends", .serialized)
struct HTTP2ClientTests {
    @Test(
        "a unary call: headers, the echoed message, trailers; the request carries te, content-type, grpc-timeout and metadata"
    )
    func unaryRoundTrip() throws {
        let backend = try HTTP2TestBackend()
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let pool = try makePool(loop, port: backend.port)

        let reply = try answer(
            one(
                pool,
                on: loop,
                request("Echo", metadata: [("X-Meta", "hello"), ("Connection", "close")], payload: [7, 8, 9])
            )
        )
        #expect(reply.httpStatus == 200)
        #expect(reply.status == .ok)
        #expect(reply.message == "all good")
        #expect(reply.body == framed([7, 8, 9]))
        #expect(!reply.isTrailersOnly)
        #expect(reply.trailers["grpc-status"] == "0")
        #expect(reply.headers["content-type"] == "application/grpc")
        #expect(reply.headers["x-seen-te"] == "trailers")
        #expect(reply.headers["x-seen-content-type"] == "application/grpc")
        #expect(reply.headers["x-seen-meta"] == "hello")
        #expect(reply.headers["x-seen-authority"] == "127.0.0.1:\(backend.port)")
        #expect(reply.headers["x-seen-scheme"] == "http")
        #expect(reply.firstByteNanoseconds > 0)
        // grpc-timeout: what remained of the 5 s deadline, in milliseconds.
        let timeout = reply.headers["x-seen-timeout"] ?? ""
        #expect(timeout.hasSuffix("m"))
        let milliseconds = Int(timeout.dropLast()) ?? -1
        #expect(milliseconds > 0 && milliseconds <= 5000)
        // Events arrive through a pipe read by another thread: waited for, not read at once.
        #expect(backend.eventually { $0.connections == 1 })
    }

    @Test("trailers-only errors, non-200 answers and answers without grpc-status")
    func statusShapes() throws {
        let backend = try HTTP2TestBackend()
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let pool = try makePool(loop, port: backend.port)

        let unavailable = try answer(one(pool, on: loop, request("Unavailable")))
        #expect(unavailable.isTrailersOnly)
        #expect(unavailable.status == .unavailable)
        #expect(unavailable.message == "backend down")
        #expect(unavailable.body.isEmpty)
        #expect(unavailable.headers.isEmpty)
        #expect(unavailable.trailers["grpc-status"] == "14")

        let http503 = try answer(one(pool, on: loop, request("Http503")))
        #expect(http503.httpStatus == 503)
        #expect(http503.status == .unavailable)

        let noStatus = try one(pool, on: loop, request("NoStatus"))
        #expect(badResponseDetail(noStatus)?.contains("grpc-status") == true)

        // All on the one connection, which stays usable.
        #expect(try answer(one(pool, on: loop, request("Echo"))).status == .ok)
        // Events arrive through a pipe read by another thread: waited for, not read at once.
        #expect(backend.eventually { $0.connections == 1 })
    }

    @Test("many concurrent calls share one connection")
    func multiplexed() throws {
        let backend = try HTTP2TestBackend()
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let pool = try makePool(loop, port: backend.port)

        // The backend holds every answer until all 50 streams are open at once.
        let results = try call(
            pool,
            on: loop,
            (0..<50).map { _ in request("Barrier", metadata: [("x-barrier", "50")]) }
        )
        let replies = try results.map(answer)
        #expect(replies.allSatisfy { $0.status == .ok && $0.headers["x-barrier-timeout"] == nil })
        #expect(replies.allSatisfy { $0.headers["x-connection"] == "1" })
        // Events arrive through a pipe read by another thread: waited for, not read at once.
        #expect(backend.eventually { $0.connections == 1 })
        #expect(try loop.sync { pool.value.connectionsOpened } == 1)
    }

    @Test("waves of calls at the server's stream limit reuse one connection and leave no stream open")
    func waves() throws {
        let backend = try HTTP2TestBackend()  // h2 advertises 100 concurrent streams
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let pool = try makePool(loop, port: backend.port)
        for wave in 0..<10 {
            let replies = try call(
                pool,
                on: loop,
                (0..<100).map { request("Echo", payload: [UInt8(wave), UInt8($0)]) }
            )
            #expect(replies.allSatisfy { (try? answer($0).status) == .ok }, "wave \(wave)")
        }
        #expect(try loop.eventually { pool.value.activeStreams == 0 })
        #expect(try loop.sync { pool.value.connectionsOpened } == 1)
        #expect(backend.eventually { $0.events("request").count == 1000 })
    }

    @Test("a connection at the server's stream limit makes the pool open another")
    func moreConnectionsAtTheStreamLimit() throws {
        let backend = try HTTP2TestBackend(.maxStreams(4))
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let pool = try makePool(loop, port: backend.port)

        let results = try call(
            pool,
            on: loop,
            (0..<10).map { _ in request("Barrier", metadata: [("x-barrier", "10")]) }
        )
        let replies = try results.map(answer)
        #expect(replies.allSatisfy { $0.status == .ok && $0.headers["x-barrier-timeout"] == nil })
        var perConnection: [String: Int] = [:]
        for reply in replies { perConnection[reply.headers["x-connection"] ?? "?", default: 0] += 1 }
        #expect(perConnection.values.allSatisfy { $0 <= 4 })
        // Events arrive through a pipe read by another thread: waited for, not read at once.
        #expect(backend.eventually { $0.connections == 3 })
        #expect(try loop.sync { pool.value.connectionsOpened } == 3)
    }

    @Test("max_connections caps the connections; calls beyond the queue bound are overloaded")
    func capAndQueueBound() throws {
        let backend = try HTTP2TestBackend(.maxStreams(2))
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let pool = try makePool(loop, port: backend.port, maxConnections: 1, maxQueued: 2)

        let first = Box<[Result<Answer, UpstreamError>]>([])
        let firstDone = DispatchSemaphore(value: 0)
        Thread {
            first.value =
                (try? call(pool, on: loop, (0..<4).map { _ in request("Hang") }, timeoutMilliseconds: 1500)) ?? []
            firstDone.signal()
        }.start()
        #expect(backend.eventually { $0.events("request").count == 2 })
        #expect(try loop.sync { pool.value.queuedRequests } == 2)
        let extra = try one(pool, on: loop, request("Echo"))
        #expect(failure(extra) == .overloaded)
        #expect(firstDone.wait(timeout: .now() + 10) == .success)
        #expect(first.value.count == 4 && first.value.allSatisfy { failure($0) == .timeout })
        // Events arrive through a pipe read by another thread: waited for, not read at once.
        #expect(backend.eventually { $0.connections == 1 })
    }

    @Test("a deadline resets the stream (CANCEL) and the connection goes on serving")
    func deadline() throws {
        let backend = try HTTP2TestBackend()
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let pool = try makePool(loop, port: backend.port)

        let timedOut = try one(pool, on: loop, request("Hang"), timeoutMilliseconds: 300)
        #expect(failure(timedOut) == .timeout)
        // RST_STREAM with CANCEL (8) reached the backend.
        #expect(backend.eventually { $0.events("reset").contains { $0.count == 4 && $0[3] == "8" } })
        let next = try answer(one(pool, on: loop, request("Echo")))
        #expect(next.status == .ok)
        #expect(next.headers["x-connection"] == "1")
        // Events arrive through a pipe read by another thread: waited for, not read at once.
        #expect(backend.eventually { $0.connections == 1 })
        #expect(try loop.sync { pool.value.activeStreams } == 0)
    }

    @Test("a connection the server drops fails its calls; the next call reconnects")
    func connectionLoss() throws {
        let backend = try HTTP2TestBackend(.closeAfter(3))
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let pool = try makePool(loop, port: backend.port)

        let lost = try call(pool, on: loop, (0..<3).map { _ in request("Hang") })
        for result in lost {
            let detail = badResponseDetail(result)
            #expect(detail?.contains("closed the HTTP/2 connection") == true, "\(result)")
        }
        let next = try answer(one(pool, on: loop, request("Echo")))
        #expect(next.headers["x-connection"] == "2")
        // Events arrive through a pipe read by another thread: waited for, not read at once.
        #expect(backend.eventually { $0.connections == 2 })
        #expect(try loop.sync { pool.value.openConnections } == 1)
    }

    @Test("GOAWAY: streams above last-stream-id go out again on a new connection; the old one drains and closes")
    func goaway() throws {
        let backend = try HTTP2TestBackend(.goawayAfter(3))
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let pool = try makePool(loop, port: backend.port)

        let replies = try call(pool, on: loop, (0..<3).map { _ in request("Echo") }).map(answer)
        #expect(replies.allSatisfy { $0.status == .ok })
        #expect(replies.filter { $0.headers["x-connection"] == "1" }.count == 1)
        #expect(replies.filter { $0.headers["x-connection"] == "2" }.count == 2)
        // Events arrive through a pipe read by another thread: waited for, not read at once.
        #expect(backend.eventually { $0.connections == 2 })
        // Its last stream done, the client closes the connection that got GOAWAY.
        #expect(backend.eventually { $0.events("closed").contains { $0.count == 2 && $0[1] == "1" } })
        let later = try answer(one(pool, on: loop, request("Echo")))
        #expect(later.headers["x-connection"] == "2")
        #expect(try loop.sync { pool.value.connectionsOpened } == 2)
    }

    @Test("a port nobody listens on: connect failed, for every call")
    func deadPort() throws {
        // Bound and never listening, held until the test process ends: nobody else takes it.
        let port = TestSupport.deadPort()

        let loop = try LoopThread()
        defer { loop.shutdown() }
        let pool = try makePool(loop, port: port)
        let results = try call(pool, on: loop, (0..<5).map { _ in request("Echo") })
        for result in results {
            guard case .failure(.connectFailed(let detail)) = result else {
                Issue.record("expected connectFailed, got \(result)")
                continue
            }
            #expect(detail.contains("127.0.0.1:\(port)"))
        }
        #expect(try loop.sync { pool.value.openConnections } == 0)
    }

    @Test("a response over maxResponseBytes is a bad response; the stream is reset and the connection kept")
    func responseLimit() throws {
        let backend = try HTTP2TestBackend()
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let pool = try makePool(loop, port: backend.port, maxResponseBytes: 100_000)

        let big = try one(pool, on: loop, request("Big", metadata: [("x-size", "300000")]))
        #expect(badResponseDetail(big)?.contains("exceeds the limit of 100000 bytes") == true)
        let fits = try answer(one(pool, on: loop, request("Big", metadata: [("x-size", "50000")])))
        #expect(fits.body.count == 50_005)
        // Events arrive through a pipe read by another thread: waited for, not read at once.
        #expect(backend.eventually { $0.connections == 1 })
    }

    @Test("grpcs: TLS with ALPN h2 against the test CA; a context without h2, or the wrong CA, is a TLS failure")
    func tls() throws {
        let pki = try TestPKI.shared()
        let backend = try HTTP2TestBackend(.tls(cert: pki.serverCert, key: pki.serverKey))
        let loop = try LoopThread()
        defer { loop.shutdown() }

        let context = try TLSClientContext(options: TLSClientOptions(caFile: pki.caFile), alpnProtocols: ["h2"])
        let pool = try makePool(loop, port: backend.port, tls: context)
        let reply = try answer(one(pool, on: loop, request("Echo", payload: [4, 2])))
        #expect(reply.status == .ok)
        #expect(reply.body == framed([4, 2]))
        #expect(reply.headers["x-seen-scheme"] == "https")
        #expect(backend.events("alpn").first == ["alpn", "1", "h2"])

        let http11 = try TLSClientContext(options: TLSClientOptions(caFile: pki.caFile))
        let wrongALPN = try makePool(loop, port: backend.port, tls: http11)
        guard case .failure(.tlsFailed(let detail)) = try one(wrongALPN, on: loop, request("Echo")) else {
            Issue.record("expected tlsFailed without ALPN h2")
            return
        }
        #expect(detail.contains("h2"))

        let otherCA = try TLSClientContext(options: TLSClientOptions(caFile: pki.otherCAFile), alpnProtocols: ["h2"])
        let untrusted = try makePool(loop, port: backend.port, tls: otherCA)
        guard case .failure(.tlsFailed(let why)) = try one(untrusted, on: loop, request("Echo")) else {
            Issue.record("expected tlsFailed with an unrelated CA")
            return
        }
        #expect(why.contains("certificate verify failed"))
    }

    @Test("an idle connection is closed; the next call opens a new one")
    func idleClose() throws {
        let backend = try HTTP2TestBackend()
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let pool = try makePool(loop, port: backend.port, idleTimeoutMilliseconds: 200)
        #expect(try answer(one(pool, on: loop, request("Echo"))).headers["x-connection"] == "1")
        #expect(backend.eventually { $0.events("closed").contains { $0 == ["closed", "1"] } })
        #expect(try loop.eventually { pool.value.openConnections == 0 })
        #expect(try answer(one(pool, on: loop, request("Echo"))).headers["x-connection"] == "2")
    }

    @Test("a real gRPC server (grpcio): round trip, metadata, one connection for many calls, statuses")
    func grpcioInterop() throws {
        let backend = try HTTP2TestBackend.grpcio()
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let pool = try makePool(loop, port: backend.port)

        let replies = try call(
            pool,
            on: loop,
            (0..<20).map { index in request("Echo", metadata: [("x-meta", "m\(index)")], payload: [UInt8(index), 42]) }
        ).map(answer)
        for (index, reply) in replies.enumerated() {
            #expect(reply.status == .ok)
            #expect(reply.body == framed([UInt8(index), 42]))
            #expect(reply.headers["x-seen-meta"] == "m\(index)")
        }
        #expect(Set(replies.compactMap { $0.headers["x-peer"] }).count == 1)

        let notFound = try answer(one(pool, on: loop, request("Fail")))
        #expect(notFound.status == .notFound)
        #expect(notFound.message == "no model named \u{FC}n\u{EF}code")
        #expect(try answer(one(pool, on: loop, request("Missing"))).status == .unimplemented)
        #expect(try loop.sync { pool.value.connectionsOpened } == 1)
    }

    @Test("a real gRPC server over TLS (grpcs, ALPN h2)")
    func grpcioTLS() throws {
        let pki = try TestPKI.shared()
        let backend = try HTTP2TestBackend.grpcio(tls: (pki.serverCert, pki.serverKey))
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let context = try TLSClientContext(options: TLSClientOptions(caFile: pki.caFile), alpnProtocols: ["h2"])
        let pool = try makePool(loop, port: backend.port, tls: context)
        let reply = try answer(one(pool, on: loop, request("Echo", metadata: [("x-meta", "secure")], payload: [9])))
        #expect(reply.status == .ok)
        #expect(reply.body == framed([9]))
        #expect(reply.headers["x-seen-meta"] == "secure")
    }

    @Test("grpcs with a server that requires a client certificate: refused without one, served with one")
    func grpcioMutualTLS() throws {
        let pki = try TestPKI.shared()
        let backend = try HTTP2TestBackend.grpcio(tls: (pki.serverCert, pki.serverKey), clientCA: pki.clientCAFile)
        let loop = try LoopThread()
        defer { loop.shutdown() }

        let anonymous = try TLSClientContext(options: TLSClientOptions(caFile: pki.caFile), alpnProtocols: ["h2"])
        let refused = try makePool(loop, port: backend.port, tls: anonymous)
        let result = try one(refused, on: loop, request("Echo"))
        guard case .failure(.tlsFailed) = result else {
            Issue.record("expected tlsFailed without a client certificate, got \(result)")
            return
        }

        let options = TLSClientOptions(caFile: pki.caFile, certFile: pki.clientCert, keyFile: pki.clientKey)
        let identified = try TLSClientContext(options: options, alpnProtocols: ["h2"])
        let pool = try makePool(loop, port: backend.port, tls: identified)
        #expect(try answer(one(pool, on: loop, request("Echo", payload: [5]))).body == framed([5]))
    }

    @Test("a closed pool fails new calls with closed, lets calls in flight finish, then closes their connection")
    func closedPool() throws {
        let backend = try HTTP2TestBackend()
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let pool = try makePool(loop, port: backend.port)
        #expect(try answer(one(pool, on: loop, request("Echo"))).status == .ok)
        // A slow call in flight when the pool closes still gets its answer.
        let slow = Box<Result<Answer, UpstreamError>?>(nil)
        let slowDone = DispatchSemaphore(value: 0)
        Thread {
            slow.value = try? one(pool, on: loop, request("Slow", metadata: [("x-delay-ms", "300")]))
            slowDone.signal()
        }.start()
        #expect(backend.eventually { $0.events("request").count == 2 })
        try loop.sync { pool.value.close() }
        #expect(failure(try one(pool, on: loop, request("Echo"))) == .closed)
        #expect(slowDone.wait(timeout: .now() + 10) == .success)
        #expect((try slow.value.map(answer))?.status == .ok)
        #expect(backend.eventually { $0.events("closed").count == 1 })
        #expect(try loop.eventually { pool.value.openConnections == 0 })
    }
}
