import Contracts
import Foundation

/// The operations the bench measures, one row each in the report.
public enum BenchOperation: String, CaseIterable, Sendable, Codable, Comparable {
    case hold
    /// A best-available hold (`quantity` instead of `seatIds`; issue 15): its own row, next to plain holds.
    case holdBest = "hold.best"
    case release
    case purchase
    case availability
    case holdGet = "hold.get"
    case echo

    public static func < (lhs: Self, rhs: Self) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// The shape of the rush.
public enum RushShape: String, CaseIterable, Sendable, Codable {
    /// Every client holds random seats of random showtimes (fresh seats: mostly wins until they fill up).
    case uniform
    /// Most clients want the same few seats (`hotSeats` of the first showtime); a winner releases at once,
    /// so the seats keep changing hands and the contention never ends.
    case hot
    /// A user's journey: availability polls between, hold, then purchase, release or abandon to expiry.
    case mix
    /// Only availability reads of random showtimes (the seat map page everybody refreshes).
    case availability
    /// Best-available holds (`quantity` seats `together`, drawn from `seatsPerHold`) of random showtimes whose
    /// seats have rows (20 a row); a winner releases at once, so the best seats keep changing hands.
    case bestAvailable = "best-available"
}

/// One request of the workload, independent of the transport.
public enum BenchRequest: Sendable {
    case hold(HoldRequest)
    case holdBest(BestAvailableHoldRequest)
    case release(ReleaseRequest)
    case purchase(PurchaseRequest)
    case availability(AvailabilityRequest)
    case holdGet(HoldGetRequest)
    case echo([UInt8])

    public var operation: BenchOperation {
        switch self {
        case .hold: .hold
        case .holdBest: .holdBest
        case .release: .release
        case .purchase: .purchase
        case .availability: .availability
        case .holdGet: .holdGet
        case .echo: .echo
        }
    }

    /// The showtime and user of a hold request (either form), for the record of won holds.
    public var holdRequester: (showtimeId: String, userId: String)? {
        switch self {
        case .hold(let request): (request.showtimeId, request.userId)
        case .holdBest(let request): (request.showtimeId, request.userId)
        default: nil
        }
    }

    public var rpcOperation: RPCOperation? {
        switch self {
        case .hold, .holdBest: .hold
        case .release: .release
        case .purchase: .purchase
        case .availability: .availability
        case .holdGet: .holdGet
        case .echo: nil
        }
    }

    /// The JSON body (`ContractJSON`), the same over AMQP and HTTP.
    public func body(encoder: JSONEncoder) throws -> [UInt8] {
        switch self {
        case .hold(let request): Array(try encoder.encode(request))
        case .holdBest(let request): Array(try encoder.encode(request))
        case .release(let request): Array(try encoder.encode(request))
        case .purchase(let request): Array(try encoder.encode(request))
        case .availability(let request): Array(try encoder.encode(request))
        case .holdGet(let request): Array(try encoder.encode(request))
        case .echo(let bytes): bytes
        }
    }
}

/// How one answer counts.
public enum Outcome: String, Sendable, Codable, CaseIterable {
    /// The operation did what was asked (a hold won, a release or purchase done, an availability read).
    case won
    /// A business refusal the rush expects: SEAT_UNAVAILABLE, HOLD_NOT_ACTIVE, HOLD_EXPIRED,
    /// IDEMPOTENCY_KEY_IN_USE, SEAT_LIMIT_REACHED.
    case conflict
    /// Any other error answer, or an answer that could not be read.
    case error
    /// No answer within the timeout.
    case timeout
}

/// A reply reduced to what the bench needs.
public struct BenchReply: Sendable {
    public var outcome: Outcome
    public var errorCode: String?
    public var hold: Hold?

    public init(outcome: Outcome, errorCode: String? = nil, hold: Hold? = nil) {
        self.outcome = outcome
        self.errorCode = errorCode
        self.hold = hold
    }

    static let conflictCodes: Set<String> = [
        ErrorCode.seatUnavailable.rawValue, ErrorCode.holdNotActive.rawValue, ErrorCode.holdExpired.rawValue,
        ErrorCode.idempotencyKeyInUse.rawValue, ErrorCode.seatLimitReached.rawValue,
    ]

    public static func failure(code: String) -> BenchReply {
        BenchReply(outcome: conflictCodes.contains(code) ? .conflict : .error, errorCode: code)
    }

    /// Availability replies are large (one entry per seat): only `ok` and the error are decoded.
    private struct Envelope: Decodable {
        var ok: Bool
        var error: ErrorBody?
    }

    /// Decodes an RPC reply body (`{"ok":...}`).
    public static func decodeRPC(_ body: [UInt8], operation: BenchOperation, decoder: JSONDecoder) -> BenchReply {
        do {
            switch operation {
            case .hold, .holdBest, .release, .purchase, .holdGet:
                switch try decoder.decode(RPCReply<Hold>.self, from: Data(body)) {
                case .ok(let hold): return BenchReply(outcome: .won, hold: hold)
                case .error(let error): return .failure(code: error.code.rawValue)
                }
            case .availability:
                let envelope = try decoder.decode(Envelope.self, from: Data(body))
                if envelope.ok { return BenchReply(outcome: .won) }
                return .failure(code: envelope.error?.code.rawValue ?? "MALFORMED_REPLY")
            case .echo:
                return BenchReply(outcome: .won)
            }
        } catch {
            return BenchReply(outcome: .error, errorCode: "MALFORMED_REPLY")
        }
    }

    private struct HTTPErrorEnvelope: Decodable { var error: ErrorBody }

    /// Decodes a REST answer: success bodies are the `data`, errors `{"error": {...}}`.
    public static func decodeHTTP(
        status: Int,
        body: [UInt8],
        operation: BenchOperation,
        decoder: JSONDecoder
    )
        -> BenchReply
    {
        if (200..<300).contains(status) {
            switch operation {
            case .hold, .holdBest, .release, .purchase, .holdGet:
                guard let hold = try? decoder.decode(Hold.self, from: Data(body)) else {
                    return BenchReply(outcome: .error, errorCode: "MALFORMED_REPLY")
                }
                return BenchReply(outcome: .won, hold: hold)
            case .availability, .echo:
                return BenchReply(outcome: .won)
            }
        }
        if let envelope = try? decoder.decode(HTTPErrorEnvelope.self, from: Data(body)) {
            return .failure(code: envelope.error.code.rawValue)
        }
        return BenchReply(outcome: .error, errorCode: "HTTP_\(status)")
    }
}

/// SplitMix64: cheap, seedable, per client (the system generator is a syscall per call on Linux).
public struct FastRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Everything that decides which requests the clients send.
public struct WorkloadConfiguration: Sendable, Codable {
    public var shape: RushShape
    public var showtimeIDs: [String]
    public var seatsPerShowtime: Int
    /// Seats per hold: a run of adjacent seats, its length drawn from this range.
    public var seatsPerHold: ClosedRange<Int>
    /// hot: how many seats the rush is about, and the share of clients' holds that go for them.
    public var hotSeats: Int
    public var hotFraction: Double
    /// mix: what a winner does next (the rest abandon the hold to expiry), and how often it polls.
    public var purchaseShare: Double
    public var releaseShare: Double
    public var pollProbability: Double
    /// Prefix of user ids, so runs never share idempotency scopes.
    public var runID: String
    /// Each client becomes a new user whenever it starts a new hold (its follow-ups stay that user's): a
    /// crowd of buyers with a few requests each, as on a real on-sale, rather than a few users holding at
    /// machine speed, whom the facade's per-user rate limits and MAX_SEATS_PER_USER would stop.
    public var buyerPerHold = false

    public init(
        shape: RushShape,
        showtimeIDs: [String],
        seatsPerShowtime: Int,
        seatsPerHold: ClosedRange<Int>,
        hotSeats: Int = 10,
        hotFraction: Double = 0.9,
        purchaseShare: Double = 0.3,
        releaseShare: Double = 0.4,
        pollProbability: Double = 0.5,
        runID: String
    ) {
        self.shape = shape
        self.showtimeIDs = showtimeIDs
        self.seatsPerShowtime = seatsPerShowtime
        self.seatsPerHold = seatsPerHold
        self.hotSeats = hotSeats
        self.hotFraction = hotFraction
        self.purchaseShare = purchaseShare
        self.releaseShare = releaseShare
        self.pollProbability = pollProbability
        self.runID = runID
    }

    public static func seatID(_ number: Int) -> String { "s\(number)" }

    /// Seats a row in the seat maps of the best-available shape.
    public static let seatsPerRow = 20

    /// Seat `number` (1...) with rows: row `R<n>` of `seatsPerRow` seats numbered 1..., rank 1 for the first
    /// five rows, one more per five rows.
    public static func seatDefinition(_ number: Int) -> SeatDefinition {
        let row = (number - 1) / seatsPerRow + 1
        return SeatDefinition(
            seatId: seatID(number),
            section: "Stalls",
            row: "R\(row)",
            number: (number - 1) % seatsPerRow + 1,
            rank: (row - 1) / 5 + 1
        )
    }
}

/// One simulated user: a small state machine that says what to send next and learns from each answer.
/// Closed loop: a client has at most one request outstanding.
public struct VirtualClient: Sendable {
    /// The user it acts as now: fixed, or a new one per hold cycle (`WorkloadConfiguration.buyerPerHold`).
    public private(set) var userID: String
    private let baseUserID: String
    private var buyers = 0
    private let configuration: WorkloadConfiguration
    private var random: FastRandom
    private var queue: [BenchRequest] = []
    private var orders = 0

    public init(userID: String, configuration: WorkloadConfiguration, seed: UInt64) {
        self.userID = userID
        self.baseUserID = userID
        self.configuration = configuration
        self.random = FastRandom(seed: seed)
    }

    public mutating func nextRequest() -> BenchRequest {
        if !queue.isEmpty { return queue.removeFirst() }
        if configuration.buyerPerHold {
            buyers += 1
            userID = "\(baseUserID)-b\(buyers)"
        }
        switch configuration.shape {
        case .uniform:
            return .hold(randomHold())
        case .hot:
            return .hold(
                Double.random(in: 0..<1, using: &random) < configuration.hotFraction ? hotHold() : randomHold()
            )
        case .mix:
            let hold = randomHold()
            if Double.random(in: 0..<1, using: &random) < configuration.pollProbability {
                queue.append(.hold(hold))
                return .availability(AvailabilityRequest(showtimeId: hold.showtimeId))
            }
            return .hold(hold)
        case .availability:
            return .availability(
                AvailabilityRequest(showtimeId: configuration.showtimeIDs.randomElement(using: &random)!)
            )
        case .bestAvailable:
            return .holdBest(
                BestAvailableHoldRequest(
                    showtimeId: configuration.showtimeIDs.randomElement(using: &random)!,
                    quantity: Int.random(in: configuration.seatsPerHold, using: &random),
                    userId: userID,
                    together: true
                )
            )
        }
    }

    /// Plans the follow-ups of an answer.
    public mutating func received(_ reply: BenchReply, for request: BenchRequest) {
        guard request.holdRequester != nil, reply.outcome == .won, let hold = reply.hold else { return }
        switch configuration.shape {
        case .uniform, .availability:
            break
        case .hot, .bestAvailable:
            queue.append(.release(ReleaseRequest(holdId: hold.holdId, userId: userID)))
        case .mix:
            if Double.random(in: 0..<1, using: &random) < configuration.pollProbability {
                queue.append(.availability(AvailabilityRequest(showtimeId: hold.showtimeId)))
            }
            let roll = Double.random(in: 0..<1, using: &random)
            if roll < configuration.purchaseShare {
                orders += 1
                queue.append(
                    .purchase(PurchaseRequest(holdId: hold.holdId, orderId: "\(userID)-o\(orders)", userId: userID))
                )
            } else if roll < configuration.purchaseShare + configuration.releaseShare {
                queue.append(.release(ReleaseRequest(holdId: hold.holdId, userId: userID)))
            }  // else: abandoned, it expires
        }
    }

    /// A request timed out or failed in transport: forget the plan, start afresh.
    public mutating func reset() { queue.removeAll() }

    private mutating func randomHold() -> HoldRequest {
        let showtime = configuration.showtimeIDs.randomElement(using: &random)!
        let count = Swift.min(
            Int.random(in: configuration.seatsPerHold, using: &random),
            configuration.seatsPerShowtime
        )
        let first = Int.random(in: 1...(configuration.seatsPerShowtime - count + 1), using: &random)
        return HoldRequest(
            showtimeId: showtime,
            seatIds: (first..<first + count).map(WorkloadConfiguration.seatID),
            userId: userID
        )
    }

    private mutating func hotHold() -> HoldRequest {
        let hot = Swift.max(1, Swift.min(configuration.hotSeats, configuration.seatsPerShowtime))
        let count = Swift.min(Int.random(in: configuration.seatsPerHold, using: &random), hot)
        var seats = Set<Int>()
        while seats.count < count { seats.insert(Int.random(in: 1...hot, using: &random)) }
        return HoldRequest(
            showtimeId: configuration.showtimeIDs[0],
            seatIds: seats.sorted().map(WorkloadConfiguration.seatID),
            userId: userID
        )
    }
}
