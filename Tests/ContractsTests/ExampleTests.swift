import Foundation
import TestSupport
import Testing

@testable import Contracts

@Suite("The examples of contracts/")
struct ExampleTests {
    @Test("every schema that is a message has a Swift type")
    func everySchemaHasAType() throws {
        let schemas = try FileManager.default.contentsOfDirectory(atPath: Repo.schemas.path)
            .filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }
        #expect(Set(schemas).subtracting(["common"]) == Set(SwiftCodec.all.keys))
    }

    @Test("every valid example decodes into its Swift type and encodes back to equal JSON")
    func validExamplesRoundTrip() throws {
        let files = try Repo.exampleFiles("valid")
        #expect(files.count >= 40)
        for (schema, file) in files {
            let codec = try #require(SwiftCodec.all[schema], "no Swift type for \(schema)")
            let original = try Repo.json(file)
            let reencoded: JSONValue
            do {
                reencoded = try codec.roundTrip(Repo.bytes(file))
            } catch {
                Issue.record("\(schema)/\(file.lastPathComponent) does not decode: \(error)")
                continue
            }
            #expect(reencoded == original, "\(schema)/\(file.lastPathComponent)")
        }
    }

    @Test("every valid request example passes the Swift validation")
    func validRequestsPass() throws {
        for (schema, file) in try Repo.exampleFiles("valid") {
            guard let validate = SwiftCodec.all[schema]?.validate else { continue }
            if case .failure(let error) = validate(try Repo.bytes(file)) {
                Issue.record("\(schema)/\(file.lastPathComponent) rejected: \(error.validationProblems)")
            }
        }
    }

    @Test("every invalid example is rejected with the field and rule index.json names")
    func invalidExamplesRejected() throws {
        let index = try #require(Repo.json(Repo.examples.appendingPathComponent("invalid/index.json"))["examples"])
        guard case .object(let entries) = index else { throw TestFailure("index.json has no examples") }
        #expect(entries.count >= 30)
        let files = try Repo.exampleFiles("invalid").map { "\($0.schema)/\($0.file.lastPathComponent)" }
        #expect(Set(files) == Set(entries.keys))
        for (path, entry) in entries.sorted(by: { $0.key < $1.key }) {
            let schema = try #require(entry["schema"]?.string)
            let validate = try #require(SwiftCodec.all[schema]?.validate, "\(schema) is not a request")
            var expected = [(try #require(entry["expectedField"]?.string), try #require(entry["expectedRule"]?.string))]
            if case .array(let more)? = entry["alsoExpected"] {
                expected += more.compactMap { m in m["field"]?.string.flatMap { f in m["rule"]?.string.map { (f, $0) } } }
            }
            let result = validate(try Repo.bytes(Repo.examples.appendingPathComponent("invalid/\(path)")))
            guard case .failure(let error) = result else {
                Issue.record("\(path) was accepted")
                continue
            }
            #expect(error.code == .validationFailed, "\(path)")
            let found = error.validationProblems.map { "\($0.field) \($0.rule)" }
            for (field, rule) in expected {
                #expect(found.contains("\(field) \(rule)"), "\(path): expected \(field) \(rule), got \(found)")
            }
            #expect(error.details?["field"]?.string == error.validationProblems.first?.field, "\(path)")
        }
    }
}
