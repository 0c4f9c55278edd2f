import Foundation

/// The hook scripts of the project's `hooks/` folder, as `trove install` writes them (a test
/// checks that the two agree; edit both).
public enum HookScripts {
    public static let names = ["pre-push", "post-checkout", "post-merge", "post-commit"]

    /// Marks a hook file as Trove's.
    public static let marker = "# trove hook: "

    public static func text(_ name: String) -> String {
        switch name {
        case "pre-push":
            return #"""
            #!/bin/sh
            # trove hook: pre-push. Installed by `trove install`; `trove install --uninstall` removes it.
            # Sends the artifacts (chunks and Trove snapshot commits) of the commits being pushed to the
            # Trove remote first; a failure stops the git push. A hook that was here before runs first.
            command -v trove >/dev/null 2>&1 || { echo >&2 "trove: this repository uses Trove, but 'trove' is not on PATH: install it or add it to PATH, then push again"; exit 2; }
            chained="$(dirname "$0")/pre-push.trove-chained"
            if [ -x "$chained" ]; then
              input=$(cat)
              printf '%s\n' "$input" | "$chained" "$@" || exit $?
              printf '%s\n' "$input" | exec trove hook pre-push "$@"
            fi
            exec trove hook pre-push "$@"
            """# + "\n"
        case "post-checkout", "post-merge", "post-commit":
            // One script for the three notification hooks, the name filled in.
            return #"""
            #!/bin/sh
            # trove hook: NAME. Installed by `trove install`; `trove install --uninstall` removes it.
            # Runs `trove hook NAME`, then the hook that was here before (if any), with the same arguments.
            command -v trove >/dev/null 2>&1 || { echo >&2 "trove: this repository uses Trove, but 'trove' is not on PATH: install it, or remove NAME from the hooks folder"; exit 2; }
            trove hook NAME "$@" || status=$?
            chained="$(dirname "$0")/NAME.trove-chained"
            if [ -x "$chained" ]; then "$chained" "$@" || exit $?; fi
            exit ${status:-0}
            """#.replacingOccurrences(of: "NAME", with: name) + "\n"
        default: preconditionFailure("no hook \(name)")
        }
    }
}
