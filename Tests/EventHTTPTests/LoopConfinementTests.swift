import Dispatch
import EventHTTP
import Foundation
import Testing

/// `EventLoop.assertInLoop()`: a debug build stops a call into loop-confined state made from the
/// wrong thread, where it is made, and lets the loop's own thread through. The calls that must
/// trap run as exit tests, each in a child process, and the tests read the message it prints.
@Suite struct LoopConfinementTests {
    /// What a trapped process prints (`EventLoop.checkInLoop`).
    static let trapMessage = "Loop-confined state was used off its loop's thread"

    @Test func theCreatingThreadOwnsTheLoopBeforeItRuns() throws {
        let loop = try EventLoop()
        #expect(loop.isInLoop)
        let timer = loop.scheduleTimer(afterMilliseconds: 60_000) {}
        #expect(timer.isPending)
        timer.cancel()
    }

    @Test func responsesHandedBackToTheLoopReachTheClient() throws {
        let running = try LoopThread()
        defer { running.shutdown() }
        let loop = running.loop
        let server = try running.make {
            try HTTPServer(loop: loop, host: "127.0.0.1", port: 0) { _, writer in
                // Another thread decides the answer and gives the writer back to the loop.
                let handOff = Box(writer)
                DispatchQueue.global().async {
                    loop.execute { handOff.value.respond(status: 200, body: Array("from the loop".utf8)) }
                }
            }
        }
        let client = try RawClient(port: server.value.port)
        client.send("GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.text == "from the loop")
    }

    #if DEBUG
    @Test func theRunningThreadOwnsTheLoop() throws {
        let running = try LoopThread()
        defer { running.shutdown() }
        // `sync` returns once the loop has run a callback, so `run()` has started.
        #expect(try running.sync { running.loop.isInLoop })
        #expect(!running.loop.isInLoop)
        let fired = Box(false)
        _ = try running.sync { running.loop.scheduleTimer(afterMilliseconds: 0) { fired.value = true } }
        #expect(try running.eventually { fired.value })
    }

    @Test func aTimerScheduledOffTheRunningLoopTraps() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let running = try LoopThread()
            _ = try running.sync { true }
            running.loop.scheduleTimer(afterMilliseconds: 0) {}
        }
        let printed = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(printed.contains(LoopConfinementTests.trapMessage))
    }

    @Test func anotherThreadTrapsBeforeTheLoopRuns() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let loop = try EventLoop()
            let finished = DispatchSemaphore(value: 0)
            Thread {
                loop.scheduleTimer(afterMilliseconds: 0) {}
                finished.signal()
            }.start()
            _ = finished.wait(timeout: .now() + 10)
        }
        let printed = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(printed.contains(LoopConfinementTests.trapMessage))
    }

    @Test func aResponseFromAnotherThreadTraps() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let running = try LoopThread()
            let server = try running.make {
                try HTTPServer(loop: running.loop, host: "127.0.0.1", port: 0) { _, writer in
                    let handOff = Box(writer)
                    DispatchQueue.global().async { handOff.value.respond(status: 200) }
                }
            }
            let client = try RawClient(port: server.value.port)
            client.send("GET / HTTP/1.1\r\nhost: a\r\n\r\n")
            // Without the check the response arrives and the process ends well: the test fails.
            _ = try client.readResponse()
        }
        let printed = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(printed.contains(LoopConfinementTests.trapMessage))
    }

    @Test func anUpstreamRequestSentFromAnotherThreadTraps() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let running = try LoopThread()
            // Nothing listens on port 1: without the check the send fails and the process ends well.
            let pool = try running.make { UpstreamPool(loop: running.loop, host: "127.0.0.1", port: 1) }
            let finished = DispatchSemaphore(value: 0)
            pool.value.send(UpstreamRequest(method: "GET", target: "/"), timeoutMilliseconds: 1000) { _ in
                finished.signal()
            }
            _ = finished.wait(timeout: .now() + 10)
        }
        let printed = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(printed.contains(LoopConfinementTests.trapMessage))
    }
    #endif
}
