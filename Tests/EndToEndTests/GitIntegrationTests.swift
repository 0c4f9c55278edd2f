import Foundation
import TroveCore
import TroveStore
import TroveTestSupport
import XCTest

/// Trove inside git, driven through the real `git` binary (and git-lfs), with an isolated HOME
/// and config: install, track, the filter process, hooks, push and clone.
final class GitIntegrationTests: XCTestCase {
    func ok(_ r: ProcessResult, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 0, "\(what): \(r.stdout)\n\(r.stderr)", file: file, line: line)
    }

    /// A repository `repo` with Trove installed, `*.bin` and `data/**` tracked, and a bare
    /// remote `remote.git` as origin.
    func repository(_ s: TroveSandbox) -> (repo: String, bare: String) {
        s.enableGit(globalInstall: true)
        let repo = s.temp.sub("repo"), bare = s.temp.path + "/remote.git"
        ok(s.git(["init", "-q", "--bare", bare], cwd: s.temp.path), "init bare")
        ok(s.git(["init", "-q"], cwd: repo), "git init")
        ok(s.trove(["install"], cwd: repo), "install")
        ok(s.trove(["track", "*.bin", "data/**"], cwd: repo), "track")
        ok(s.git(["remote", "add", "origin", bare], cwd: repo), "remote add")
        return (repo, bare)
    }

    func write(_ path: String, _ bytes: [UInt8]) { writeFile(path, bytes) }

    func testRoundTripThroughABareRepositoryPushesOnceAndClonesByteIdentical() throws {
        let s = TroveSandbox()
        let (repo, bare) = repository(s)
        let model = SeededBytes.bytes(seed: 41, count: 3 << 20)
        write(repo + "/model.bin", model)
        for i in 0..<40 { write(repo + "/data/part-\(i).csv", Array("row \(i)\n".utf8) + SeededBytes.bytes(seed: UInt64(i), count: 2000)) }
        write(repo + "/README.md", Array("plain git file\n".utf8))
        ok(s.git(["add", "."], cwd: repo), "git add")
        ok(s.git(["commit", "-q", "-m", "v1"], cwd: repo), "git commit")
        // git holds pointers; the README is an ordinary blob.
        let shown = s.git(["show", "HEAD:model.bin"], cwd: repo)
        XCTAssertEqual(shown.stdout, "version https://git-lfs.github.com/spec/v1\noid sha256:\(SHA256.hash(model).hex)\nsize \(model.count)\n")
        XCTAssertEqual(s.git(["show", "HEAD:README.md"], cwd: repo).stdout, "plain git file\n")
        XCTAssertEqual(s.git(["status", "--porcelain"], cwd: repo).stdout, "")
        // post-commit linked a snapshot commit to the git commit.
        let gitHead = s.git(["rev-parse", "HEAD"], cwd: repo).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let log = s.trove(["log"], cwd: repo)
        XCTAssertTrue(log.stdout.contains("Git:    \(gitHead)"), "trove log names the git commit: \(log.stdout)")

        let push = s.git(["push", "origin", "main"], cwd: repo)
        ok(push, "git push")
        XCTAssertTrue(push.stderr.contains("trove: sent"), push.stderr)
        let again = s.git(["push", "origin", "main"], cwd: repo)
        ok(again, "second push")
        XCTAssertFalse(again.stderr.contains("trove: sent"), "a second push sends nothing: \(again.stderr)")

        let clone = s.temp.path + "/clone"
        let trace = s.temp.path + "/clone.trace"
        ok(s.git(["clone", "-q", bare, clone], cwd: s.temp.path, environment: ["GIT_TRACE_PACKET": trace]), "git clone")
        XCTAssertTrue(readFile(clone + "/model.bin") == model)
        let packets = String(decoding: readFile(trace) ?? [], as: UTF8.self)
        XCTAssertTrue(packets.contains("status=delayed") && packets.contains("command=list_available_blobs"),
                      "missing content is fetched through git's delay: all files at once")
        for i in [0, 17, 39] { XCTAssertEqual(readFile(clone + "/data/part-\(i).csv"), readFile(repo + "/data/part-\(i).csv")) }
        XCTAssertEqual(s.git(["status", "--porcelain"], cwd: clone).stdout, "")

        // A 1 % edit: the next push carries about the changed chunks, not the file.
        var v2 = model
        v2.replaceSubrange(1_000_000..<1_030_000, with: SeededBytes.bytes(seed: 99, count: 30_000))
        write(clone + "/model.bin", v2)
        // git diff shows a one-line summary per version (diff.trove.textconv), not binary noise.
        let diff = s.git(["diff"], cwd: clone)
        XCTAssertTrue(diff.stdout.contains("-trove \(SHA256.hash(model).short()) 3.0 MiB") && diff.stdout.contains("+trove \(SHA256.hash(v2).short())"), diff.stdout)
        ok(s.git(["commit", "-q", "-am", "v2"], cwd: clone), "commit v2")
        let logp = s.git(["log", "-p", "-1"], cwd: clone)
        XCTAssertTrue(logp.stdout.contains("+trove \(SHA256.hash(v2).short())"), logp.stdout)
        let push2 = s.trove(["push", "--json"], cwd: clone)
        ok(push2, "trove push")
        let sent = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(push2.stdout.utf8)) as? [String: Any])
        XCTAssertLessThan(try XCTUnwrap(sent["bytes"] as? Int), 600_000, "only the changed chunks travel: \(sent)")
        ok(s.git(["push", "-q", "origin", "main"], cwd: clone), "git push v2")
        ok(s.git(["pull", "-q", "origin", "main"], cwd: repo), "git pull in the first repository")
        XCTAssertTrue(readFile(repo + "/model.bin") == v2)
        ok(s.trove(["fsck", "--full", "--store", bare + "/trove"]), "fsck of the remote store")
    }

    func testSkipSmudgeCloneThenPullIncludeMaterialisesOnlyThoseFiles() throws {
        let s = TroveSandbox()
        let (repo, bare) = repository(s)
        ok(s.trove(["track", "models/**", "tmp/*"], cwd: repo), "track models")
        ok(s.trove(["untrack", "tmp/*"], cwd: repo), "untrack")
        XCTAssertEqual(s.trove(["track"], cwd: repo).stdout, "Tracked patterns (.gitattributes):\n    *.bin\n    data/**\n    models/**\n")
        let weights = SeededBytes.bytes(seed: 5, count: 2 << 20), big = SeededBytes.bytes(seed: 6, count: 4 << 20)
        write(repo + "/models/w.bin", weights)
        write(repo + "/data/big.bin", big)
        ok(s.git(["add", "."], cwd: repo), "add")
        ok(s.git(["commit", "-q", "-m", "v1"], cwd: repo), "commit")
        ok(s.git(["push", "-q", "origin", "main"], cwd: repo), "push")

        let clone = s.temp.path + "/clone"
        ok(s.git(["clone", "-q", bare, clone], cwd: s.temp.path, environment: ["TROVE_SKIP_SMUDGE": "1"]), "clone without content")
        XCTAssertLessThan(FileIO.fileSize(clone + "/data/big.bin") ?? 0, 1024, "still a pointer")
        XCTAssertLessThan(FileIO.fileSize(clone + "/models/w.bin") ?? 0, 1024, "still a pointer")
        let pull = s.trove(["pull", "--include", "models/*"], cwd: clone)
        ok(pull, "pull --include")
        XCTAssertTrue(readFile(clone + "/models/w.bin") == weights)
        XCTAssertLessThan(FileIO.fileSize(clone + "/data/big.bin") ?? 0, 1024, "not included: still a pointer")
        // Only the included file's chunks came: the store is about its size, not both.
        let stored = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(s.trove(["du", "--json"], cwd: clone).stdout.utf8)) as? [String: Any])
        let bytes = try XCTUnwrap((stored["stored_bytes"] ?? stored["bytes"]) as? Int, "\(stored)")
        XCTAssertLessThan(bytes, (2 << 20) + 200_000, "\(stored)")
        XCTAssertEqual(s.git(["status", "--porcelain"], cwd: clone).stdout, "", "pointers and content both match the index")
        let ls = s.trove(["ls-files", "--json"], cwd: clone)
        ok(ls, "ls-files")
        let files = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(ls.stdout.utf8)) as? [String: Any])?["files"] as? [[String: Any]])
        let states = Dictionary(uniqueKeysWithValues: files.map { ($0["path"] as! String, $0["worktree"] as! String) })
        XCTAssertEqual(states, ["models/w.bin": "materialised", "data/big.bin": "pointer"])
        // `git trove` is the same command (the git-trove entry point).
        let status = s.git(["trove", "status", "--json"], cwd: clone)
        ok(status, "git trove status")
        let tracked = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])?["files"] as? [[String: Any]])
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: tracked.map { ($0["path"] as! String, $0["state"] as! String) }),
                       ["models/w.bin": "ok", "data/big.bin": "pointer"])
    }

    func testExistingHooksKeepRunningAndUninstallLeavesTheRepositoryAsBefore() throws {
        let s = TroveSandbox()
        s.enableGit()
        let repo = s.temp.sub("repo"), bare = s.temp.path + "/remote.git"
        ok(s.git(["init", "-q", "--bare", bare], cwd: s.temp.path), "init bare")
        ok(s.git(["init", "-q"], cwd: repo), "git init")
        ok(s.git(["remote", "add", "origin", bare], cwd: repo), "remote add")
        let marks = s.temp.sub("marks")
        write(repo + "/.git/hooks/pre-push", Array("#!/bin/sh\ncat > \(marks)/pre-push-stdin\necho \"$1\" > \(marks)/pre-push-args\n".utf8))
        write(repo + "/.git/hooks/post-checkout", Array("#!/bin/sh\necho \"$3\" >> \(marks)/post-checkout\n".utf8))
        chmod(repo + "/.git/hooks/pre-push", 0o755)
        chmod(repo + "/.git/hooks/post-checkout", 0o755)
        func snapshot() -> [String: [UInt8]] {
            var out: [String: [UInt8]] = ["config": readFile(repo + "/.git/config") ?? []]
            for name in (try? FileManager.default.contentsOfDirectory(atPath: repo + "/.git/hooks")) ?? [] {
                out["hooks/" + name] = readFile(repo + "/.git/hooks/" + name)
            }
            return out
        }
        let before = snapshot()

        ok(s.trove(["install"], cwd: repo), "install")
        ok(s.trove(["install"], cwd: repo), "install again")
        XCTAssertTrue(FileManager.default.fileExists(atPath: repo + "/.git/hooks/pre-push.trove-chained"))
        ok(s.trove(["track", "*.bin"], cwd: repo), "track")
        write(repo + "/w.bin", SeededBytes.bytes(seed: 3, count: 100_000))
        ok(s.git(["add", "."], cwd: repo), "add")
        ok(s.git(["commit", "-q", "-m", "one"], cwd: repo), "commit")
        ok(s.git(["checkout", "-q", "-b", "side"], cwd: repo), "checkout")
        let push = s.git(["push", "origin", "side"], cwd: repo)
        ok(push, "push")
        XCTAssertTrue(push.stderr.contains("trove: sent"), "Trove's pre-push ran: \(push.stderr)")
        let stdin = String(decoding: readFile(marks + "/pre-push-stdin") ?? [], as: UTF8.self)
        XCTAssertTrue(stdin.hasPrefix("refs/heads/side "), "the chained hook got git's stdin: \(stdin)")
        XCTAssertEqual(String(decoding: readFile(marks + "/pre-push-args") ?? [], as: UTF8.self), "origin\n")
        XCTAssertEqual(String(decoding: readFile(marks + "/post-checkout") ?? [], as: UTF8.self), "1\n")

        ok(s.trove(["install", "--uninstall"], cwd: repo), "uninstall")
        XCTAssertEqual(snapshot(), before, "config and hooks exactly as before install")
    }

    func testBadInputsFailClearlyAndLeaveGitAndTheStoreIntact() throws {
        let s = TroveSandbox()
        let (repo, bare) = repository(s)
        write(repo + "/good.bin", SeededBytes.bytes(seed: 8, count: 200_000))
        ok(s.git(["add", "."], cwd: repo), "add")
        ok(s.git(["commit", "-q", "-m", "good"], cwd: repo), "commit")

        // A remote that is down: git push fails, and the bare repository is not moved.
        ok(s.trove(["remote", "add", "origin", "http://127.0.0.1:9/nothing"], cwd: repo), "remote add")
        let down = s.git(["push", "origin", "main"], cwd: repo, environment: ["TROVE_HTTP_ATTEMPTS": "1"])
        XCTAssertNotEqual(down.status, 0, "push must fail")
        XCTAssertTrue(down.stderr.contains("127.0.0.1:9"), down.stderr)
        XCTAssertNotEqual(s.git(["rev-parse", "--verify", "-q", "refs/heads/main"], cwd: bare).status, 0, "git's remote has no pointers without content")
        ok(s.trove(["remote", "remove", "origin"], cwd: repo), "remote remove")
        // A git remote Trove cannot follow (HTTP) and no Trove remote: refused while tracked
        // files are pushed, with what to do; commits that track nothing pass.
        ok(s.git(["remote", "add", "forge", "http://127.0.0.1:9/repo.git"], cwd: repo), "add forge")
        let head = s.git(["rev-parse", "HEAD"], cwd: repo).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let line = Array("refs/heads/main \(head) refs/heads/main \(String(repeating: "0", count: 40))\n".utf8)
        let refused = s.trove(["hook", "pre-push", "forge", "http://127.0.0.1:9/repo.git"], cwd: repo, stdin: line)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("trove remote add forge"), refused.stderr)
        let plain = s.temp.sub("plain")
        ok(s.git(["init", "-q"], cwd: plain), "init plain")
        ok(s.trove(["install"], cwd: plain), "install plain")
        write(plain + "/README", Array("text\n".utf8))
        ok(s.git(["add", "README"], cwd: plain), "add")
        ok(s.git(["commit", "-q", "-m", "docs"], cwd: plain), "commit")
        let plainHead = s.git(["rev-parse", "HEAD"], cwd: plain).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        ok(s.trove(["hook", "pre-push", "forge", "http://127.0.0.1:9/repo.git"], cwd: plain,
                   stdin: Array("refs/heads/main \(plainHead) refs/heads/main \(String(repeating: "0", count: 40))\n".utf8)), "nothing tracked: nothing needed")
        ok(s.git(["push", "-q", "origin", "main"], cwd: repo), "push once the remote is the path again")

        // A malformed pointer and a pointer to content nobody has, committed around the filter.
        let malformed = Array("version https://git-lfs.github.com/spec/v1\noid sha256:xyz\nsize 12\n".utf8)
        let orphan = Array("version https://git-lfs.github.com/spec/v1\noid sha256:\(String(repeating: "ab", count: 32))\nsize 5\n".utf8)
        let hashM = s.git(["hash-object", "-w", "--stdin", "--no-filters"], cwd: repo, stdin: malformed).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let hashO = s.git(["hash-object", "-w", "--stdin", "--no-filters"], cwd: repo, stdin: orphan).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        ok(s.git(["update-index", "--add", "--cacheinfo", "100644,\(hashM),bad.bin"], cwd: repo), "stage malformed")
        ok(s.git(["update-index", "--add", "--cacheinfo", "100644,\(hashO),orphan.bin"], cwd: repo), "stage orphan")
        ok(s.git(["commit", "-q", "-m", "bad pointers"], cwd: repo), "commit")
        ok(s.git(["push", "-q", "--no-verify", "origin", "main"], cwd: repo), "push the bad commit to git only")
        let clone = s.temp.path + "/clone"
        let c = s.git(["clone", bare, clone], cwd: s.temp.path)
        XCTAssertNotEqual(c.status, 0, "checkout of unusable pointers fails")
        XCTAssertTrue(c.stderr.contains("bad.bin") && c.stderr.contains("malformed pointer"), c.stderr)
        // git's state is whole, and skipping smudge checks the commit out with pointers.
        ok(s.git(["fsck", "--no-progress"], cwd: clone), "git fsck")
        ok(s.git(["checkout", "-f", "-q", "HEAD"], cwd: clone, environment: ["TROVE_SKIP_SMUDGE": "1"]), "checkout with pointers")
        XCTAssertTrue(readFile(clone + "/bad.bin") == malformed)
        // The pointer to content nobody has: an error that names it and says what to do.
        try FileManager.default.removeItem(atPath: clone + "/orphan.bin")
        let o = s.git(["checkout", "--", "orphan.bin"], cwd: clone)
        XCTAssertNotEqual(o.status, 0, "checkout of content nobody has fails")
        XCTAssertTrue(o.stderr.contains("orphan.bin") && o.stderr.contains("does not have the content"), o.stderr)
        XCTAssertEqual(s.git(["status", "--porcelain", "--", "good.bin"], cwd: clone).stdout, "", "the rest is untouched")
        ok(s.trove(["fsck", "--full"], cwd: repo), "the first repository's store is intact")
    }

    func testAFilterKilledMidBlobFailsTheAddAndLosesNothing() throws {
        let s = TroveSandbox()
        let (repo, _) = repository(s)
        let big = SeededBytes.bytes(seed: 12, count: 96 << 20)
        write(repo + "/big.bin", big)
        // Kill the filter as soon as it runs, mid-blob. The filter answers `git add` after one
        // hash and stores on: a kill that lands after the answer lets the add succeed, so that
        // attempt is undone and the kill tried again.
        var killed = false
        var result: ProcessResult?
        for _ in 0..<5 {
            let add = Runner.start("/usr/bin/git", ["add", "big.bin"], cwd: repo, environment: s.environment)
            killed = false
            for _ in 0..<400 where !killed {
                let k = Runner.run("/usr/bin/pkill", ["-9", "-f", "trove filter-process"], cwd: repo, environment: s.environment)
                killed = k.status == 0
                if !killed { usleep(10_000) }
            }
            let attempt = add.wait()
            result = attempt
            if attempt.status != 0 || !killed { break }
            _ = s.git(["rm", "-q", "--cached", "big.bin"], cwd: repo)
        }
        let r = try XCTUnwrap(result)
        XCTAssertTrue(killed, "the filter was seen running; git add exited \(r.status) (\(r.stderr)); filter config: "
                      + s.git(["config", "--show-origin", "--get-regexp", "filter\\.trove"], cwd: repo).stdout
                      + "; attributes: " + s.git(["check-attr", "filter", "--", "big.bin"], cwd: repo).stdout)
        XCTAssertNotEqual(r.status, 0, "git add fails when its filter dies")
        XCTAssertTrue(r.stderr.contains("trove filter-process"), r.stderr)
        XCTAssertEqual(s.git(["ls-files", "--", "big.bin"], cwd: repo).stdout, "", "nothing staged")
        XCTAssertTrue(readFile(repo + "/big.bin") == big, "the file is untouched")
        ok(s.trove(["fsck", "--full"], cwd: repo), "store intact")
        ok(s.git(["add", "big.bin", ".gitattributes"], cwd: repo), "a retry works")
        ok(s.git(["commit", "-q", "-m", "big"], cwd: repo), "commit")
        XCTAssertEqual(s.git(["status", "--porcelain"], cwd: repo).stdout, "")
    }

    func testWorktreesShareOneStoreAndStashRebaseMergeBehaveAsWithLFS() throws {
        let s = TroveSandbox()
        let (repo, _) = repository(s)
        let v1 = SeededBytes.bytes(seed: 20, count: 500_000)
        write(repo + "/m.bin", v1)
        ok(s.git(["add", "."], cwd: repo), "add")
        ok(s.git(["commit", "-q", "-m", "v1"], cwd: repo), "commit")

        // A linked worktree: same store, content checked out from it.
        let wt = s.temp.path + "/wt"
        ok(s.git(["worktree", "add", "-q", "-b", "feature", wt], cwd: repo), "worktree add")
        XCTAssertTrue(readFile(wt + "/m.bin") == v1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: wt + "/.git/trove"), "no second store")
        let v2 = SeededBytes.bytes(seed: 21, count: 500_000)
        write(wt + "/m.bin", v2)
        write(wt + "/n.bin", SeededBytes.bytes(seed: 22, count: 10_000))
        ok(s.git(["add", "."], cwd: wt), "add in worktree")
        ok(s.git(["commit", "-q", "-m", "feature"], cwd: wt), "commit in worktree")

        // stash: content goes away and comes back.
        let v3 = SeededBytes.bytes(seed: 23, count: 500_000)
        write(repo + "/m.bin", v3)
        ok(s.git(["stash", "-q"], cwd: repo), "stash")
        XCTAssertTrue(readFile(repo + "/m.bin") == v1)
        ok(s.git(["stash", "pop", "-q"], cwd: repo), "stash pop")
        XCTAssertTrue(readFile(repo + "/m.bin") == v3)
        ok(s.git(["checkout", "-q", "--", "m.bin"], cwd: repo), "discard")

        // merge (fast-forward) and rebase of tracked files.
        ok(s.git(["merge", "-q", "feature"], cwd: repo), "merge")
        XCTAssertTrue(readFile(repo + "/m.bin") == v2)
        ok(s.git(["checkout", "-q", "-b", "other", "HEAD~1"], cwd: repo), "branch off v1")
        write(repo + "/o.bin", SeededBytes.bytes(seed: 24, count: 30_000))
        ok(s.git(["add", "o.bin"], cwd: repo), "add o")
        ok(s.git(["commit", "-q", "-m", "other"], cwd: repo), "commit o")
        ok(s.git(["rebase", "-q", "main"], cwd: repo), "rebase")
        XCTAssertTrue(readFile(repo + "/m.bin") == v2)
        XCTAssertTrue(readFile(repo + "/o.bin") == SeededBytes.bytes(seed: 24, count: 30_000))
        XCTAssertEqual(s.git(["status", "--porcelain"], cwd: repo).stdout, "")
        ok(s.trove(["fsck", "--full"], cwd: wt), "one store, whole")
    }

    func testAGitLFSRepositoryMovesToTroveAndBackWithoutRewritingHistory() throws {
        let s = TroveSandbox()
        s.enableGit()
        ok(s.git(["lfs", "install"], cwd: s.home), "git lfs install")
        let repo = s.temp.sub("repo")
        ok(s.git(["init", "-q"], cwd: repo), "git init")
        ok(s.git(["lfs", "track", "*.bin"], cwd: repo), "git lfs track")
        let v1 = SeededBytes.bytes(seed: 31, count: 700_000), v2 = SeededBytes.bytes(seed: 32, count: 700_000)
        write(repo + "/w.bin", v1)
        ok(s.git(["add", "."], cwd: repo), "add")
        ok(s.git(["commit", "-q", "-m", "v1"], cwd: repo), "commit v1")
        write(repo + "/w.bin", v2)
        ok(s.git(["commit", "-q", "-am", "v2"], cwd: repo), "commit v2")
        let history = s.git(["log", "--format=%H %T"], cwd: repo).stdout

        ok(s.trove(["install"], cwd: repo), "trove install")
        let imported = s.trove(["import-lfs", "--json"], cwd: repo)
        ok(imported, "import-lfs")
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(imported.stdout.utf8)) as? [String: Any])?["objects"] as? Int, 2, imported.stdout)
        XCTAssertEqual(String(decoding: readFile(repo + "/.gitattributes") ?? [], as: UTF8.self), "*.bin filter=trove diff=trove merge=trove -text\n")
        ok(s.git(["commit", "-q", "-am", "use trove"], cwd: repo), "commit attributes")
        XCTAssertTrue(s.git(["log", "--format=%H %T"], cwd: repo).stdout.hasSuffix(history), "earlier commits unchanged")
        // Every version restores from the Trove store, with git-lfs's objects gone.
        try FileManager.default.removeItem(atPath: repo + "/.git/lfs")
        try FileManager.default.removeItem(atPath: repo + "/w.bin")
        ok(s.git(["checkout", "--", "w.bin"], cwd: repo), "checkout")
        XCTAssertTrue(readFile(repo + "/w.bin") == v2)
        ok(s.git(["checkout", "-q", "HEAD~2"], cwd: repo), "checkout v1")
        XCTAssertTrue(readFile(repo + "/w.bin") == v1)
        ok(s.git(["checkout", "-q", "main"], cwd: repo), "back")

        // And back: git-lfs reads what export-lfs wrote.
        let exported = s.trove(["export-lfs", "--json"], cwd: repo)
        ok(exported, "export-lfs")
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(exported.stdout.utf8)) as? [String: Any])?["objects"] as? Int, 2, exported.stdout)
        ok(s.git(["commit", "-q", "-am", "back to lfs"], cwd: repo), "commit attributes")
        ok(s.trove(["install", "--uninstall"], cwd: repo), "uninstall trove")
        ok(s.git(["lfs", "fsck"], cwd: repo), "git lfs fsck")
        try FileManager.default.removeItem(atPath: repo + "/w.bin")
        ok(s.git(["checkout", "--", "w.bin"], cwd: repo), "git-lfs smudge")
        XCTAssertTrue(readFile(repo + "/w.bin") == v2)
        XCTAssertTrue(s.git(["lfs", "ls-files"], cwd: repo).stdout.contains("w.bin"))
    }

    func testLargeFilesAreWrittenByTroveOnCheckoutAndGitSeesThemClean() throws {
        let s = TroveSandbox()
        let (repo, _) = repository(s)
        ok(s.trove(["config", "git.defer-min", "\(1 << 20)"], cwd: repo), "threshold 1 MiB")
        let v1 = SeededBytes.bytes(seed: 51, count: 3 << 20)
        var v2 = v1
        v2.replaceSubrange(100_000..<130_000, with: SeededBytes.bytes(seed: 52, count: 30_000))
        write(repo + "/big.bin", v1)
        write(repo + "/small.bin", SeededBytes.bytes(seed: 53, count: 1000))
        ok(s.git(["add", "."], cwd: repo), "add")
        ok(s.git(["commit", "-q", "-m", "v1"], cwd: repo), "commit")
        ok(s.git(["checkout", "-q", "-b", "v2"], cwd: repo), "branch")
        write(repo + "/big.bin", v2)
        ok(s.git(["commit", "-q", "-am", "v2"], cwd: repo), "commit v2")
        for (round, (branch, want)) in [("main", v1), ("v2", v2), ("main", v1)].enumerated() {
            let trace = s.git(["checkout", "-q", branch], cwd: repo, environment: ["GIT_TRACE_PACKET": "1"])
            ok(trace, "checkout \(branch)")
            XCTAssertTrue(readFile(repo + "/big.bin") == want, "big.bin on \(branch)")
            XCTAssertEqual(s.git(["status", "--porcelain"], cwd: repo).stdout, "", "git sees the written file as unchanged")
            // git received a pointer for big.bin, not 3 MiB of content; and (after the first
            // round, where git re-reads the file `git commit` wrote in the same second as its
            // index, "racily clean") did not clean the file Trove wrote either.
            if round > 0 { XCTAssertLessThan(trace.stderr.utf8.count, 200_000, "content did not go through git") }
        }
        // Commands whose output is not the working tree still get the content.
        let archive = s.shell("git archive HEAD big.bin | tar -xO big.bin | sha256sum", cwd: repo)
        XCTAssertTrue(archive.stdout.hasPrefix(SHA256.hash(v1).hex), archive.stdout + archive.stderr)
        // stash: the large file goes away and comes back.
        write(repo + "/big.bin", v2)
        ok(s.git(["stash", "-q"], cwd: repo), "stash")
        XCTAssertTrue(readFile(repo + "/big.bin") == v1)
        ok(s.git(["stash", "pop", "-q"], cwd: repo), "stash pop")
        XCTAssertTrue(readFile(repo + "/big.bin") == v2)
        ok(s.git(["reset", "-q", "--hard"], cwd: repo), "reset --hard")
        XCTAssertTrue(readFile(repo + "/big.bin") == v1)
        XCTAssertEqual(s.git(["status", "--porcelain"], cwd: repo).stdout, "")
    }

    func testAStoreThatCannotBeWrittenDuringGitAddNamesTheFilesAndTheFix() throws {
        let s = TroveSandbox()
        let (repo, _) = repository(s)
        for i in 0..<6 { write(repo + "/data/f\(i).bin", SeededBytes.bytes(seed: UInt64(60 + i), count: 40_000)) }
        // A file-size limit (ulimit -f, 64 KiB) makes the pack write fail with EFBIG.
        let add = s.shell("ulimit -f 128; git add data", cwd: repo)
        XCTAssertTrue(add.stderr.contains("could not be stored") && add.stderr.contains("data/f"), add.stderr)
        XCTAssertTrue(add.stderr.contains("git add --renormalize"), add.stderr)
        let status = s.trove(["status", "--json"], cwd: repo)
        XCTAssertTrue(status.stdout.contains("not-stored"), status.stdout)
        ok(s.git(["add", "--renormalize", "data"], cwd: repo), "renormalize once the limit is gone")
        let after = s.trove(["status", "--json"], cwd: repo)
        XCTAssertFalse(after.stdout.contains("not-stored"), after.stdout)
        ok(s.trove(["fsck", "--full"], cwd: repo), "fsck")
    }

    func testAGitHostWithATroveDaemonClonesThroughTheCommittedTroveconfig() throws {
        let s = TroveSandbox()
        let (repo, bare) = repository(s)
        let daemon = try DaemonProcess(root: s.temp.sub("daemon"), environment: s.environment)
        try daemon.createProject("p")
        s.extraEnvironment["TROVE_TOKEN"] = try daemon.token("p", role: "write")
        // The project names its Trove remote in a committed file, as .lfsconfig does.
        ok(s.git(["config", "-f", ".troveconfig", "remote.origin.url", daemon.url("p")], cwd: repo), "troveconfig")
        let weights = SeededBytes.bytes(seed: 71, count: 2 << 20)
        write(repo + "/w.bin", weights)
        ok(s.git(["add", "."], cwd: repo), "add")
        ok(s.git(["commit", "-q", "-m", "w"], cwd: repo), "commit")
        ok(s.git(["push", "-q", "origin", "main"], cwd: repo), "push")
        XCTAssertFalse(FileManager.default.fileExists(atPath: bare + "/trove"), "the artifacts went to the daemon, not next to git")
        ok(s.trove(["fsck", "--full", "--store", daemon.root + "/projects/p"]), "daemon store whole")
        let clone = s.temp.path + "/clone"
        ok(s.git(["clone", "-q", bare, clone], cwd: s.temp.path), "clone")
        XCTAssertTrue(readFile(clone + "/w.bin") == weights)
        // A wrong token: the clone's checkout fails naming the file, and git stays whole.
        s.extraEnvironment["TROVE_TOKEN"] = "trv_wrong"
        let denied = s.git(["clone", bare, s.temp.path + "/denied"], cwd: s.temp.path)
        XCTAssertNotEqual(denied.status, 0)
        XCTAssertTrue(denied.stderr.contains("w.bin"), denied.stderr)
    }
}
