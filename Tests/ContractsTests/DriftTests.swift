import Foundation
import TestSupport
import Testing

@testable import Contracts

/// A field renamed, added or removed in either the Swift types or contracts/, without the other, fails here.
@Suite("Swift and contracts/ agree")
struct DriftTests {
    static let date = Date(timeIntervalSince1970: 1_767_269_100)  // 2026-01-01T12:05:00Z

    /// A type, an instance with every optional field set, one with none set, and where its schema is.
    struct Shape: Sendable, CustomTestStringConvertible {
        let name: String
        let schema: String
        let path: String
        let full: @Sendable () throws -> JSONValue
        let minimal: @Sendable () throws -> JSONValue
        var testDescription: String { name }

        init<T: Encodable & Sendable>(_ schema: String, _ path: String = "", full: T, minimal: T) {
            self.name = "\(T.self)"
            self.schema = schema
            self.path = path
            self.full = { try SwiftCodec.reencode(full) }
            self.minimal = { try SwiftCodec.reencode(minimal) }
        }
    }

    static let hold = Hold(
        holdId: "h",
        showtimeId: "s",
        userId: "u",
        seatIds: ["A1"],
        status: .purchased,
        expiresAt: date,
        orderId: "o"
    )
    static let problem = ValidationProblem(field: "userId", rule: .required, message: "userId is required")
    static let shapes: [Shape] = [
        Shape(
            "hold-request",
            full: HoldRequest(showtimeId: "s", seatIds: ["A1"], userId: "u", idempotencyKey: "k"),
            minimal: HoldRequest(showtimeId: "s", seatIds: ["A1"], userId: "u")
        ),
        Shape("release-request", full: ReleaseRequest(holdId: "h", userId: "u"), minimal: ReleaseRequest(holdId: "h")),
        Shape(
            "purchase-request",
            full: PurchaseRequest(holdId: "h", orderId: "o", userId: "u"),
            minimal: PurchaseRequest(holdId: "h", orderId: "o")
        ),
        Shape("hold-get-request", full: HoldGetRequest(holdId: "h", userId: "u"), minimal: HoldGetRequest(holdId: "h")),
        Shape(
            "availability-request",
            full: AvailabilityRequest(showtimeId: "s"),
            minimal: AvailabilityRequest(showtimeId: "s")
        ),
        Shape(
            "seats-define-request",
            full: SeatsDefineRequest(showtimeId: "s", seatIds: ["A1"]),
            minimal: SeatsDefineRequest(showtimeId: "s", seatIds: ["A1"])
        ),
        Shape("seats-define-body", full: SeatsDefineBody(seatIds: ["A1"]), minimal: SeatsDefineBody(seatIds: ["A1"])),
        // Venue features (issue 15).
        Shape(
            "common", "$defs/seatDefinition",
            full: SeatDefinition(seatId: "A1", section: "s", row: "A", number: 1, category: "c", rank: 1),
            minimal: SeatDefinition(seatId: "A1")
        ),
        Shape(
            "hold-best-available-request",
            full: BestAvailableHoldRequest(
                showtimeId: "s", quantity: 2, userId: "u", section: "x", category: "c", together: true,
                idempotencyKey: "k"),
            minimal: BestAvailableHoldRequest(showtimeId: "s", quantity: 2, userId: "u")
        ),
        Shape(
            "hold-extend-request", full: HoldExtendRequest(holdId: "h", userId: "u"),
            minimal: HoldExtendRequest(holdId: "h")),
        Shape(
            "seat-history-request",
            full: SeatHistoryRequest(showtimeId: "s", seatId: "A1", limit: 5, before: 9),
            minimal: SeatHistoryRequest(showtimeId: "s", seatId: "A1")
        ),
        Shape(
            "seat-history",
            full: SeatHistory(showtimeId: "s", seatId: "A1", entries: [], nextBefore: 3),
            minimal: SeatHistory(showtimeId: "s", seatId: "A1", entries: [])
        ),
        Shape(
            "seat-history", "$defs/entry",
            full: SeatHistoryEntry(
                version: 2, type: .seatsPurchased, occurredAt: date, state: .purchased, holdId: "h", userId: "u",
                orderId: "o", expiresAt: date),
            minimal: SeatHistoryEntry(
                version: 1, type: .holdReleased, occurredAt: date, state: .available, holdId: "h", userId: "u")
        ),
        Shape("ping-request", full: PingRequest(), minimal: PingRequest()),
        Shape("hold", full: hold, minimal: Hold(holdId: "h", showtimeId: "s", userId: "u", seatIds: ["A1"], status: .active, expiresAt: date)),
        Shape("availability", full: Availability(showtimeId: "s", availability: []),
              minimal: Availability(showtimeId: "s", availability: [])),
        Shape("availability", "$defs/seatAvailability",
              full: SeatAvailability(seatId: "A1", state: .held, holdExpiresAt: date, version: 3,
                                     section: "s", row: "A", number: 1, category: "c", rank: 1),
              minimal: SeatAvailability(seatId: "A1", state: .available)),
        Shape("availability", "$defs/summary", full: AvailabilitySummary(available: 1, held: 0, purchased: 0),
              minimal: AvailabilitySummary(available: 1, held: 0, purchased: 0)),
        Shape("seats-defined", full: SeatsDefined(showtimeId: "s", seatCount: 1, added: 1),
              minimal: SeatsDefined(showtimeId: "s", seatCount: 1, added: 1)),
        Shape("ping-reply", full: PingReply(), minimal: PingReply()),
        Shape(
            "error",
            full: ErrorBody(code: .internalError, message: "m", details: ["x": 1]),
            minimal: ErrorBody(code: .internalError, message: "m")
        ),
        Shape("error", "$defs/validationProblem", full: problem, minimal: problem),
        Shape("error-body", full: RESTErrorBody(error: ErrorBody(code: .notFound, message: "m")),
              minimal: RESTErrorBody(error: ErrorBody(code: .notFound, message: "m"))),
        Shape("rpc-reply", "$defs/success", full: RPCReply<PingReply>.ok(PingReply()), minimal: RPCReply<PingReply>.ok(PingReply())),
        Shape("rpc-reply", "$defs/failure", full: RPCReply<PingReply>.error(ErrorBody(code: .notFound, message: "m")),
              minimal: RPCReply<PingReply>.error(ErrorBody(code: .notFound, message: "m"))),
        Shape("event", full: InventoryEvent(eventId: "e", type: .holdCreated, occurredAt: date, showtimeId: "s", holdId: "h",
                                            userId: "u", seatIds: ["A1"], seatVersions: ["A1": 1], expiresAt: date, orderId: "o"),
              minimal: InventoryEvent(eventId: "e", type: .holdReleased, occurredAt: date, showtimeId: "s", holdId: "h",
                                      userId: "u", seatIds: [], seatVersions: [:])),
    ]

    static func schemaNode(_ shape: Shape) throws -> JSONValue {
        let schema = try Repo.schema(shape.schema)
        return try #require(shape.path.isEmpty ? schema : schema.at(shape.path), "\(shape.schema)#/\(shape.path)")
    }

    @Test(
        "every field of a fully populated instance is a schema property, and every property is a field",
        arguments: shapes
    )
    func fullInstanceHasEveryProperty(_ shape: Shape) throws {
        let node = try Self.schemaNode(shape)
        // With `oneOf` alternatives (seatIds or seats) an instance has one of them: the others count as present.
        var alternatives: Set<String> = []
        if case .array(let items)? = node["oneOf"] {
            for item in items { alternatives.formUnion(item["required"]?.strings ?? []) }
        }
        #expect(
            try shape.full().objectKeys.union(alternatives) == node["properties"]?.objectKeys ?? [],
            "\(shape.schema)#/\(shape.path)"
        )
    }

    @Test("an instance without optional fields has exactly the schema's required fields", arguments: shapes)
    func minimalInstanceHasRequiredFields(_ shape: Shape) throws {
        let node = try Self.schemaNode(shape)
        // With `oneOf` alternatives (seatIds or seats), the required fields and one alternative's.
        let required = Set(node["required"]?.strings ?? [])
        var allowed = [required]
        if case .array(let alternatives)? = node["oneOf"] {
            allowed = alternatives.map { required.union($0["required"]?.strings ?? []) }
        }
        #expect(allowed.contains(try shape.minimal().objectKeys), "\(shape.schema)#/\(shape.path)")
    }

    static let requests: [(String, [RequestField], [String])] = [
        ("hold-request", HoldRequest.fields, []), ("release-request", ReleaseRequest.fields, []),
        ("purchase-request", PurchaseRequest.fields, []), ("hold-get-request", HoldGetRequest.fields, []),
        ("availability-request", AvailabilityRequest.fields, []),
        ("seats-define-request", SeatsDefineRequest.fields, SeatsDefineRequest.exactlyOneOf),
        ("seats-define-body", SeatsDefineBody.fields, SeatsDefineBody.exactlyOneOf),
        ("ping-request", PingRequest.fields, []),
        ("hold-best-available-request", BestAvailableHoldRequest.fields, []),
        ("hold-extend-request", HoldExtendRequest.fields, []), ("seat-history-request", SeatHistoryRequest.fields, []),
        ("common#$defs/seatDefinition", SeatDefinition.fields, []),
    ]

    @Test("the validation rules of each request are its schema's: names, required, closed, limits")
    func requestFieldsMatchSchemas() throws {
        let common = try Repo.schema("common")
        #expect(common.at("$defs/identifier/pattern")?.string == Identifier.pattern)
        for (name, fields, exactlyOneOf) in Self.requests {
            let parts = name.split(separator: "#")
            let file = try Repo.schema(String(parts[0]))
            let schema = try #require(parts.count > 1 ? file.at(String(parts[1])) : file, "\(name)")
            let alternatives: [[String]] =
                if case .array(let items)? = schema["oneOf"] { items.map { $0["required"]?.strings ?? [] } } else { [] }
            #expect(alternatives == exactlyOneOf.map { [$0] }, "\(name): oneOf")
            let properties = try #require(schema["properties"], "\(name)")
            #expect(Set(fields.map(\.name)) == properties.objectKeys, "\(name)")
            #expect(Set(fields.filter(\.required).map(\.name)) == Set(schema["required"]?.strings ?? []), "\(name)")
            #expect(schema["additionalProperties"] == .bool(false), "\(name)")
            for field in fields {
                let property = try #require(properties[field.name], "\(name).\(field.name)")
                switch field.kind {
                case .identifier:
                    let ref = property["$ref"]?.string
                    #expect(
                        ref == "common.json#/$defs/identifier" || ref == "#/$defs/identifier", "\(name).\(field.name)")
                case .seatIds(let limit):
                    #expect(property["$ref"]?.string == "common.json#/$defs/seatIds", "\(name).\(field.name)")
                    let max =
                        limit == .perHold ? RequestLimits.default.maxSeatsPerHold : RequestLimits.maxSeatsPerDefine
                    #expect(property["maxItems"]?.number == Double(max), "\(name).\(field.name)")
                case .quantity:
                    #expect(property["type"]?.string == "integer", "\(name).\(field.name)")
                    #expect(property["minimum"]?.number == 1, "\(name).\(field.name)")
                    #expect(
                        property["maximum"]?.number == Double(RequestLimits.default.maxSeatsPerHold),
                        "\(name).\(field.name)"
                    )
                case .integer(let range):
                    #expect(property["type"]?.string == "integer", "\(name).\(field.name)")
                    #expect(property["minimum"]?.number == Double(range.lowerBound), "\(name).\(field.name)")
                    #expect(property["maximum"]?.number == Double(range.upperBound), "\(name).\(field.name)")
                case .boolean:
                    #expect(property["type"]?.string == "boolean", "\(name).\(field.name)")
                case .label:
                    let ref = property["$ref"]?.string
                    #expect(ref == "common.json#/$defs/label" || ref == "#/$defs/label", "\(name).\(field.name)")
                case .seatDefinitions:
                    #expect(property["$ref"]?.string == "common.json#/$defs/seatDefinitions", "\(name).\(field.name)")
                }
            }
        }
    }

    @Test("the error codes and their HTTP statuses are those of error-codes.json and error.json")
    func errorCodes() throws {
        let table = try #require(Repo.json(Repo.contracts.appendingPathComponent("error-codes.json"))["codes"])
        var statuses: [String: Int] = [:]
        for key in table.objectKeys { statuses[key] = table[key]?["status"]?.number.map { Int($0) } }
        let swift = Dictionary(uniqueKeysWithValues: ErrorCode.allCases.map { ($0.rawValue, $0.httpStatus) })
        #expect(swift == statuses)
        let enumeration = try Repo.schema("error").at("properties/code/enum")?.strings ?? []
        #expect(Set(enumeration) == Set(ErrorCode.allCases.map(\.rawValue)))
        #expect(enumeration.count == ErrorCode.allCases.count)
    }

    @Test("the enumerations agree: hold status, seat state, event type, validation rule")
    func enumerations() throws {
        #expect(try Repo.schema("common").at("$defs/holdStatus/enum")?.strings == HoldStatus.allCases.map(\.rawValue))
        #expect(try Repo.schema("common").at("$defs/seatState/enum")?.strings == SeatState.allCases.map(\.rawValue))
        #expect(try Repo.schema("event").at("$defs/eventType/enum")?.strings == EventType.allCases.map(\.rawValue))
        #expect(
            try Repo.schema("error").at("$defs/validationRule/enum")?.strings == ValidationRule.allCases.map(\.rawValue)
        )
        #expect(
            try Repo.schema("error").at("$defs/validationDetails/properties/problems/maxItems")?.number
                == Double(ErrorBody.maxReportedProblems)
        )
    }

    @Test("the AsyncAPI channels are the RPC operations (routing key, queue) and the event types")
    func asyncAPIChannels() throws {
        let document = try Repo.yaml("asyncapi.yaml")
        guard case .object(let channels)? = document["channels"] else { throw TestFailure("no channels") }
        var rpc: [String: String] = [:]
        var events: Set<String> = []
        for channel in channels.values {
            guard let exchange = channel.at("bindings/amqp/exchange"), let address = channel["address"]?.string else {
                continue
            }
            switch exchange["name"]?.string {
            case RPCOperation.exchange?:
                #expect(exchange["type"]?.string == "direct")
                rpc[address] = channel["x-amqp-queue"]?.string
            case EventType.exchange?:
                #expect(exchange["type"]?.string == "topic")
                events.insert(address)
            default: Issue.record("unknown exchange \(exchange)")
            }
        }
        #expect(rpc == Dictionary(uniqueKeysWithValues: RPCOperation.allCases.map { ($0.routingKey, $0.queueName) }))
        #expect(events == Set(EventType.allCases.map(\.routingKey)))
        let headers = document.at("components/schemas/rpcRequestHeaders/properties")?.objectKeys ?? []
        #expect(headers.isSuperset(of: [ContractHeaders.deadline, ContractHeaders.amqpIdempotencyKey]))
        let replyHeaders = document.at("components/schemas/rpcReplyHeaders/properties")?.objectKeys ?? []
        #expect(replyHeaders.contains(ContractHeaders.amqpIdempotentReplayed))
    }

    @Test("the OpenAPI headers are the ones the Swift code uses")
    func openAPIHeaders() throws {
        let document = try Repo.yaml("openapi.yaml")
        let parameters = document.at("components/parameters")
        #expect(parameters?.at("IdempotencyKey/name")?.string?.lowercased() == ContractHeaders.httpIdempotencyKey)
        #expect(
            parameters?.at("IdempotencyKeySeed/name")?.string?.lowercased() == ContractHeaders.httpIdempotencyKeySeed
        )
        let created = document.at("paths")?["/hold"]?.at("post/responses/201/headers")?.objectKeys ?? []
        #expect(created.contains(ContractHeaders.idempotentReplayed))
    }
}
