import Foundation
import Testing

@testable import EventHTTP

/// A name lookup the test controls: it fails until `resolvable` is set, then answers
/// 127.0.0.1, and counts its calls.
/// (An `NSLock`, not `Synchronization.Mutex`: importing Synchronization beside `@testable import
/// EventHTTP` puts glibc's module next to CLibevent's, whose `fd_set` differs, and a clean build
/// fails.)
private final class FakeLookup: @unchecked Sendable {  // every access under `lock`
    private let lock = NSLock()
    private var count = 0
    private var resolvable = false

    var calls: Int { lock.withLock { count } }
    func becomeResolvable() { lock.withLock { resolvable = true } }

    var lookup: BackendAddress.Lookup {
        { [self] _, port, out in
            let answers = lock.withLock {
                count += 1
                return resolvable
            }
            return answers ? BackendAddress.systemLookup("127.0.0.1", port, out) : 0
        }
    }
}

@Suite struct BackendAddressTests {
    /// A name that does not resolve is looked up again once a second has passed since the last
    /// lookup (not before), and once it resolves the failure is gone. The clock is the `now`
    /// the test passes to `refresh`, so nothing waits for a second to pass.
    @Test func aNameThatDoesNotResolveIsLookedUpAgainAfterASecondAndItsAddressIsUsedOnceItResolves() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let fake = FakeLookup()
        let address = try loop.make { BackendAddress(host: "late.invalid", port: 8080, lookup: fake.lookup) }
        #expect(fake.calls == 1)
        #expect(try loop.sync { address.value.failure } == "cannot resolve backend host \"late.invalid\"")
        fake.becomeResolvable()

        // 999 ms after the failed lookup: too soon, no lookup starts.
        let tooSoon = try loop.sync {
            let value = address.value
            value.refresh(loop: loop.loop, now: value.lastResolvedMilliseconds + 999)
            return value.isResolving
        }
        #expect(!tooSoon)
        #expect(fake.calls == 1)

        // A second after it: looked up again on a background thread; the address now resolves.
        let started = try loop.sync {
            let value = address.value
            value.refresh(loop: loop.loop, now: value.lastResolvedMilliseconds + 1000)
            return value.isResolving
        }
        #expect(started)
        #expect(try loop.eventually { address.value.failure == nil && !address.value.isResolving })
        #expect(fake.calls == 2)
    }
}
