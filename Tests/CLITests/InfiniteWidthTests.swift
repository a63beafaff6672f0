import Foundation
import Testing
import NumPyIO

/// `ntk gram --kernel analytic|nngp` through the distributed engine against
/// neural-tangents' kernel_fn fixtures (Tests/Fixtures/analytic).
@Suite(.serialized) struct InfiniteWidthTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/analytic").path
    static let cases = ["relu_ntk", "relu_standard", "erf_standard_nobias", "identity_ntk", "tanh_ntk_quad64", "worked_check"]

    /// Tolerances: 1e-12 relative off the diagonal (closed forms evaluated as
    /// neural-tangents does, so only rounding differs) and 1e-7 on the relu diagonal
    /// (neural-tangents' own sqrt-of-cancellation rounding there). neural-tangents'
    /// quadrature treats x and x' differently, so its symmetric kernel is not symmetric
    /// (~1e-4 for tanh at degree 64); ntk keeps the upper triangle (x_i, x_j), i < j, and
    /// mirrors it, and that triangle is compared, as is every entry of the cross kernel.
    @Test("symmetric and cross infinite-width kernels on 1 to 4 ranks agree with neural-tangents", arguments: cases)
    func agrees(name: String) throws {
        let fixture = Self.root + "/" + name
        let dir = Launcher.temporaryDirectory("inf")
        for (kind, reference) in [("analytic", "ntk"), ("nngp", "nngp")] {
            let expected = try Launcher.readNPY(fixture + "/\(reference)_11.npy")
            let expectedCross = try Launcher.readNPY(fixture + "/\(reference)_12.npy").doubles()
            let n = expected.shape[0]
            let e = expected.doubles()
            let scale = e.map(abs).max()!
            for ranks in [1, 2, 4] {
                let out = dir + "/\(kind)-\(ranks)"
                let result = try Launcher.run(["gram", "--kernel", kind, "--data", fixture + "/x1.npy", "--model", fixture + "/model.json",
                                               "--out", out, "--tile", "2", "--eigen", "vectors"], ranks: ranks, timeout: 60)
                try #require(result.status == 0, "\(result.stderr)")
                let ours = try Launcher.readNPY(out + "/kernel.npy").doubles()
                for i in 0..<n {
                    #expect(abs(ours[i * n + i] - e[i * n + i]) <= 1e-7 * scale, "\(kind) diagonal \(i)")
                    for j in (i + 1)..<n {
                        #expect(abs(ours[i * n + j] - e[i * n + j]) <= 1e-12 * scale, "\(kind) (\(i), \(j)) on \(ranks) ranks")
                        #expect(ours[i * n + j] == ours[j * n + i])
                    }
                }
                let cross = dir + "/\(kind)-cross-\(ranks)"
                let crossResult = try Launcher.run(["gram", "--kernel", kind, "--data", fixture + "/x1.npy", "--data2", fixture + "/x2.npy",
                                                    "--model", fixture + "/model.json", "--out", cross, "--tile", "3"], ranks: ranks, timeout: 60)
                try #require(crossResult.status == 0, "\(crossResult.stderr)")
                let oursCross = try Launcher.readNPY(cross + "/kernel.npy").doubles()
                let crossScale = expectedCross.map(abs).max()!
                let worst = zip(oursCross, expectedCross).map { abs($0 - $1) }.max()!
                #expect(worst <= 1e-12 * crossScale, "\(kind) cross on \(ranks) ranks: \(worst / crossScale)")
            }
        }
    }

    @Test("k outputs give Θ ⊗ I_k: mean is Θ, sum is kΘ, full has Θ on the output diagonal and zeros elsewhere")
    func outputs() throws {
        let dir = Launcher.temporaryDirectory("infk")
        try Launcher.writeNPY(dir + "/x.npy", shape: [4, 2], values: Launcher.values(8, seed: 4))
        var kernels: [String: [Double]] = [:]
        for mode in ["mean", "sum", "full"] {
            let result = try Launcher.run(["gram", "--kernel", "analytic", "--data", dir + "/x.npy", "--depth", "2", "--width", "7",
                                           "--out-dim", "3", "--output-kernel", mode, "--out", dir + "/" + mode])
            try #require(result.status == 0, "\(result.stderr)")
            kernels[mode] = try Launcher.readNPY(dir + "/\(mode)/kernel.npy").doubles()
        }
        let mean = kernels["mean"]!, sum = kernels["sum"]!, full = kernels["full"]!
        for p in 0..<16 { #expect(sum[p] == 3 * mean[p]) }
        for i in 0..<4 { for j in 0..<4 { for a in 0..<3 { for b in 0..<3 {
            #expect(full[((i * 4 + j) * 3 + a) * 3 + b] == (a == b ? mean[i * 4 + j] : 0))
        } } } }
    }
}
