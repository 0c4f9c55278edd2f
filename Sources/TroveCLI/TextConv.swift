import ArgumentParser
import Foundation
import Glibc
import TroveCore
import TroveGit
import TroveRuns
import TroveStore
import TroveSync

extension TroveCommand {
    struct TextConv: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "textconv",
            abstract: "One-line summary of a tracked file for `git diff` (diff.trove.textconv).",
            shouldDisplay: false)
        @Argument(help: "The file git hands over (a pointer, or content not yet stored).") var file: String

        func run() throws {
            // git hands over the working-tree form: the content (hashed: its id is the oid), or
            // the pointer when the content was not checked out.
            let size = FileIO.fileSize(file) ?? 0
            if size < LFSPointer.sizeLimit, let bytes = try? FileIO.readFile(file), let p = try? LFSPointer.parse(bytes) {
                Console.out("trove \(p.oid.short()) \(Format.bytes(p.size)) (\(p.size) bytes; pointer, content not checked out)")
                return
            }
            Console.out("trove \(try Worktree.hashFile(file).short()) \(Format.bytes(size)) (\(size) bytes)")
        }
    }
}
