import Foundation
import TestSupport
import Testing

@testable import Contracts

/// Paths and loaders for the contracts folder, found from this file's place in the repository.
enum Repo {
    static let root = Repository.root
    static let contracts = root.appendingPathComponent("contracts")
    static let schemas = contracts.appendingPathComponent("schemas")
    static let examples = contracts.appendingPathComponent("examples")

    static func bytes(_ url: URL) throws -> [UInt8] { Array(try Data(contentsOf: url)) }

    static func json(_ url: URL) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: url))
    }

    static func schema(_ name: String) throws -> JSONValue { try json(schemas.appendingPathComponent("\(name).json")) }

    /// A YAML document of contracts/, as JSON (PyYAML does the parsing: Foundation has no YAML reader).
    static func yaml(_ name: String) throws -> JSONValue {
        let path = contracts.appendingPathComponent(name).path
        let result = try run([
            "python3", "-c", "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)", path,
        ])
        guard result.status == 0 else { throw TestFailure("reading \(name): \(result.output)") }
        return try JSONDecoder().decode(JSONValue.self, from: Data(result.output.utf8))
    }

    /// Every file of a folder under examples/, as (folder name, file URL).
    static func exampleFiles(_ kind: String) throws -> [(schema: String, file: URL)] {
        let base = examples.appendingPathComponent(kind)
        let folders = try FileManager.default.contentsOfDirectory(atPath: base.path).sorted()
        return try folders.flatMap { folder -> [(String, URL)] in
            let dir = base.appendingPathComponent(folder)
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDir), isDir.boolValue else {
                return []
            }
            return try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".json") }
                .sorted()
                .map { (folder, dir.appendingPathComponent($0)) }
        }
    }

    /// Runs a command (found on PATH) from the repository root; stdout and stderr together.
    static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        try runProcess("/usr/bin/env", arguments, currentDirectory: root.path)
    }
}

extension JSONValue {
    subscript(key: String) -> JSONValue? {
        if case .object(let object) = self { return object[key] }
        return nil
    }

    /// Follows a path of keys ("$defs/seatAvailability").
    func at(_ path: String) -> JSONValue? {
        path.split(separator: "/").reduce(Optional(self)) { node, key in node?[String(key)] }
    }

    var objectKeys: Set<String> {
        if case .object(let object) = self { return Set(object.keys) }
        return []
    }

    var strings: [String] {
        if case .array(let items) = self { return items.compactMap { if case .string(let s) = $0 { s } else { nil } } }
        return []
    }

    var string: String? { if case .string(let s) = self { s } else { nil } }
    var number: Double? { if case .number(let n) = self { n } else { nil } }
}

/// What the Swift side knows of each schema: how to decode and re-encode a body, and for requests how to
/// validate one.
struct SwiftCodec: Sendable {
    let roundTrip: @Sendable ([UInt8]) throws -> JSONValue
    let validate: (@Sendable ([UInt8]) -> Result<Void, ErrorBody>)?

    static func of<T: Codable & Sendable>(_ type: T.Type) -> SwiftCodec {
        SwiftCodec(roundTrip: { bytes in try reencode(ContractJSON.decode(T.self, from: bytes)) }, validate: nil)
    }

    static func request<T: ValidatableRequest>(_ type: T.Type) -> SwiftCodec {
        SwiftCodec(
            roundTrip: { bytes in try reencode(ContractJSON.decode(T.self, from: bytes)) },
            validate: { bytes in RequestDecoder.decode(T.self, from: bytes, limits: .default).map { _ in () } }
        )
    }

    static func reencode<T: Encodable>(_ value: T) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(ContractJSON.encode(value)))
    }

    /// Schema file name (without .json) to its Swift type.
    static let all: [String: SwiftCodec] = [
        "hold-request": .request(HoldRequest.self),
        "release-request": .request(ReleaseRequest.self),
        "purchase-request": .request(PurchaseRequest.self),
        "hold-get-request": .request(HoldGetRequest.self),
        "availability-request": .request(AvailabilityRequest.self),
        "seats-define-request": .request(SeatsDefineRequest.self),
        "seats-define-body": .request(SeatsDefineBody.self),
        "ping-request": .request(PingRequest.self),
        "hold": .of(Hold.self),
        "availability": .of(Availability.self),
        "seats-defined": .of(SeatsDefined.self),
        "ping-reply": .of(PingReply.self),
        "error": .of(ErrorBody.self),
        "error-body": .of(RESTErrorBody.self),
        "rpc-reply": .of(RPCReply<JSONValue>.self),
        "reply-hold": .of(RPCReply<Hold>.self),
        "reply-availability": .of(RPCReply<Availability>.self),
        "reply-seats-defined": .of(RPCReply<SeatsDefined>.self),
        "reply-ping": .of(RPCReply<PingReply>.self),
        "event": .of(InventoryEvent.self),
        // Venue features (issue 15).
        "hold-best-available-request": .request(BestAvailableHoldRequest.self),
        "hold-extend-request": .request(HoldExtendRequest.self),
        "seat-history-request": .request(SeatHistoryRequest.self),
        "seat-history": .of(SeatHistory.self),
        "reply-seat-history": .of(RPCReply<SeatHistory>.self),
    ]
}
