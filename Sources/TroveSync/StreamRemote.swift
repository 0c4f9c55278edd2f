import Glibc
import TroveCore
import TroveProtocol
import TroveStore

/// A remote reached through a child process that speaks the stream transport on its stdin
/// and stdout: `ssh HOST trove serve-stdio PATH` (like git), or `trove serve-stdio PATH`
/// for a local path. The child's stderr passes through to ours.
public final class StreamRemote: Remote {
    public let url: String
    let child: ChildProcess
    let channel: FrameChannel
    private var closed = false

    public init(url: String, command: [String]) throws {
        self.url = url
        child = try ChildProcess(command)
        channel = FrameChannel(input: child.stdout, output: child.stdin, name: url)
    }

    deinit { close() }

    private func request(_ r: Request) throws -> Response {
        do {
            try channel.writeFrame(r.encode())
            try channel.flush()
            return try readResponse()
        } catch let e as SyncError where e.code == .transport {
            throw broken(e)
        }
    }

    private func readResponse() throws -> Response {
        guard let frame = try channel.readFrame() else {
            throw SyncError(.transport, "\(url): the remote closed the connection")
        }
        let resp = try decodingResponse { try Response.decode(frame) }
        if case let .error(code, message, hint) = resp { throw SyncError.from(ProtocolError(code, message, hint: hint), remote: url) }
        return resp
    }

    /// Adds what the child said and how it ended to a transport error.
    private func broken(_ e: SyncError) -> SyncError {
        let status = child.waitBriefly()
        var message = e.message
        if let status { message += " (the remote command \(child.command.first ?? "") exited with status \(status))" }
        return SyncError(.transport, message, hint: "check that the remote is reachable and has trove on its PATH (set TROVE_REMOTE_TROVE to its path)")
    }

    private func decodingResponse(_ body: () throws -> Response) throws -> Response {
        do { return try body() } catch let e as CoreError {
            throw SyncError(.transport, "\(url): malformed response: \(e.message)")
        }
    }

    private func unexpected(_ r: Response) -> SyncError {
        SyncError(.transport, "\(url): unexpected response \(r) from the remote")
    }

    public func hello() throws -> (ServerInfo, [RefEntry]) {
        let r = try request(.hello(version: SyncProtocol.version, agent: "trove/\(TroveVersion.string)"))
        guard case let .hello(info, refs) = r else { throw unexpected(r) }
        guard info.version == SyncProtocol.version else {
            throw SyncError(.invalidInput, "\(url) speaks protocol version \(info.version); this trove speaks \(SyncProtocol.version)", hint: "use the same trove release on both sides")
        }
        return (info, refs)
    }

    public func listRefs() throws -> [RefEntry] {
        let r = try request(.listRefs)
        guard case let .refs(refs) = r else { throw unexpected(r) }
        return refs
    }

    public func missing(_ ids: [ObjectID]) throws -> [Bool] {
        let r = try request(.missing(ids))
        guard case let .missing(flags) = r, flags.count == ids.count else { throw unexpected(r) }
        return flags
    }

    public func upload(_ objects: [PackedObject]) throws -> (objects: Int, stored: Int, storedBytes: UInt64) {
        do {
            try channel.writeFrame(Request.upload.encode())
            try channel.writeRaw(PackStream.header())
            for o in objects { try channel.writeRaw(PackStream.entry(o)) }
            try channel.writeRaw(PackStream.end(count: objects.count))
            try channel.flush()
            let r = try readResponse()
            guard case let .uploaded(n, stored, bytes) = r else { throw unexpected(r) }
            return (n, stored, bytes)
        } catch let e as SyncError where e.code == .transport {
            throw broken(e)
        }
    }

    private func streamed(_ r: Request, _ receive: (PackedObject) throws -> Void) throws {
        do {
            let resp = try request(r)
            guard case .stream = resp else { throw unexpected(resp) }
            try channel.readPackStream(receive)
        } catch let e as CoreError {
            throw SyncError(.transport, "\(url): malformed pack stream: \(e.message)")
        }
    }

    public func download(_ ids: [ObjectID], receive: (PackedObject) throws -> Void) throws {
        try streamed(.download(ids), receive)
    }

    public func metadata(wants: [ObjectID], haves: [ObjectID], receive: (PackedObject) throws -> Void) throws {
        try streamed(.metadata(wants: wants, haves: haves), receive)
    }

    public func updateRefs(_ updates: [RefUpdate]) throws -> [RefUpdateResult] {
        let r = try request(.updateRefs(updates))
        guard case let .refsUpdated(results) = r else { throw unexpected(r) }
        return results
    }

    /// One channel: requests take turns.
    public var maxConcurrentUploads: Int { 1 }

    public func close() {
        guard !closed else { return }
        closed = true
        try? channel.writeFrame(Request.bye.encode())
        try? channel.flush()
        child.finish()
    }
}

/// A child process with pipes to its stdin and stdout (stderr inherited).
final class ChildProcess {
    let command: [String]
    let pid: pid_t
    let stdin: Int32
    let stdout: Int32
    private var status: Int32?

    init(_ command: [String]) throws {
        self.command = command
        var toChild: [Int32] = [0, 0], fromChild: [Int32] = [0, 0]
        guard pipe(&toChild) == 0, pipe(&fromChild) == 0 else {
            throw SyncError(.io, "cannot create pipes: \(FileIO.errorText())")
        }
        for fd in toChild + fromChild { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        var argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var child: pid_t = 0
        let rc = posix_spawnp(&child, command[0], &actions, nil, &argv, environ)
        Glibc.close(toChild[0])
        Glibc.close(fromChild[1])
        guard rc == 0 else {
            Glibc.close(toChild[1])
            Glibc.close(fromChild[0])
            throw SyncError(.transport, "cannot run \(command[0]): \(FileIO.errorText(rc))",
                            hint: command[0] == "ssh" ? "install an ssh client (openssh-client)" : nil)
        }
        pid = child
        stdin = toChild[1]
        stdout = fromChild[0]
        signal(SIGPIPE, SIG_IGN)
    }

    /// Waits up to a second for the child to end; its exit status, or nil if it still runs.
    func waitBriefly() -> Int32? {
        if let status { return status }
        for _ in 0..<100 {
            var st: Int32 = 0
            if waitpid(pid, &st, WNOHANG) == pid {
                status = (st & 0x7f) == 0 ? (st >> 8) & 0xff : 128 + (st & 0x7f)
                return status
            }
            usleep(10_000)
        }
        return nil
    }

    func finish() {
        Glibc.close(stdin)
        if waitBriefly() == nil {
            kill(pid, SIGTERM)
            var st: Int32 = 0
            waitpid(pid, &st, 0)
            status = -1
        }
        Glibc.close(stdout)
    }
}
