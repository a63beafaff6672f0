import Foundation
import Testing
import NumPyIO

/// Runs of the real binary under real Open MPI. Serialized: each launches several
/// processes on a 2-core machine.
@Suite(.serialized) struct DistributedTests {
    static let n = 13
    static let model = """
        {"parameterization": "ntk", "layers": [
          {"type": "dense", "width": 8, "W_std": 1.5, "b_std": 0.1}, {"type": "erf"},
          {"type": "dense", "width": 6, "W_std": 1.2}, {"type": "relu"},
          {"type": "dense", "width": 2, "W_std": 1.0, "b_std": 0.3}]}
        """

    static func inputs() throws -> String {
        let dir = Launcher.temporaryDirectory("inputs")
        try Launcher.writeNPY(dir + "/x.npy", shape: [n, 3], values: Launcher.values(n * 3, seed: 1))
        try Launcher.writeNPY(dir + "/x2.npy", shape: [5, 3], values: Launcher.values(15, seed: 2))
        try Data(model.utf8).write(to: URL(fileURLWithPath: dir + "/model.json"))
        return dir
    }

    static func gram(_ dir: String, ranks: Int, tile: Int, extra: [String] = []) throws -> (Launcher.Result, String) {
        let out = dir + "/out-\(ranks)-\(tile)-\(UUID().uuidString.prefix(6))"
        let result = try Launcher.run(["gram", "--data", dir + "/x.npy", "--model", dir + "/model.json", "--seed", "3",
                                       "--out", out, "--tile", String(tile), "--output-kernel", "full", "--eigen", "vectors"] + extra,
                                      ranks: ranks, timeout: 60)
        return (result, out)
    }

    @Test("the kernel is the same (1e-12 relative) for 1, 2, 3 and 4 ranks and tile sizes 1, 7, N-1, N and N+5, and exactly symmetric")
    func ranksAndTiles() throws {
        let dir = try Self.inputs()
        let (base, baseOut) = try Self.gram(dir, ranks: 1, tile: Self.n)
        try #require(base.status == 0, "\(base.stderr)")
        let reference = try Launcher.readNPY(baseOut + "/kernel.npy")
        #expect(reference.shape == [Self.n, Self.n, 2, 2])
        let r = reference.doubles()
        let k = 2, n = Self.n
        for i in 0..<n { for j in 0..<n { for a in 0..<k { for b in 0..<k {
            #expect(r[((i * n + j) * k + a) * k + b] == r[((j * n + i) * k + b) * k + a])
        } } } }
        let scale = r.map(abs).max()!
        for ranks in 1...4 {
            for tile in [1, 7, n - 1, n, n + 5] where !(ranks == 1 && tile == n) {
                let (result, out) = try Self.gram(dir, ranks: ranks, tile: tile)
                #expect(result.status == 0, "ranks \(ranks) tile \(tile): \(result.stderr)")
                guard result.status == 0 else { continue }
                let other = try Launcher.readNPY(out + "/kernel.npy").doubles()
                let diff = zip(other, r).map { abs($0 - $1) }.max()!
                #expect(diff <= 1e-12 * scale, "ranks \(ranks) tile \(tile): \(diff / scale)")
            }
        }
    }

    @Test("a run writes every file with the documented shapes and a summary that describes it")
    func outputs() throws {
        let dir = try Self.inputs()
        let (result, out) = try Self.gram(dir, ranks: 2, tile: 4)
        try #require(result.status == 0, "\(result.stderr)")
        #expect(try Launcher.readNPY(out + "/eigenvalues.npy").shape == [26])
        #expect(try Launcher.readNPY(out + "/eigenvectors.npy").shape == [26, 26])
        #expect(try Launcher.readNPY(out + "/outputs.npy").shape == [13, 2])
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/summary.json"))) as! [String: Any]
        #expect(summary["ranks"] as? Int == 2)
        #expect(summary["tile_size"] as? Int == 4)
        #expect(summary["n"] as? Int == 13)
        #expect((summary["spectrum"] as? [String: Any])?["trace"] != nil)
        #expect(result.stdout.contains("wrote"))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.hasPrefix(".") }
        #expect(leftovers.isEmpty, "\(leftovers)")
    }

    @Test("the cross kernel runs on 3 ranks and matches one rank")
    func cross() throws {
        let dir = try Self.inputs()
        var kernels: [[Double]] = []
        for ranks in [1, 3] {
            let out = dir + "/cross-\(ranks)"
            let result = try Launcher.run(["gram", "--data", dir + "/x.npy", "--data2", dir + "/x2.npy", "--model", dir + "/model.json",
                                           "--out", out, "--tile", "4"], ranks: ranks, timeout: 60)
            try #require(result.status == 0, "\(result.stderr)")
            let kernel = try Launcher.readNPY(out + "/kernel.npy")
            #expect(kernel.shape == [13, 5])
            #expect(!FileManager.default.fileExists(atPath: out + "/eigenvalues.npy"))
            kernels.append(kernel.doubles())
        }
        #expect(zip(kernels[0], kernels[1]).allSatisfy { abs($0 - $1) <= 1e-12 * max(1, abs($1)) })
    }

    @Test("errors exit with the documented status, one message, at 1 and 3 ranks", arguments: [1, 3])
    func errors(ranks: Int) throws {
        let dir = try Self.inputs()
        try Data("{\"layers\": [{\"type\": \"conv3d\"}]}".utf8).write(to: URL(fileURLWithPath: dir + "/bad.json"))
        try Data("not an npy".utf8).write(to: URL(fileURLWithPath: dir + "/bad.npy"))
        let cases: [([String], Int32, String)] = [
            (["--data", dir + "/missing.npy"], 66, "does not exist"),
            (["--data", dir], 66, "is a directory"),
            (["--data", dir + "/bad.npy"], 65, "not a valid .npy"),
            (["--data", dir + "/x.npy", "--model", dir + "/bad.json"], 65, "unknown layer type"),
            (["--data", dir + "/x.npy", "--tile", "0"], 64, "must be at least 1"),
            (["--data", dir + "/x.npy", "--model", dir + "/model.json", "--width", "3"], 64, "excludes"),
        ]
        for (arguments, status, text) in cases {
            var args = ["gram"] + arguments + ["--out", dir + "/err-out"]
            if !arguments.contains("--model") && !arguments.contains("--width") { args += ["--depth", "1", "--width", "4"] }
            let result = try Launcher.run(args, ranks: ranks, timeout: 30)
            #expect(!result.timedOut)
            #expect(result.status == status, "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains(text), "\(arguments): \(result.stderr)")
            let occurrences = result.stderr.components(separatedBy: text).count - 1
            #expect(occurrences == 1, "message printed \(occurrences) times: \(result.stderr)")
        }
    }

    @Test("an existing result is kept unless --force")
    func force() throws {
        let dir = try Self.inputs()
        let (first, out) = try Self.gram(dir, ranks: 1, tile: 5)
        try #require(first.status == 0)
        let again = try Launcher.run(["gram", "--data", dir + "/x.npy", "--model", dir + "/model.json", "--out", out], ranks: 2, timeout: 30)
        #expect(again.status == 73)
        #expect(again.stderr.contains("--force"))
        #expect(FileManager.default.fileExists(atPath: out + "/eigenvectors.npy"))
        let forced = try Launcher.run(["gram", "--data", dir + "/x.npy", "--model", dir + "/model.json", "--out", out, "--force"], ranks: 2, timeout: 30)
        #expect(forced.status == 0, "\(forced.stderr)")
        // The new run wrote no eigenvectors; the old ones must not linger beside its kernel.
        #expect(!FileManager.default.fileExists(atPath: out + "/eigenvectors.npy"))
    }

    @Test("ntk init writes parameters that ntk gram --params reproduces exactly as --seed")
    func initRoundTrip() throws {
        let dir = try Self.inputs()
        let params = dir + "/p.npz"
        let made = try Launcher.run(["init", "--model", dir + "/model.json", "--seed", "3", "--input-width", "3", "--out", params])
        try #require(made.status == 0, "\(made.stderr)")
        let a = try Launcher.run(["gram", "--data", dir + "/x.npy", "--model", dir + "/model.json", "--params", params, "--out", dir + "/a"])
        let b = try Launcher.run(["gram", "--data", dir + "/x.npy", "--model", dir + "/model.json", "--seed", "3", "--out", dir + "/b"])
        try #require(a.status == 0 && b.status == 0, "\(a.stderr) \(b.stderr)")
        #expect(try Launcher.readNPY(dir + "/a/kernel.npy").doubles() == Launcher.readNPY(dir + "/b/kernel.npy").doubles())
    }
}

@Suite(.serialized) struct ParallelWriteTests {
    @Test("without an eigendecomposition every rank writes its own tiles: the file equals the gathered kernel bitwise, symmetric and cross, mean and full, 1 to 4 ranks")
    func streamedEqualsGathered() throws {
        let dir = try DistributedTests.inputs()
        for mode in ["mean", "full"] {
            let gathered = dir + "/gathered-\(mode)"
            let base = try Launcher.run(["gram", "--data", dir + "/x.npy", "--model", dir + "/model.json", "--seed", "5", "--tile", "4",
                                         "--output-kernel", mode, "--eigen", "values", "--out", gathered], ranks: 1, timeout: 60)
            try #require(base.status == 0, "\(base.stderr)")
            let reference = try Data(contentsOf: URL(fileURLWithPath: gathered + "/kernel.npy"))
            for ranks in [1, 2, 4] {
                for tile in [3, 5, 13] {
                    let out = dir + "/streamed-\(mode)-\(ranks)-\(tile)"
                    let result = try Launcher.run(["gram", "--data", dir + "/x.npy", "--model", dir + "/model.json", "--seed", "5",
                                                   "--tile", String(tile), "--output-kernel", mode, "--eigen", "none", "--out", out],
                                                  ranks: ranks, timeout: 60)
                    try #require(result.status == 0, "\(result.stderr)")
                    let streamed = try Data(contentsOf: URL(fileURLWithPath: out + "/kernel.npy"))
                    do {
                        // Tile sizes change the per-sample batches and so the last bits.
                        let a = try Launcher.readNPY(out + "/kernel.npy").doubles(), b = try NPYFormat.decode(reference).doubles()
                        let scale = b.map(abs).max()!
                        #expect(zip(a, b).allSatisfy { abs($0 - $1) <= 1e-12 * scale }, "\(mode) ranks \(ranks) tile \(tile)")
                    }
                    #expect(streamed.count == reference.count)
                    let names = try FileManager.default.contentsOfDirectory(atPath: out)
                    #expect(!names.contains { $0.hasPrefix(".") }, "\(names)")
                }
            }
            // Same tile size: bitwise.
            let same = dir + "/streamed-\(mode)-same"
            let result = try Launcher.run(["gram", "--data", dir + "/x.npy", "--model", dir + "/model.json", "--seed", "5", "--tile", "4",
                                           "--output-kernel", mode, "--eigen", "none", "--out", same], ranks: 3, timeout: 60)
            try #require(result.status == 0, "\(result.stderr)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: same + "/kernel.npy")) == reference)
        }
    }
}

extension ParallelWriteTests {
    @Test("the positional writes (file systems without fallocate) and a mapping whose pages are dropped as it goes give the same kernel.npy bitwise, on 1 and 3 ranks")
    func writePaths() throws {
        let dir = try DistributedTests.inputs()
        for mode in ["mean", "full"] {
            var files: [Data] = []
            for (name, environment) in [("mapped", ["NTK_KERNEL_WRITER": "mapped"]),
                                        ("positional", ["NTK_KERNEL_WRITER": "mapped", "NTK_TEST_POSITIONAL_WRITES": "1"]),
                                        ("window", ["NTK_KERNEL_WRITER": "mapped", "NTK_TEST_WINDOW_BYTES": "1024"])] {
                for ranks in [1, 3] {
                    let out = dir + "/write-\(mode)-\(name)-\(ranks)"
                    let result = try Launcher.run(["gram", "--data", dir + "/x.npy", "--model", dir + "/model.json", "--seed", "5",
                                                   "--tile", "4", "--output-kernel", mode, "--eigen", "none", "--out", out],
                                                  ranks: ranks, timeout: 60, environment: environment)
                    try #require(result.status == 0, "\(name) \(ranks): \(result.stderr)")
                    files.append(try Data(contentsOf: URL(fileURLWithPath: out + "/kernel.npy")))
                }
            }
            #expect(files.allSatisfy { $0 == files[0] }, "\(mode)")
        }
    }
}

extension ParallelWriteTests {
    /// Whether `directory`'s file system takes O_DIRECT (Linux's flag, 0o40000 on x86-64 and
    /// arm64's 0o200000 aside: Glibc does not export it to Swift).
    static func takesDirectIO(_ directory: String) -> Bool {
        #if arch(x86_64)
        let flag: Int32 = 0o40000
        #else
        let flag: Int32 = 0o200000
        #endif
        let path = directory + "/.direct-probe"
        let fd = open(path, O_WRONLY | O_CREAT | flag, 0o644)
        if fd >= 0 { close(fd) }
        unlink(path)
        return fd >= 0
    }

    @Test("kernel.npy by whole row blocks with direct I/O (the default where it applies) is bitwise the shared mapping's: 1-4 ranks, tiles 3 and 4, mean and full, cross kernels; a stopped run resumes to the same file")
    func rowBlockWriter() throws {
        let dir = try DistributedTests.inputs()
        guard Self.takesDirectIO(dir) else {
            print("rowBlockWriter: skipped, the file system of \(dir) refuses O_DIRECT (the mapped writer serves it, tested above)")
            return
        }
        for (mode, tile, cross) in [("mean", "4", false), ("full", "3", false), ("mean", "3", true), ("full", "4", true)] {
            let extra = ["--output-kernel", mode, "--tile", tile] + (cross ? ["--data2", dir + "/x2.npy"] : [])
            func run(_ name: String, ranks: Int, writer: String) throws -> (Data, [String: Any]) {
                let out = dir + "/rows-\(mode)-\(tile)-\(cross)-\(name)-\(ranks)"
                let result = try Launcher.run(["gram", "--data", dir + "/x.npy", "--model", dir + "/model.json", "--seed", "5",
                                               "--eigen", "none", "--out", out] + extra,
                                              ranks: ranks, timeout: 60, environment: ["NTK_KERNEL_WRITER": writer])
                try #require(result.status == 0, "\(name) \(ranks): \(result.stderr)")
                #expect(!result.stderr.contains("cannot use the stripe writer"), "\(result.stderr)")
                let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/summary.json"))) as! [String: Any]
                return (try Data(contentsOf: URL(fileURLWithPath: out + "/kernel.npy")), summary)
            }
            let (reference, _) = try run("mapped", ranks: 1, writer: "mapped")
            for ranks in 1...4 {
                let (file, summary) = try run("stripes", ranks: ranks, writer: "stripes")
                // The row-block writer ran (its thread's seconds are reported), and wrote the same bytes.
                #expect((summary["seconds"] as? [String: Any])?["write_thread"] != nil, "\(mode) \(tile) \(cross) \(ranks)")
                #expect(file == reference, "\(mode) tile \(tile) cross \(cross) ranks \(ranks)")
            }
        }
        // Stopped mid-run (its checkpoint log written through the page cache, as on a file
        // system without O_DIRECT) and resumed on another rank count (direct): the same file.
        let arguments = ["gram", "--data", dir + "/x.npy", "--model", dir + "/model.json", "--seed", "5", "--eigen", "none",
                         "--tile", "3", "--output-kernel", "full"]
        let reference = dir + "/rows-reference"
        let whole = try Launcher.run(arguments + ["--out", reference], ranks: 2, timeout: 60, environment: ["NTK_KERNEL_WRITER": "mapped"])
        try #require(whole.status == 0, "\(whole.stderr)")
        let out = dir + "/rows-stopped"
        let job = try ReliabilityTests.startSlow(arguments + ["--out", out], ranks: 2, delayMs: 300,
                                                 environment: ["NTK_KERNEL_WRITER": "stripes", "NTK_TEST_BUFFERED_CHECKPOINT": "1"])
        ReliabilityTests.waitForTiles(out, atLeast: 6)
        kill(job.processIdentifier, SIGUSR1)
        #expect(ReliabilityTests.wait(job, seconds: 20) == 75)
        #expect(!FileManager.default.fileExists(atPath: out + "/kernel.npy"))
        let saved = CheckpointLogs.count(out + "/checkpoint")
        #expect(saved >= 6)
        let resumed = try Launcher.run(arguments + ["--out", out, "--resume"], ranks: 3, timeout: 60, environment: ["NTK_KERNEL_WRITER": "stripes"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/summary.json"))) as? [String: Any]
        #expect(summary?["tiles_reused"] as? Int == saved)
        #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/kernel.npy")) == Data(contentsOf: URL(fileURLWithPath: reference + "/kernel.npy")))
        let names = try FileManager.default.contentsOfDirectory(atPath: out)
        #expect(!names.contains { $0.hasPrefix(".") }, "\(names)")
    }
}

extension ParallelWriteTests {
    @Test("per-sample quantities in private copies (a node whose /dev/shm is too small) give the kernel of the shared ones bitwise, on 2 and 3 ranks")
    func privateFactors() throws {
        let dir = try DistributedTests.inputs()
        var files: [Data] = []
        for (name, environment) in [("shared", [String: String]()), ("private", ["NTK_TEST_PRIVATE_FACTORS": "1"])] {
            for ranks in [2, 3] {
                let out = dir + "/factors-\(name)-\(ranks)"
                let result = try Launcher.run(["gram", "--data", dir + "/x.npy", "--model", dir + "/model.json", "--seed", "5",
                                               "--tile", "4", "--eigen", "none", "--out", out],
                                              ranks: ranks, timeout: 60, environment: environment)
                try #require(result.status == 0, "\(name) \(ranks): \(result.stderr)")
                files.append(try Data(contentsOf: URL(fileURLWithPath: out + "/kernel.npy")))
            }
        }
        #expect(files.allSatisfy { $0 == files[0] })
    }
}

@Suite(.serialized) struct SinglePrecisionRunTests {
    @Test("--precision f32 gives the same kernel bitwise on 1 and 3 ranks, within 2e-5 of float64, and is refused with --method explicit")
    func ranks() throws {
        let dir = try DistributedTests.inputs()
        var kernels: [[Double]] = []
        for (ranks, precision) in [(1, "f32"), (3, "f32"), (1, "f64")] {
            let out = dir + "/p-\(ranks)-\(precision)"
            let result = try Launcher.run(["gram", "--data", dir + "/x.npy", "--model", dir + "/model.json", "--seed", "1", "--tile", "4",
                                           "--precision", precision, "--out", out], ranks: ranks, timeout: 60)
            try #require(result.status == 0, "\(result.stderr)")
            kernels.append(try Launcher.readNPY(out + "/kernel.npy").doubles())
        }
        #expect(kernels[0] == kernels[1])
        let scale = kernels[2].map(abs).max()!
        #expect(zip(kernels[0], kernels[2]).allSatisfy { abs($0 - $1) <= 2e-5 * scale })
        let refused = try Launcher.run(["gram", "--data", dir + "/x.npy", "--model", dir + "/model.json", "--precision", "f32",
                                        "--method", "explicit", "--out", dir + "/refused"], ranks: 2, timeout: 30)
        #expect(refused.status == 64, "\(refused.stderr)")
    }
}
