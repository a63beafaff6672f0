import Foundation
import Testing
import NumPyIO

/// The top-K eigensolver on the distributed kernel (block Lanczos on the tiles in place).
@Suite(.serialized) struct KrylovTests {
    /// Eigenvalues within 1e-10 of LAPACK's relative to λ_max (the solver stops at residuals
    /// of 1e-11 λ_max, which bound each eigenvalue's error); eigenvectors with ‖Θv − λv‖
    /// within 1e-9 λ_max.
    /// Out of core (`--kernel-storage disk`) the same, with panels of at most 4000 bytes
    /// (NTK_PANEL_BYTES), so that every rank streams several, the last ones a row or two.
    @Test("--eigen-top K by block Lanczos equals LAPACK's top K at 1-4 ranks, odd tiles, mean and full kernels, with eigenvectors, the tiles in memory or the kernel streamed from disk",
          arguments: [("mean", 1, 7, "memory"), ("mean", 2, 16, "memory"), ("mean", 3, 9, "memory"), ("full", 4, 5, "memory"),
                      ("mean", 2, 9, "disk"), ("full", 3, 5, "disk")])
    func agreesWithLAPACK(mode: String, ranks: Int, tile: Int, storage: String) throws {
        let dir = Launcher.temporaryDirectory("krylov")
        try Launcher.writeNPY(dir + "/x.npy", shape: [90, 6], values: Launcher.values(540, seed: 21))
        let common = ["gram", "--data", dir + "/x.npy", "--depth", "2", "--width", "24", "--out-dim", "2", "--output-kernel", mode,
                      "--eigen", "vectors", "--eigen-top", "8", "--tile", String(tile)]
        let krylov = try Launcher.run(common + ["--kernel-storage", storage, "--out", dir + "/k"], ranks: ranks, timeout: 120,
                                      environment: ["NTK_PANEL_BYTES": "4000"])
        let lapack = try Launcher.run(common + ["--eigen-solver", "lapack", "--out", dir + "/l"], ranks: 1, timeout: 120)
        try #require(krylov.status == 0 && lapack.status == 0, "\(krylov.stderr)\(lapack.stderr)")
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/k/summary.json"))) as! [String: Any]
        #expect(summary["krylov"] != nil, "auto chose block Lanczos for 8 of \(mode == "full" ? 180 : 90)")
        #expect(summary["kernel_storage"] as? String == storage)
        if storage == "disk" {
            let streamed = try #require(summary["out_of_core"] as? [String: Any])
            let krylov = summary["krylov"] as! [String: Any]
            // Each block product is one pass over every rank's panels, and a pass reads the
            // upper triangle at least (N·k)²/2 doubles of the kernel.
            let order = Double(mode == "full" ? 180 : 90)
            #expect(streamed["passes"] as? Int == krylov["block_products"] as? Int)
            #expect((streamed["panels"] as! Int) >= 3 * ranks, "\(streamed)")
            #expect((streamed["bytes_read"] as! Double) >= Double(krylov["block_products"] as! Int) * 8 * order * order / 2)
        } else {
            #expect(summary["out_of_core"] == nil)
        }
        let ours = try Launcher.readNPY(dir + "/k/eigenvalues.npy").doubles()
        let reference = try Launcher.readNPY(dir + "/l/eigenvalues.npy").doubles()
        let scale = reference.last!
        #expect(ours.count == 8)
        #expect(zip(ours, reference).allSatisfy { abs($0 - $1) <= 1e-10 * scale }, "\(ours) vs \(reference)")
        let vectors = try Launcher.readNPY(dir + "/k/eigenvectors.npy")
        let file = try Launcher.readNPY(dir + "/k/kernel.npy")
        let n = vectors.shape[0]
        // The operator's matrix: (N·k, N·k) with row i·k + a; the file of the full kernel is (N, N, k, k).
        var kernel = file.doubles()
        if file.shape.count == 4 {
            let samples = file.shape[0], k = file.shape[2]
            let raw = kernel
            for i in 0..<samples { for j in 0..<samples { for a in 0..<k { for b in 0..<k {
                kernel[(i * k + a) * n + j * k + b] = raw[((i * samples + j) * k + a) * k + b]
            } } } }
        }
        #expect(vectors.shape == [n, 8] && kernel.count == n * n)
        let v = vectors.doubles()
        var worst = 0.0
        for j in 0..<8 {
            for i in 0..<n {
                var s = 0.0
                for p in 0..<n { s += kernel[i * n + p] * v[p * 8 + j] }
                worst = max(worst, abs(s - ours[j] * v[i * 8 + j]))
            }
        }
        #expect(worst <= 1e-9 * scale)
    }

    @Test("--eigen-solver krylov without --eigen-top is a usage error (64) before any work")
    func needsTop() throws {
        let dir = Launcher.temporaryDirectory("krylov-usage")
        try Launcher.writeNPY(dir + "/x.npy", shape: [20, 3], values: Launcher.values(60, seed: 2))
        let result = try Launcher.run(["gram", "--data", dir + "/x.npy", "--depth", "1", "--width", "8", "--eigen-solver", "krylov",
                                       "--out", dir + "/o"], ranks: 2, timeout: 30)
        #expect(result.status == 64, "\(result.stderr)")
        #expect(result.stderr.contains("--eigen-top"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/o/kernel.npy"))
    }
}
