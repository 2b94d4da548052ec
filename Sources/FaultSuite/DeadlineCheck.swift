extension HistoryChecker {
    /// "Committed after the caller's deadline" (INTERFACE.md rules 5 and 9): a keyed hold whose commit came
    /// after the deadline of every attempt that could have made it.
    ///
    /// `commitMs`: hold id → a time at or before its commit (Unix epoch ms, the database's clock; all the
    /// processes of a run share one host clock). The attempts that could have made the hold are those of its
    /// key sent before that time; if each has a known deadline (`Attempt.deadlineMs`) and all of them passed
    /// before it, the hold committed after its caller's deadline. An attempt of unknown deadline makes the key
    /// undecidable, never an anomaly.
    static func checkDeadlines(
        _ history: [Attempt],
        keyedHolds: [String: String],
        commitMs: [String: Int64],
        into report: inout FaultReport
    ) {
        var byKey: [String: [Attempt]] = [:]
        for attempt in history where attempt.op == "hold" {
            guard let key = attempt.key else { continue }
            byKey[keyOf(user: attempt.userId, key: key), default: []].append(attempt)
        }
        for (key, attempts) in byKey.sorted(by: { $0.key < $1.key }) {
            guard let holdID = keyedHolds[key], let committed = commitMs[holdID] else { continue }
            let candidates = attempts.filter { $0.invokeMs <= committed }
            guard !candidates.isEmpty else { continue }
            let deadlines = candidates.compactMap(\.deadlineMs)
            guard deadlines.count == candidates.count, let latest = deadlines.max(), latest < committed else {
                continue
            }
            let readable = key.replacingOccurrences(of: "\u{1F}", with: " key ")
            report.anomaly(
                "committed-after-deadline",
                "user \(readable): hold \(holdID) committed at \(committed) or later; the last deadline of the "
                    + "\(candidates.count) attempts sent before it was \(latest) (\(committed - latest) ms earlier)"
            )
        }
    }
}
