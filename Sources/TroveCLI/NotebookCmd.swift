import ArgumentParser
import Foundation
import TroveCore
import TroveRuns
import TroveStore

extension TroveCommand {
    struct NotebookCmd: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "notebook",
            abstract: "Notebooks in batch: check that one runs top to bottom before a sweep is submitted.",
            subcommands: [Check.self])

        struct Check: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Run a notebook serially, top to bottom, in a fresh kernel, and name the first cell that fails.",
                discussion: """
                    Executes every code cell in order, as `trove run NOTEBOOK` and a batch task do, with \
                    the -p parameters injected after the cell tagged `parameters` (papermill's rules). A \
                    notebook that only worked through out-of-order interactive execution fails here at \
                    the first cell that needs a later one. Nothing is recorded. Exit status: 0 when every \
                    cell ran, 1 when a cell failed (its number, id and error are printed), 2 when the file \
                    is not a valid notebook, 3 when Python or its Jupyter packages are missing.
                    """)
            @Argument(help: "The notebook.") var path: String
            @Option(name: .customShort("p"), help: ArgumentHelp("A parameter (repeatable).", valueName: "NAME=VALUE")) var parameters: [String] = []
            @Flag(help: "Print the outcome as JSON.") var json = false
            @OptionGroup var options: StoreOptions

            func run() throws {
                guard path.hasSuffix(".ipynb") else { throw StoreError(.invalidInput, "\(path) is not a notebook (.ipynb)") }
                let params = try parameters.map { try RunSpec.parameter($0) }
                let c = try Notebook.check(FileIO.absolute(path, base: options.cwd), parameters: params, directory: options.cwd)
                if json {
                    try Console.json(["ok": c.ok, "cells": c.cells, "executed": c.executed, "failed_cell": c.failedCell as Any? ?? NSNull(),
                                      "cell_id": c.cellID as Any? ?? NSNull(), "error": c.error as Any? ?? NSNull()] as [String: Any])
                } else if c.ok {
                    if !options.quiet { Console.out("\(path): all \(c.cells) code cell(s) ran top to bottom in a fresh kernel") }
                } else {
                    Console.err(c.log.trimmingCharacters(in: .whitespacesAndNewlines))
                    Console.out("\(path): cell \(c.failedCell.map(String.init) ?? "?")\(c.cellID.map { " (id \($0))" } ?? "") fails when run in order: \(c.error ?? "error")")
                }
                if !c.ok { throw CommandFailed(code: TroveCLI.ExitStatus.failure) }
            }
        }
    }
}
