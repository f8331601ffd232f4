import Dispatch
import EventHTTP
import Foundation
import Testing

@Suite struct EventLoopTests {
    @Test func runsWorkFromOtherThreadsInOrder() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let seen = Box<[Int]>([])
        let done = DispatchSemaphore(value: 0)
        for i in 0..<100 {
            loop.loop.execute {
                seen.value.append(i)
                if i == 99 { done.signal() }
            }
        }
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(try loop.sync { seen.value } == Array(0..<100))
    }

    @Test func firesTimersAndHonoursCancel() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let fired = Box<[String]>([])
        let started = loop.loop.nowMilliseconds
        let elapsed = Box<Int64>(0)
        try loop.sync {
            loop.loop.scheduleTimer(afterMilliseconds: 50) {
                fired.value.append("a")
                elapsed.value = loop.loop.nowMilliseconds - started
            }
            let cancelled = loop.loop.scheduleTimer(afterMilliseconds: 20) { fired.value.append("b") }
            cancelled.cancel()
            #expect(!cancelled.isPending)
        }
        // "b" was due 30 ms before "a": had the cancel failed, it would have fired first.
        #expect(try loop.eventually { fired.value == ["a"] })
        #expect(elapsed.value >= 45)
    }

    @Test func deliversSignals() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let count = Box(0)
        try loop.sync { loop.loop.onSignal(SIGUSR2) { count.value += 1 } }
        kill(getpid(), SIGUSR2)
        #expect(try loop.eventually { count.value == 1 })
    }

    @Test func stopEndsRun() throws {
        let loop = try EventLoop()
        let finished = DispatchSemaphore(value: 0)
        Thread {
            loop.run()
            finished.signal()
        }.start()
        loop.stop()
        #expect(finished.wait(timeout: .now() + 5) == .success)
    }
}

@Suite struct EventBufferTests {
    @Test func appendsAndReads() {
        let buffer = EventBuffer(bytes: [1, 2, 3])
        buffer.append([4, 5][...])
        buffer.append("hé")
        #expect(buffer.count == 8)
        #expect(buffer.bytes == [1, 2, 3, 4, 5, 0x68, 0xC3, 0xA9])
        #expect(buffer.withUnsafeReadableBytes { Array($0) } == buffer.bytes)
        #expect(EventBuffer().withUnsafeReadableBytes { $0.count } == 0)
    }

    @Test func appendingAnotherBufferLeavesItIntact() {
        let body = EventBuffer(bytes: Array("payload".utf8))
        let live = EventBuffer()
        let shadow = EventBuffer(bytes: Array("> ".utf8))
        live.append(contentsOf: body)
        shadow.append(contentsOf: body)
        // A buffer holding references is copied, not referenced again.
        let third = EventBuffer()
        third.append(contentsOf: live)
        body.append("!")
        #expect(body.bytes == Array("payload!".utf8))
        #expect(live.bytes == Array("payload".utf8))
        #expect(shadow.bytes == Array("> payload".utf8))
        #expect(third.bytes == Array("payload".utf8))
    }
}
