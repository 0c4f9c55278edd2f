import Dispatch
import Glibc

/// Runs `body` on a thread of its own. Work that blocks for long (an HTTP call waiting on Swift
/// concurrency, a run waiting for its command, a pipe being drained) must not hold a GCD pool
/// thread: the pool is as wide as the cores, and work queued behind blocked threads gets none
/// until libdispatch's monitor adds one, up to a second later each time. On 2 cores that cost
/// 0.45–0.55 s of a 2.3 s push and ran `trove sweep --parallel 8` two runs at a time.
public func onOwnThread(_ body: @escaping () -> Void) {
    final class Body: @unchecked Sendable {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }
    let context = Unmanaged.passRetained(Body(body)).toOpaque()
    var thread = pthread_t()
    let started = pthread_create(&thread, nil, { p in
        Unmanaged<Body>.fromOpaque(p!).takeRetainedValue().run()
        return nil
    }, context)
    if started == 0 {
        pthread_detach(thread)
    } else {
        // No thread to be had: run it here rather than not at all.
        Unmanaged<Body>.fromOpaque(context).takeRetainedValue().run()
    }
}

/// `body(0..<count)`, each on a thread of its own (see `onOwnThread`); returns when all ended.
public func onOwnThreads(_ count: Int, _ body: @escaping (Int) -> Void) {
    let done = DispatchGroup()
    for k in 0..<count {
        done.enter()
        onOwnThread { body(k); done.leave() }
    }
    done.wait()
}
