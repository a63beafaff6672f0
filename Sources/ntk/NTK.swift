import ArgumentParser
import Foundation
import GramEngine
import LinearAlgebra
import MPI

/// The `ntk` command: the root of the subcommands.
struct NTK: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ntk",
        abstract: "The empirical Neural Tangent Kernel of fully connected networks, split across MPI ranks.",
        discussion: """
            Run one process, or many with `mpirun -np K ntk gram ...`. Exit statuses: 0 success, \
            64 bad flags, 65 malformed or inconsistent input, 66 missing or unreadable input, \
            70 internal error, 73 cannot create output, 74 I/O error while writing, 75 interrupted.
            """,
        version: NTKVersion.current,
        subcommands: [Gram.self, Predict.self, Train.self, Converge.self, Init.self])
}

/// The tool's version, printed by `ntk --version` (bumped with every release note).
enum NTKVersion {
    static let current = "0.10.0"
}

/// The rank this process will have under mpirun, known before MPI starts (so that usage
/// errors are printed by one rank only).
let launcherRank: Int = {
    let environment = ProcessInfo.processInfo.environment
    for key in ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"] {
        if let value = environment[key], let rank = Int(value) { return rank }
    }
    return 0
}()

/// Runs a job inside MPI (initialized and finalized once) on this rank and turns its
/// status into the process's exit status.
func runUnderMPI(_ job: (Communicator) -> ExitStatus) throws {
    let status: ExitStatus
    do {
        status = try MPIEnvironment.run(job)
    } catch {
        Report.error("MPI failed: \(error)")
        throw ExitCode(ExitStatus.software.rawValue)
    }
    if status != .success { throw ExitCode(status.rawValue) }
}

@main
enum Main {
    static func main() {
        chooseBLASKernel()
        do {
            var command = try NTK.parseAsRoot()
            try command.run()
        } catch {
            // Every rank parses the same flags, so every rank fails the same way. Rank 0
            // prints and returns the status; the others leave quietly with 0, so that
            // mpirun neither kills rank 0 before it has printed nor prints K messages.
            if launcherRank == 0 { exitReporting(error) }
            Foundation.exit(0)
        }
    }

    /// Starts the process again with `OPENBLAS_CORETYPE` set when OpenBLAS picked a slower
    /// kernel than the CPU runs (it reads the variable only when it loads): the
    /// eigendecomposition then runs at the CPU's speed without the user knowing the
    /// variable. A user's or site's own setting is kept. If the restart fails, the run
    /// goes on with the kernel OpenBLAS chose (and the engine warns).
    static func chooseBLASKernel() {
        let environment = ProcessInfo.processInfo.environment
        guard environment[BLASLibrary.chosenMarker] == nil, let core = BLASLibrary.preferredCore(environment: environment) else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        setenv(BLASLibrary.chosenMarker, core, 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        unsetenv("OPENBLAS_CORETYPE")
    }

    /// Help and version requests, and statuses already reported, go through the parser as
    /// usual; a usage error becomes the tool's one `ntk: error:` line (the parser's own
    /// form is several lines of usage that bury the message in a batch log).
    static func exitReporting(_ error: Error) -> Never {
        let code = NTK.exitCode(for: error)
        if code == .success || error is ExitCode { NTK.exit(withError: error) }
        let lines = NTK.message(for: error).split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("Usage:") && !$0.hasPrefix("See '") }
        let message = lines.first.map { $0.hasPrefix("Error: ") ? String($0.dropFirst(7)) : $0 } ?? "invalid arguments"
        let command = CommandLine.arguments.dropFirst().first { !$0.hasPrefix("-") } ?? ""
        let help = NTK.configuration.subcommands.contains { $0._commandName == command } ? "ntk \(command) --help" : "ntk --help"
        Report.error("\(message) (see '\(help)')")
        Foundation.exit(code.rawValue)
    }
}
