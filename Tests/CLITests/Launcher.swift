import Foundation
import NumPyIO

/// Runs the built `ntk` binary, alone or under mpirun, always bounded in time.
enum Launcher {
    /// The ntk executable next to the test bundle (or NTK_BINARY).
    static let binary: String = {
        if let explicit = ProcessInfo.processInfo.environment["NTK_BINARY"] { return explicit }
        var candidates: [URL] = []
        let argument0 = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        candidates.append(argument0.deletingLastPathComponent().appendingPathComponent("ntk"))
        candidates.append(argument0.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("ntk"))
        for bundle in Bundle.allBundles {
            candidates.append(bundle.bundleURL.deletingLastPathComponent().appendingPathComponent("ntk"))
        }
        let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        candidates.append(packageRoot.appendingPathComponent(".build/debug/ntk"))
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }?.path ?? candidates.last!.path
    }()

    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
        let seconds: Double
        let timedOut: Bool
    }

    /// Runs `ntk arguments` on `ranks` ranks (nil: without mpirun), killed after
    /// `timeout` seconds. mpirun gets its own --timeout too, so no rank outlives a test.
    static func run(_ arguments: [String], ranks: Int? = nil, timeout: Double = 120, environment: [String: String] = [:],
                    removing removed: [String] = [], mpirunOptions: [String] = []) throws -> Result {
        let process = Process()
        var env = ProcessInfo.processInfo.environment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        env["OPENBLAS_NUM_THREADS"] = "1"
        // A session directory of its own per launch: concurrent mpiruns of one user race
        // to create the shared /tmp/ompi.HOST.UID ("File exists").
        env["TMPDIR"] = Launcher.sessionDirectory()
        for (key, value) in environment { env[key] = value }
        for key in removed { env[key] = nil }
        process.environment = env
        if let ranks {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["mpirun"] + mpirunOptions + ["--oversubscribe", "--bind-to", "none", "--timeout", String(Int(timeout)),
                                 "-np", String(ranks), binary] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = arguments
        }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        let start = Date()
        try process.run()
        // Drain the pipes while waiting, so a chatty child cannot block on a full pipe.
        let group = DispatchGroup()
        nonisolated(unsafe) var outData = Data(), errData = Data()
        group.enter()
        DispatchQueue.global().async { outData = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        group.enter()
        DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
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
        return Result(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self), seconds: Date().timeIntervalSince(start), timedOut: timedOut)
    }

    /// A fresh, private TMPDIR for one mpirun.
    static func sessionDirectory() -> String {
        let path = "/tmp/ntk-mpi-\(UUID().uuidString.prefix(12))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// A fresh temporary directory.
    static func temporaryDirectory(_ label: String) -> String {
        let path = NSTemporaryDirectory() + "ntk-test-\(label)-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func writeNPY(_ path: String, shape: [Int], values: [Double]) throws {
        try NPYFormat.encode(NPYArray(shape: shape, doubles: values)).write(to: URL(fileURLWithPath: path))
    }

    /// The values of an .npy file as doubles.
    static func loadDoubles(_ path: String) throws -> [Double] { try readNPY(path).doubles() }

    /// max |a − b| / max |b|.
    static func relative(_ a: [Double], _ b: [Double]) -> Double {
        let scale = b.map(abs).max() ?? 1
        return zip(a, b).map { abs($0 - $1) }.max()! / scale
    }

    static func readNPY(_ path: String) throws -> NPYArray {
        try NPYFormat.decode(Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// Deterministic pseudo-random values in [-1, 1].
    static func values(_ count: Int, seed: UInt64) -> [Double] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) * 0x1.0p-53 * 2 - 1
        }
    }
}

extension Launcher {
    /// Runs a system tool quietly and returns its exit status.
    static func runTool(_ path: String, _ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }
}

/// The tile records in a checkpoint directory's logs (`tiles-*.log`: records of a 64-byte
/// header — magic "NTKTILE3", tile index, row and column block, value count, checksums —
/// then the values and zeros up to a multiple of 4 KiB), read as the tests see them.
enum CheckpointLogs {
    struct Record {
        let path: String
        let offset: Int
        let index: Int
        let count: Int
    }

    static let magic: UInt64 = 0x3345_4C49_544B_544E  // "NTKTILE3"

    /// Every whole record, log by log (sorted by name), in file order.
    static func records(_ directory: String) -> [Record] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasPrefix("tiles-") && $0.hasSuffix(".log") }.sorted()
        var found: [Record] = []
        for name in names {
            let path = directory + "/" + name
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            var offset = 0
            while offset + 64 <= data.count {
                let words = (0..<8).map { i in data[(offset + 8 * i)..<(offset + 8 * i + 8)].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }
                guard words[0] == magic else { break }
                let count = Int(words[4])
                guard offset + 64 + 8 * count <= data.count else { break }
                found.append(Record(path: path, offset: offset, index: Int(words[1]), count: count))
                offset += (64 + 8 * count + 4095) / 4096 * 4096
            }
        }
        return found
    }

    /// How many tiles are saved in `directory`.
    static func count(_ directory: String) -> Int { records(directory).count }
}
