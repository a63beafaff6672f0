import Foundation
import Testing
import NumPyIO

/// The holes an adversarial pass found (wrong results with status 0, another run's tiles,
/// deleted files, unbounded memory, slow stops, wrapped numbers, misleading messages),
/// each checked with the real binary under real mpirun, and bounded in time.
@Suite(.serialized) struct HostileInputTests {
    typealias Slow = ReliabilityTests

    static func summary(_ out: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/summary.json")))) as? [String: Any] ?? [:]
    }

    static func bytes(_ path: String) -> Data? { try? Data(contentsOf: URL(fileURLWithPath: path)) }

    // MARK: Wrong results with status 0

    @Test("--b-std none gives the bias-free network of a model file with \"b_std\": null (same P, bitwise the same kernel), at 1 and 3 ranks; a value that does not parse is a usage error", arguments: [1, 3])
    func biasNone(ranks: Int) throws {
        let dir = try Slow.inputs()
        try Data(#"{"layers": [{"type": "dense", "width": 64, "W_std": 1.4142135623730951, "b_std": null}, {"type": "relu"}, {"type": "dense", "width": 1, "W_std": 1.4142135623730951, "b_std": null}]}"#.utf8)
            .write(to: URL(fileURLWithPath: dir + "/nobias.json"))
        let flags = try Launcher.run(["gram", "--data", dir + "/x.npy", "--depth", "1", "--width", "64", "--b-std", "none", "--out", dir + "/a"], ranks: ranks, timeout: 60)
        let file = try Launcher.run(["gram", "--data", dir + "/x.npy", "--model", dir + "/nobias.json", "--out", dir + "/b"], ranks: ranks, timeout: 60)
        try #require(flags.status == 0 && file.status == 0, "\(flags.stderr)\(file.stderr)")
        // P = 5·64 + 64·1 weights, no biases.
        #expect(Self.summary(dir + "/a")["parameters"] as? Int == 384)
        #expect(Self.summary(dir + "/b")["parameters"] as? Int == 384)
        #expect(Self.bytes(dir + "/a/kernel.npy") == Self.bytes(dir + "/b/kernel.npy"))

        let bad = try Launcher.run(["gram", "--data", dir + "/x.npy", "--b-std", "nonee", "--out", dir + "/c"], ranks: ranks, timeout: 30)
        #expect(bad.status == 64)
        #expect(bad.stderr.contains("--b-std"), "\(bad.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/c"))
    }

    @Test("a second run into an output directory in use is refused with 73 naming the holder; the first completes with its own, uncorrupted kernel", arguments: ["values", "none"])
    func concurrentRuns(eigen: String) throws {
        let dir = try Slow.inputs()
        let arguments = ["--depth", "2", "--width", "16", "--tile", "4", "--seed", "1", "--eigen", eigen]
        let reference = try Launcher.run(["gram", "--data", dir + "/x.npy", "--out", dir + "/reference"] + arguments, ranks: 1, timeout: 60)
        try #require(reference.status == 0, "\(reference.stderr)")
        let out = dir + "/run"
        let first = try Slow.startSlow(dir, out: out, ranks: 2, arguments: arguments)
        Slow.waitForTiles(out, atLeast: 2)
        let second = try Launcher.run(["gram", "--data", dir + "/x.npy", "--out", out, "--force", "--depth", "2", "--width", "16",
                                       "--tile", "4", "--seed", "2", "--eigen", eigen], ranks: 2, timeout: 60)
        #expect(second.status == 73, "\(second.stderr)")
        #expect(second.stderr.contains("in use by another ntk run (pid"), "\(second.stderr)")
        #expect(Slow.wait(first, seconds: 60) == 0)
        #expect(Self.bytes(out + "/kernel.npy") == Self.bytes(dir + "/reference/kernel.npy"))
        #expect(Self.bytes(out + "/outputs.npy") == Self.bytes(dir + "/reference/outputs.npy"))
        let names = try FileManager.default.contentsOfDirectory(atPath: out)
        #expect(!names.contains { $0.contains(".partial") || $0 == ".ntk-lock" }, "\(names)")
    }

    @Test("checkpoint tiles copied from a run with another seed are never reused: the resumed kernel is bitwise the uninterrupted one")
    func foreignTiles() throws {
        let dir = try Slow.inputs()
        let seed2 = Slow.network.map { $0 == "1" ? "2" : $0 }
        let expected = try Launcher.run(["gram", "--data", dir + "/x.npy", "--out", dir + "/reference"] + seed2, ranks: 1, timeout: 60)
        try #require(expected.status == 0, "\(expected.stderr)")
        // Seed 1, stopped: its tiles.
        let one = try Slow.startSlow(dir, out: dir + "/one", ranks: 2)
        Slow.waitForTiles(dir + "/one", atLeast: 8)
        kill(one.processIdentifier, SIGUSR1)
        #expect(Slow.wait(one, seconds: 20) == 75)
        // Seed 2, stopped; then its tile logs are replaced by seed 1's.
        let two = try Slow.startSlow(dir, out: dir + "/two", ranks: 2, arguments: seed2)
        Slow.waitForTiles(dir + "/two", atLeast: 2)
        kill(two.processIdentifier, SIGUSR1)
        #expect(Slow.wait(two, seconds: 20) == 75)
        try #require(CheckpointLogs.count(dir + "/one/checkpoint") >= 8)
        for own in try FileManager.default.contentsOfDirectory(atPath: dir + "/two/checkpoint") where own.hasPrefix("tiles-") {
            _ = unlink(dir + "/two/checkpoint/" + own)
        }
        let tiles = try FileManager.default.contentsOfDirectory(atPath: dir + "/one/checkpoint").filter { $0.hasPrefix("tiles-") }
        for tile in tiles {
            try FileManager.default.copyItem(atPath: dir + "/one/checkpoint/" + tile, toPath: dir + "/two/checkpoint/" + tile)
        }
        let resumed = try Launcher.run(["gram", "--data", dir + "/x.npy", "--out", dir + "/two", "--resume"] + seed2, ranks: 3, timeout: 60)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(Self.summary(dir + "/two")["tiles_reused"] as? Int == 0)
        #expect(Self.bytes(dir + "/two/kernel.npy") == Self.bytes(dir + "/reference/kernel.npy"))
    }

    // MARK: Lost files

    @Test("--checkpoint at an existing directory that is not an ntk checkpoint is refused with 73 and its files are untouched; an empty one is used and kept", arguments: [1, 2])
    func checkpointOwnership(ranks: Int) throws {
        let dir = try Slow.inputs()
        let user = dir + "/mine"
        try FileManager.default.createDirectory(atPath: user, withIntermediateDirectories: true)
        let manifest = Data(#"{"experiment": "keep me"}"#.utf8), tile = Data("my tile".utf8)
        try manifest.write(to: URL(fileURLWithPath: user + "/manifest.json"))
        try tile.write(to: URL(fileURLWithPath: user + "/tile-3.bin"))
        let refused = try Launcher.run(["gram", "--data", dir + "/x.npy", "--depth", "1", "--width", "8", "--out", dir + "/a",
                                        "--checkpoint", user], ranks: ranks, timeout: 60)
        #expect(refused.status == 73, "\(refused.stderr)")
        #expect(refused.stderr.contains("not an ntk checkpoint"), "\(refused.stderr)")
        #expect(Self.bytes(user + "/manifest.json") == manifest)
        #expect(Self.bytes(user + "/tile-3.bin") == tile)
        #expect(!FileManager.default.fileExists(atPath: dir + "/a/kernel.npy"))

        let notes = dir + "/notes"
        try FileManager.default.createDirectory(atPath: notes, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: notes + "/notes.txt"))
        let other = try Launcher.run(["gram", "--data", dir + "/x.npy", "--depth", "1", "--width", "8", "--out", dir + "/b",
                                      "--checkpoint", notes], ranks: ranks, timeout: 60)
        #expect(other.status == 73, "\(other.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: notes) == ["notes.txt"])

        let empty = dir + "/empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let used = try Launcher.run(["gram", "--data", dir + "/x.npy", "--depth", "1", "--width", "8", "--out", dir + "/c",
                                     "--checkpoint", empty], ranks: ranks, timeout: 60)
        #expect(used.status == 0, "\(used.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: empty).isEmpty, "only the tool's own files are removed, the directory is kept")
    }

    @Test("--out follows a symbolic link, and files the tool did not write are never replaced or removed, even with --force")
    func foreignFilesInOutput() throws {
        let dir = try Slow.inputs()
        let target = dir + "/target"
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: dir + "/link", withDestinationPath: target)
        let ok = try Launcher.run(["gram", "--data", dir + "/x.npy", "--depth", "1", "--width", "8", "--out", dir + "/link"], ranks: 2, timeout: 60)
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(FileManager.default.fileExists(atPath: target + "/kernel.npy"))

        let precious = Data("not ntk's".utf8)
        for name in ["summary.json", "eigenvectors.npy"] {
            let victim = dir + "/victim-\(name)"
            try FileManager.default.createDirectory(atPath: victim, withIntermediateDirectories: true)
            try precious.write(to: URL(fileURLWithPath: victim + "/" + name))
            let result = try Launcher.run(["gram", "--data", dir + "/x.npy", "--depth", "1", "--width", "8", "--out", victim, "--force"],
                                          ranks: 2, timeout: 60)
            #expect(result.status == 73, "\(result.stderr)")
            #expect(result.stderr.contains("which ntk did not write"), "\(result.stderr)")
            #expect(Self.bytes(victim + "/" + name) == precious)
        }
        // A result the tool wrote is still replaced with --force, and files of the earlier
        // result that the new one does not write are removed.
        let vectors = try Launcher.run(["gram", "--data", dir + "/x.npy", "--depth", "1", "--width", "8", "--out", target, "--force",
                                        "--eigen", "vectors"], ranks: 1, timeout: 60)
        #expect(vectors.status == 0, "\(vectors.stderr)")
        #expect(FileManager.default.fileExists(atPath: target + "/eigenvectors.npy"))
        let values = try Launcher.run(["gram", "--data", dir + "/x.npy", "--depth", "1", "--width", "8", "--out", target, "--force"], ranks: 1, timeout: 60)
        #expect(values.status == 0, "\(values.stderr)")
        #expect(!FileManager.default.fileExists(atPath: target + "/eigenvectors.npy"))
    }

    // MARK: Signals

    @Test("SIGTERM to one non-zero rank stops every rank at its next tile boundary: status 75 within seconds, most tiles not computed")
    func stopReachesEveryRank() throws {
        let dir = try Slow.inputs()
        let out = dir + "/run"
        // 60 samples in tiles of 4: 120 tiles of 150 ms, about 9 s per rank on 2 ranks.
        let job = try Slow.startSlow(dir, out: out, ranks: 2)
        Slow.waitForTiles(out, atLeast: 4)
        let pids = Slow.rankPids(out)
        try #require(pids.count == 2)
        let sent = Date()
        kill(pids[1], SIGTERM)
        let status = Slow.wait(job, seconds: 30)
        let seconds = Date().timeIntervalSince(sent)
        #expect(status == 75)
        // A tile boundary comes every 150 ms; 4 s leaves room for a loaded machine.
        #expect(seconds < 4, "the job took \(seconds) s to stop")
        let saved = CheckpointLogs.count(out + "/checkpoint")
        #expect(saved < 60, "rank 0 went on with its share: \(saved) tiles saved")
    }

    @Test("launched as the README and the scripts launch it (mpirun -q), a failed run's stderr is ntk's one error line", arguments: [2, 3])
    func quietLauncher(ranks: Int) throws {
        let dir = try Slow.inputs()
        let result = try Launcher.run(["gram", "--data", dir + "/missing.npy", "--out", dir + "/out"], ranks: ranks, timeout: 30,
                                      mpirunOptions: ["-q"])
        #expect(result.status == 66)
        let lines = result.stderr.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        #expect(lines == ["ntk: error: --data file \(dir)/missing.npy does not exist"], "\(result.stderr)")
    }

    @Test("gram and predict write the spectrum as CSV, largest first, equal to eigenvalues.npy to the last digit")
    func spectrumCSV() throws {
        let dir = try Slow.inputs()
        try Launcher.writeNPY(dir + "/y.npy", shape: [60, 1], values: Launcher.values(60, seed: 3))
        let gram = try Launcher.run(["gram", "--data", dir + "/x.npy", "--depth", "1", "--width", "8", "--out", dir + "/g"], ranks: 2, timeout: 60)
        let predict = try Launcher.run(["predict", "--train", dir + "/x.npy", "--targets", dir + "/y.npy", "--depth", "1", "--width", "8",
                                        "--out", dir + "/p"], ranks: 2, timeout: 60)
        try #require(gram.status == 0 && predict.status == 0, "\(gram.stderr)\(predict.stderr)")
        let eigenvalues = try Launcher.readNPY(dir + "/g/eigenvalues.npy").doubles()
        for out in ["g", "p"] {
            let rows = try String(contentsOfFile: dir + "/\(out)/spectrum.csv", encoding: .utf8).split(separator: "\n")
            #expect(rows.first == "rank,eigenvalue,cumulative_fraction")
            let values = rows.dropFirst().map { Double($0.split(separator: ",")[1])! }
            #expect(values.count == 60)
            if out == "g" { #expect(values == Array(eigenvalues.reversed())) }
            #expect(zip(values, values.dropFirst()).allSatisfy { $0 >= $1 })
            #expect(Double(rows.last!.split(separator: ",")[2]).map { abs($0 - 1) < 1e-12 } == true)
        }
    }

    // MARK: BLAS kernel

    @Test("without OPENBLAS_CORETYPE the run uses a kernel fit for the CPU (never the generic one, nor AVX2 on AVX-512) and records who chose it; a user's choice is kept", arguments: [1, 2])
    func blasKernelChosen(ranks: Int) throws {
        let dir = try Slow.inputs()
        let plain = try Launcher.run(["gram", "--data", dir + "/x.npy", "--depth", "1", "--width", "8", "--out", dir + "/a"], ranks: ranks,
                                     timeout: 60, removing: ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"])
        try #require(plain.status == 0, "\(plain.stderr)")
        let summary = Self.summary(dir + "/a")
        let core = (summary["blas_core"] as? String ?? "").lowercased()
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        if cpu.contains(" avx512f ") {
            #expect(!["prescott", "core2", "generic", "haswell", "zen", "sandybridge"].contains(core), "\(summary)")
        } else if cpu.contains(" avx2 ") {
            #expect(!["prescott", "core2", "generic"].contains(core), "\(summary)")
        }
        #expect(["ntk", "openblas"].contains(summary["blas_core_choice"] as? String ?? ""), "\(summary)")
        #expect(!plain.stderr.contains("warning: OpenBLAS"), "\(plain.stderr)")

        let kept = try Launcher.run(["gram", "--data", dir + "/x.npy", "--depth", "1", "--width", "8", "--out", dir + "/b"], ranks: ranks,
                                    timeout: 60, environment: ["OPENBLAS_CORETYPE": "Prescott"])
        try #require(kept.status == 0, "\(kept.stderr)")
        #expect(Self.summary(dir + "/b")["blas_core"] as? String == "Prescott")
        #expect(Self.summary(dir + "/b")["blas_core_choice"] as? String == "environment")
    }

    // MARK: Numbers and messages

    @Test("numeric flags out of range are usage errors, never wrapped values", arguments: [
        ["--memory-budget-mb", "8796093022208"], ["--cache-mb", "17592186044417"], ["--tile", "1000000000000"],
        ["--width", "1000000000000000"], ["--out-dim", "0"], ["--depth=-1"], ["--eigen-top", "0"],
    ])
    func rangeChecked(flag: [String]) throws {
        let dir = try Slow.inputs()
        let result = try Launcher.run(["gram", "--data", dir + "/x.npy", "--out", dir + "/out"] + flag, ranks: 2, timeout: 30)
        #expect(result.status == 64, "\(result.stderr)")
        #expect(result.stderr.contains(flag[0].split(separator: "=")[0]), "\(result.stderr)")
        // One line of the tool's (mpirun adds its own block about the exit status after it).
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.filter { $0.hasPrefix("ntk:") }.count == 1, "one line: \(result.stderr)")
        #expect(!lines.contains { $0.hasPrefix("Error:") || $0.hasPrefix("Usage:") || $0.contains("--help") && !$0.hasPrefix("ntk:") }, "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/out"))
    }

    @Test("kernel entries near the largest double: diagnostics without overflow and summary.json of numbers or null; eigenvalues beyond the range are refused with 65")
    func hugeKernelEntries() throws {
        let dir = Launcher.temporaryDirectory("huge")
        // A linear model (depth 0): Θ(x, x') = (2/d) x·x' + 0.01, about 1e307 here.
        let small = Launcher.values(40, seed: 3).map { (abs($0) + 1) * 1.5e153 }
        try Launcher.writeNPY(dir + "/x10.npy", shape: [10, 4], values: small)
        let fine = try Launcher.run(["gram", "--data", dir + "/x10.npy", "--depth", "0", "--out", dir + "/a"], ranks: 2, timeout: 60)
        try #require(fine.status == 0, "\(fine.stderr)")
        let text = String(decoding: Self.bytes(dir + "/a/summary.json") ?? Data(), as: UTF8.self)
        #expect(!text.contains("nan") && !text.contains("inf\""), "\(text)")
        let diagnostics = Self.summary(dir + "/a")["diagnostics"] as? [String: Any] ?? [:]
        let ratio = diagnostics["participation_ratio"] as? Double
        #expect(ratio != nil && ratio!.isFinite && ratio! >= 1 && ratio! <= 10, "\(diagnostics)")

        let large = Launcher.values(200, seed: 4).map { (abs($0) + 1) * 2e153 }
        try Launcher.writeNPY(dir + "/x50.npy", shape: [50, 4], values: large)
        let refused = try Launcher.run(["gram", "--data", dir + "/x50.npy", "--depth", "0", "--out", dir + "/b"], ranks: 2, timeout: 60)
        #expect(refused.status == 65, "\(refused.stderr)")
        #expect(refused.stderr.contains("exceed the float64 range"), "\(refused.stderr)")
    }

    @Test("resuming with another --precision or --kernel names that flag and both values")
    func resumeMismatchNamesTheFlag() throws {
        let dir = try Slow.inputs()
        let out = dir + "/run"
        let job = try Slow.startSlow(dir, out: out, ranks: 2)
        Slow.waitForTiles(out, atLeast: 2)
        kill(job.processIdentifier, SIGUSR1)
        #expect(Slow.wait(job, seconds: 20) == 75)
        let f32 = try Launcher.run(["gram", "--data", dir + "/x.npy", "--out", out, "--resume", "--precision", "f32"] + Slow.network, ranks: 2, timeout: 60)
        #expect(f32.status == 65)
        #expect(f32.stderr.contains("--precision was f64, now f32"), "\(f32.stderr)")
        #expect(!f32.stderr.contains("--method"), "\(f32.stderr)")
        let analytic = ["--depth", "2", "--width", "16", "--tile", "4", "--eigen", "vectors", "--kernel", "analytic"]
        let other = try Launcher.run(["gram", "--data", dir + "/x.npy", "--out", out, "--resume"] + analytic, ranks: 2, timeout: 60)
        #expect(other.status == 65)
        #expect(other.stderr.contains("--kernel was empirical, now analytic"), "\(other.stderr)")
    }

    @Test("inputs that are not regular files, dangling links and paths under files get messages naming what they are", arguments: [1, 2])
    func specialFiles(ranks: Int) throws {
        let dir = try Slow.inputs()
        _ = try Launcher.runTool("/usr/bin/mkfifo", [dir + "/fifo.npy"])
        try FileManager.default.createSymbolicLink(atPath: dir + "/dangling", withDestinationPath: dir + "/nowhere")
        let cases: [([String], Int32, String)] = [
            (["--data", "/dev/zero", "--out", dir + "/a"], 66, "not a regular file"),
            (["--data", dir + "/fifo.npy", "--out", dir + "/b"], 66, "not a regular file"),
            (["--data", dir + "/x.npy", "--out", dir + "/dangling"], 73, "symbolic link to"),
            (["--data", dir + "/x.npy/y.npy", "--out", dir + "/c"], 66, "not a directory"),
            (["--data", dir + "/dangling", "--out", dir + "/d"], 66, "symbolic link to"),
        ]
        for (arguments, status, message) in cases {
            let result = try Launcher.run(["gram", "--depth", "1", "--width", "4"] + arguments, ranks: ranks, timeout: 30)
            #expect(result.status == status, "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
            #expect(!result.stderr.contains("NSCocoaErrorDomain"), "\(result.stderr)")
            #expect(result.seconds < 20)
        }
    }
}

/// `ntk gram --seeds`: the Monte-Carlo kernel over parameter draws in one run.
@Suite(.serialized) struct EnsembleTests {
    /// The mean is a sum of three float64 kernels divided by 3 (Welford's update): equal to
    /// the mean of the single-draw kernels to a few ulps, 1e-14 relative.
    @Test("--seeds averages the single-seed kernels (mean and full, symmetric and cross) at 1 and 3 ranks and records their spread",
          arguments: [(1, "mean", false), (3, "full", false), (3, "mean", true)])
    func averages(ranks: Int, mode: String, cross: Bool) throws {
        let dir = Launcher.temporaryDirectory("ensemble")
        try Launcher.writeNPY(dir + "/x.npy", shape: [14, 3], values: Launcher.values(42, seed: 4))
        try Launcher.writeNPY(dir + "/x2.npy", shape: [5, 3], values: Launcher.values(15, seed: 5))
        let common = ["gram", "--data", dir + "/x.npy", "--depth", "1", "--width", "12", "--out-dim", "2", "--output-kernel", mode,
                      "--tile", "4"] + (cross ? ["--data2", dir + "/x2.npy"] : [])
        let ensemble = try Launcher.run(common + ["--seeds", "3,5,8", "--out", dir + "/e"], ranks: ranks, timeout: 60)
        try #require(ensemble.status == 0, "\(ensemble.stderr)")
        var draws: [[Double]] = []
        for seed in [3, 5, 8] {
            let single = try Launcher.run(common + ["--seed", String(seed), "--eigen", "none", "--out", dir + "/s\(seed)"], ranks: 1, timeout: 60)
            try #require(single.status == 0, "\(single.stderr)")
            draws.append(try Launcher.readNPY(dir + "/s\(seed)/kernel.npy").doubles())
        }
        let mean = (0..<draws[0].count).map { e in (draws[0][e] + draws[1][e] + draws[2][e]) / 3 }
        let ours = try Launcher.readNPY(dir + "/e/kernel.npy").doubles()
        let scale = mean.map(abs).max()!
        #expect(zip(ours, mean).allSatisfy { abs($0 - $1) <= 1e-14 * scale })
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/e/summary.json"))) as! [String: Any]
        let record = try #require(summary["ensemble"] as? [String: Any])
        #expect(record["seeds"] as? [Int] == [3, 5, 8])
        var squares = 0.0, norm = 0.0
        for e in mean.indices {
            let d = draws.map { $0[e] - mean[e] }
            squares += d.reduce(0) { $0 + $1 * $1 } / 2
            norm += mean[e] * mean[e]
        }
        let spread = try #require(record["relative_spread"] as? Double)
        #expect(abs(spread - (squares / norm).squareRoot()) <= 1e-10 * spread)
        #expect((record["relative_distances"] as? [Double])?.count == 3)
        #expect(FileManager.default.fileExists(atPath: dir + "/e/eigenvalues.npy") == !cross)
    }

    @Test("--seeds excludes --seed and --params, and needs the empirical kernel (64)")
    func refusals() throws {
        let dir = Launcher.temporaryDirectory("ensemble-usage")
        try Launcher.writeNPY(dir + "/x.npy", shape: [6, 2], values: Launcher.values(12, seed: 1))
        for extra in [["--seed", "1"], ["--kernel", "analytic"], ["--eigen-top", "2"]] {
            let result = try Launcher.run(["gram", "--data", dir + "/x.npy", "--depth", "1", "--width", "4", "--seeds", "0,1",
                                           "--out", dir + "/o"] + extra, ranks: 2, timeout: 30)
            #expect(result.status == 64, "\(extra): \(result.stderr)")
        }
    }
}
