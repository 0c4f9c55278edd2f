import ArgumentParser
import Foundation
import Glibc
import TroveCore
import TroveGit
import TroveRuns
import TroveStore
import TroveSync

extension TroveCommand {
    struct LogMetric: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "log-metric",
            abstract: "Report a metric from inside `trove run` (for shell scripts).",
            discussion: "Appends {\"step\": STEP, \"NAME\": VALUE} to $TROVE_METRICS_FILE; without --step, the metric's next step.")
        @Argument(help: "The metric's name.") var name: String
        @Argument(help: "Its value.") var value: Double
        @Option(help: "The step (default: the metric's previous step + 1).") var step: Int64?

        func run() throws {
            guard let path = ProcessInfo.processInfo.environment["TROVE_METRICS_FILE"], !path.isEmpty else {
                throw StoreError(.invalidInput, "TROVE_METRICS_FILE is not set: log-metric reports to the run that started this process",
                                 hint: "run the script under `trove run -- ...`")
            }
            guard value.isFinite else { throw StoreError(.invalidInput, "metric \(name) must be a finite number, not \(value)") }
            var obj: [String: Any] = [name: value]
            if let step { obj["step"] = step }
            var line = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
            line.append(0x0A)
            // One write of a whole line with O_APPEND: lines from several writers never interleave.
            let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw FileIO.ioError("open", path) }
            defer { close(fd) }
            try line.withUnsafeBytes { try FileIO.writeAll(fd, $0.baseAddress!, $0.count, path: path) }
        }
    }
}
