import Foundation
import Testing

/// The SLURM and PBS batch scripts, run by `cluster/test-batch-scripts.sh` against stand-in
/// scheduler commands and the real binary under real mpirun: stop, requeue or resubmit,
/// resume with bitwise equal results, for `gram` and (through NTK_COMMAND) `predict`.
@Suite(.serialized) struct BatchScriptTests {
    @Test("the batch scripts stop, requeue and resume gram and predict with bitwise equal results")
    func batchScripts() throws {
        let (status, log) = try Self.run("cluster/test-batch-scripts.sh")
        #expect(status == 0, "\(log)")
        #expect(log.contains("all batch-script checks passed"), "\(log)")
        #expect(log.contains("SLURM predict (NTK_COMMAND)"), "\(log)")
    }

    /// The SLURM script under a real one-node Slurm cluster that `cluster/test-slurm.sh` starts
    /// (munged, slurmctld, slurmd): sbatch, srun through PMIx, USR1 → requeue → resume, TERM →
    /// no requeue, a killed rank → requeue → resume. Cancelled, with the script's reason, only
    /// where Slurm cannot start (not installed, not root); `scripts/setup.sh` installs it.
    @Test("the SLURM script under a real Slurm: requeue on USR1 and on a killed rank, none on TERM, bitwise equal results")
    func realSlurm() throws {
        let (status, log) = try Self.run("cluster/test-slurm.sh")
        if status == 77 {
            print(log)
            try Test.cancel(Comment(rawValue: log.split(separator: "\n").last.map(String.init) ?? "Slurm cannot start here"))
        }
        #expect(status == 0, "\(log)")
        #expect(log.contains("all Slurm checks passed"), "\(log)")
    }

    /// Runs a test script of the repository; its status and combined output.
    private static func run(_ script: String) throws -> (Int32, String) {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let process = Process()
        // Through perl, to start with default signal dispositions and an empty mask: the test
        // runner's threads block signals, a child inherits that mask, and the batch shells'
        // traps would never run.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/perl")
        process.arguments = ["-MPOSIX", "-e", "sigprocmask(SIG_SETMASK, POSIX::SigSet->new); $SIG{$_} = 'DEFAULT' for qw(USR1 TERM INT); exec @ARGV or die",
                             "/bin/bash", root.appendingPathComponent(script).path]
        var environment = ProcessInfo.processInfo.environment
        environment["NTK_BIN"] = Launcher.binary
        environment["TMPDIR"] = Launcher.sessionDirectory()
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let text = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: text, as: UTF8.self))
    }
}
