import Foundation
import Testing
import LinearAlgebra
import NumPyIO

/// `--eigen density`: stochastic Lanczos quadrature on the distributed kernel.
@Suite(.serialized) struct DensityTests {
    static func summary(_ path: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path + "/summary.json"))) as! [String: Any]
    }

    static func estimate(_ density: [String: Any], _ key: String) -> (value: Double, error: Double) {
        let e = density[key] as! [String: Any]
        return (e["value"] as! Double, e["standard_error"] as! Double)
    }

    /// Tolerances: the trace is Hutchinson's estimate, exact for its own probes, so it must
    /// equal (1/probes) Σ zᵀΘz computed from kernel.npy to 1e-9 relative (rounding of a
    /// distributed product; a wrong scale or probe is off by O(1)). The estimates must
    /// cover the exact spectrum's values within 4 of their standard errors (seeded probes;
    /// a correct run is outside 4σ with probability < 1e-4). Ranks and tiles change only the
    /// order of sums: 1e-8 relative; so does streaming the kernel from disk (out of core).
    @Test("--eigen density at 1 and 3 ranks: Hutchinson's trace exactly, the diagnostics within 4 standard errors of LAPACK's, smaller errors with the top deflated, the same at any rank count and tile")
    func agreesWithTheSpectrum() throws {
        let dir = Launcher.temporaryDirectory("density")
        let n = 150
        try Launcher.writeNPY(dir + "/x.npy", shape: [n, 5], values: Launcher.values(n * 5, seed: 31))
        let common = ["gram", "--data", dir + "/x.npy", "--depth", "2", "--width", "32", "--out-dim", "2"]
        let one = try Launcher.run(common + ["--eigen", "density", "--density-probes", "24", "--density-steps", "30", "--eigen-top", "6",
                                             "--tile", "37", "--out", dir + "/d1"], ranks: 1, timeout: 120)
        let three = try Launcher.run(common + ["--eigen", "density", "--density-probes", "24", "--density-steps", "30",
                                               "--tile", "16", "--out", dir + "/d3"], ranks: 3, timeout: 120)
        let lapack = try Launcher.run(common + ["--out", dir + "/l"], ranks: 1, timeout: 120)
        let twoRanks = try Launcher.run(common + ["--eigen", "density", "--density-probes", "24", "--density-steps", "30",
                                                  "--tile", "23", "--out", dir + "/d2"], ranks: 2, timeout: 120)
        // Out of core: the kernel streamed from kernel.npy in panels of at most 4000 bytes.
        let disk = try Launcher.run(common + ["--eigen", "density", "--density-probes", "24", "--density-steps", "30", "--eigen-top", "6",
                                              "--kernel-storage", "disk", "--tile", "16", "--out", dir + "/dd"], ranks: 3, timeout: 120,
                                    environment: ["NTK_PANEL_BYTES": "4000"])
        try #require(disk.status == 0, "\(disk.stderr)")
        try #require(twoRanks.status == 0, "\(twoRanks.stderr)")
        try #require(one.status == 0 && three.status == 0 && lapack.status == 0, "\(one.stderr)\(three.stderr)\(lapack.stderr)")
        let d1 = try Self.summary(dir + "/d1")["density"] as! [String: Any]
        let d3 = try Self.summary(dir + "/d3")["density"] as! [String: Any]
        let exact = try Launcher.readNPY(dir + "/l/eigenvalues.npy").doubles()

        // Hutchinson's trace for the run's own probes, from the kernel file (the 3-rank run
        // deflates nothing: N = 150 < 10 · 16).
        let kernel = try Launcher.readNPY(dir + "/d3/kernel.npy").doubles()
        let z = StochasticLanczos.probes(n: n, count: 24, seed: 1)
        var forms = 0.0
        for p in 0..<24 {
            for i in 0..<n { var s = 0.0; for j in 0..<n { s += kernel[i * n + j] * z[p * n + j] }; forms += z[p * n + i] * s }
        }
        forms /= 24
        let trace = Self.estimate(d3, "trace")
        #expect(abs(trace.value - forms) <= 1e-9 * abs(forms), "\(trace.value) vs \(forms)")
        #expect(d3["deflated"] as? Int == 0 && d1["deflated"] as? Int == 6)

        let sum = exact.reduce(0, +), squares = exact.reduce(0) { $0 + $1 * $1 }
        let positive = exact.filter { $0 > 0 }
        let entropy = -positive.reduce(0) { $0 + ($1 / sum) * log($1 / sum) }
        for (key, value) in [("trace", sum), ("frobenius_squared", squares), ("participation_ratio", sum * sum / squares),
                             ("effective_rank", exp(entropy))] {
            let e = Self.estimate(d1, key)
            #expect(abs(e.value - value) <= 4 * e.error, "\(key): \(e.value) ± \(e.error) vs \(value)")
            let other = Self.estimate(d3, key)
            #expect(abs(other.value - value) <= 4 * other.error, "\(key) at 3 ranks, no deflation: \(other.value) ± \(other.error) vs \(value)")
            // Deflating the top 6 leaves less variance.
            #expect(e.error < other.error, "\(key): \(e.error) deflated vs \(other.error)")
        }
        let d2 = try Self.summary(dir + "/d2")["density"] as! [String: Any]
        for key in ["trace", "frobenius_squared", "participation_ratio", "effective_rank"] {
            let a = Self.estimate(d2, key).value, b = Self.estimate(d3, key).value
            #expect(abs(a - b) <= 1e-8 * abs(b), "\(key) at 2 and 3 ranks: \(a) vs \(b)")
        }
        #expect(abs((d1["lambda_max_ritz"] as! Double) - exact.last!) <= 1e-8 * exact.last!)
        // --eigen-top 6 on the same tiles: LAPACK's top 6, and the decay fit over them.
        let top = try Launcher.readNPY(dir + "/d1/eigenvalues.npy").doubles()
        #expect(top.count == 6 && zip(top, exact.suffix(6)).allSatisfy { abs($0 - $1) <= 1e-10 * exact.last! })
        #expect(d1["decay_fit_modes"] as? Int == 6 && d1["decay_exponent"] is Double)
        // Out of core at 3 ranks: the same top 6 and estimates as in memory at 1 rank (the
        // same probes and deflation; only the order of sums differs).
        let diskSummary = try Self.summary(dir + "/dd")
        let dd = diskSummary["density"] as! [String: Any]
        #expect(diskSummary["kernel_storage"] as? String == "disk" && (diskSummary["out_of_core"] as? [String: Any])?["passes"] as? Int ?? 0 > 30)
        for key in ["trace", "frobenius_squared", "participation_ratio", "effective_rank"] {
            let a = Self.estimate(dd, key), b = Self.estimate(d1, key)
            #expect(abs(a.value - b.value) <= 1e-8 * abs(b.value) && abs(a.error - b.error) <= 1e-6 * b.error, "\(key) from disk: \(a) vs \(b)")
        }
        let diskTop = try Launcher.readNPY(dir + "/dd/eigenvalues.npy").doubles()
        #expect(diskTop.count == 6 && zip(diskTop, top).allSatisfy { abs($0 - $1) <= 1e-10 * exact.last! }, "\(diskTop) vs \(top)")
        #expect(d3["decay_exponent"] == nil)

        // The table: 200 log-spaced rows; the count at or below λ reaches N at the top.
        let rows = try String(contentsOfFile: dir + "/d3/spectrum_density.csv", encoding: .utf8).split(separator: "\n")
        #expect(rows.first == "lambda,eigenvalues_per_decade,eigenvalues_at_or_below" && rows.count == 201)
        let last = rows.last!.split(separator: ",").compactMap { Double($0) }
        #expect(last.count == 3 && abs(last[2] - Double(n)) <= 1e-9 * Double(n))
        for name in ["kernel.npy", "spectrum_density.svg", "summary.json"] {
            #expect(FileManager.default.fileExists(atPath: dir + "/d3/" + name), "\(name)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/d3/eigenvalues.npy"))
    }

    @Test("--eigen density refuses what it cannot do, with 64 before any work: --data2, --output-kernel full, --eigen-solver lapack, --seeds")
    func refusals() throws {
        let dir = Launcher.temporaryDirectory("density-usage")
        try Launcher.writeNPY(dir + "/x.npy", shape: [20, 3], values: Launcher.values(60, seed: 2))
        let base = ["gram", "--data", dir + "/x.npy", "--depth", "1", "--width", "8", "--eigen", "density", "--out", dir + "/o"]
        for (extra, word) in [(["--data2", dir + "/x.npy"], "symmetric"), (["--out-dim", "2", "--output-kernel", "full"], "full"),
                              (["--eigen-solver", "lapack"], "lapack"), (["--seeds", "1,2"], "density"),
                              (["--density-probes", "0"], "--density-probes")] {
            let result = try Launcher.run(base + extra, ranks: 1, timeout: 30)
            #expect(result.status == 64 && result.stderr.contains(word), "\(extra): \(result.status) \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/o/kernel.npy"))
        }
    }
}
