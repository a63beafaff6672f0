import Foundation
import Testing
import NumPyIO

/// Solves A x = b (A n x n, b n x k, row-major) by Gaussian elimination with partial pivoting.
func solve(_ a: [Double], _ b: [Double], n: Int, k: Int) -> [Double] {
    var a = a, b = b
    for col in 0..<n {
        let pivot = (col..<n).max { abs(a[$0 * n + col]) < abs(a[$1 * n + col]) }!
        if pivot != col {
            for j in 0..<n { a.swapAt(col * n + j, pivot * n + j) }
            for j in 0..<k { b.swapAt(col * k + j, pivot * k + j) }
        }
        for row in (col + 1)..<n {
            let f = a[row * n + col] / a[col * n + col]
            for j in col..<n { a[row * n + j] -= f * a[col * n + j] }
            for j in 0..<k { b[row * k + j] -= f * b[col * k + j] }
        }
    }
    var x = [Double](repeating: 0, count: n * k)
    for row in stride(from: n - 1, through: 0, by: -1) {
        for j in 0..<k {
            var s = b[row * k + j]
            for c in (row + 1)..<n { s -= a[row * n + c] * x[c * k + j] }
            x[row * k + j] = s / a[row * n + row]
        }
    }
    return x
}

@Suite(.serialized) struct PredictTests {
    @Test("ntk predict at t = inf on 2 ranks is kernel regression on the kernels ntk gram writes, to 1e-8; labels give accuracy")
    func kernelRegression() throws {
        let dir = Launcher.temporaryDirectory("pred")
        let n = 12, m = 5, d = 3, k = 3
        try Launcher.writeNPY(dir + "/x.npy", shape: [n, d], values: Launcher.values(n * d, seed: 21))
        try Launcher.writeNPY(dir + "/xt.npy", shape: [m, d], values: Launcher.values(m * d, seed: 22))
        let labels = (0..<n).map { Int64($0 % k) }
        try NPYFormat.encode(NPYArray(shape: [n], int64s: labels)).write(to: URL(fileURLWithPath: dir + "/y.npy"))
        let net = ["--depth", "2", "--width", "24", "--out-dim", "3", "--activation", "erf", "--seed", "4"]
        let predicted = try Launcher.run(["predict", "--train", dir + "/x.npy", "--targets", dir + "/y.npy", "--test", dir + "/xt.npy",
                                          "--learning-rate", "0.5", "--times", "0,5,inf", "--steps", "7", "--out", dir + "/p", "--tile", "5"] + net,
                                         ranks: 2, timeout: 120)
        try #require(predicted.status == 0, "\(predicted.stderr)")
        let gram = try Launcher.run(["gram", "--data", dir + "/x.npy", "--out", dir + "/g", "--eigen", "none"] + net, ranks: 1, timeout: 60)
        let cross = try Launcher.run(["gram", "--data", dir + "/x.npy", "--data2", dir + "/xt.npy", "--out", dir + "/c"] + net, ranks: 1, timeout: 60)
        try #require(gram.status == 0 && cross.status == 0, "\(gram.stderr) \(cross.stderr)")

        let theta = try Launcher.readNPY(dir + "/g/kernel.npy").doubles()          // N x N
        let thetaCross = try Launcher.readNPY(dir + "/c/kernel.npy").doubles()     // N x M
        let f0 = try Launcher.readNPY(dir + "/g/outputs.npy").doubles()            // N x k
        let f0Test = try Launcher.readNPY(dir + "/c/outputs2.npy").doubles()       // M x k
        var residual = [Double](repeating: 0, count: n * k)
        for i in 0..<n { for a in 0..<k { residual[i * k + a] = (labels[i] == Int64(a) ? 1 : 0) - f0[i * k + a] } }
        let alpha = solve(theta, residual, n: n, k: k)
        let test = try Launcher.readNPY(dir + "/p/test_predictions.npy")
        let train = try Launcher.readNPY(dir + "/p/train_predictions.npy")
        #expect(test.shape == [4, m, k])
        #expect(train.shape == [4, n, k])
        let values = test.doubles()
        let atInfinity = Array(values[(2 * m * k)..<(3 * m * k)])
        var expected = [Double](repeating: 0, count: m * k)
        for j in 0..<m { for a in 0..<k {
            var s = f0Test[j * k + a]
            for i in 0..<n { s += thetaCross[i * m + j] * alpha[i * k + a] }
            expected[j * k + a] = s
        } }
        // The kernel is well conditioned here (N = 12, erf): two solves differ by ~1e-13;
        // 1e-8 leaves room for the condition number while any convention error is O(1).
        let scale = expected.map(abs).max()!
        for (x, y) in zip(atInfinity, expected) { #expect(abs(x - y) <= 1e-8 * scale) }
        // t = 0 reproduces f0 exactly (up to rounding), on train and test.
        let train0 = Array(train.doubles()[0..<(n * k)])
        for (x, y) in zip(train0, f0) { #expect(abs(x - y) <= 1e-12 * max(1, abs(y))) }
        let metrics = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/p/metrics.json"))) as! [String: Any]
        let times = metrics["times"] as! [[String: Any]]
        #expect(times.count == 4)
        #expect(times[2]["train_accuracy"] as? Double == 1.0, "kernel regression interpolates the train labels")
        #expect(times[3]["steps"] as? Int == 7)
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/p/summary.json"))) as! [String: Any]
        let diagnostics = summary["diagnostics"] as! [String: Any]
        #expect(diagnostics["kernel_target_alignment"] != nil)
        #expect((summary["max_stable_learning_rate"] as? Double ?? 0) > 0)
        #expect(FileManager.default.fileExists(atPath: dir + "/p/spectrum.svg"))
        #expect(predicted.stdout.contains("kernel-target alignment"))
    }

    static let nngpFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/nngp").path

    /// neural-tangents' `gradient_descent_mse_ensemble(get='nngp', compute_cov=True)` at finite
    /// times and t = inf (its Cholesky solve). Tolerance 1e-9: two eigendecompositions
    /// (numpy's and LAPACK's) of kernels with condition numbers up to ~1e4 here, and the
    /// fixture script's own numpy checks agree with neural-tangents to ~1e-14; a convention
    /// error (normalization, factor 2 in the variance's decay, the regularizer) is O(1).
    @Test("--kernel nngp: means and variances equal neural-tangents' NNGP ensemble (gradient_descent_mse_ensemble, get='nngp') to 1e-9, 1 and 3 ranks",
          arguments: ["relu_k2_relreg", "erf_standard_k1_absreg", "residual_relu_k3"], [1, 3])
    func nngpEnsemble(name: String, ranks: Int) throws {
        let fixture = Self.nngpFixtures + "/" + name
        let dir = Launcher.temporaryDirectory("nngp")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixture + "/case.json"))) as! [String: Any]
        let times = (json["times"] as! [String]).joined(separator: ",")
        var arguments = ["predict", "--kernel", "nngp", "--train", fixture + "/x_train.npy", "--targets", fixture + "/y_train.npy",
                         "--test", fixture + "/x_test.npy", "--model", fixture + "/model.json", "--times", times,
                         "--learning-rate", String(json["learning_rate"] as! Double), "--diag-reg", String(json["diag_reg"] as! Double),
                         "--tile", "4", "--out", dir + "/p"]
        if json["absolute"] as! Bool { arguments.append("--diag-reg-absolute") }
        let result = try Launcher.run(arguments, ranks: ranks, timeout: 60)
        try #require(result.status == 0, "\(result.stderr)")
        for (ours, reference) in [("train_predictions", "mean_train"), ("test_predictions", "mean_test"),
                                  ("train_variance", "var_train"), ("test_variance", "var_test")] {
            let a = try Launcher.readNPY(dir + "/p/\(ours).npy"), b = try Launcher.readNPY(fixture + "/\(reference).npy")
            #expect(a.shape == b.shape, "\(ours): \(a.shape) against \(b.shape)")
            // Variances relative to the largest prior variance (a posterior variance is a
            // difference of numbers of that size).
            let scale = reference.hasPrefix("var") ? try Launcher.loadDoubles(fixture + "/var_test.npy").map(abs).max()! : nil
            let error = scale.map { s in zip(a.doubles(), b.doubles()).map { abs($0 - $1) }.max()! / s } ?? Launcher.relative(a.doubles(), b.doubles())
            #expect(error <= 1e-9, "\(ours): \(error)")
        }
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/p/summary.json"))) as! [String: Any]
        #expect(summary["kernel"] as? String == "nngp" && summary["initial_outputs"] as? String == "zero")
    }

    @Test("--f0-zero: t = inf is plain kernel regression Θ(X*, X) Θ⁻¹ Y on the kept kernels; --keep-kernels writes them bitwise as gram does, with their eigenvalues")
    func zeroInitialOutputsAndKeptKernels() throws {
        let dir = Launcher.temporaryDirectory("predf0")
        let n = 10, m = 4, d = 3, k = 2
        try Launcher.writeNPY(dir + "/x.npy", shape: [n, d], values: Launcher.values(n * d, seed: 31))
        try Launcher.writeNPY(dir + "/xt.npy", shape: [m, d], values: Launcher.values(m * d, seed: 32))
        let y = Launcher.values(n * k, seed: 33)
        try Launcher.writeNPY(dir + "/y.npy", shape: [n, k], values: y)
        let net = ["--depth", "1", "--width", "16", "--out-dim", "2", "--seed", "5", "--tile", "3"]
        let predicted = try Launcher.run(["predict", "--train", dir + "/x.npy", "--targets", dir + "/y.npy", "--test", dir + "/xt.npy",
                                          "--f0-zero", "--keep-kernels", "--out", dir + "/p"] + net, ranks: 2, timeout: 60)
        try #require(predicted.status == 0, "\(predicted.stderr)")
        let gram = try Launcher.run(["gram", "--data", dir + "/x.npy", "--out", dir + "/g", "--eigen", "values"] + net, ranks: 2, timeout: 60)
        try #require(gram.status == 0, "\(gram.stderr)")
        // The same engine and tiles: the kept train kernel is gram's, bit for bit.
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/p/train_kernel.npy")) == Data(contentsOf: URL(fileURLWithPath: dir + "/g/kernel.npy")))
        let eigenvalues = try Launcher.loadDoubles(dir + "/p/eigenvalues.npy"), gramValues = try Launcher.loadDoubles(dir + "/g/eigenvalues.npy")
        #expect(Launcher.relative(eigenvalues, gramValues) <= 1e-12)
        let theta = try Launcher.loadDoubles(dir + "/p/train_kernel.npy")
        let cross = try Launcher.readNPY(dir + "/p/test_kernel.npy")
        #expect(cross.shape == [m, n])
        let alpha = solve(theta, y, n: n, k: k)
        let c = cross.doubles()
        var expected = [Double](repeating: 0, count: m * k)
        for j in 0..<m { for a in 0..<k { for i in 0..<n { expected[j * k + a] += c[j * n + i] * alpha[i * k + a] } } }
        // As in kernelRegression: 1e-8 for two different solves of a well-conditioned system.
        #expect(Launcher.relative(try Launcher.loadDoubles(dir + "/p/test_predictions.npy"), expected) <= 1e-8)
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/p/summary.json"))) as! [String: Any]
        #expect(summary["initial_outputs"] as? String == "zero")
    }

    @Test("labels outside the model's outputs, or targets of the wrong length, are refused with 65 at 1 and 3 ranks", arguments: [1, 3])
    func badTargets(ranks: Int) throws {
        let dir = Launcher.temporaryDirectory("predbad")
        try Launcher.writeNPY(dir + "/x.npy", shape: [6, 2], values: Launcher.values(12, seed: 2))
        try NPYFormat.encode(NPYArray(shape: [6], int64s: [0, 1, 2, 5, 1, 0])).write(to: URL(fileURLWithPath: dir + "/labels.npy"))
        try Launcher.writeNPY(dir + "/short.npy", shape: [5], values: [1, 2, 3, 4, 5])
        for (file, message) in [("labels.npy", "class label 5 is outside 0..<3"), ("short.npy", "expected (6,)")] {
            let result = try Launcher.run(["predict", "--train", dir + "/x.npy", "--targets", dir + "/" + file, "--depth", "1", "--width", "8",
                                           "--out-dim", "3", "--learning-rate", "1", "--out", dir + "/o"], ranks: ranks, timeout: 60)
            #expect(result.status == 65, "\(result.stderr)")
            #expect(result.stderr.contains(message), "\(result.stderr)")
        }
    }
}
