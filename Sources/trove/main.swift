import Glibc
import TroveCLI

// Entry point only. A file-size limit (ulimit -f) must surface as a clear EFBIG error, not kill us.
signal(SIGXFSZ, SIG_IGN)
exit(TroveCLI.run(Array(CommandLine.arguments.dropFirst())))
