import Foundation
import Glibc
import TroveCore
import TroveStore

/// Notebooks as runs (Docs/runs.md §Notebooks): executed serially, top to bottom, in a fresh
/// kernel by the embedded runner (nbformat + nbclient, papermill's parameter injection).
public enum Notebook {
    /// Whether a command is a notebook to execute: one `.ipynb` path.
    public static func isNotebook(_ command: [String]) -> Bool {
        command.count == 1 && command[0].hasSuffix(".ipynb")
    }

    /// The Python that runs notebooks: `$TROVE_PYTHON`, else `python3` on PATH.
    public static var python: String { ProcessInfo.processInfo.environment["TROVE_PYTHON"] ?? "python3" }

    /// The runner, written once per version to `$XDG_CACHE_HOME/trove` (or `~/.cache/trove`,
    /// else the temp folder); its path.
    public static func runnerPath() throws -> String {
        let env = ProcessInfo.processInfo.environment
        let bytes = Array(NotebookRunnerScript.source.utf8) + [10]
        // FNV-1a of the source: a new runner gets a new file.
        let digest = bytes.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
        let name = "notebook-runner-\(String(digest, radix: 16)).py"
        var candidates = [(env["XDG_CACHE_HOME"] ?? ((env["HOME"] ?? "/nonexistent") + "/.cache")) + "/trove"]
        candidates.append((env["TMPDIR"] ?? "/tmp") + "/trove-\(getuid())")
        for dir in candidates {
            let path = dir + "/" + name
            if FileIO.exists(path) { return path }
            if (try? FileIO.mkdirs(dir)) != nil, (try? FileIO.atomicWrite(path, bytes, durable: false)) != nil { return path }
        }
        throw StoreError(.io, "cannot write the notebook runner to \(candidates.joined(separator: " or "))", hint: "set XDG_CACHE_HOME to a writable folder")
    }

    /// Refuses a file that is not a valid nbformat 4 notebook, or a machine without the Python
    /// packages to run one, with what is wrong (before anything is recorded or submitted).
    public static func validate(_ path: String) throws {
        guard FileIO.exists(path) else { throw StoreError(.notFound, "notebook \(path) does not exist") }
        guard Tool.onPath(python) else {
            throw StoreError(.notFound, "notebooks need Python 3 (\(python) is not on PATH)", hint: "install python3, or set TROVE_PYTHON")
        }
        let r = try Tool.run([python, try runnerPath(), "validate", path], timeout: 120)
        switch r.status {
        case 0: return
        case 3: throw StoreError(.notFound, strip(r.stderr), hint: "then run again; nothing was run or recorded")
        case 4: throw StoreError(.invalidInput, strip(r.stderr), hint: "open and save it in Jupyter, or check it with `python3 -m nbformat.validator`; nothing was run or recorded")
        default: throw StoreError(.invalidInput, "cannot read notebook \(path): \(strip(r.message))")
        }
    }

    static func strip(_ text: String) -> String {
        let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return t.hasPrefix("trove: ") ? String(t.dropFirst(7)) : t
    }

    /// `trove notebook check`: the outcome of a serial run.
    public struct Check: Sendable {
        public var ok: Bool
        public var cells: Int
        public var executed: Int
        public var failedCell: Int?
        public var cellID: String?
        public var error: String?
        /// What the cells printed, and the runner's own report.
        public var log: String
    }

    /// Runs the notebook serially in a fresh kernel without recording anything.
    public static func check(_ path: String, parameters: [(name: String, value: String)], directory: String) throws -> Check {
        try validate(path)
        // The environment of a run (a notebook written for `trove run` reads it), in a
        // folder removed afterwards.
        let dir = (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/trove-check-\(getpid())"
        try FileIO.mkdirs(dir + "/outputs")
        defer { FileIO.removeTree(dir) }
        let params = Dictionary(parameters.map { ($0.name, $0.value) }, uniquingKeysWith: { _, b in b })
        try FileIO.atomicWrite(dir + "/params.json", Array(try JSONSerialization.data(withJSONObject: params)), durable: false)
        try FileIO.atomicWrite(dir + "/metrics.jsonl", [], durable: false)
        var env = ["TROVE_PARAMS_FILE": dir + "/params.json", "TROVE_METRICS_FILE": dir + "/metrics.jsonl",
                   "TROVE_OUTPUT_DIR": dir + "/outputs", "TROVE_RUN_ID": "notebook-check"]
        for (k, v) in parameters { env["TROVE_PARAM_" + k.uppercased()] = v }
        let r = try Tool.run(["sh", "-c", "cd \"$1\" && exec \"$2\" \"$3\" check \"$4\" - \"$5\"", "sh", directory, python, try runnerPath(),
                              FileIO.absolute(path, base: directory), parameters.isEmpty ? "-" : dir + "/params.json"],
                             environment: env, timeout: 24 * 3600)
        guard let line = r.stdout.split(separator: "\n").last, let j = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw StoreError(r.status == 3 ? .notFound : .invalidInput, strip(r.stderr))
        }
        return Check(ok: j["ok"] as? Bool ?? false, cells: j["cells"] as? Int ?? 0, executed: j["executed"] as? Int ?? 0,
                     failedCell: j["failed_cell"] as? Int, cellID: j["cell_id"] as? String, error: j["error"] as? String, log: r.stderr)
    }
}
