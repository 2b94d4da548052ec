import AMQPClient
import ArgumentParser
import Bench
import Contracts
import FaultSuite
import Foundation
import HTTPFacade
import Logging

/// The Swift half of the fault suite; `faults/run.sh` starts the stack, the core and the facade, injects
/// the faults, and calls these subcommands. See RELIABILITY.md.
@main
struct FaultsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inventory-faults",
        abstract: "Workload clients, event queue and history checker of the fault suite (driven by faults/run.sh).",
        subcommands: [Prepare.self, Run.self, Check.self]
    )
}

struct Common: ParsableArguments {
    @Option(help: "The broker of the run.")
    var amqpURL: String
    @Option(help: "Showtime ids of the run start with this.")
    var prefix = "flt"
    @Option(help: "Showtimes of the run.")
    var showtimes = 20
    @Option(help: "Seats per showtime.")
    var seats = 24
}

func makeLogger() -> Logger {
    var logger = Logger(label: "inventory-faults") { StreamLogHandler.standardError(label: $0) }
    logger.logLevel = .warning
    return logger
}

extension FaultsCommand {
    struct Prepare: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Wait for the core to answer ping, declare the suite's durable event queue, define the seat maps."
        )
        @OptionGroup var common: Common

        func run() throws {
            let logger = makeLogger()
            let configuration = try AMQPConfiguration(url: common.amqpURL)
            let deadline = ContinuousClock.now + .seconds(120)
            var caller: RPCCaller?
            while caller == nil {
                do {
                    let candidate = try RPCCaller(configuration: configuration, logger: logger)
                    _ = try candidate.call(.ping, PingRequest(), as: PingReply.self, timeout: .seconds(2)).get()
                    caller = candidate
                } catch {
                    guard ContinuousClock.now < deadline else {
                        throw FaultSuiteError("the core never answered ping: \(error)")
                    }
                    Thread.sleep(forTimeInterval: 0.5)
                }
            }
            try EventQueue.prepare(url: common.amqpURL, logger: logger)
            let seatIDs = (1...common.seats).map { "s\($0)" }
            for index in 0..<common.showtimes {
                _ = try caller!.call(
                    .seatsDefine,
                    SeatsDefineRequest(showtimeId: "\(common.prefix)-\(index)", seatIds: seatIDs),
                    as: SeatsDefined.self
                ).get()
            }
            caller!.close()
        }
    }

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "workload",
            abstract: "Run the contended workload, writing every request to a history file."
        )
        @OptionGroup var common: Common
        @Option(help: "The REST facade as host:port (no HTTP clients without it).")
        var facade: String?
        @Option(help: "Clients over AMQP.")
        var amqpClients = 16
        @Option(help: "Clients over HTTP.")
        var httpClients = 6
        @Option(help: "Seconds of load.")
        var duration = 60.0
        @Option(help: "Seconds each showtime is the hot one.")
        var period = 5.0
        @Option(help: "Share of holds whose first attempt drops the connection before the reply.")
        var disconnectRate = 0.05
        @Option(help: "Seed of the clients' choices.")
        var seed: UInt64 = 1
        @Option(help: "Where the history goes (JSON lines).")
        var history: String

        func run() throws {
            var host: String?
            var port = 0
            if let facade {
                let parts = facade.split(separator: ":")
                guard parts.count == 2, let parsed = Int(parts[1]) else { throw ValidationError("--facade host:port") }
                host = String(parts[0])
                port = parsed
            }
            var configuration = WorkloadConfiguration(
                amqpURL: common.amqpURL,
                facadeHost: host,
                facadePort: port,
                amqpClients: amqpClients,
                httpClients: httpClients,
                duration: .milliseconds(Int64(duration * 1000)),
                showtimePrefix: common.prefix,
                showtimeCount: common.showtimes,
                seatsPerShowtime: common.seats,
                showtimePeriod: .milliseconds(Int64(period * 1000)),
                disconnectRate: disconnectRate,
                seed: seed,
                historyPath: history
            )
            // The facade verifies tokens (AUTH_MODE=jwt): each HTTP user gets its own, signed with
            // JWT_SECRET, allowed to purchase its own holds.
            if let secret = ProcessInfo.processInfo.environment["JWT_SECRET"], !secret.isEmpty {
                let minter = TokenMinter.hs256Blocking(secret: secret)
                configuration.httpToken = { user in
                    try minter.mint(subject: user, scopes: [Scope.purchase], ttlSeconds: 6 * 3600)
                }
            }
            let summary = try Workload.run(configuration, logger: makeLogger())
            print(
                "workload: \(summary.logicalHolds) logical holds, \(summary.holdsWon) won, \(summary.attempts) requests, "
                    + "\(summary.unresolved) unresolved"
            )
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Check a run's history; exit 0 when no anomaly was found (with --control: when double holds were)."
        )
        @OptionGroup var common: Common
        @Option(help: "The run's database.")
        var databaseURL: String
        @Option var history: String
        @Option var faults: String
        @Option(help: "Where the drained events are logged (JSON lines).")
        var eventsLog: String
        @Option(help: "Report files: <path>.json and <path>.txt.")
        var report: String
        @Flag(help: "A control run: succeed only if the checker finds double holds.")
        var control = false

        func run() throws {
            let logger = makeLogger()
            let input = try Gather.collect(
                GatherConfiguration(
                    databaseURL: databaseURL,
                    amqpURL: common.amqpURL,
                    historyPath: history,
                    faultsPath: faults,
                    eventsLogPath: eventsLog,
                    showtimePrefix: common.prefix
                ),
                logger: logger
            )
            let result = HistoryChecker.check(input)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(result).write(to: URL(fileURLWithPath: report + ".json"))
            let text = result.text()
            try Data((text + "\n").utf8).write(to: URL(fileURLWithPath: report + ".txt"))
            print(text)
            if control {
                let doubles = (result.anomalies["double-hold"] ?? 0) + (result.anomalies["client-double-hold"] ?? 0)
                print(
                    doubles > 0
                        ? "control: the checker found \(doubles) double holds, as it must with the unsafe claim"
                        : "control: NO double hold found: the checker (or the control build) is not doing its job"
                )
                if doubles == 0 { throw ExitCode(1) }
            } else if !result.passed {
                throw ExitCode(1)
            }
        }
    }
}
