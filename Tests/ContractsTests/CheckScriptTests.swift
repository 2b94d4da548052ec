import Foundation
import Testing

@Suite("The contracts checker")
struct CheckScriptTests {
    @Test("scripts/check-contracts.sh passes: schemas, examples, refs, OpenAPI and AsyncAPI documents")
    func checkerPasses() throws {
        let result = try Repo.run(["bash", "scripts/check-contracts.sh"])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("0 problems"), "\(result.output)")
    }
}
