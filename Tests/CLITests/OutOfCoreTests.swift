import Foundation
import Testing
import NumPyIO

/// Out of core: where the distributed solvers' kernel lives (`--kernel-storage`), and the
/// memory planner's choice between the ranks' memory and kernel.npy on disk. Agreement
/// with the in-memory and LAPACK results is in KrylovTests and DensityTests.
@Suite(.serialized) struct OutOfCoreTests {
    /// The planner's estimate in a refusal: "needs about 83.2 MiB on rank 0's node".
    static func needed(_ stderr: String) -> Double? {
        guard let range = stderr.range(of: #"needs about [0-9.]+ (MiB|GiB)"#, options: .regularExpression) else { return nil }
        let words = stderr[range].split(separator: " ")
        guard let value = Double(words[2]) else { return nil }
        return words[3] == "GiB" ? value * 1024 : value
    }

    @Test("auto keeps the tiles in memory while they fit, streams kernel.npy when only that fits (saying so), and refuses with 64 before any work, naming --kernel-storage disk, when neither fits")
    func automaticChoice() throws {
        let dir = Launcher.temporaryDirectory("out-of-core")
        let n = 2500
        try Launcher.writeNPY(dir + "/x.npy", shape: [n, 3], values: Launcher.values(n * 3, seed: 17))
        // A fixed cache bound, so that the budget changes nothing but the choice.
        let common = ["gram", "--data", dir + "/x.npy", "--depth", "1", "--width", "8", "--eigen-top", "2", "--eigen-solver", "krylov",
                      "--cache-mb", "16", "--no-checkpoint"]
        // 1 MiB fits nothing: the refusals carry each plan's estimate.
        let inMemory = try Launcher.run(common + ["--memory-budget-mb", "1", "--out", dir + "/a"], ranks: 1, timeout: 60)
        let onDisk = try Launcher.run(common + ["--memory-budget-mb", "1", "--kernel-storage", "disk", "--out", dir + "/b"], ranks: 1, timeout: 60)
        #expect(inMemory.status == 64 && onDisk.status == 64, "\(inMemory.stderr)\(onDisk.stderr)")
        #expect(inMemory.stderr.contains("--kernel-storage disk"), "\(inMemory.stderr)")
        #expect(!onDisk.stderr.contains("--kernel-storage disk"), "\(onDisk.stderr)")
        for out in ["a", "b"] { #expect(!FileManager.default.fileExists(atPath: dir + "/" + out + "/kernel.npy")) }
        let memoryPlan = try #require(Self.needed(inMemory.stderr)), diskPlan = try #require(Self.needed(onDisk.stderr))
        // Two panels and the readers' buffers (about 3 · 6.25 MB) instead of the tiles
        // (8 · 2500² / 2 bytes = 25 MB).
        #expect(memoryPlan > diskPlan + 4, "\(memoryPlan) MiB in memory vs \(diskPlan) MiB on disk")

        // Between the two: auto streams from disk, and says so once.
        let between = Int((memoryPlan + diskPlan) / 2)
        let auto = try Launcher.run(common + ["--memory-budget-mb", String(between), "--out", dir + "/c"], ranks: 1, timeout: 120)
        try #require(auto.status == 0, "\(auto.stderr)")
        #expect(auto.stderr.components(separatedBy: "out of core").count == 2, "\(auto.stderr)")
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/c/summary.json"))) as! [String: Any]
        #expect(summary["kernel_storage"] as? String == "disk")
        let streamed = try #require(summary["out_of_core"] as? [String: Any])
        #expect(streamed["read_bytes_per_second"] as! Double > 0 && streamed["direct_io"] is Bool)
        #expect(auto.stdout.contains("out of core:"), "\(auto.stdout)")
        #expect(FileManager.default.fileExists(atPath: dir + "/c/kernel.npy") && FileManager.default.fileExists(atPath: dir + "/c/eigenvalues.npy"))

        // Where the tiles fit, auto keeps them in memory.
        let roomy = try Launcher.run(common + ["--memory-budget-mb", String(Int(memoryPlan) + 2), "--out", dir + "/d"], ranks: 1, timeout: 120)
        try #require(roomy.status == 0, "\(roomy.stderr)")
        let kept = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/d/summary.json"))) as! [String: Any]
        #expect(kept["kernel_storage"] as? String == "memory" && kept["out_of_core"] == nil)
        #expect(!roomy.stderr.contains("out of core"))
        // The same eigenvalues either way (the order of sums differs: 1e-12 relative).
        let a = try Launcher.readNPY(dir + "/c/eigenvalues.npy").doubles(), b = try Launcher.readNPY(dir + "/d/eigenvalues.npy").doubles()
        #expect(a.count == 2 && zip(a, b).allSatisfy { abs($0 - $1) <= 1e-12 * b.last! }, "\(a) vs \(b)")
        // Out of core the tile loop writes the upper tiles only and the rows are completed
        // afterwards (`fillLowerTriangle`); in memory every tile is also written mirrored.
        // The same file, byte for byte.
        #expect(FileManager.default.contentsEqual(atPath: dir + "/c/kernel.npy", andPath: dir + "/d/kernel.npy"))
        #expect(kept["seconds"].flatMap { ($0 as? [String: Any])?["lower_triangle"] } == nil
                && (summary["seconds"] as? [String: Any])?["lower_triangle"] is Double)
    }

    @Test("--kernel-storage outside the distributed solvers (LAPACK, --data2) is a usage error (64) before any work")
    func onlyForDistributedSolvers() throws {
        let dir = Launcher.temporaryDirectory("out-of-core-usage")
        try Launcher.writeNPY(dir + "/x.npy", shape: [20, 3], values: Launcher.values(60, seed: 3))
        // LAPACK on rank 0 and a cross kernel (the other refusals take the same check).
        for (i, extra) in [["--eigen", "values"], ["--data2", dir + "/x.npy"]].enumerated() {
            let result = try Launcher.run(["gram", "--data", dir + "/x.npy", "--depth", "1", "--width", "8", "--kernel-storage", "disk",
                                           "--out", dir + "/o\(i)"] + extra, ranks: 1, timeout: 30)
            #expect(result.status == 64, "\(extra): \(result.stderr)")
            #expect(result.stderr.contains("--kernel-storage disk applies to"), "\(extra): \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/o\(i)/kernel.npy"))
        }
    }
}
