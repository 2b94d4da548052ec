internal import CMicroHTTPD
import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a connection carries in libmicrohttpd's `*socket_context` (from the connect notification to the
/// close notification). `overloaded` is touched only by the connection's own daemon thread.
final class ConnectionRecord {
    let id: UInt64
    var overloaded = false

    init(id: UInt64) {
        self.id = id
    }
}

/// Every open connection: its socket, peer and deadline, the per-address counts and the counters.
struct ConnectionTable {
    struct Entry {
        var fd: Int32
        var peer: String?
        /// Counted in `perAddress`.
        var counted: Bool
        /// When the head or body now expected must have arrived; nil while a request is being answered.
        var deadline: ContinuousClock.Instant?
    }

    var entries: [UInt64: Entry] = [:]
    var perAddress: [String: Int] = [:]
    var lastID: UInt64 = 0
    var refusedPerAddress = 0
    var refusedOverloaded = 0
    var timedOut = 0
}

/// The connection limits and the head / body timeouts, which libmicrohttpd 0.9.75 does not have (its
/// connection timeout restarts with every byte, so a client that trickles a byte every few seconds is
/// never cut off). A connection past its deadline has its socket shut down (`shutdown(2)`, not `close`:
/// the descriptor stays libmicrohttpd's); the library then reads end-of-file and closes it the usual way.
/// Shutting down only under the table's lock and only while the entry exists is what makes this safe:
/// libmicrohttpd sends the close notification (which removes the entry under the same lock) before it
/// closes the descriptor, so the number is never one a new connection reuses.
final class ConnectionEdge: @unchecked Sendable {
    // @unchecked Sendable: `table` is behind its lock; the rest is immutable or atomic.
    let table = Locked(ConnectionTable())
    let configuration: HTTPServerConfiguration
    private let stopped = Atomic<Bool>(false)
    private let tick = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private let reaping: Bool

    init(configuration: HTTPServerConfiguration) {
        self.configuration = configuration
        reaping = configuration.headerTimeout != nil || configuration.bodyTimeout != nil
    }

    func start() {
        guard reaping else { return }
        let thread = Thread { [self] in
            while !stopped.load(ordering: .acquiring) {
                _ = tick.wait(timeout: .now() + .milliseconds(200))
                reap(now: .now)
            }
            finished.signal()
        }
        thread.name = "http-timeouts"
        thread.start()
    }

    func stop() {
        guard reaping, !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        tick.signal()
        finished.wait()
    }

    /// A connection was accepted: registered, counted, and refused at once when its address is over its
    /// limit (its socket shut down before a byte is read). Returns the record for `*socket_context`.
    func started(connection: OpaquePointer) -> ConnectionRecord {
        let fd = Int32(cmhd_connection_fd(connection))
        let peer = DaemonCore.peerAddress(connection)
        let exempt = peer.map(configuration.exemptFromAddressLimit) ?? true
        let now = ContinuousClock.now
        return table.withLock { table in
            table.lastID += 1
            let record = ConnectionRecord(id: table.lastID)
            var entry = ConnectionTable.Entry(
                fd: fd,
                peer: peer,
                counted: false,
                deadline: configuration.headerTimeout.map { now + $0 }
            )
            if let limit = configuration.maxConnections, table.entries.count >= limit {
                record.overloaded = true
                table.refusedOverloaded += 1
            }
            if let peer, !exempt, let limit = configuration.maxConnectionsPerAddress {
                let open = table.perAddress[peer, default: 0]
                if open >= limit {
                    table.refusedPerAddress += 1
                    entry.deadline = nil
                    if fd >= 0 { _ = shutdown(fd, Int32(SHUT_RDWR)) }
                } else {
                    table.perAddress[peer] = open + 1
                    entry.counted = true
                }
            }
            table.entries[record.id] = entry
            return record
        }
    }

    func closed(_ record: ConnectionRecord) {
        table.withLock { table in
            guard let entry = table.entries.removeValue(forKey: record.id) else { return }
            if entry.counted, let peer = entry.peer {
                let remaining = (table.perAddress[peer] ?? 1) - 1
                table.perAddress[peer] = remaining > 0 ? remaining : nil
            }
        }
    }

    /// The head arrived and a body is to come: the body's deadline.
    func expectBody(_ record: ConnectionRecord?) {
        setDeadline(record, configuration.bodyTimeout)
    }

    /// A request is being answered (or was refused): no deadline of ours (libmicrohttpd's idle timeout
    /// still covers a client that stops reading the response).
    func answering(_ record: ConnectionRecord?) {
        setDeadline(record, nil)
    }

    /// A response went out: the next head's deadline (an idle keep-alive connection is closed by it too).
    func expectHead(_ record: ConnectionRecord?) {
        setDeadline(record, configuration.headerTimeout)
    }

    private func setDeadline(_ record: ConnectionRecord?, _ timeout: Duration?) {
        guard let record, reaping else { return }
        let deadline = timeout.map { ContinuousClock.now + $0 }
        table.withLock { $0.entries[record.id]?.deadline = deadline }
    }

    /// Shuts down the sockets whose deadline passed.
    func reap(now: ContinuousClock.Instant) {
        table.withLock { table in
            for (id, entry) in table.entries {
                guard let deadline = entry.deadline, deadline <= now else { continue }
                if entry.fd >= 0 { _ = shutdown(entry.fd, Int32(SHUT_RDWR)) }
                table.entries[id]?.deadline = nil
                table.timedOut += 1
            }
        }
    }

    var counters: (open: Int, refusedPerAddress: Int, refusedOverloaded: Int, timedOut: Int) {
        table.withLock { ($0.entries.count, $0.refusedPerAddress, $0.refusedOverloaded, $0.timedOut) }
    }
}
