import Glibc
import TroveCLI

// Entry point only: parse, run, exit with the status the CLI chose.
exit(TroveCLI.run(Array(CommandLine.arguments.dropFirst())))
