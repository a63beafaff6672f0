import Foundation
import Testing

/// Runs the built `scalapack-check` (next to the test bundle) under mpirun, bounded by
/// mpirun's --timeout and an outer kill.
enum CheckLauncher {
    static let binary: String = {
        if let explicit = ProcessInfo.processInfo.environment["SCALAPACK_CHECK_BINARY"] { return explicit }
        var candidates: [URL] = []
        let argument0 = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        candidates.append(argument0.deletingLastPathComponent().appendingPathComponent("scalapack-check"))
        candidates.append(argument0.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("scalapack-check"))
        for bundle in Bundle.allBundles {
            candidates.append(bundle.bundleURL.deletingLastPathComponent().appendingPathComponent("scalapack-check"))
        }
        let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        candidates.append(packageRoot.appendingPathComponent(".build/debug/scalapack-check"))
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }?.path ?? candidates.last!.path
    }()

    struct Result {
        let status: Int32
        let output: String
        let timedOut: Bool
    }

    static func run(ranks: Int, timeout: Double = 180) throws -> Result {
        let process = Process()
        var environment = ProcessInfo.processInfo.environment
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        environment["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        environment["OPENBLAS_NUM_THREADS"] = "1"
        // A private session directory: concurrent mpiruns race on /tmp/ompi.HOST.UID.
        let session = "/tmp/ntk-mpi-\(UUID().uuidString.prefix(12))"
        try? FileManager.default.createDirectory(atPath: session, withIntermediateDirectories: true)
        environment["TMPDIR"] = session
        process.environment = environment
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["mpirun", "--oversubscribe", "--bind-to", "none", "--timeout", String(Int(timeout)),
                             "-np", String(ranks), binary]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        let start = Date()
        try process.run()
        nonisolated(unsafe) var data = Data()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { data = pipe.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        var timedOut = false
        while process.isRunning {
            if Date().timeIntervalSince(start) > timeout + 10 {
                timedOut = true
                process.terminate()
                usleep(500_000)
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                break
            }
            usleep(20_000)
        }
        process.waitUntilExit()
        group.wait()
        return Result(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self), timedOut: timedOut)
    }
}

// mpirun jobs must not overlap: serialized.
@Suite(.serialized)
struct ScaLAPACKEigenTests {
    @Test("distributed eigenpairs (pdsyevd, pdsyevr, top k; ELPA one- and two-stage on 45/7, 6/7, 300/128, 150/100) equal LAPACK's for n = 45/nb = 7, 200/32, 6/7, 64/16, 300/128, 150/100 on 1-4 ranks",
          arguments: [1, 2, 3, 4])
    func agreesWithLAPACK(ranks: Int) throws {
        let result = try CheckLauncher.run(ranks: ranks)
        #expect(!result.timedOut, "scalapack-check on \(ranks) rank(s) timed out")
        #expect(result.status == 0, "scalapack-check on \(ranks) rank(s) failed:\n\(result.output)")
        #expect(result.output.contains("scalapack-check: ok, \(ranks) rank(s)"), "\(result.output)")
    }
}
