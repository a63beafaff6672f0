import Foundation
import Testing
import NumPyIO

@Suite(.serialized) struct ScaLAPACKSolverTests {
    /// Eigenvalues: both solvers are backward stable, so they agree to ~n·ε·max|λ|;
    /// 1e-10 relative leaves room. Eigenvectors of well-separated eigenvalues agree up to
    /// sign to ~ε·‖Θ‖/gap; 1e-7 absolute is far above that and far below any real error.
    @Test("--eigen-solver scalapack on 1 to 4 ranks gives LAPACK's eigenvalues and eigenvectors; --eigen-top K the K largest")
    func matchesLAPACK() throws {
        let dir = try DistributedTests.inputs()
        let common = ["gram", "--data", dir + "/x.npy", "--depth", "1", "--width", "9", "--seed", "2", "--tile", "4"]
        let reference = try Launcher.run(common + ["--eigen", "vectors", "--out", dir + "/lapack"], ranks: 1, timeout: 60)
        try #require(reference.status == 0, "\(reference.stderr)")
        let values = try Launcher.readNPY(dir + "/lapack/eigenvalues.npy").doubles()
        let vectors = try Launcher.readNPY(dir + "/lapack/eigenvectors.npy").doubles()
        let n = values.count
        let scale = values.map(abs).max()!
        for ranks in [1, 2, 3, 4] {
            let out = dir + "/scalapack-\(ranks)"
            let result = try Launcher.run(common + ["--eigen", "vectors", "--eigen-solver", "scalapack", "--out", out], ranks: ranks, timeout: 60)
            try #require(result.status == 0, "\(result.stderr)")
            let v2 = try Launcher.readNPY(out + "/eigenvalues.npy").doubles()
            for (a, b) in zip(v2, values) { #expect(abs(a - b) <= 1e-10 * scale, "ranks \(ranks)") }
            let w2 = try Launcher.readNPY(out + "/eigenvectors.npy")
            #expect(w2.shape == [n, n])
            let w = w2.doubles()
            // Compare the columns of the well-separated top five eigenvalues, up to sign.
            for j in (n - 5)..<n {
                var dot = 0.0
                for i in 0..<n { dot += w[i * n + j] * vectors[i * n + j] }
                let sign = dot < 0 ? -1.0 : 1.0
                for i in 0..<n { #expect(abs(sign * w[i * n + j] - vectors[i * n + j]) <= 1e-7, "ranks \(ranks) column \(j)") }
            }
            #expect(try Launcher.readNPY(out + "/kernel.npy").doubles() == Launcher.readNPY(dir + "/lapack/kernel.npy").doubles())
        }
        let top = try Launcher.run(common + ["--eigen", "values", "--eigen-solver", "scalapack", "--eigen-top", "3", "--out", dir + "/top"], ranks: 2, timeout: 60)
        try #require(top.status == 0, "\(top.stderr)")
        let topValues = try Launcher.readNPY(dir + "/top/eigenvalues.npy").doubles()
        #expect(topValues.count == 3)
        for (a, b) in zip(topValues, values.suffix(3)) { #expect(abs(a - b) <= 1e-10 * scale) }
        let lapackTop = try Launcher.run(common + ["--eigen", "vectors", "--eigen-top", "3", "--out", dir + "/ltop"], ranks: 1, timeout: 60)
        try #require(lapackTop.status == 0, "\(lapackTop.stderr)")
        #expect(try Launcher.readNPY(dir + "/ltop/eigenvectors.npy").shape == [n, 3])
    }

    /// The same tolerances as `matchesLAPACK`, for the same reasons. Tile 4 delivers blocks
    /// of 4 (no split); the library checks (scalapack-check) cover blocks split for ELPA.
    @Test("--eigen-solver elpa on 1 to 4 ranks gives LAPACK's eigenvalues (two-stage) and eigenvectors (one-stage); auto records lapack when the kernel fits; elpa refuses --eigen-top and --eigen none with 64")
    func elpaMatchesLAPACK() throws {
        let dir = try DistributedTests.inputs()
        let common = ["gram", "--data", dir + "/x.npy", "--depth", "1", "--width", "9", "--seed", "2", "--tile", "4"]
        let reference = try Launcher.run(common + ["--eigen", "vectors", "--eigen-solver", "auto", "--out", dir + "/lapack"], ranks: 2, timeout: 60)
        try #require(reference.status == 0, "\(reference.stderr)")
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/lapack/summary.json"))) as! [String: Any]
        #expect(summary["eigen_solver"] as? String == "lapack")
        let values = try Launcher.readNPY(dir + "/lapack/eigenvalues.npy").doubles()
        let vectors = try Launcher.readNPY(dir + "/lapack/eigenvectors.npy").doubles()
        let n = values.count
        let scale = values.map(abs).max()!
        for ranks in [1, 2, 3, 4] {
            for mode in ["values", "vectors"] {
                let out = dir + "/elpa-\(ranks)-\(mode)"
                let result = try Launcher.run(common + ["--eigen", mode, "--eigen-solver", "elpa", "--out", out], ranks: ranks, timeout: 60)
                try #require(result.status == 0, "\(result.stderr)")
                let record = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/summary.json"))) as! [String: Any]
                #expect(record["eigen_solver"] as? String == (mode == "values" ? "elpa-2stage" : "elpa-1stage"))
                let v2 = try Launcher.readNPY(out + "/eigenvalues.npy").doubles()
                #expect(v2.count == n)
                for (a, b) in zip(v2, values) { #expect(abs(a - b) <= 1e-10 * scale, "ranks \(ranks) \(mode)") }
                guard mode == "vectors" else { continue }
                let w = try Launcher.readNPY(out + "/eigenvectors.npy").doubles()
                for j in (n - 5)..<n {
                    var dot = 0.0
                    for i in 0..<n { dot += w[i * n + j] * vectors[i * n + j] }
                    let sign = dot < 0 ? -1.0 : 1.0
                    for i in 0..<n { #expect(abs(sign * w[i * n + j] - vectors[i * n + j]) <= 1e-7, "ranks \(ranks) column \(j)") }
                }
            }
        }
        for extra in [["--eigen", "values", "--eigen-top", "3"], ["--eigen", "none"]] {
            let refused = try Launcher.run(common + extra + ["--eigen-solver", "elpa", "--out", dir + "/refused"], ranks: 2, timeout: 60)
            #expect(refused.status == 64, "\(refused.stderr)")
            #expect(refused.stderr.contains("--eigen-solver elpa computes the whole spectrum"), "\(refused.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/refused/summary.json"))
        }
    }
}
