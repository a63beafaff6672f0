import Foundation
import Testing
import NumPyIO

/// `ntk predict --solver cg`: kernel regression on the distributed kernels.
@Suite(.serialized) struct PredictCGTests {
    static func data(_ dir: String, n: Int, m: Int) throws {
        try Launcher.writeNPY(dir + "/x.npy", shape: [n, 6], values: Launcher.values(n * 6, seed: 41))
        try Launcher.writeNPY(dir + "/y.npy", shape: [n, 2], values: Launcher.values(n * 2, seed: 42))
        try Launcher.writeNPY(dir + "/xt.npy", shape: [m, 6], values: Launcher.values(m * 6, seed: 43))
        try Launcher.writeNPY(dir + "/yt.npy", shape: [m, 2], values: Launcher.values(m * 2, seed: 44))
    }

    static func maxRelative(_ a: [Double], _ b: [Double]) -> Double {
        let scale = b.reduce(0) { max($0, abs($1)) }
        return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) } / scale
    }

    /// Tolerance 1e-8 relative to the largest prediction (the bound): CG stops at a
    /// relative residual of 1e-10, which bounds the train predictions' error by 1e-10 ‖Y − f₀‖;
    /// the test predictions' error is Θ(X*, X)(α − α*), amplified by at most the conditioning
    /// left after the preconditioner (a few hundred here). A wrong product, shift or
    /// transposition is off by O(1).
    /// Out of core ("disk": --kernel-storage disk, panels of at most 20000 bytes) the same,
    /// and the kernel files it keeps equal the eigen path's --keep-kernels to 1e-13 (the
    /// same tile products, at another tile size).
    @Test("--solver cg equals the eigen path's t = inf to 1e-8 at 1-3 ranks and odd tiles: empirical with --diag-reg, --f0-zero, analytic, the kernels streamed from disk",
          arguments: [(1, 64, "empirical"), (2, 37, "empirical-reg"), (3, 29, "f0-zero"), (2, 41, "analytic"), (3, 29, "disk")])
    func agreesWithEigen(ranks: Int, tile: Int, variant: String) throws {
        let dir = Launcher.temporaryDirectory("predict-cg")
        try Self.data(dir, n: 300, m: 45)
        var common = ["predict", "--train", dir + "/x.npy", "--targets", dir + "/y.npy", "--test", dir + "/xt.npy",
                      "--test-targets", dir + "/yt.npy", "--depth", "2", "--width", "48", "--out-dim", "2"]
        switch variant {
        case "empirical-reg": common += ["--diag-reg", "1e-3"]
        case "f0-zero": common += ["--f0-zero"]
        case "analytic": common += ["--kernel", "analytic"]
        case "disk": common += ["--diag-reg", "1e-3", "--keep-kernels"]
        default: break
        }
        let cg = try Launcher.run(common + ["--solver", "cg", "--tile", String(tile), "--out", dir + "/cg"]
                                  + (variant == "disk" ? ["--kernel-storage", "disk"] : []), ranks: ranks, timeout: 120,
                                  environment: ["NTK_PANEL_BYTES": "20000"])
        let eigen = try Launcher.run(common + ["--solver", "eigen", "--out", dir + "/eigen"], ranks: 1, timeout: 120)
        try #require(cg.status == 0 && eigen.status == 0, "\(cg.stderr)\(eigen.stderr)")
        for name in ["train_predictions.npy", "test_predictions.npy"] {
            let ours = try Launcher.readNPY(dir + "/cg/" + name), reference = try Launcher.readNPY(dir + "/eigen/" + name)
            #expect(ours.shape == reference.shape)
            let off = Self.maxRelative(ours.doubles(), reference.doubles())
            #expect(off <= 1e-8, "\(variant) \(name): \(off)")
        }
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/cg/summary.json"))) as! [String: Any]
        #expect(summary["solver"] as? String == "cg")
        let record = try #require(summary["cg"] as? [String: Any])
        #expect((record["relative_residuals"] as! [Double]).allSatisfy { $0 <= 1e-10 })
        let solverErrors = try #require((try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/cg/metrics.json"))) as! [String: Any])["solver_errors"] as? [[String: Any]])
        #expect(solverErrors.count == 1 && solverErrors[0]["relative"] as? [Double] == record["relative_residuals"] as? [Double]
                && (solverErrors[0]["kind"] as! String).hasPrefix("relative residual"))
        #expect(record["preconditioner_rank"] as? Int == 30)
        let metrics = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/cg/metrics.json"))) as! [String: Any]
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/eigen/metrics.json"))) as! [String: Any]
        let ours = (metrics["times"] as! [[String: Any]])[0], theirs = (reference["times"] as! [[String: Any]])[0]
        let testMSE = ours["test_mse"] as! Double, referenceMSE = theirs["test_mse"] as! Double
        #expect(abs(testMSE - referenceMSE) <= 1e-7 * referenceMSE)
        #expect(!FileManager.default.fileExists(atPath: dir + "/cg/checkpoint"))
        #expect(summary["kernel_storage"] as? String == (variant == "disk" ? "disk" : "memory"))
        if variant == "disk" {
            let streamed = try #require(summary["out_of_core"] as? [String: [String: Any]])
            // The train kernel: every block Lanczos and CG product is a pass; the test kernel: one.
            #expect((streamed["train"]?["passes"] as? Int ?? 0) >= 10 && streamed["test"]?["passes"] as? Int == 1, "\(streamed)")
            for name in ["train_kernel.npy", "test_kernel.npy"] {
                let ours = try Launcher.readNPY(dir + "/cg/" + name), reference = try Launcher.readNPY(dir + "/eigen/" + name)
                #expect(ours.shape == reference.shape && Self.maxRelative(ours.doubles(), reference.doubles()) <= 1e-13, "\(name)")
            }
            #expect((summary["files"] as! [String]).contains("train_kernel.npy"))
        } else {
            #expect(summary["out_of_core"] == nil)
        }
    }

    @Test("auto takes cg when the eigen path does not fit --memory-budget-mb and eigen when it does; what cg cannot do is refused with 64")
    func automaticAndRefusals() throws {
        let dir = Launcher.temporaryDirectory("predict-cg-auto")
        try Self.data(dir, n: 800, m: 10)
        let common = ["predict", "--train", dir + "/x.npy", "--targets", dir + "/y.npy", "--test", dir + "/xt.npy",
                      "--depth", "2", "--width", "64", "--out-dim", "2"]
        // On 2 ranks the eigen path needs about 116 MiB of rank 0's node (4 N² doubles beyond two
        // 48 MiB baselines), CG about 101 MiB;
        // CG each rank's share of the tiles. (P = 4674 > N: the kernel is nonsingular.)
        let tight = try Launcher.run(common + ["--memory-budget-mb", "108", "--out", dir + "/tight"], ranks: 2, timeout: 120)
        #expect(tight.status == 0, "\(tight.stderr)")
        let roomy = try Launcher.run(common + ["--out", dir + "/roomy"], ranks: 2, timeout: 120)
        #expect(roomy.status == 0, "\(roomy.stderr)")
        func solver(_ path: String) throws -> String? {
            let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path + "/summary.json"))) as? [String: Any]
            return summary?["solver"] as? String
        }
        #expect(try solver(dir + "/tight") == "cg")
        #expect(try solver(dir + "/roomy") == "eigen")
        let off = Self.maxRelative(try Launcher.readNPY(dir + "/tight/test_predictions.npy").doubles(),
                                   try Launcher.readNPY(dir + "/roomy/test_predictions.npy").doubles())
        #expect(off <= 1e-8, "\(off)")
        // Kernels asked to be on disk are CG's: auto takes it.
        let disk = try Launcher.run(common + ["--kernel-storage", "disk", "--out", dir + "/disk"], ranks: 1, timeout: 120)
        #expect(disk.status == 0, "\(disk.stderr)")
        #expect(try solver(dir + "/disk") == "cg")
        #expect(!FileManager.default.fileExists(atPath: dir + "/disk/train_kernel.npy"), "kept only with --keep-kernels")
        for (extra, word) in [(["--kernel", "nngp"], "nngp"),
                              (["--keep-kernels"], "keep-kernels"), (["--cg-tolerance", "0"], "cg-tolerance")] {
            let result = try Launcher.run(common + ["--solver", "cg", "--out", dir + "/bad"] + extra, ranks: 1, timeout: 30)
            #expect(result.status == 64 && result.stderr.contains(word), "\(extra): \(result.status) \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/bad/summary.json"))
        }
    }

    /// Tolerance 1e-8 relative to the largest prediction, as above: the Krylov approximations
    /// stop when their last relative change is below 1e-10; the functions are smooth on the
    /// deflated spectrum, so the change bounds the error to within a small factor.
    /// The a posteriori bounds in metrics.json (train, and test through ‖Θ(X*, X)‖_F) must hold
    /// against the eigen path per time and output, up to 1e-10 ‖Y − f₀‖ for the eigen path's
    /// own rounding (LAPACK's eigenvectors of a 300 × 300 kernel); and they must say something
    /// (below 1e-6 of ‖Y − f₀‖).
    @Test("--solver cg at finite times and steps (Lanczos approximations of the dynamics, top eigenpairs exact) equals the eigen path to 1e-8 at 1 and 3 ranks, within its a posteriori error bounds")
    func finiteTimes() throws {
        let dir = Launcher.temporaryDirectory("predict-krylov")
        try Self.data(dir, n: 300, m: 45)
        let common = ["predict", "--train", dir + "/x.npy", "--targets", dir + "/y.npy", "--test", dir + "/xt.npy",
                      "--test-targets", dir + "/yt.npy", "--depth", "2", "--width", "48", "--out-dim", "2",
                      "--learning-rate", "0.5", "--times", "0,3,100,inf", "--steps", "20", "--diag-reg", "1e-4"]
        let eigen = try Launcher.run(common + ["--solver", "eigen", "--out", dir + "/eigen"], ranks: 1, timeout: 120)
        try #require(eigen.status == 0, "\(eigen.stderr)")
        for (ranks, tile) in [(1, 64), (3, 31)] {
            let out = dir + "/k\(ranks)"
            let run = try Launcher.run(common + ["--solver", "cg", "--tile", String(tile), "--out", out], ranks: ranks, timeout: 120)
            try #require(run.status == 0, "\(run.stderr)")
            for name in ["train_predictions.npy", "test_predictions.npy"] {
                let ours = try Launcher.readNPY(out + "/" + name), reference = try Launcher.readNPY(dir + "/eigen/" + name)
                #expect(ours.shape == reference.shape && ours.shape[0] == 5)
                let off = Self.maxRelative(ours.doubles(), reference.doubles())
                #expect(off <= 1e-8, "\(ranks) ranks, \(name): \(off)")
            }
            let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/summary.json"))) as! [String: Any]
            let record = try #require(summary["cg"] as? [String: Any])
            #expect(record["method"] as? String == "krylov")
            #expect((record["estimated_errors"] as! [[Double]]).joined().allSatisfy { $0 <= 1e-10 })
            // metrics.json carries them beside the metrics: one entry per time, one value per output.
            let metrics = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/metrics.json"))) as! [String: Any]
            let errors = try #require(metrics["solver_errors"] as? [[String: Any]])
            #expect(errors.count == 5 && errors.allSatisfy { ($0["relative"] as! [Double]).count == 2 })
            #expect(errors.map { $0["estimated"] as! [Double] } == record["estimated_errors"] as! [[Double]])
            #expect(errors.map { $0["relative"] as! [Double] } == record["error_bounds"] as! [[Double]])
            // The bounds against the eigen path: ‖Y − f₀‖ per output from t = 0 (f₀ itself).
            let y = try Launcher.readNPY(dir + "/y.npy").doubles()
            let reference = try Launcher.readNPY(dir + "/eigen/train_predictions.npy").doubles()
            let referenceTest = try Launcher.readNPY(dir + "/eigen/test_predictions.npy").doubles()
            let ours = try Launcher.readNPY(out + "/train_predictions.npy").doubles()
            let oursTest = try Launcher.readNPY(out + "/test_predictions.npy").doubles()
            let n = 300, m = 45
            for (index, entry) in errors.enumerated() {
                let time = entry["time"] as! String
                let relative = entry["relative"] as! [Double]
                if time == "t=inf" {
                    #expect((entry["kind"] as! String).hasPrefix("relative residual") && relative.allSatisfy { $0 <= 1e-10 })
                    continue
                }
                #expect((entry["kind"] as! String).hasPrefix("bound"), "\(time)")
                let testRelative = try #require(entry["test_relative"] as? [Double], "\(time)")
                for c in 0..<2 {
                    var norm = 0.0, train = 0.0, test = 0.0
                    for i in 0..<n {
                        norm += pow(y[i * 2 + c] - reference[i * 2 + c], 2)
                        train += pow(ours[(index * n + i) * 2 + c] - reference[(index * n + i) * 2 + c], 2)
                    }
                    for i in 0..<m { test += pow(oursTest[(index * m + i) * 2 + c] - referenceTest[(index * m + i) * 2 + c], 2) }
                    norm = norm.squareRoot()
                    #expect(train.squareRoot() <= (relative[c] + 1e-10) * norm, "\(ranks) ranks, \(time), output \(c): train error \(train.squareRoot() / norm) > bound \(relative[c])")
                    #expect(test.squareRoot() <= (testRelative[c] + 1e-10) * norm, "\(ranks) ranks, \(time), output \(c): test error \(test.squareRoot() / norm) > bound \(testRelative[c])")
                    #expect(relative[c] <= 1e-6 && testRelative[c] <= 1e-6, "\(ranks) ranks, \(time), output \(c): bounds \(relative[c]), \(testRelative[c])")
                    print("PredictCGTests.finiteTimes: \(ranks) ranks, \(time), output \(c): train error \(train.squareRoot() / norm) bound \(relative[c]); test error \(test.squareRoot() / norm) bound \(testRelative[c])")
                }
            }
        }
    }
}
