import Foundation
import Testing

/// The SLURM and PBS batch scripts, run by `cluster/test-batch-scripts.sh` against stand-in
/// scheduler commands and the real binary under real mpirun: stop, requeue or resubmit,
/// resume with bitwise equal results, for `gram` and (through NTK_COMMAND) `predict`.
@Suite(.serialized) struct BatchScriptTests {
    @Test("the batch scripts stop, requeue and resume gram and predict with bitwise equal results")
    func batchScripts() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let process = Process()
        // Through perl, to start with default signal dispositions and an empty mask: the test
        // runner's threads block signals, a child inherits that mask, and the batch shells'
        // traps would never run.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/perl")
        process.arguments = ["-MPOSIX", "-e", "sigprocmask(SIG_SETMASK, POSIX::SigSet->new); $SIG{$_} = 'DEFAULT' for qw(USR1 TERM INT); exec @ARGV or die",
                             "/bin/bash", root.appendingPathComponent("cluster/test-batch-scripts.sh").path]
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
        let log = String(decoding: text, as: UTF8.self)
        #expect(process.terminationStatus == 0, "\(log)")
        #expect(log.contains("all batch-script checks passed"), "\(log)")
        #expect(log.contains("SLURM predict (NTK_COMMAND)"), "\(log)")
    }
}
