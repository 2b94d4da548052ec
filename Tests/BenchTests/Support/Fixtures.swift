import Foundation
import InventoryRPC
import Logging
import TestSupport

let quietLogger = Logger(label: "bench.test") { _ in SwiftLogNoOpLogHandler() }

/// A new database with the schema, dropped afterwards.
func withMigratedDatabase<T>(_ body: (String) throws -> T) throws -> T {
    try withScratchDatabase(prefix: "inv_bench_test", prepare: { try Migrator.migrate($0, logger: quietLogger) }, body)
}

/// `http-facade` on a port of its choosing (it prints the port it bound): the process and the port.
func startFacade(amqpURL: String) throws -> (process: ServerProcess, port: Int) {
    let facade = try ServerProcess(
        product: "http-facade",
        environment: ["RABBITMQ_URL": amqpURL, "PORT": "0", "LOG_LEVEL": "warning"]
    )
    do {
        // "Inventory service running on port N"
        return (facade, try facade.waitForNumber(after: "running on port ", timeout: .seconds(20)))
    } catch {
        facade.stop()
        throw error
    }
}
